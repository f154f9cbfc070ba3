"""Synthetic stand-ins for the challenge data: seeded, fast, and written in the real layouts.

Two generators, each far under a second per 512x512 image on one CPU core:

- :func:`em_slice` — EM-like: a tessellation of cells with curved borders, membranes 2-4 px wide, textured
  interiors of varying brightness, dark organelles inside cells, blur and noise; labels in the ISBI
  convention (255 = cell, 0 = membrane).
- :func:`cell_frame` — cell-like: touching, elongated cells moving across a time-lapse sequence, with
  instance labels and a phase-contrast look (dark cells with a bright halo) or a DIC look (relief shading).

Image ``i`` depends only on ``(seed, i)``, never on how many images are made, so the same seed gives the
same bytes. :func:`write_em` and :func:`write_cells` write them in the ISBI 2012 and Cell Tracking
Challenge layouts, which the real adapters read (the tests check that round trip).

The data sets ``synthetic-em`` and ``synthetic-cells`` are generated in memory from a spec's
``[data.synthetic]`` table, so the quickstart needs no download.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from unetbench.datasets.base import Collection, DatasetAdapter, Presence, Sample, register
from unetbench.datasets.ctc import semantic_target
from unetbench.datasets.images import to_unit_float, write_tiff
from unetbench.datasets.isbi2012 import (
    em_samples,
    write_hdf5_layout,
    write_slices_layout,
    write_tiff_layout,
)
from unetbench.spec import SyntheticSpec

if TYPE_CHECKING:
    from unetbench.spec import DataSpec

_TRAIN, _TEST = 0, 1  # random streams of the EM generator


Layout = Literal["tiff", "hdf5", "slices"]  # the ISBI 2012 layouts synthetic-em is written in
LAYOUTS: tuple[str, ...] = get_args(Layout)
Look = Literal["phase", "dic"]  # phase contrast (PhC-C2DH-U373) or DIC (DIC-C2DH-HeLa)
LOOKS: tuple[str, ...] = get_args(Look)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), sigma)
    return (field - field.mean()) / (field.std() + 1e-12)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def em_slice(seed: int, index: int, height: int = 512, width: int = 512, *, stream: int = _TRAIN):
    """One EM-like slice: ``(image uint8 (H, W), labels uint8 (H, W) with 255 = cell, 0 = membrane)``."""
    rng = np.random.default_rng([seed, stream, index])
    shape = (height, width)
    # Cell seeds: a mean cell diameter of 28-56 px, drawn per slice as real sections vary.
    diameter = rng.uniform(28, 56)
    n_cells = max(2, int(height * width / (0.8 * diameter**2)))
    seeds = rng.uniform((0, 0), (height, width), (n_cells, 2))
    # Bend the straight Voronoi borders: look up the nearest seed from smoothly displaced coordinates.
    amplitude = 0.15 * diameter
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    wy = yy + _smooth_noise(rng, shape, diameter / 3) * amplitude
    wx = xx + _smooth_noise(rng, shape, diameter / 3) * amplitude
    _, nearest = cKDTree(seeds).query(np.stack([wy.ravel(), wx.ravel()], axis=1))
    cells = nearest.reshape(shape)  # (H, W) cell id = index of its seed
    # Membranes: both sides of every border between cells (2 px), widened to 4 px where a smooth
    # random width field says so.
    border = np.zeros(shape, dtype=bool)
    step_x, step_y = cells[:, 1:] != cells[:, :-1], cells[1:, :] != cells[:-1, :]
    border[:, 1:] |= step_x
    border[:, :-1] |= step_x
    border[1:, :] |= step_y
    border[:-1, :] |= step_y
    distance = ndimage.distance_transform_edt(~border)
    half_width = 0.75 + 0.75 * np.tanh(_smooth_noise(rng, shape, 12))  # 0 .. 1.5: up to 1 px more per side
    membrane = distance <= half_width
    # Appearance: textured interiors of per-cell brightness, dark organelles, dark membranes.
    _, cell_index = np.unique(cells, return_inverse=True)
    brightness = rng.normal(0.62, 0.06, cell_index.max() + 1)[cell_index.reshape(shape)]
    image = brightness + 0.05 * _smooth_noise(rng, shape, 1.5) + 0.03 * _smooth_noise(rng, shape, 6)
    organelles = np.zeros(shape, dtype=bool)
    inside = np.flatnonzero(~membrane)
    n_organelles = int(n_cells * rng.uniform(1.0, 2.5))
    for flat in rng.choice(inside, size=min(n_organelles, inside.size), replace=False):
        cy, cx = divmod(int(flat), width)
        ry, rx = rng.uniform(2.0, 5.0, 2)
        y0, y1 = max(cy - 6, 0), min(cy + 7, height)
        x0, x1 = max(cx - 6, 0), min(cx + 7, width)
        organelles[y0:y1, x0:x1] |= ((yy[y0:y1, x0:x1] - cy) / ry) ** 2 + (
            (xx[y0:y1, x0:x1] - cx) / rx
        ) ** 2 <= 1
    organelles &= ~membrane  # organelles are cell interior in the labels
    image = np.where(organelles, image - 0.3, image)
    image = np.where(membrane, 0.15 + 0.04 * _smooth_noise(rng, shape, 2), image)
    image = ndimage.gaussian_filter(image, 1.0) + rng.normal(0, 0.035, shape)
    labels = np.where(membrane, 0, 255).astype(np.uint8)
    return _to_uint8(image), labels


@functools.lru_cache(maxsize=8)
def em_stacks(seed: int, samples: int, height: int, width: int, *, stream: int = _TRAIN):
    """(images, labels) uint8 stacks of ``samples`` slices, made once per process for each set of
    arguments (an ablation reads the same generated data in every run) and so read-only."""
    pairs = [em_slice(seed, i, height, width, stream=stream) for i in range(samples)]
    stacks = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    for stack in stacks:
        stack.flags.writeable = False
    return stacks


class _CellScene:
    """Elongated cells that drift and turn through a sequence; frame t is rendered analytically."""

    def __init__(self, seed: int, sequence: int, height: int, width: int):
        rng = np.random.default_rng([seed, 2, sequence])
        self.height, self.width = height, width
        scale = min(height, width) / 512
        self.n = int(rng.integers(6, 13))
        self.minor = rng.uniform(16, 28, self.n) * scale  # semi-axes in px
        self.major = self.minor * rng.uniform(1.6, 3.0, self.n)
        self.center = rng.uniform([0.15 * height, 0.15 * width], [0.85 * height, 0.85 * width], (self.n, 2))
        self.velocity = rng.normal(0, 1.2 * scale, (self.n, 2))
        self.angle = rng.uniform(0, np.pi, self.n)
        self.spin = rng.normal(0, 0.02, self.n)
        self.texture_seed = int(rng.integers(2**31))

    def instances(self, t: int) -> np.ndarray:
        h, w = self.height, self.width
        # Positions bounce off the image border so cells stay in view.
        pos = self.center + t * self.velocity
        for axis, size in ((0, h), (1, w)):
            period = 2 * size
            p = np.mod(pos[:, axis], period)
            pos[:, axis] = np.where(p > size, period - p, p)
        angle = self.angle + t * self.spin
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        dy = yy[None] - pos[:, 0, None, None]  # (N, H, W)
        dx = xx[None] - pos[:, 1, None, None]
        c, s = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        u = (dx * c + dy * s) / self.major[:, None, None]
        v = (-dx * s + dy * c) / self.minor[:, None, None]
        distance = np.sqrt(u * u + v * v)  # 1 on each cell's ellipse
        nearest = distance.argmin(axis=0)
        inside = distance.min(axis=0) <= 1.0
        # Touching cells divide the overlap at equal normalised distance: a curved shared border.
        return np.where(inside, nearest + 1, 0).astype(np.uint16)

    def image(self, t: int, instances: np.ndarray, look: Look) -> np.ndarray:
        rng = np.random.default_rng([self.texture_seed, t])
        shape = instances.shape
        fg = instances > 0
        inner = ndimage.distance_transform_edt(fg)
        nucleus = (inner > 0.55 * inner.max()) if inner.max() > 0 else fg
        if look == "phase":
            outer = ndimage.distance_transform_edt(~fg)
            image = 0.5 + 0.03 * _smooth_noise(rng, shape, 8)
            image = image + 0.35 * np.exp(-outer / 3.0) * ~fg  # bright halo around every cell
            image = np.where(fg, 0.32 + 0.05 * _smooth_noise(rng, shape, 2), image)
            image = np.where(nucleus, image - 0.08, image)
            image = ndimage.gaussian_filter(image, 1.0)
        else:
            height_map = ndimage.gaussian_filter(
                fg.astype(np.float32) + 0.5 * nucleus + 0.1 * _smooth_noise(rng, shape, 3) * fg, 2.0
            )
            relief = np.roll(height_map, -1, axis=(0, 1)) - np.roll(
                height_map, 1, axis=(0, 1)
            )  # shear along the diagonal
            image = 0.5 + 1.6 * relief + 0.02 * _smooth_noise(rng, shape, 10)
        return _to_uint8(image + rng.normal(0, 0.02, shape))


def cell_sequence(
    seed: int,
    sequence: int,
    frames: list[int],
    height: int = 512,
    width: int = 512,
    look: Look = "phase",
):
    """Frames ``frames`` of one sequence: ``(images uint8 (T, H, W), instances uint16 (T, H, W))``.

    Cell ``k`` keeps instance label ``k + 1`` in every frame (its track).
    """
    scene = _CellScene(seed, sequence, height, width)
    labels = [scene.instances(t) for t in frames]
    images = [scene.image(t, lab, look) for t, lab in zip(frames, labels, strict=True)]
    return np.stack(images), np.stack(labels)


def write_em(
    directory: Path,
    *,
    seed: int = 0,
    samples: int = 30,
    height: int = 512,
    width: int = 512,
    layout: Layout = "tiff",
) -> Path:
    """Write ``samples`` labelled and ``samples`` test slices in an ISBI 2012 layout.

    Returns the path the adapter reads: the folder, or the HDF5 file for ``layout="hdf5"``.
    """
    train_images, train_labels = em_stacks(seed, samples, height, width, stream=_TRAIN)
    test_images, _ = em_stacks(seed, samples, height, width, stream=_TEST)
    directory.mkdir(parents=True, exist_ok=True)
    if layout == "tiff":
        write_tiff_layout(directory, train_images, train_labels, test_images)
        return directory
    if layout == "hdf5":
        write_hdf5_layout(directory / "isbi2012.h5", train_images, train_labels, test_images)
        return directory / "isbi2012.h5"
    write_slices_layout(directory, train_images, train_labels, test_images)
    return directory


def cells_per_sequence(samples: int) -> tuple[int, int]:
    """How ``samples`` labelled frames are shared by sequences 01 and 02."""
    return (samples + 1) // 2, samples // 2


def write_cells(
    directory: Path,
    *,
    seed: int = 0,
    samples: int = 12,
    height: int = 512,
    width: int = 512,
    look: Look = "phase",
    digits: int = 3,
) -> Path:
    """Write sequences 01 and 02 in the CTC layout: every frame, SEG for every other frame, TRA.

    The frames with SEG ground truth are exactly the in-memory ``synthetic-cells`` samples.
    """
    for number, n_labelled in enumerate(cells_per_sequence(samples), start=1):
        if n_labelled == 0:
            continue
        name = f"{number:02d}"
        n_frames = 2 * n_labelled
        images, instances = cell_sequence(seed, number, list(range(n_frames)), height, width, look)
        seq_dir, seg_dir, tra_dir = (
            directory / name,
            directory / f"{name}_GT" / "SEG",
            directory / f"{name}_GT" / "TRA",
        )
        for d in (seq_dir, seg_dir, tra_dir):
            d.mkdir(parents=True, exist_ok=True)
        for t in range(n_frames):
            write_tiff(seq_dir / f"t{t:0{digits}d}.tif", images[t])
            write_tiff(tra_dir / f"man_track{t:0{digits}d}.tif", instances[t])
            if t % 2 == 0:
                write_tiff(seg_dir / f"man_seg{t:0{digits}d}.tif", instances[t])
        present = sorted({int(k) for k in np.unique(instances) if k})
        lines = []
        for k in present:
            frames_with = np.flatnonzero((instances == k).any(axis=(1, 2)))
            lines.append(f"{k} {frames_with.min()} {frames_with.max()} 0")
        (tra_dir / "man_track.txt").write_text("\n".join(lines) + "\n")
    return directory


def _load_em(location: Path, data: DataSpec) -> Collection:
    s = data.synthetic or SyntheticSpec()
    images, labels = em_stacks(s.seed, s.samples, s.height, s.width)
    samples = em_samples(images, labels, "generated", "synthetic-em")
    return Collection("synthetic-em", f"generated (seed {s.seed})", samples)


def _load_cells(location: Path, data: DataSpec) -> Collection:
    s = data.synthetic or SyntheticSpec()
    samples = []
    for number, n_labelled in enumerate(cells_per_sequence(s.samples), start=1):
        frames = list(range(0, 2 * n_labelled, 2))
        if not frames:
            continue
        images, instances = cell_sequence(s.seed, number, frames, s.height, s.width)
        for t, raw, inst in zip(frames, images, instances, strict=True):
            inst = inst.astype(np.int32)
            samples.append(
                Sample(
                    f"{number:02d}/t{t:03d}",
                    to_unit_float(raw, source="synthetic-cells"),
                    semantic_target(inst),
                    inst,
                    group=f"{number:02d}",
                )
            )
    return Collection("synthetic-cells", f"generated (seed {s.seed})", tuple(samples))


def _generated(location: Path) -> Presence:
    return Presence("generated", detail="made in memory from the spec's [data.synthetic] table")


register(
    DatasetAdapter(
        name="synthetic-em",
        title="Synthetic EM-like slices (ISBI 2012 conventions)",
        kind="em",
        folder="",
        sequences=(),
        citation="unetbench synthetic data; no citation needed",
        load=_load_em,
        describe=_generated,
    )
)
register(
    DatasetAdapter(
        name="synthetic-cells",
        title="Synthetic phase-contrast-like cells (CTC conventions)",
        kind="cells",
        folder="",
        sequences=("01", "02"),
        citation="unetbench synthetic data; no citation needed",
        load=_load_cells,
        describe=_generated,
    )
)
