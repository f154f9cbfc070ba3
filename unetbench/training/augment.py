"""Data augmentation (paper, Sec. 3.1): elastic deformation, shift, rotation, flips and grey values.

Elastic deformation: random displacement vectors on a coarse grid, drawn from a normal distribution
with 10 px standard deviation, upsampled to a per-pixel displacement field by bicubic interpolation
(paper, Sec. 3.1: "a coarse 3 by 3 grid").

**The control grid is fixed in pixels**, not stretched over the tile: its points lie ``elastic_spacing``
px apart, one of them at the tile centre, and the lattice reaches two points beyond the tile on every
side, so every pixel's bicubic interpolation reads four real control points. The field at a given offset
from the tile centre is then the same random variable whatever the tile size, and a smaller training
tile (the CPU spec's 252 px, the ablation's 160 px) gets the same deformation per pixel as the paper's
572 px tile, instead of a 2-4x stronger one. The default spacing, 285.5 px, is what the paper's 3x3 grid
over its 572 px tile gives ((572 - 1) / 2, corner to centre); on a 572 px tile the control points at
the corners and the centre are exactly the paper's nine. The field near the tile border differs from a
3x3 grid whose bicubic taps are clamped at the border: here the taps beyond are drawn too.

The authors' 2015 release does not state its grid; their Caffe ``CreateDeformation`` layer (the same lab's
2019 ImageJ U-Net plugin, ``ModelDefinitionEditor``) takes ``random_elastic_grid_spacing`` in pixels,
150 px by default, with ``random_elastic_deform_magnitude`` 10 px and cubic B-spline interpolation of the
field. We keep the paper's words (3x3 over 572 px, bicubic) as the default; ``elastic_spacing = 150``
gives the plugin's spacing.

One draw (:class:`Deformation`) gives one sampling grid: for tile pixel p (relative to the tile centre),

    source(p) = centre + R(angle) F(p) + shift + field(p)

with F the optional flips. The image is then read at the source coordinates with cubic (or linear)
interpolation, labels with nearest neighbour (no new label values), weight maps linearly; beyond the
image border the data is mirrored (reflection about the edge pixels).

Two implementations with the same meaning: this module's numpy one (:func:`sampling_grid`,
:func:`sample_numpy`), the reference, one tile at a time; and the trainer's, a batch of tiles at once
with torch ``grid_sample`` on the data's device (:class:`unetbench.training.sampler.TileBatcher`). Both
use the same arithmetic: bicubic = cubic convolution with a = -0.75 (as ``grid_sample`` in torch), taps
reflected one by one, ``align_corners=True``; the tests show they agree to float64 rounding, and to
float32 rounding in the precision training uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Interpolation = Literal["cubic", "linear", "nearest"]
_A = -0.75  # the cubic convolution parameter of torch's bicubic modes


@dataclass(frozen=True)
class Deformation:
    """One random draw of the augmentation of one tile."""

    coarse: np.ndarray  # (2, n, n) displacements (dy, dx) in px at the control points, centre in the middle
    spacing: float = 285.5  # px between neighbouring control points
    angle: float = 0.0  # radians
    shift: tuple[float, float] = (0.0, 0.0)  # px (dy, dx)
    flip_y: bool = False
    flip_x: bool = False
    contrast: float = 1.0
    brightness: float = 0.0

    @staticmethod
    def identity() -> Deformation:
        return Deformation(coarse=np.zeros((2, 1, 1)))


def control_points(tile: int, spacing: float) -> int:
    """Control points per axis of the lattice for a ``tile`` px tile: the centre point and K on either side,
    K = ceil((tile - 1) / (2 spacing)) + 2, so that every pixel's four bicubic taps are lattice points."""
    return 2 * (math.ceil((tile - 1) / (2 * spacing)) + 2) + 1


def draw_deformation(rng: np.random.Generator, augmentation, tile: int) -> Deformation:
    """Draw a :class:`Deformation` for a ``tile`` px tile as an ``AugmentationSpec`` says."""
    spacing = augmentation.elastic_spacing
    n = control_points(tile, spacing)
    sigma = augmentation.elastic_sigma if augmentation.elastic else 0.0
    coarse = rng.normal(0.0, sigma, (2, n, n)) if sigma > 0 else np.zeros((2, n, n))
    angle = (
        math.radians(rng.uniform(-augmentation.rotation, augmentation.rotation))
        if augmentation.rotation
        else 0.0
    )
    shift = (
        tuple(rng.uniform(-augmentation.shift, augmentation.shift, 2)) if augmentation.shift else (0.0, 0.0)
    )
    flip_y, flip_x = (bool(v) for v in rng.integers(0, 2, 2)) if augmentation.flip else (False, False)
    g_v = augmentation.grey_values
    contrast = 1.0 + rng.uniform(-g_v, g_v) if g_v else 1.0
    brightness = rng.uniform(-g_v, g_v) if g_v else 0.0
    return Deformation(coarse, spacing, angle, shift, flip_y, flip_x, contrast, brightness)


