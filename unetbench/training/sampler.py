"""Random training tiles: an input tile with its context, and the target and weights of exactly the
network's valid output region (paper, Sec. 3: "one large tile per batch").

One sampling grid serves all three: the input tile is read on the full (T, T) grid, the target and the
weights on its central (O, O) part, O the network's output size for T. With no augmentation that is
``image`` around ``[y0 - m, y0 + O + m)`` (mirrored beyond the border, as at prediction) and
``target[y0 : y0 + O]``; with augmentation the same deformation moves all three together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from unetbench.training.augment import (
    Deformation,
    control_points,
    lattice_matrix,
    sample_numpy,
    sampling_grid,
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


# --------------------------------------------------------------------------------------------------
# A batch of tiles at once, on the device


def step_seed(seed: int, iteration: int, stream: int = 0) -> int:
    """The seed of the tile draws of step ``iteration``: a function of the run's seed and the iteration
    (and of ``stream``, one per data-parallel rank), so the draws of a step never depend on the steps
    before it, on the device, or on where the run was interrupted and resumed."""
    return int(np.random.SeedSequence([seed, stream, iteration]).generate_state(1, np.uint64)[0] >> 1)


@dataclass(frozen=True, eq=False)
class TileDraws:
    """The random draws of a batch of B tiles, as tensors on the device."""

    image: Any  # (B,) int64: which training image
    origin: Any  # (B, 2) int64: top-left corner of the output window
    coarse: Any  # (B, 2, n, n) control-point displacements in px
    angle: Any  # (B,) radians
    shift: Any  # (B, 2) px
    flip: Any  # (B, 2) bool: (y, x)
    contrast: Any  # (B,)
    brightness: Any  # (B,)

    def deformation(self, i: int, spacing: float) -> Deformation:
        """Tile ``i``'s draws as a :class:`Deformation` (for the numpy reference :func:`sample_tile`)."""
        return Deformation(
            coarse=self.coarse[i].double().cpu().numpy(),
            spacing=spacing,
            angle=float(self.angle[i]),
            shift=(float(self.shift[i, 0]), float(self.shift[i, 1])),
            flip_y=bool(self.flip[i, 0]),
            flip_x=bool(self.flip[i, 1]),
            contrast=float(self.contrast[i]),
            brightness=float(self.brightness[i]),
        )


