"""Scoring files on disk with the official metrics: what ``unetbench evaluate`` runs.

Inputs may be TIFF stacks, HDF5 datasets (``file.h5:dataset``), NumPy ``.npy`` files, single PNG/TIFF
images, or folders of PNG/TIFF slices (natural order). Every problem with them is a :class:`UserError`
naming the file and what to do. Nothing here needs a network: no torch is imported.
"""

from __future__ import annotations

import math
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from unetbench import __version__
from unetbench.datasets import ctc
from unetbench.datasets.images import IMAGE_SUFFIXES, image_files, read_image, read_tiff
from unetbench.errors import DataError, UserError
from unetbench.metrics import (
    METRICS,
    instance_scores,
    isbi2012_scores,
    metric_hint,
    metrics_of,
)

# "file.h5:dataset": a dataset inside an HDF5 file, as every command that reads arrays takes it
HDF5_SOURCE = re.compile(r"^(?P<file>.+\.(?:h5|hdf5|hdf)):(?P<key>.+)$", re.IGNORECASE)


def read_array(source: str | Path) -> np.ndarray:
    """Read an image or a stack from any supported input (see the module docstring)."""
    text = str(source)
    match = HDF5_SOURCE.match(text)
    if match:
        path, key = Path(match["file"]), match["key"]
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            with h5py.File(path, "r") as f:
                if key not in f or not isinstance(f[key], h5py.Dataset):
                    found: list[str] = []
                    f.visit(lambda name: found.append(name) if isinstance(f[name], h5py.Dataset) else None)
                    raise DataError(
                        f"{path}: no dataset {key!r}; datasets in the file: {', '.join(found) or 'none'}"
                    )
                return np.asarray(f[key][()])
        except OSError as err:
            raise DataError(f"{path}: cannot be read as HDF5 ({err})") from None
    path = Path(text)
    if path.suffix.lower() in (".h5", ".hdf5", ".hdf"):
        raise DataError(f"{path}: name the dataset inside the HDF5 file, e.g. {path}:labels")
    if path.is_dir():
        files = image_files(path)
        if not files:
            raise DataError(f"{path}: no PNG or TIFF slices in the folder")
        slices = [read_image(f) for f in files]
        for f, s in zip(files, slices, strict=True):
            if s.shape != slices[0].shape:
                raise DataError(f"{f}: shape {s.shape} differs from {files[0].name} {slices[0].shape}")
        return np.stack(slices)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: cannot be read as a NumPy .npy file ({err})") from None
    if path.suffix.lower() in (".tif", ".tiff"):
        return read_tiff(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return read_image(path)
    raise DataError(
        f"{path}: unsupported input; use a TIFF stack, file.h5:dataset, .npy, or a folder of slices"
    )


@dataclass
class Evaluation:
    """What ``unetbench evaluate`` found, ready to print or to write as JSON."""

    challenge: str
    scores: dict[str, float]
    inputs: dict[str, str]
    details: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {
            "challenge": self.challenge,
            "metrics": {
                name: {
                    "value": value,
                    "higher_is_better": METRICS[name].higher_is_better,
                    "title": METRICS[name].title,
                }
                for name, value in self.scores.items()
            },
            "inputs": self.inputs,
            "details": self.details,
            "seconds": round(self.seconds, 3),
            "unetbench": __version__,
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def _check_metrics(metrics: list[str] | None, kind: str) -> list[str]:
    valid = metrics_of(kind)
    if not metrics:
        return valid
    for name in metrics:
        if name not in valid:
            raise UserError(
                f"--metrics: {name!r} does not apply to {kind} data; valid choices: {', '.join(valid)}"
                + metric_hint(name)
            )
    return metrics


def check_scale(scale: float | None) -> None:
    if scale is not None and (not math.isfinite(scale) or scale <= 0):
        raise UserError(f"--scale must be a finite number > 0 (255 for 8-bit maps), got {scale}")


def read_probabilities(source: str, scale: float | None, name: str | None = None) -> np.ndarray:
    """An EM prediction as P(cell): floats as they are, integers divided by ``scale`` (refused without it);
    ``name``: how the error line names the prediction (default: its path)."""
    proposal = read_array(source)
    if scale is not None:
        return proposal.astype(np.float64) / scale
    if proposal.dtype.kind != "f":
        raise UserError(
            f"{name or source}: holds {proposal.dtype} values, not probabilities in [0, 1]; for 8-bit maps "
            "pass --scale 255 (for 16-bit, --scale 65535)"
        )
    return proposal


def evaluate_em(
    gt: str, pred: str, *, scale: float | None = None, metrics: list[str] | None = None
) -> Evaluation:
    """Score an EM probability stack against ground truth with the ISBI 2012 metrics."""
    wanted = _check_metrics(metrics, "em")
    check_scale(scale)
    truth = read_array(gt)
    proposal = read_probabilities(pred, scale)
    start = time.perf_counter()
    try:
        scores = isbi2012_scores(truth, proposal, wanted)
    except ValueError as err:
        raise UserError(f"{gt} vs {pred}: {err}") from None
    shape = truth.shape if truth.ndim == 3 else (1, *truth.shape)
    return Evaluation(
        challenge="em",
        scores=scores,
        inputs={"ground_truth": str(gt), "prediction": str(pred)},
        details={"slices": shape[0], "height": shape[1], "width": shape[2], "scale": scale},
        seconds=time.perf_counter() - start,
    )


def evaluate_ctc(gt: str, results: str, *, metrics: list[str] | None = None) -> Evaluation:
    """Score CTC results (``NN_RES/maskNNN.tif``) against the SEG ground truth of a CTC data set."""
    wanted = _check_metrics(metrics, "cells")
    pairs = ctc.pair_results_with_ground_truth(Path(gt), Path(results))
    refs = [read_image(seg_path) for _, _, seg_path, _ in pairs]
    masks = [read_image(mask_path) for _, _, _, mask_path in pairs]
    start = time.perf_counter()
    try:
        scores = instance_scores(refs, masks, wanted)
    except ValueError as err:
        raise UserError(f"{gt} vs {results}: {err}") from None
    return Evaluation(
        challenge="ctc",
        scores=scores,
        inputs={"ground_truth": str(gt), "results": str(results)},
        details={
            "sequences": sorted({seq for seq, _, _, _ in pairs}),
            "frames": [f"{seq}/t{frame:03d}" for seq, frame, _, _ in pairs],
        },
        seconds=time.perf_counter() - start,
    )
