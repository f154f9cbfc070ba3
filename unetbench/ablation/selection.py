"""Nested selection: ``unetbench ablate SPEC --folds K --vary KEY=V1,V2,... --select``.

A setting chosen on the images a report evaluates makes its scores optimistic. Here the choice is made
inside each outer fold, on that fold's validation images alone: in fold k every value of KEY (the spec's
own, the baseline, and each ``--vary`` value) trains a network on the training folds; the value whose
network scored best on fold k+1, the fold that validates (its best validation score of the primary
metric, which also chose its scored weights), is chosen; and the chosen network's predictions of fold k,
the fold that evaluates, are that fold's part of the estimate. Stacked over the K folds and scored as one
set, they are the out-of-fold estimate of "choose KEY on validation images, then train" (Cawley & Talbot
2010, "On over-fitting in model selection and subsequent selection bias in performance evaluation",
JMLR 11; Varma & Simon 2006, BMC Bioinformatics 7:91). The report gives each fold's choice beside it.
"""

from __future__ import annotations

import math
from pathlib import Path

from unetbench.ablation.crossval import Stacks
from unetbench.ablation.plan import BASELINE, PlannedRun, parse_vary
from unetbench.ablation.records import FoldChoice, OutOfFold, Selection
from unetbench.errors import UserError
from unetbench.records.run_folder import RunDir
from unetbench.spec import ChallengeSpec

SELECTED = "selected"


def check_select(
    spec: ChallengeSpec, switches: list[str], vary: list[str], folds: int | None, grid: str
) -> None:
    """``--select``: one :class:`UserError` for what it cannot go with, before anything is read."""
    if not vary:
        raise UserError("--select chooses a value of --vary KEY=V1,V2,...; give the values to choose from")
    if len(vary) > 1 or switches or grid != "one":
        raise UserError(
            "--select chooses the value of one key: give one --vary KEY=V1,V2,... and no switches or --grid"
        )
    if folds is None:
        raise UserError(
            "--select needs --folds K: each outer fold chooses on its validation fold and is scored on "
            "its evaluation fold"
        )
    if folds < 3:
        raise UserError(
            f"--select needs --folds 3 or more (a fold that validates beside the one that evaluates), got "
            f"{folds}"
        )
    if spec.training.validate_every == 0:
        raise UserError(
            "--select chooses by the validation score, and the spec does not validate "
            "(training.validate_every = 0); give training.validate_every > 0"
        )


def select(runs: list[PlannedRun], text: str, folds: int, data_root: Path | None) -> Selection:
    """Each fold's choice and the out-of-fold scores of the chosen runs (module docstring)."""
    key, _ = parse_vary(text)
    records = {(r.variant, r.fold, r.seed_index): RunDir(r.directory).read_record() for r in runs}
    metric = records[BASELINE, 0, 0].primary
    higher = records[BASELINE, 0, 0].higher_is_better[metric]
    variants = list(dict.fromkeys(r.variant for r in runs))
    choices, chosen_runs = [], {}
    for fold, seed in sorted({(r.fold, r.seed_index) for r in runs}):
        validation = {}
        for variant in variants:
            best = records[variant, fold, seed].training.best
            validation[variant] = None if best is None else best.value
        scored = {v: s for v, s in validation.items() if s is not None and not math.isnan(s)}
        if not scored:
            raise UserError(f"--select: fold {fold} has no validation score to choose by")
        chosen = (max if higher else min)(scored, key=scored.get)  # ties: the first, the baseline
        evaluation = records[chosen, fold, seed].trained.aggregate.get(metric)
        choices.append(FoldChoice(fold, seed, validation, chosen, evaluation))
        chosen_runs.setdefault(seed, []).append(
            next(r for r in runs if (r.variant, r.fold, r.seed_index) == (chosen, fold, seed))
        )
    stacks = Stacks(data_root)
    out_of_fold = [
        OutOfFold(SELECTED, seed, *stacks.score(members, f"the selected runs of seed {seed}"))
        for seed, members in chosen_runs.items()
        if len(members) == folds
    ]
    values = {variant: _value_of(records[variant, 0, 0].spec, key) for variant in variants}
    return Selection(key, metric, values, choices, out_of_fold)


def _value_of(table: dict, key: str) -> str:
    """The value of dotted ``key`` in a record's spec, as a word."""
    node = table
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return str(node).lower() if isinstance(node, bool) else str(node)


__all__ = ["SELECTED", "check_select", "select"]
