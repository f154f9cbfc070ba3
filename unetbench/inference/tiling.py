"""Whole-image prediction from tiles.

**Overlap-tile** (the paper's strategy, Fig. 2), for a valid-padding network: the output is covered by
output-sized tiles; each is predicted from its input tile, which includes the context margin m
((572 - 388) / 2 = 92 px for the paper's network); beyond the image border the input is extrapolated by
mirroring. Tiles are placed at a stride that is a multiple of the pooling factor 2^(depth-1) (384 for
the paper's 388 px output), so every tile sees the same pooling grid as a single pass over the whole
mirror-extended image would: the result equals that pass to float rounding ("seamless").

**On the device.** The image is copied to the device once; mirroring, cutting the tiles, the test-time
averaging transforms, assembling the output and averaging happen there, and one probability map per
image comes back to the host. Tiles go through the network ``inference.batch_size`` at a time under
``torch.no_grad()``, with the spec's ``inference.precision`` and ``memory_format``
(:mod:`unetbench.system.devices`; ``auto``: bf16 autocast on CUDA and on a CPU with bf16 in hardware,
float32 on other CPUs, and channels_last everywhere, the weights too, for the call); the soft-max is taken
in float32.

Two alternatives, for the ablation (:mod:`unetbench.ablation.plan`):

**Isolated tiles** (``tiling = "isolated"``, ``--no-tiling``): the same valid-padding network, the same
weights, on non-overlapping output-sized tiles, each fed with *itself* mirrored at its four edges by the
context margin: every output pixel sees only its own tile, never a neighbouring tile's pixels. The image is
first mirrored at its bottom and right border up to a whole number of tiles (as overlap-tile extends it),
so a tile that crosses the image border holds the mirrored image there, as overlap-tile's would. With
``tile_size`` the training tile, the output tiles are the size the network was trained to predict. The
pair (overlap-tile, isolated) differs in one thing: whether a tile's context is the image around it or
the tile's own mirror image.

**Zeros beyond the border** (``border = "zeros"``, ``--no-mirror``): overlap-tile whose context beyond the
image border is zeros instead of the mirrored image; inside the image nothing changes.

**No tiling with a same-padded network** (``tiling = "none"``, ``--no-tiling-same-padding``): a different
network (zero padding in every convolution, trained on its own tiles) run on non-overlapping tiles of the
inference tile size, each tile on its own, the image zero-padded at its border up to a multiple of the
tile. What a network without the trick does; it changes the network as well as the prediction, so it does
not measure overlap-tile alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from unetbench.model.sizes import context_margin, output_size
from unetbench.spec import TTA_CHOICES, InferenceSpec
from unetbench.system import devices


def _as_channels(image, device="cpu") -> torch.Tensor:
    """(H, W) or (C, H, W) array or tensor -> (C, H, W) float32 tensor on ``device``."""
    tensor = torch.as_tensor(image, dtype=torch.float32, device=device)
    return tensor[None] if tensor.dim() == 2 else tensor


def _run_tiles(model, tiles: list[torch.Tensor], inference, device) -> list[torch.Tensor]:
    """Soft-max probabilities (K, h, w) of each (C, H, W) input tile, in batches, left on the device."""
    results = []
    layout = devices.memory_format(inference.memory_format, device, inference=True)
    with torch.no_grad(), devices.autocast(inference.precision, device), devices.laid_out(model, layout):
        for start in range(0, len(tiles), inference.batch_size):
            batch = torch.stack(tiles[start : start + inference.batch_size]).contiguous(memory_format=layout)
            probabilities = torch.softmax(model(batch).float(), dim=1)  # (B, K, h, w), float32
            results.extend(probabilities.unbind(0))
    return results


@dataclass(frozen=True)
class TilePlan:
    """The input tiles of one image and where their outputs go: ``assemble`` turns the tiles' (K, h, w)
    probabilities, in order, into the image's (K, H, W). Tiles are views of one padded tensor."""

    tiles: list[torch.Tensor]
    origins: list[tuple[int, int]]
    out: int  # output tile edge
    covered: tuple[int, int]  # the tiled extent, at least the image
    shape: tuple[int, int]  # the image

    def assemble(self, probabilities: list[torch.Tensor]) -> torch.Tensor:
        first = probabilities[0]
        result = first.new_zeros((first.shape[0], *self.covered))
        for (y, x), tile_probabilities in zip(self.origins, probabilities, strict=True):
            # overlap-tile's overlaps hold equal values; the other strategies' tiles do not overlap
            result[:, y : y + self.out, x : x + self.out] = tile_probabilities
        return result[:, : self.shape[0], : self.shape[1]]


