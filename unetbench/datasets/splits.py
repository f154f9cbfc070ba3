"""Dividing a data set's labelled samples into train / validation / evaluation, as the spec says."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unetbench.datasets import Collection, Sample
from unetbench.errors import DataError
from unetbench.spec import SplitSpec

PARTS = ("train", "validation", "evaluation")


@dataclass(frozen=True, eq=False)
class Split:
    train: tuple[Sample, ...]
    validation: tuple[Sample, ...]
    evaluation: tuple[Sample, ...]
    test: tuple[Sample, ...]  # the unlabelled samples (e.g. ISBI 2012's hidden-label test slices)

    def names(self, part: str) -> list[str]:
        """The samples of ``part`` named by it, as runs name them: ``evaluation/25``, ``test/02/t013``."""
        return [f"{part}/{s.key}" for s in getattr(self, part)]

    def keys(self) -> dict[str, list[str]]:
        """Sample names per part, for run records."""
        return {part: self.names(part) for part in (*PARTS, "test")}


def kfold_indices(n: int, folds: int, fold: int, shuffle_seed: int | None) -> dict[str, list[int]]:
    """Indices of fold ``fold`` (evaluation), the next fold (validation, when folds >= 3) and the rest."""
    if n < folds:
        raise DataError(
            f"data.split.folds: {folds} folds need at least {folds} labelled samples, the data set has {n}"
        )
    order = np.arange(n)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(n)
    chunks = [list(map(int, c)) for c in np.array_split(order, folds)]
    validation = (fold + 1) % folds if folds >= 3 else None
    train = [i for k, c in enumerate(chunks) if k not in (fold, validation) for i in c]
    return {
        "train": sorted(train),
        "validation": sorted(chunks[validation]) if validation is not None else [],
        "evaluation": sorted(chunks[fold]),
    }


def split_collection(collection: Collection, spec: SplitSpec) -> Split:
    """Apply a split spec; an index or sequence the data set does not have is a clear :class:`DataError`."""
    samples = collection.labelled
    n = len(samples)
    if spec.method == "kfold":
        chosen = kfold_indices(n, spec.folds, spec.fold, spec.shuffle_seed)
        parts = {part: tuple(samples[i] for i in chosen[part]) for part in PARTS}
    elif spec.method == "indices":
        parts = {}
        for part in PARTS:
            for index in getattr(spec, part):
                if index >= n:
                    raise DataError(
                        f"data.split.{part}: index {index} is out of range; {collection.dataset} has {n} "
                        f"labelled samples (0-{n - 1})"
                    )
            parts[part] = tuple(samples[i] for i in getattr(spec, part))
    else:
        groups = sorted({s.group for s in samples if s.group})
        parts = {}
        for part in PARTS:
            for name in getattr(spec, part):
                if name not in groups:
                    raise DataError(
                        f"data.split.{part}: {collection.dataset} has no labelled sequence {name!r}; "
                        f"sequences with ground truth: {', '.join(groups) or 'none'}"
                    )
            parts[part] = tuple(s for s in samples if s.group in getattr(spec, part))
    return Split(**parts, test=collection.unlabelled)