def _cubic_weights(t):
    """Cubic convolution weights (a = -0.75) of the taps at -1, 0, 1, 2 for a fractional offset t."""
    a = _A
    s = t + 1
    w_m1 = ((a * s - 5 * a) * s + 8 * a) * s - 4 * a
    w_0 = ((a + 2) * t - (a + 3)) * t * t + 1
    u = 1 - t
    w_1 = ((a + 2) * u - (a + 3)) * u * u + 1
    v = 2 - t
    w_2 = ((a * v - 5 * a) * v + 8 * a) * v - 4 * a
    return (w_m1, w_0, w_1, w_2)


def lattice_matrix(n_out: int, points: int, spacing: float) -> np.ndarray:
    """(n_out, points) bicubic weights (cubic convolution, a = -0.75) of the control points for each of
    ``n_out`` pixels; the middle control point sits at the middle pixel, the others ``spacing`` px apart.

    Raises ValueError when a pixel's taps would fall outside the lattice (too few control points)."""
    offsets = (np.arange(n_out) - (n_out - 1) / 2) / spacing + (points - 1) / 2  # in lattice units
    base = np.floor(offsets).astype(int)
    if n_out and (base.min() - 1 < 0 or base.max() + 2 > points - 1):
        raise ValueError(f"{points} control points {spacing} px apart do not cover {n_out} px")
    matrix = np.zeros((n_out, points))
    rows = np.arange(n_out)
    for k, weight in zip(range(-1, 3), _cubic_weights(offsets - base), strict=True):
        matrix[rows, base + k] = weight
    return matrix


def dense_field(deformation: Deformation, shape: tuple[int, int]) -> np.ndarray:
    """(2, H, W) per-pixel displacements: the control points spread over the tile by bicubic interpolation."""
    n = deformation.coarse.shape[1]
    if not deformation.coarse.any():
        return np.zeros((2, *shape))
    rows = lattice_matrix(shape[0], n, deformation.spacing)
    cols = lattice_matrix(shape[1], n, deformation.spacing)
    return np.stack([rows @ c @ cols.T for c in deformation.coarse])


def sampling_grid(
    deformation: Deformation, shape: tuple[int, int], centre: tuple[float, float]
) -> np.ndarray:
    """(2, H, W) source coordinates (y, x) of a tile of ``shape`` centred on ``centre``."""
    h, w = shape
    py, px = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    if deformation.flip_y:
        py = -py
    if deformation.flip_x:
        px = -px
    c, s = math.cos(deformation.angle), math.sin(deformation.angle)
    field = dense_field(deformation, shape)
    y = centre[0] + c * py - s * px + deformation.shift[0] + field[0]
    x = centre[1] + s * py + c * px + deformation.shift[1] + field[1]
    return np.stack([y, x])


def _reflect(coordinate, size):
    """Mirror about the edge pixel centres (torch ``reflection`` with align_corners=True), then clip."""
    if size == 1:
        return np.zeros_like(coordinate)
    span = size - 1
    x = np.abs(coordinate)
    flips = np.floor(x / span)
    extra = np.fmod(x, span)
    reflected = np.where(np.fmod(flips, 2) == 0, extra, span - extra)
    return np.clip(reflected, 0, span)


def sample_numpy(array: np.ndarray, coords: np.ndarray, mode: Interpolation) -> np.ndarray:
    """Read a (H, W) array at (2, h, w) coordinates; mirrored beyond the border. Returns (h, w)."""
    h, w = array.shape
    y, x = coords[0], coords[1]
    if mode == "nearest":
        iy = np.clip(np.rint(_reflect(y, h)), 0, h - 1).astype(np.intp)
        ix = np.clip(np.rint(_reflect(x, w)), 0, w - 1).astype(np.intp)
        return array[iy, ix]
    data = array.astype(np.float64)
    if mode == "linear":
        ry, rx = _reflect(y, h), _reflect(x, w)
        y0, x0 = np.floor(ry), np.floor(rx)
        ty, tx = ry - y0, rx - x0
        y0, x0 = y0.astype(np.intp), x0.astype(np.intp)
        y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
        top = data[y0, x0] * (1 - tx) + data[y0, x1] * tx
        bottom = data[y1, x0] * (1 - tx) + data[y1, x1] * tx
        return (top * (1 - ty) + bottom * ty).astype(np.float32)
    # cubic: taps around the unreflected coordinate, each tap reflected (torch's bicubic does the same)
    y0, x0 = np.floor(y), np.floor(x)
    wy, wx = _cubic_weights(y - y0), _cubic_weights(x - x0)
    out = np.zeros(y.shape)
    for i, weight_y in zip(range(-1, 3), wy, strict=True):
        ty = _reflect(y0 + i, h).astype(np.intp)
        row = np.zeros(y.shape)
        for j, weight_x in zip(range(-1, 3), wx, strict=True):
            row += data[ty, _reflect(x0 + j, w).astype(np.intp)] * weight_x
        out += row * weight_y
    return out.astype(np.float32)