def _mirrored(channels: torch.Tensor, pad_y: tuple[int, int], pad_x: tuple[int, int]) -> torch.Tensor:
    """``channels`` (C, H, W) mirrored beyond its border by ``pad_y`` / ``pad_x`` px (before, after), as
    ``np.pad(mode="reflect")``: about the edge pixels, repeated when a margin exceeds the image."""
    _, height, width = channels.shape
    rows = torch.from_numpy(np.pad(np.arange(height), pad_y, mode="reflect")).to(channels.device)
    cols = torch.from_numpy(np.pad(np.arange(width), pad_x, mode="reflect")).to(channels.device)
    return channels[:, rows][:, :, cols]


def _zero_padded(channels: torch.Tensor, pad_y: tuple[int, int], pad_x: tuple[int, int]) -> torch.Tensor:
    """``channels`` (C, H, W) with zeros beyond its border (``--no-mirror``)."""
    return torch.nn.functional.pad(channels, (*pad_x, *pad_y))


BORDERS = {"mirror": _mirrored, "zeros": _zero_padded}


def _valid_sizes(model, tile_size: int, strategy: str) -> tuple[int, int]:
    """The output edge and the context margin of a valid-padding ``model`` for ``tile_size`` input tiles."""
    if getattr(model, "padding", "valid") != "valid":
        raise ValueError(
            f"{strategy} prediction needs a valid-padding network; use tiling = 'none' for 'same'"
        )
    out = output_size(tile_size, depth=model.depth, padding="valid")
    return out, context_margin(depth=model.depth, padding="valid")


