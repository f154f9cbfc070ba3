"""Data set adapters: one module per data set, each with the same small set of functions.

Every adapter turns files in one of the layouts its data set is distributed in into a :class:`Collection`
of :class:`Sample` objects following the conventions of DESIGN.md:

- ``image``: float32 in [0, 1] (8- and 16-bit inputs are scaled by their type's maximum, never clipped);
- ``target``: uint8 semantic target, 1 = cell / foreground, 0 = membrane / background;
- ``instances``: int32 instance labels, 0 = membrane / background, 1..N = cells (for weight maps).

The registry :data:`DATASETS` maps a data set's name to its :class:`DatasetAdapter`. Modules register
themselves with :func:`register` at import; a failed look-up (:func:`get_adapter`) lists what exists. The
types and the registry live in :mod:`unetbench.datasets.base`, which the adapters import, so that no
adapter imports the package that imports it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from unetbench.datasets.base import DATASETS, Collection, DatasetAdapter, Presence, Sample, register
from unetbench.errors import DataError, UserError

if TYPE_CHECKING:
    from unetbench.spec import DataSpec


def get_adapter(name: str) -> DatasetAdapter:
    try:
        return DATASETS[name]
    except KeyError:
        raise UserError(f"unknown data set {name!r}; valid choices: {', '.join(DATASETS)}") from None


def default_data_root() -> Path:
    """The per-user cache directory used when neither --data-root nor $UNETBENCH_DATA is given."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "unetbench" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "unetbench"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "unetbench"


def resolve_data_root(data_root: str | Path | None = None) -> Path:
    """--data-root if given, else $UNETBENCH_DATA, else :func:`default_data_root`."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get("UNETBENCH_DATA")
    return Path(env).expanduser() if env else default_data_root()


def dataset_location(adapter: DatasetAdapter, data_root: str | Path | None = None) -> Path:
    return resolve_data_root(data_root) / adapter.folder


def load_dataset(data: DataSpec, data_root: str | Path | None = None) -> Collection:
    """Read the data set a spec names: from ``data.root`` if set, else from the data root."""
    adapter = get_adapter(data.dataset)
    location = Path(data.root).expanduser() if data.root else dataset_location(adapter, data_root)
    if adapter.folder and not location.exists():
        how = (
            f"unetbench data fetch {adapter.name}"
            if adapter.fetch
            else f"unetbench data import {adapter.name} PATH"
        )
        raise DataError(f"{adapter.name}: no data at {location}; get it with `{how}` (or set data.root)")
    return adapter.load(location, data)


# Register the adapters (their modules call register() at import).
from unetbench.datasets import ctc, isbi2012, synthetic  # noqa: E402,F401

__all__ = [
    "DATASETS",
    "Collection",
    "DatasetAdapter",
    "Presence",
    "Sample",
    "dataset_location",
    "default_data_root",
    "get_adapter",
    "load_dataset",
    "register",
    "resolve_data_root",
]
