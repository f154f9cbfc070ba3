"""ISBI 2012 EM segmentation challenge: serial-section TEM of the Drosophila first-instar larva VNC.

30 training slices of 512x512 with labels (255 = cell, 0 = membrane) and 30 test slices whose labels were
never published. The adapter reads the data in each layout it is distributed in:

- ``tiff``: a folder with the challenge's multi-page TIFFs ``train-volume.tif``, ``train-labels.tif`` and
  (optionally) ``test-volume.tif``;
- ``hdf5``: one HDF5 file with datasets ``raw`` (N, H, W) and ``labels/membranes`` (N, H, W) holding the
  original labels (non-zero = cell), as torch-em distributes it; optionally ``test/raw``;
- ``slices``: folders of per-slice PNG or TIFF files: ``[train/]images|image|raw/`` with
  ``[train/]labels|label|masks/`` matched by file name, and optionally ``test/`` (its files, or its
  ``images/``), as in e.g. the zhixuhao/unet copy of the data.

Labels are normalised to DESIGN.md's convention: ``target`` = 1 where the label is non-zero (cell), 0 on
membrane, exactly the official evaluation's ``gt > 0``; ``instances`` are the 4-connected components of
the cell pixels, the connectivity the official metrics use for cells. Labels with more than two distinct
values are refused: they are not a membrane labelling (a common cause is passing the raw volume).

Cite: Arganda-Carreras et al. (2015), "Crowdsourcing the creation of image segmentation algorithms for
connectomics", Frontiers in Neuroanatomy 9:142; Cardona et al. (2010), PLoS Biology 8(10):e1000502.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
from skimage.measure import label as connected_components

from unetbench.datasets.base import Collection, DatasetAdapter, Presence, Sample, register
from unetbench.datasets.download import Resource, download, sha256_of
from unetbench.datasets.images import (
    image_files,
    read_image,
    read_stack,
    to_unit_float,
    write_png,
    write_tiff,
)
from unetbench.errors import DataError

if TYPE_CHECKING:
    from unetbench.spec import DataSpec

NAME = "isbi2012"
CITATION = (
    "Arganda-Carreras et al. (2015), Frontiers in Neuroanatomy 9:142; "
    "Cardona et al. (2010), PLoS Biology 8(10):e1000502"
)

TRAIN_VOLUME = "train-volume.tif"
TRAIN_LABELS = "train-labels.tif"
TEST_VOLUME = "test-volume.tif"

# The challenge's files as the ImageJ downloads server keeps them since the challenge site closed. The
# sha256 values are those of the stacks in the project's shared data (../shared/datasets/README.md).
_BASE_URL = "https://downloads.imagej.net/ISBI-2012-challenge"
RESOURCES = (
    Resource(
        f"{_BASE_URL}/{TRAIN_VOLUME}", "a05df637d576b2387966b7323a34e90e2cdbf86dcaeee86c44d1fd2d616be489"
    ),
    Resource(
        f"{_BASE_URL}/{TRAIN_LABELS}", "9a9f1056ffd8bac61060b58dc84ad40295c02fc5ff15e68ddfc2f12d211c3dcf"
    ),
    Resource(
        f"{_BASE_URL}/{TEST_VOLUME}", "046fbb869a953f1ffa63a9722849fe0aa693ad7a21aa9278a2bff2397d00b16f"
    ),
)

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
HDF5_RAW = "raw"
HDF5_LABELS = "labels/membranes"
HDF5_TEST_RAW = "test/raw"
_IMAGE_DIRS = ("images", "image", "raw", "volume")
_LABEL_DIRS = ("labels", "label", "masks", "mask", "membranes")


@dataclass(frozen=True, eq=False)
class Stacks:
    """The raw arrays of the data set, in their stored types."""

    train_images: np.ndarray  # (N, H, W)
    train_labels: np.ndarray  # (N, H, W), non-zero = cell
    test_images: np.ndarray | None  # (M, H, W)
    layout: str


def target_regions(target: np.ndarray) -> np.ndarray:
    """Instance labels of the cells: 4-connected components of ``target == 1`` (0 = membrane)."""
    return connected_components(target.astype(bool), connectivity=1).astype(np.int32)


def detect_layout(location: Path) -> str:
    if location.is_file():
        if location.suffix.lower() in HDF5_SUFFIXES:
            return "hdf5"
        raise DataError(f"{location}: not an HDF5 file ({', '.join(HDF5_SUFFIXES)}); {_LAYOUTS_HINT}")
    if not location.is_dir():
        raise DataError(f"{location}: no such file or folder")
    if (location / TRAIN_VOLUME).exists() or (location / TRAIN_LABELS).exists():
        return "tiff"
    if _slice_dirs(location) is not None:
        return "slices"
    h5_files = sorted(p for p in location.iterdir() if p.suffix.lower() in HDF5_SUFFIXES)
    if len(h5_files) == 1:
        return "hdf5"
    raise DataError(f"{location}: no ISBI 2012 data found; {_LAYOUTS_HINT}")


_LAYOUTS_HINT = (
    f"expected {TRAIN_VOLUME} + {TRAIN_LABELS} (+ {TEST_VOLUME}), an HDF5 file with '{HDF5_RAW}' and "
    f"'{HDF5_LABELS}', or folders of slices (images/ and labels/, optionally test/)"
)


def _slice_dirs(location: Path) -> tuple[Path, Path] | None:
    base = location / "train" if (location / "train").is_dir() else location
    images = next((base / d for d in _IMAGE_DIRS if (base / d).is_dir()), None)
    labels = next((base / d for d in _LABEL_DIRS if (base / d).is_dir()), None)
    return (images, labels) if images is not None and labels is not None else None


def _stack_files(files: list[Path]) -> np.ndarray:
    slices = [read_image(p) for p in files]
    for path, arr in zip(files, slices, strict=True):
        if arr.shape != slices[0].shape or arr.dtype != slices[0].dtype:
            raise DataError(
                f"{path}: shape {arr.shape} / type {arr.dtype} differs from {files[0].name} "
                f"({slices[0].shape} / {slices[0].dtype}); all slices must match"
            )
    return np.stack(slices)


def _read_slices(location: Path) -> Stacks:
    image_dir, label_dir = _slice_dirs(location)  # type: ignore[misc]
    images = {p.stem: p for p in image_files(image_dir)}
    labels = {p.stem: p for p in image_files(label_dir)}
    if not images:
        raise DataError(f"{image_dir}: no PNG or TIFF slices")
    for name, other, where in ((images, labels, label_dir), (labels, images, image_dir)):
        missing = [stem for stem in name if stem not in other]
        if missing:
            raise DataError(
                f"{where}: no slice named {missing[0]!r} (every image needs a label of the same name)"
            )
    test_dir = location / "test"
    if test_dir.is_dir():
        test_dir = next((test_dir / d for d in _IMAGE_DIRS if (test_dir / d).is_dir()), test_dir)
    test_files = image_files(test_dir) if test_dir.is_dir() else []
    return Stacks(
        train_images=_stack_files(list(images.values())),
        train_labels=_stack_files([labels[stem] for stem in images]),
        test_images=_stack_files(test_files) if test_files else None,
        layout="slices",
    )


def _read_hdf5(location: Path) -> Stacks:
    path = location
    if location.is_dir():
        path = next(p for p in sorted(location.iterdir()) if p.suffix.lower() in HDF5_SUFFIXES)
    try:
        with h5py.File(path, "r") as f:
            found: list[str] = []
            f.visit(found.append)
            for key in (HDF5_RAW, HDF5_LABELS):
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    raise DataError(
                        f"{path}: no dataset '{key}' (found: {', '.join(found) or 'nothing'}); "
                        f"ISBI 2012 HDF5 files hold '{HDF5_RAW}' and '{HDF5_LABELS}'"
                    )
            raw, labels = f[HDF5_RAW][()], f[HDF5_LABELS][()]
            test = f[HDF5_TEST_RAW][()] if HDF5_TEST_RAW in f else None
    except OSError as err:
        raise DataError(f"{path}: cannot be read as HDF5 ({err})") from None
    if raw.ndim == 2:
        raw, labels = raw[None], labels[None]
    return Stacks(raw, labels, test, layout="hdf5")


def read_stacks(location: Path) -> Stacks:
    """Read the raw arrays from any supported layout and check that they fit together."""
    layout = detect_layout(location)
    if layout == "tiff":
        for name in (TRAIN_VOLUME, TRAIN_LABELS):
            if not (location / name).is_file():
                raise DataError(
                    f"{location}: {name} is missing; the tiff layout needs {TRAIN_VOLUME} and {TRAIN_LABELS}"
                )
        test_path = location / TEST_VOLUME
        stacks = Stacks(
            read_stack(location / TRAIN_VOLUME),
            read_stack(location / TRAIN_LABELS),
            read_stack(test_path) if test_path.is_file() else None,
            layout="tiff",
        )
    elif layout == "hdf5":
        stacks = _read_hdf5(location)
    else:
        stacks = _read_slices(location)
    for name, stack in (("training", stacks.train_images), ("test", stacks.test_images)):
        if stack is not None and (stack.ndim != 3 or 0 in stack.shape):
            raise DataError(
                f"{location}: the {name} stack holds no image (shape {stack.shape}); it needs at least one "
                "2D slice"
            )
    if stacks.train_images.shape != stacks.train_labels.shape:
        raise DataError(
            f"{location}: training images {stacks.train_images.shape} and labels "
            f"{stacks.train_labels.shape} differ in shape"
        )
    if stacks.test_images is not None and stacks.test_images.shape[1:] != stacks.train_images.shape[1:]:
        raise DataError(
            f"{location}: test slices are {stacks.test_images.shape[1:]}, training slices "
            f"{stacks.train_images.shape[1:]}; they must be the same size"
        )
    values = np.unique(stacks.train_labels)
    if len(values) > 2 or (len(values) == 2 and values[0] != 0):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
        raise DataError(
            f"{location}: labels must be binary (0 = membrane, one non-zero value = cell), found "
            f"{len(values)} distinct values ({shown}); are images and labels swapped?"
        )
    return stacks


def em_samples(images: np.ndarray, labels: np.ndarray | None, part: str, source: str) -> tuple[Sample, ...]:
    """EM slices as samples (DESIGN.md's conventions): keys are slice numbers of at least two digits,
    targets 1 = cell, instances the cells' connected components (the one builder; synthetic-em uses it)."""
    width = max(2, len(str(len(images) - 1)))
    samples = []
    for i, raw in enumerate(images):
        target = None if labels is None else (labels[i] > 0).astype(np.uint8)
        samples.append(
            Sample(
                key=f"{i:0{width}d}",  # the slice number; runs name it by split: evaluation/25
                image=to_unit_float(raw, source=f"{source} ({part} slice {i})"),
                target=target,
                instances=None if target is None else target_regions(target),
            )
        )
    return tuple(samples)


def load(location: Path, data: DataSpec | None = None) -> Collection:
    """All slices at ``location``: the labelled training slices and the unlabelled test slices."""
    stacks = read_stacks(location)
    return Collection(
        dataset=NAME,
        location=str(location),
        labelled=em_samples(stacks.train_images, stacks.train_labels, "train", str(location)),
        unlabelled=()
        if stacks.test_images is None
        else em_samples(stacks.test_images, None, "test", str(location)),
    )


def describe(location: Path) -> Presence:
    if not location.exists():
        return Presence("absent")
    try:
        stacks = read_stacks(location)
    except DataError as err:
        return Presence("invalid", detail=str(err))
    n_test = 0 if stacks.test_images is None else len(stacks.test_images)
    h, w = stacks.train_images.shape[1:]
    detail = f"{stacks.layout} layout, {w}x{h} px"
    if stacks.layout == "tiff":
        official = {r.filename: r.sha256 for r in RESOURCES}
        present = [n for n in official if (location / n).is_file()]
        same = all(sha256_of(location / n) == official[n] for n in present)
        detail += (
            ", official files (sha256 verified)" if same else ", not byte-identical to the official files"
        )
    return Presence("present", labelled=len(stacks.train_images), unlabelled=n_test, detail=detail)


def write_tiff_layout(
    directory: Path, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray | None
) -> None:
    """Write the challenge's three multi-page TIFFs (the canonical layout in the data root)."""
    directory.mkdir(parents=True, exist_ok=True)
    write_tiff(directory / TRAIN_VOLUME, train_images)
    write_tiff(directory / TRAIN_LABELS, train_labels)
    if test_images is not None:
        write_tiff(directory / TEST_VOLUME, test_images)


def write_hdf5_layout(
    path: Path, train_images: np.ndarray, train_labels: np.ndarray, test_images=None
) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(HDF5_RAW, data=train_images, track_times=False)
        f.create_dataset(HDF5_LABELS, data=train_labels, track_times=False)
        if test_images is not None:
            f.create_dataset(HDF5_TEST_RAW, data=test_images, track_times=False)


def write_slices_layout(
    directory: Path, train_images: np.ndarray, train_labels: np.ndarray, test_images=None, *, suffix=".png"
) -> None:
    """Per-slice files: train/images/NN, train/labels/NN, test/NN (PNG by default, or ``.tif``)."""
    write = write_png if suffix == ".png" else write_tiff
    for sub, stack in (("train/images", train_images), ("train/labels", train_labels), ("test", test_images)):
        if stack is None:
            continue
        (directory / sub).mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(stack):
            write(directory / sub / f"{i}{suffix}", arr)


def fetch(destination: Path, *, mirror: str | None = None, progress: bool = True) -> None:
    """Download the three official TIFFs into ``destination`` and check them with the adapter."""
    for resource in RESOURCES:
        download(resource, destination, mirror=mirror, progress=progress)
    read_stacks(destination)


def import_files(source: Path, destination: Path) -> None:
    """Bring a user's copy (any layout) into ``destination`` as the challenge's three TIFFs.

    TIFF-layout sources are copied byte for byte (their sha256 can still be compared with the
    official one); other layouts are converted.
    """
    stacks = read_stacks(source)
    if stacks.layout == "tiff":
        for name in (TRAIN_VOLUME, TRAIN_LABELS, TEST_VOLUME):
            if (source / name).is_file():
                shutil.copyfile(source / name, destination / name)
    else:
        write_tiff_layout(destination, stacks.train_images, stacks.train_labels, stacks.test_images)


register(
    DatasetAdapter(
        name=NAME,
        title="ISBI 2012 EM segmentation",
        kind="em",
        folder=NAME,
        sequences=(),
        citation=CITATION,
        load=load,
        describe=describe,
        fetch=fetch,
        import_files=import_files,
    )
)