def overlap_tile_plan(model, image, *, tile_size: int, device="cpu", border: str = "mirror") -> TilePlan:
    """The overlap-tile input tiles of an image (module docstring), on ``device``; beyond the image border
    the context is ``border``: the mirrored image (the paper) or zeros.

    ``model`` must be a valid-padding U-Net (``model.depth``, ``model.padding == "valid"``); ``tile_size``
    is the input tile edge and must be valid for it.
    """
    depth = model.depth
    out, margin = _valid_sizes(model, tile_size, "overlap-tile")
    factor = 2 ** (depth - 1)
    stride = (out // factor) * factor  # keep every tile on the pooling grid of the whole extended image
    if stride == 0:
        raise ValueError(
            f"tile size {tile_size} gives a {out} px output, smaller than the pooling factor {factor}"
        )
    channels = _as_channels(image, device)
    _, height, width = channels.shape
    n_y, n_x = max(1, math.ceil((height - out) / stride) + 1), max(1, math.ceil((width - out) / stride) + 1)
    covered_y, covered_x = (n_y - 1) * stride + out, (n_x - 1) * stride + out
    # extend the image: margin on top/left, margin + the uncovered rest on bottom/right
    extend = BORDERS[border]
    padded = extend(channels, (margin, margin + covered_y - height), (margin, margin + covered_x - width))
    origins = [(iy * stride, ix * stride) for iy in range(n_y) for ix in range(n_x)]
    tiles = [padded[:, y : y + tile_size, x : x + tile_size] for y, x in origins]
    return TilePlan(tiles, origins, out, (covered_y, covered_x), (height, width))


def isolated_tile_plan(model, image, *, tile_size: int, device="cpu") -> TilePlan:
    """``--no-tiling``'s tiles: output-sized, non-overlapping, each mirrored from itself by the context
    margin, so no output pixel sees a neighbouring tile (module docstring). ``model`` and ``tile_size`` as
    :func:`overlap_tile_plan`'s."""
    out, margin = _valid_sizes(model, tile_size, "isolated-tile")
    channels = _as_channels(image, device)
    _, height, width = channels.shape
    n_y, n_x = math.ceil(height / out), math.ceil(width / out)
    extended = _mirrored(channels, (0, n_y * out - height), (0, n_x * out - width))
    origins = [(iy * out, ix * out) for iy in range(n_y) for ix in range(n_x)]
    tiles = [
        _mirrored(extended[:, y : y + out, x : x + out], (margin, margin), (margin, margin))
        for y, x in origins
    ]
    return TilePlan(tiles, origins, out, (n_y * out, n_x * out), (height, width))


def independent_tile_plan(model, image, *, tile_size: int, device="cpu") -> TilePlan:
    """``--no-tiling-same-padding``'s tiles: non-overlapping tiles of a same-padded network, zero padding
    at every tile and image border (module docstring)."""
    if getattr(model, "padding", "same") != "same":
        raise ValueError(
            "tiling = 'none' needs a same-padding network (the ablation sets model.padding = 'same')"
        )
    output_size(tile_size, depth=model.depth, padding="same")  # ValueError for a size the network cannot take
    channels = _as_channels(image, device)
    _, height, width = channels.shape
    n_y, n_x = math.ceil(height / tile_size), math.ceil(width / tile_size)
    padded = torch.nn.functional.pad(channels, (0, n_x * tile_size - width, 0, n_y * tile_size - height))
    origins = [(iy * tile_size, ix * tile_size) for iy in range(n_y) for ix in range(n_x)]
    tiles = [padded[:, y : y + tile_size, x : x + tile_size] for y, x in origins]
    return TilePlan(tiles, origins, tile_size, (n_y * tile_size, n_x * tile_size), (height, width))


def overlap_tile_predict(
    model, image: np.ndarray, *, tile_size: int, batch_size: int = 4, device="cpu", border: str = "mirror"
) -> np.ndarray:
    """Class probabilities (K, H, W) of a whole image by overlap-tile prediction (module docstring), in
    float32 and the contiguous layout on every machine: the reference :func:`predict_image` is measured
    against."""
    plan = overlap_tile_plan(model, image, tile_size=tile_size, device=device, border=border)
    return _assembled(model, plan, tile_size, batch_size, device)


def isolated_tile_predict(
    model, image: np.ndarray, *, tile_size: int, batch_size: int = 4, device="cpu"
) -> np.ndarray:
    """Class probabilities (K, H, W) from isolated tiles (module docstring), in float32 as
    :func:`overlap_tile_predict`."""
    plan = isolated_tile_plan(model, image, tile_size=tile_size, device=device)
    return _assembled(model, plan, tile_size, batch_size, device)


def independent_tile_predict(
    model, image: np.ndarray, *, tile_size: int, batch_size: int = 4, device="cpu"
) -> np.ndarray:
    """Class probabilities (K, H, W) of a same-padded network on independent tiles (module docstring), in
    float32 as :func:`overlap_tile_predict`."""
    plan = independent_tile_plan(model, image, tile_size=tile_size, device=device)
    return _assembled(model, plan, tile_size, batch_size, device)


def _assembled(model, plan: TilePlan, tile_size: int, batch_size: int, device) -> np.ndarray:
    spec = InferenceSpec(
        tile_size=tile_size, batch_size=batch_size, precision="fp32", memory_format="contiguous"
    )
    return plan.assemble(_run_tiles(model, plan.tiles, spec, device)).cpu().numpy()


def tile_plan(model, image, inference, device="cpu") -> TilePlan:
    """The tiles of ``image`` by an :class:`~unetbench.spec.InferenceSpec`'s ``tiling`` and ``border``."""
    size = inference.tile_size
    if inference.tiling == "overlap-tile":
        return overlap_tile_plan(model, image, tile_size=size, device=device, border=inference.border)
    if inference.tiling == "isolated":
        return isolated_tile_plan(model, image, tile_size=size, device=device)
    return independent_tile_plan(model, image, tile_size=size, device=device)


# --------------------------------------------------------------------------------------------------
# Test-time averaging

#: The versions each setting (named by :data:`unetbench.spec.TTA_CHOICES`) averages, as indices into the
#: dihedral group (see :func:`transform`).
TTA_VERSIONS = dict(zip(TTA_CHOICES, ((0,), (0, 4, 2, 6), tuple(range(8))), strict=True))


def transform(array, version: int):
    """Version ``version`` (0..7) of an image (..., H, W), a numpy array or a torch tensor: mirrored
    left-right if ``version >= 4``, then rotated by ``version % 4`` quarter turns counter-clockwise. 0 is
    the image itself; 2 turns it by 180 degrees (= both mirrors), 4 mirrors it left-right and 6
    top-bottom: (0, 4, 2, 6) are the four flips."""
    if torch.is_tensor(array):
        array = array.flip(-1) if version >= 4 else array
        return torch.rot90(array, version % 4, dims=(-2, -1))
    if version >= 4:
        array = array[..., ::-1]
    return np.rot90(array, version % 4, axes=(-2, -1))


def restore(array, version: int):
    """The inverse of :func:`transform`: a prediction of version ``version`` back on the image's grid."""
    if torch.is_tensor(array):
        array = torch.rot90(array, -(version % 4), dims=(-2, -1))
        return array.flip(-1) if version >= 4 else array
    array = np.rot90(array, -(version % 4), axes=(-2, -1))
    return array[..., ::-1] if version >= 4 else array


def predict_image(model, image: np.ndarray, inference, device="cpu", *, tta: str | None = None) -> np.ndarray:
    """Class probabilities (K, H, W) of an image as an :class:`~unetbench.spec.InferenceSpec` says: its
    ``tiling``, and test-time averaging over ``tta`` (default: the spec's ``tta``).

    Test-time averaging: every version of the image (:data:`TTA_VERSIONS`) is tiled by the same strategy,
    the tiles of all versions go through the network together in batches of ``inference.batch_size``
    (8 versions cost one pass over 8x the tiles), each version's probabilities are turned back onto the
    image's grid, and the soft-max probabilities are averaged.

    ``dihedral`` averages the 8 symmetries of the square (4 rotations by quarter turns, each with and
    without a mirror). The paper's EM result is "averaged over 7 rotated versions of the input data"
    (Table 1); the paper does not list them. We read them as the 7 symmetries other than the identity,
    applied to a network that already sees the original: 1 + 7 = 8 versions, the only set of rotations
    and mirrors that map the pixel grid onto itself. ``flips`` averages the original and its mirror
    images (left-right, top-bottom, both), as the authors' release does for the cell data
    (``average_mirror`` in its segmentation script).
    """
    tta = inference.tta if tta is None else tta
    if tta not in TTA_VERSIONS:
        raise ValueError(f"tta must be one of {', '.join(TTA_VERSIONS)}, got {tta!r}")
    channels = _as_channels(image, device)
    versions = TTA_VERSIONS[tta]
    plans = [tile_plan(model, transform(channels, v), inference, device) for v in versions]
    probabilities = _run_tiles(model, [t for p in plans for t in p.tiles], inference, device)
    total, start = None, 0
    for version, version_plan in zip(versions, plans, strict=True):
        count = len(version_plan.tiles)
        restored = restore(version_plan.assemble(probabilities[start : start + count]), version)
        total = restored.clone() if total is None else total + restored
        start += count
    return (total / len(versions)).cpu().numpy()
