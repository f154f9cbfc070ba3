"""Dividing a data set's labelled samples into train / validation / evaluation, as the spec says."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from unetbench.datasets.base import Collection, Sample
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


def kfold_indices(
    n: int, folds: int, fold: int, shuffle_seed: int | None, groups: list[str] | None = None
) -> dict[str, list[int]]:
    """Indices of fold ``fold`` (evaluation), the next fold (validation, when folds >= 3) and the rest.

    Folds are cut by scikit-learn's splitters, the ecosystem's convention: ``KFold`` without shuffling
    gives contiguous folds (serial sections: neighbours look alike, so a fold is a block of slices; the
    first ``n % folds`` folds are one larger); with ``groups`` (the sequence of each frame of time-lapse
    data) ``GroupKFold`` keeps every sequence whole in one fold, since neighbouring frames look alike too,
    so there can be no more folds than sequences. ``shuffle_seed`` shuffles before cutting.
    """
    from sklearn.model_selection import GroupKFold, KFold

    shuffle = shuffle_seed is not None
    if groups is not None and any(groups):
        names = sorted(set(groups))
        if len(names) < folds:
            raise DataError(
                f"data.split.folds: {folds} folds need {folds} labelled sequences, the data set has "
                f"{len(names)} ({', '.join(names)}); folds cut by sequence, because neighbouring frames of "
                f"one sequence look alike: give at most {len(names)} folds"
            )
        splitter = GroupKFold(n_splits=folds, shuffle=shuffle, random_state=shuffle_seed)
        tests = [test for _, test in splitter.split(np.zeros(n), groups=groups)]
    else:
        if n < folds:
            raise DataError(
                f"data.split.folds: {folds} folds need at least {folds} labelled samples, the data set "
                f"has {n}"
            )
        splitter = KFold(n_splits=folds, shuffle=shuffle, random_state=shuffle_seed)
        tests = [test for _, test in splitter.split(np.zeros(n))]
    chunks = [sorted(map(int, test)) for test in tests]
    validation = (fold + 1) % folds if folds >= 3 else None
    train = [i for k, c in enumerate(chunks) if k not in (fold, validation) for i in c]
    return {
        "train": sorted(train),
        "validation": chunks[validation] if validation is not None else [],
        "evaluation": chunks[fold],
    }


def split_collection(collection: Collection, spec: SplitSpec) -> Split:
    """Apply a split spec; an index or sequence the data set does not have is a clear :class:`DataError`."""
    samples = collection.labelled
    n = len(samples)
    if spec.method == "kfold":
        chosen = kfold_indices(n, spec.folds, spec.fold, spec.shuffle_seed, [s.group for s in samples])
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
