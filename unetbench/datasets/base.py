"""What every data set adapter builds on: the sample and collection types, the adapter's functions, and
the registry the adapters add themselves to (re-exported by :mod:`unetbench.datasets`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from unetbench.spec import DataSpec


@dataclass(frozen=True, eq=False)
class Sample:
    """One 2D image with its annotations (``target`` and ``instances`` are None when unlabelled)."""

    # Stable name within its tuple of the collection (labelled or unlabelled): the slice number "25" for
    # ISBI 2012, "01/t013" for a CTC frame. A run names a sample by its split part: "evaluation/25".
    key: str
    image: np.ndarray  # (H, W) float32 in [0, 1]
    target: np.ndarray | None  # (H, W) uint8, 1 = cell / foreground
    instances: np.ndarray | None  # (H, W) int32, 0 = background, 1..N = cells
    group: str = ""  # the sequence ("01", "02") for time-lapse data, "" otherwise

    @property
    def labelled(self) -> bool:
        return self.target is not None


@dataclass(frozen=True, eq=False)
class Collection:
    """What an adapter read: the labelled samples (splits index into these) and the unlabelled ones."""

    dataset: str
    location: str  # where it was read from (a path), or how it was made (synthetic)
    labelled: tuple[Sample, ...]
    unlabelled: tuple[Sample, ...] = ()


@dataclass(frozen=True)
class Presence:
    """What ``unetbench data info`` shows for one data set."""

    status: Literal["present", "absent", "invalid", "generated"]
    labelled: int = 0
    unlabelled: int = 0
    detail: str = ""


@dataclass(frozen=True)
class DatasetAdapter:
    """The functions one data set module provides, under the data set's name."""

    name: str  # the name specs and commands use, e.g. "isbi2012", "phc-u373"
    title: str
    kind: Literal["em", "cells"]  # decides which metrics apply
    folder: str  # its directory below the data root ("" for generated data)
    sequences: tuple[str, ...]  # the time-lapse sequences, () when there are none
    citation: str
    # Read everything at ``location`` (a directory, or for ISBI 2012 an HDF5 file).
    load: Callable[[Path, DataSpec], Collection]
    # Cheap look at a location for ``data info``; never raises for bad data (reports "invalid").
    describe: Callable[[Path], Presence]
    # Download the official files into a new directory ``destination`` (None: nothing to download).
    fetch: Callable[..., None] | None = None
    # Copy a user's files from ``source`` (any layout the adapter reads) into a new directory.
    import_files: Callable[[Path, Path], None] | None = None


DATASETS: dict[str, DatasetAdapter] = {}


def register(adapter: DatasetAdapter) -> DatasetAdapter:
    if adapter.name in DATASETS:
        raise ValueError(f"data set {adapter.name!r} is registered twice")
    DATASETS[adapter.name] = adapter
    return adapter