class TileBatcher:
    """Random augmented training tiles, a whole batch per call, made on the data's device.

    The training images, targets and weight maps are copied to ``device`` once. Each call draws the
    batch's random numbers from the given ``torch.Generator`` (on the same device), builds the sampling
    grids of all B tiles together (the deformation fields as two batched matrix products with the
    control-point lattice of :func:`~unetbench.training.augment.lattice_matrix`), and cuts the tiles
    with one ``grid_sample`` per tensor kind: the image with cubic interpolation, the targets nearest,
    the weights linear, mirrored beyond the border. Nothing is read back to the host, so a training step
    needs no host synchronisation for its data.

    Images of different shapes are kept in one stack per shape; each stack is sampled for the whole batch
    and every tile takes the result of its own image's stack, so a data set of S shapes costs S samplings
    per batch (one for the usual data set of equal-sized images).

    Per tile this is :func:`sample_tile` (numpy) with the tile's :meth:`TileDraws.deformation`: the same
    arithmetic (cubic convolution with a = -0.75, taps mirrored one by one, ``align_corners=True``), equal
    to rounding in float64 (``dtype=torch.float64``, for the tests) and to float32 rounding in training.
    """

    def __init__(self, samples, weight_maps, *, tile: int, out: int, augmentation, device, dtype=None):
        import torch

        self.tile, self.out, self.augmentation = tile, out, augmentation
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        self.margin = (tile - out) // 2
        shapes = sorted({tuple(s.image.shape) for s in samples})
        self.stacks = []  # per shape: (image, target, weights) stacks (N_s, 1, H, W) float32
        member = np.zeros((len(shapes), len(samples)), dtype=bool)
        position = np.zeros(len(samples), dtype=np.int64)  # the sample's index in its stack
        for g, shape in enumerate(shapes):
            chosen = [i for i, s in enumerate(samples) if tuple(s.image.shape) == shape]
            member[g, chosen] = True
            position[chosen] = np.arange(len(chosen))

            def stack(arrays):
                return torch.from_numpy(np.stack(arrays)[:, None]).to(self.device, self.dtype)

            self.stacks.append(
                (
                    stack([samples[i].image for i in chosen]),
                    stack([samples[i].target for i in chosen]),
                    stack([weight_maps[samples[i].key] for i in chosen]),
                )
            )
        self.member = torch.from_numpy(member).to(self.device)
        self.position = torch.from_numpy(position).to(self.device)
        sizes = np.array([s.image.shape for s in samples], dtype=np.int64)  # (N, 2)
        # random_output_origin's window of origins, per image: [min(0, n - out), max(0, n - out)]
        self.low = torch.from_numpy(np.minimum(0, sizes - out)).to(self.device)
        self.span = torch.from_numpy(np.abs(sizes - out) + 1).to(self.device)
        self.sizes = torch.from_numpy(sizes).to(self.device)
        spacing = augmentation.elastic_spacing
        self.points = control_points(tile, spacing)
        self.lattice = torch.from_numpy(lattice_matrix(tile, self.points, spacing)).to(
            self.device, self.dtype
        )
        centred = torch.arange(tile, dtype=self.dtype, device=self.device) - (tile - 1) / 2
        self.py, self.px = torch.meshgrid(centred, centred, indexing="ij")

    def draw(self, generator, batch: int) -> TileDraws:
        """The random numbers of ``batch`` tiles, in a fixed order, from ``generator``."""
        import torch

        a, options = self.augmentation, {"generator": generator, "device": self.device, "dtype": self.dtype}

        def uniform(*shape):  # in [-1, 1)
            return torch.rand(shape, **options) * 2 - 1

        image = (torch.rand(batch, **options) * len(self.position)).long()
        image = image.clamp_(max=len(self.position) - 1)
        offset = (torch.rand((batch, 2), **options) * self.span[image]).long()
        origin = self.low[image] + torch.minimum(offset, self.span[image] - 1)
        sigma = a.elastic_sigma if a.elastic else 0.0
        coarse = torch.randn((batch, 2, self.points, self.points), **options) * sigma
        angle = uniform(batch) * math.radians(a.rotation)
        shift = uniform(batch, 2) * a.shift
        flip = (torch.rand((batch, 2), **options) < 0.5) & a.flip
        contrast = 1 + uniform(batch) * a.grey_values
        brightness = uniform(batch) * a.grey_values
        return TileDraws(image, origin, coarse, angle, shift, flip, contrast, brightness)

    def grids(self, draws: TileDraws):
        """(B, T, T, 2) source coordinates (y, x) in px of every tile pixel (:func:`sampling_grid`)."""
        import torch

        sign = 1 - 2 * draws.flip.to(self.dtype)  # (B, 2)
        py = self.py[None] * sign[:, 0, None, None]
        px = self.px[None] * sign[:, 1, None, None]
        field = self.lattice @ draws.coarse @ self.lattice.T  # (B, 2, T, T)
        c = torch.cos(draws.angle)[:, None, None]
        s = torch.sin(draws.angle)[:, None, None]
        centre = draws.origin.to(self.dtype) + (self.out - 1) / 2  # (B, 2)
        y = centre[:, 0, None, None] + c * py - s * px + draws.shift[:, 0, None, None] + field[:, 0]
        x = centre[:, 1, None, None] + s * py + c * px + draws.shift[:, 1, None, None] + field[:, 1]
        return torch.stack([y, x], dim=-1)

    def cut(self, draws: TileDraws):
        """The tiles of ``draws``: images (B, 1, T, T), targets (B, O, O) int64, weights (B, O, O)."""
        import torch
        import torch.nn.functional as F

        grid = self.grids(draws)
        inner = grid[:, self.margin : self.margin + self.out, self.margin : self.margin + self.out]
        size = self.sizes[draws.image].to(self.dtype)  # (B, 2) the tile's image: H, W
        scale = 2 / (size - 1).clamp(min=1)

        def normalised(coordinates):  # (y, x) px -> grid_sample's (x, y) in [-1, 1], align_corners=True
            y = coordinates[..., 0] * scale[:, 0, None, None] - 1
            x = coordinates[..., 1] * scale[:, 1, None, None] - 1
            return torch.stack([x, y], dim=-1)

        full, window = normalised(grid), normalised(inner)
        mode = {"cubic": "bicubic", "linear": "bilinear"}[self.augmentation.interpolation]
        results = []
        for g, (images, targets, weights) in enumerate(self.stacks):
            index = self.position[draws.image].clamp(max=len(images) - 1)
            results.append(
                (
                    self.member[g, draws.image],
                    *(
                        F.grid_sample(
                            data[index], where, mode=how, padding_mode="reflection", align_corners=True
                        )
                        for data, where, how in (
                            (images, full, mode),
                            (targets, window, "nearest"),
                            (weights, window, "bilinear"),
                        )
                    ),
                )
            )
        _, image, target, weight = results[0]
        for chosen, *other in results[1:]:
            keep = chosen[:, None, None, None]
            image, target, weight = (
                torch.where(keep, new, old) for new, old in zip(other, (image, target, weight), strict=True)
            )
        contrast = draws.contrast[:, None, None, None]
        brightness = draws.brightness[:, None, None, None]
        image = (image * contrast + brightness).clamp(0.0, 1.0)
        return image, target[:, 0].long(), weight[:, 0]
