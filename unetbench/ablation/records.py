"""The typed records of an ablation's folder: its manifest (which run folder is which variant, fold and
seed), the out-of-fold scores, the nested selection and a later report's note
(:mod:`unetbench.records.json_io`
reads and writes them)."""

from __future__ import annotations

from dataclasses import dataclass

from unetbench.records.run_record import Score

MANIFEST_SCHEMA = 3  # 3: folds, --vary, inference-only runs


CROSSVAL_SCHEMA = 1


@dataclass(frozen=True)
class PlannedRunEntry:
    variant: str  # "baseline", "no-weightmap", "no-weightmap+no-elastic", "training.learning_rate=0.003"
    fold: int | None  # None: the spec's own split
    seed_index: int
    # the run's folder relative to the ablation's: below it, or a reused finished run beside it (../cv-*/)
    directory: str
    overrides: list[str]
    weights_from: str | None  # relative like ``directory``: the trained run it predicts with, or None


@dataclass(frozen=True)
class AblationManifest:
    """Which run folder is which variant, fold and seed: with the run records, all a report needs."""

    kind: str  # "ablation" (unetbench ablate) or "cross-validation" (unetbench run --folds)
    challenge: str
    spec_file: str
    command: str
    switches: list[str]
    vary: list[str]  # the --vary arguments, KEY=V1,V2,...
    folds: int | None  # None: every run on the spec's own split
    seeds: int
    grid: str
    runs: list[PlannedRunEntry]
    schema: int = MANIFEST_SCHEMA


@dataclass(frozen=True)
class OutOfFold:
    """One variant and seed, cross-validated: every labelled image predicted by the network of the fold
    that did not train on it, all scored as one stack with the challenge's own metrics."""

    variant: str
    seed_index: int
    images: int
    scores: dict[str, Score]


@dataclass(frozen=True)
class CrossValidated:
    """The out-of-fold scores of an ablation or a cross-validation (``crossval.json``)."""

    folds: int
    dataset: str
    entries: list[OutOfFold]
    schema: int = CROSSVAL_SCHEMA


SELECTION_SCHEMA = 1


@dataclass(frozen=True)
class FoldChoice:
    """One outer fold of a nested selection: each candidate's validation score, the one chosen, and how
    the chosen run scored the fold's evaluation images (its run-level primary score)."""

    fold: int
    seed_index: int
    validation: dict[str, Score]  # variant -> best validation score of the primary metric
    chosen: str  # the variant chosen
    evaluation: Score


@dataclass(frozen=True)
class Selection:
    """``unetbench ablate --vary KEY=... --select`` (``selection.json``): in each outer fold the value of
    ``key`` with the best validation score is chosen; the chosen runs' evaluation images, stacked over the
    folds, are the out-of-fold estimate of "choose the value, then train"."""

    key: str
    metric: str
    values: dict[str, str]  # variant -> the value of ``key`` it trains with, as the spec writes it
    choices: list[FoldChoice]
    out_of_fold: list[OutOfFold]  # per seed, variant "selected"
    schema: int = SELECTION_SCHEMA


SUPERSEDED_SCHEMA = 1


@dataclass(frozen=True)
class Superseded:
    """A committed report that a later one replaces (``superseded.json`` in its bundle): its runs stay
    evidence of what they measured, the report's banner names the replacement and why."""

    by: str  # the report that replaces it, as a link from the report's folder
    why: str
    schema: int = SUPERSEDED_SCHEMA
