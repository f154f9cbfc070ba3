"""Random training tiles: an input tile with its context, and the target and weights of exactly the
network's valid output region (paper, Sec. 3: "one large tile per batch").

One sampling grid serves all three: the input tile is read on the full (T, T) grid, the target and the
weights on its central (O, O) part, O the network's output size for T. With no augmentation that is
``image`` around ``[y0 - m, y0 + O + m)`` (mirrored beyond the border, as at prediction) and
``target[y0 : y0 + O]``; with augmentation the same deformation moves all three together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unetbench.training.augment import (
    Deformation,
    sample_numpy,
    sample_torch,
    sampling_grid,
    sampling_grid_torch,
)


@dataclass(frozen=True, eq=False)
class TrainingTile:
    image: np.ndarray  # (T, T) float32, or a torch tensor
    target: np.ndarray  # (O, O) int64
    weights: np.ndarray  # (O, O) float32


def random_output_origin(rng: np.random.Generator, shape: tuple[int, int], out: int) -> tuple[int, int]:
    """Top-left corner of a random (out, out) output window; inside the image when it fits."""
    return tuple(int(rng.integers(min(0, n - out), max(0, n - out) + 1)) for n in shape)  # type: ignore[return-value]


def tile_centre(origin: tuple[int, int], out: int) -> tuple[float, float]:
    return (origin[0] + (out - 1) / 2, origin[1] + (out - 1) / 2)


def sample_tile(
    image: np.ndarray,
    target: np.ndarray,
    weights: np.ndarray,
    *,
    tile: int,
    out: int,
    origin: tuple[int, int],
    deformation: Deformation,
    interpolation: str = "cubic",
) -> TrainingTile:
    """One training tile on the CPU (numpy)."""
    margin = (tile - out) // 2
    grid = sampling_grid(deformation, (tile, tile), tile_centre(origin, out))
    inner = grid[:, margin : margin + out, margin : margin + out]
    picture = sample_numpy(image, grid, interpolation) * deformation.contrast + deformation.brightness
    return TrainingTile(
        image=np.clip(picture, 0.0, 1.0).astype(np.float32),
        target=sample_numpy(target, inner, "nearest").astype(np.int64),
        weights=sample_numpy(weights, inner, "linear").astype(np.float32),
    )


def sample_tile_torch(image, target, weights, *, tile, out, origin, deformation, interpolation="cubic"):
    """The same tile with torch tensors (already on their device, e.g. the GPU)."""
    margin = (tile - out) // 2
    grid = sampling_grid_torch(deformation, (tile, tile), tile_centre(origin, out), device=image.device)
    inner = grid[:, margin : margin + out, margin : margin + out]
    picture = sample_torch(image, grid, interpolation) * deformation.contrast + deformation.brightness
    return TrainingTile(
        image=picture.clamp(0.0, 1.0),
        target=sample_torch(target, inner, "nearest").long(),
        weights=sample_torch(weights, inner, "linear"),
    )
