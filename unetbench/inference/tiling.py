"""Whole-image prediction from tiles.

**Overlap-tile** (the paper's strategy, Fig. 2), for a valid-padding network: the output is covered by
output-sized tiles; each is predicted from its input tile, which includes the context margin m
((572 - 388) / 2 = 92 px for the paper's network); beyond the image border the input is extrapolated by
mirroring. Tiles are placed at a stride that is a multiple of the pooling factor 2^(depth-1) (384 for
the paper's 388 px output), so every tile sees the same pooling grid as a single pass over the whole
mirror-extended image would: the result equals that pass to float rounding ("seamless"). Tiles are
batched, run under ``torch.no_grad()``, and under bf16 autocast on CUDA.

**No tiling** (``tiling = "none"``, the ablation's baseline): a same-padded network is run on
non-overlapping tiles of the inference tile size, each tile on its own with zero padding in every
convolution (the network's own padding), and the image is zero-padded at its border up to a multiple of
the tile. This is what a network without the trick does: no context beyond the tile, zeros instead of
mirrored data at every tile and image border. It is the fair baseline because it changes only what the
trick changes (how borders and context are handled); the training data, the number of parameters and
the optimisation stay the same.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch

from unetbench.model.sizes import context_margin, output_size


def _as_channels(image: np.ndarray) -> np.ndarray:
    """(H, W) or (C, H, W) -> (C, H, W) float32."""
    array = np.asarray(image, dtype=np.float32)
    return array[None] if array.ndim == 2 else array


def _run_tiles(model, tiles: list[np.ndarray], batch_size: int, device) -> list[np.ndarray]:
    """Soft-max probabilities (K, h, w) of each (C, H, W) input tile, in batches."""
    results = []
    device = torch.device(device)
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        if device.type == "cuda"
        else contextlib.nullcontext()
    )
    with torch.no_grad(), autocast:
        for start in range(0, len(tiles), batch_size):
            batch = torch.from_numpy(np.stack(tiles[start : start + batch_size])).to(device)
            probabilities = torch.softmax(model(batch).float(), dim=1)  # (B, K, h, w)
            results.extend(probabilities.cpu().numpy())
    return results


def overlap_tile_predict(
    model, image: np.ndarray, *, tile_size: int, batch_size: int = 4, device="cpu"
) -> np.ndarray:
    """Class probabilities (K, H, W) of a whole image by overlap-tile prediction (module docstring).

    ``model`` must be a valid-padding U-Net (``model.depth``, ``model.padding == "valid"``); ``tile_size``
    is the input tile edge and must be valid for it.
    """
    if getattr(model, "padding", "valid") != "valid":
        raise ValueError(
            "overlap-tile prediction needs a valid-padding network; use tiling = 'none' for 'same'"
        )
    depth = model.depth
    out = output_size(tile_size, depth=depth, padding="valid")
    margin = context_margin(depth=depth, padding="valid")
    factor = 2 ** (depth - 1)
    stride = (out // factor) * factor  # keep every tile on the pooling grid of the whole extended image
    if stride == 0:
        raise ValueError(
            f"tile size {tile_size} gives a {out} px output, smaller than the pooling factor {factor}"
        )
    channels = _as_channels(image)
    _, height, width = channels.shape
    n_y, n_x = max(1, math.ceil((height - out) / stride) + 1), max(1, math.ceil((width - out) / stride) + 1)
    covered_y, covered_x = (n_y - 1) * stride + out, (n_x - 1) * stride + out
    # mirror the image: margin on top/left, margin + the uncovered rest on bottom/right
    padded = np.pad(
        channels,
        ((0, 0), (margin, margin + covered_y - height), (margin, margin + covered_x - width)),
        mode="reflect",
    )
    origins = [(iy * stride, ix * stride) for iy in range(n_y) for ix in range(n_x)]
    tiles = [padded[:, y : y + tile_size, x : x + tile_size] for y, x in origins]
    probabilities = _run_tiles(model, tiles, batch_size, device)
    result = np.zeros((probabilities[0].shape[0], covered_y, covered_x), dtype=np.float32)
    for (y, x), tile_probabilities in zip(origins, probabilities, strict=True):
        result[:, y : y + out, x : x + out] = tile_probabilities  # overlaps hold identical values
    return result[:, :height, :width]


def independent_tile_predict(
    model, image: np.ndarray, *, tile_size: int, batch_size: int = 4, device="cpu"
) -> np.ndarray:
    """Class probabilities (K, H, W) with the ablation's strategy: non-overlapping tiles of a same-padded
    network, zero padding at every tile and image border (module docstring)."""
    if getattr(model, "padding", "same") != "same":
        raise ValueError(
            "tiling = 'none' needs a same-padding network (the ablation sets model.padding = 'same')"
        )
    output_size(tile_size, depth=model.depth, padding="same")  # ValueError for a size the network cannot take
    channels = _as_channels(image)
    _, height, width = channels.shape
    n_y, n_x = math.ceil(height / tile_size), math.ceil(width / tile_size)
    padded = np.pad(channels, ((0, 0), (0, n_y * tile_size - height), (0, n_x * tile_size - width)))
    origins = [(iy * tile_size, ix * tile_size) for iy in range(n_y) for ix in range(n_x)]
    tiles = [padded[:, y : y + tile_size, x : x + tile_size] for y, x in origins]
    probabilities = _run_tiles(model, tiles, batch_size, device)
    result = np.zeros((probabilities[0].shape[0], n_y * tile_size, n_x * tile_size), dtype=np.float32)
    for (y, x), tile_probabilities in zip(origins, probabilities, strict=True):
        result[:, y : y + tile_size, x : x + tile_size] = tile_probabilities
    return result[:, :height, :width]


def predict_image(model, image: np.ndarray, inference, device="cpu") -> np.ndarray:
    """Dispatch on an :class:`~unetbench.spec.InferenceSpec`'s ``tiling``."""
    predict = overlap_tile_predict if inference.tiling == "overlap-tile" else independent_tile_predict
    return predict(
        model, image, tile_size=inference.tile_size, batch_size=inference.batch_size, device=device
    )
