"""The ablation's findings as typed rows, from the manifest, the run records and the out-of-fold scores.

The unit is a trained network. For every run the **run-level score** is the challenge's own score of the
images that run evaluated (``record.trained.aggregate``: for ISBI 2012 the stack score of its fold's
slices); as a second view, the mean of its per-image scores. A variant's value is the mean ± standard
deviation of its runs' scores over (fold, seed); a switch's effect is Δ of the paired run-level scores
with its interval (:mod:`unetbench.ablation.statistics`): corrected repeated k-fold t over folds, paired t
over seeds with one split. With ``--folds`` each variant also has its out-of-fold stack score per seed
(:mod:`unetbench.ablation.crossval`).

pandas does the pairing inside :func:`summarise`; what leaves this module is dataclasses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from unetbench.ablation.folder import bundled_name
from unetbench.ablation.plan import BASELINE
from unetbench.ablation.records import AblationManifest, CrossValidated, PlannedRunEntry
from unetbench.ablation.statistics import (
    ALPHA,
    CORRECTED,
    PAIRED,
    POWER,
    Interval,
    Needed,
    Posterior,
    corrected_kfold_interval,
    correlated_bayes,
    holm,
    minimum_detectable_effect,
    networks_needed,
    paired_t_interval,
)
from unetbench.metrics import METRICS
from unetbench.records.run_record import RunRecord
from unetbench.system.cpu_share import SHARED


@dataclass(frozen=True)
class Spread:
    mean: float
    sd: float  # NaN with one value
    n: int


@dataclass(frozen=True)
class Effect:
    run_level: Interval  # paired run-level (stack) scores: the answer
    per_image: Interval  # paired per-image means of the same runs: a second view


@dataclass(frozen=True)
class VariantRow:
    variant: str
    overrides: list[str]  # beside the spec file's, fold and seed left out
    runs: int
    trained: int  # networks this variant trained (0: it predicted with its paired runs' networks)
    # median over the networks it trained: one run that shared its CPU (contention) does not move it
    training_seconds: float | None
    scores: dict[str, Spread]  # run-level scores over (fold, seed)
    effects: dict[str, Effect]  # against the baseline; empty for the baseline
    out_of_fold: dict[str, Spread]  # out-of-fold stack scores over seeds; empty without --folds
    shared: int = 0  # trained networks whose training shared the CPU with other processes (contention)


@dataclass(frozen=True)
class RunScore:
    variant: str
    fold: int | None
    seed_index: int
    run: str  # the run folder's name
    images: int
    scores: dict[str, float | None]  # run-level


@dataclass(frozen=True)
class FamilyRow:
    """One variant in the primary family: its run-level Δ on the primary metric, Holm-adjusted, with what
    an unresolved answer rules out (:mod:`unetbench.ablation.statistics`)."""

    variant: str
    effect: Interval  # unadjusted, 95%
    family_low: float  # Bonferroni, 1 - 0.05/m: the m intervals cover at once with >= 95%
    family_high: float
    p: float  # two-sided, unadjusted
    p_holm: float
    mde: float  # at the family's level 0.05/m, 80% power
    needed: Needed  # networks that resolve the observed Δ at that level and power
    posterior: Posterior | None  # against ±ROPE

    @property
    def resolved(self) -> bool:
        return self.p_holm < ALPHA


@dataclass(frozen=True)
class Family:
    """The primary family: every variant against the baseline on the spec's primary metric."""

    metric: str
    rope: float
    rope_recorded: bool  # False: the records predate [evaluation.rope]; the metric's default is used
    alpha: float  # the family's level for its intervals, the MDE and the networks needed: 0.05 / m
    labelled: int  # labelled images there are: the n_test/n_train floor cannot be crossed without more
    rows: list[FamilyRow]


@dataclass(frozen=True)
class Summary:
    kind: str
    challenge: str
    metrics: list[str]
    primary: str
    higher_is_better: dict[str, bool]
    folds: int | None
    seeds: int
    test: str  # the interval's test
    test_over_train: float | None  # n_test / n_train of the correction (with --folds)
    networks: int  # paired trained networks per switch (n of the intervals)
    rows: list[VariantRow]
    runs: list[RunScore]
    out_of_fold_images: int | None
    family: Family | None = None  # None without variants (a cross-validation)

    @property
    def df(self) -> int:
        return self.networks - 1

    def own_overrides(self, variant: str) -> list[str]:
        """A variant's overrides of the baseline (what it changes), without the command line's ``--set``
        that every run of the ablation shares."""
        rows = {row.variant: row for row in self.rows}
        shared = rows[BASELINE].overrides if BASELINE in rows else []
        mine = rows[variant].overrides
        return mine[len(shared) :] if mine[: len(shared)] == shared else mine

    def test_words(self) -> str:
        """The interval's test, with n, the whole correction factor and the degrees of freedom."""
        n = self.networks
        if self.test == CORRECTED:
            ratio = self.test_over_train
            return (
                f"the {CORRECTED}: variance of the {n} paired differences x (1/{n} + n_test/n_train = "
                f"{1 / n:.3g} + {ratio:.3g} = {1 / n + ratio:.3g}), t with {self.df} degrees of freedom"
            )
        return f"the {PAIRED} ({n} seeds, {self.df} degrees of freedom)"

    def caption(self) -> str:
        """What the values are and, with variants, what the exploratory intervals are (test, n, df)."""
        n = self.networks
        values = (
            "The unit is a trained network. Each value is the mean ± standard deviation over (fold, seed) "
            "of the run-level score: the challenge's own score of the images each run evaluated."
        )
        if len(self.rows) < 2:  # a cross-validation: the baseline alone, nothing to compare
            return values
        return values + (
            f" For a variant, Δ is the mean of the {n} paired differences to the baseline of the same fold "
            f"and seed, with its unadjusted 95% interval by {self.test_words()}. Exploratory: no "
            "adjustment for the many intervals; an interval that excludes 0 here is not a claimed effect."
        )


def _long_table(runs: list[tuple[PlannedRunEntry, RunRecord]], metrics: list[str]) -> pd.DataFrame:
    """One row per (run, metric): variant, fold, seed, the run-level score and the mean over images."""
    return pd.DataFrame(
        [
            (
                e.variant,
                -1 if e.fold is None else e.fold,
                e.seed_index,
                metric,
                _number(r.trained.aggregate.get(metric)),
                _image_mean(r, metric),
            )
            for e, r in runs
            for metric in metrics
        ],
        columns=["variant", "fold", "seed", "metric", "run_level", "per_image"],
    )


def _variant_row(variant, runs, long: pd.DataFrame, metrics, ratio, crossval) -> VariantRow:
    mine = [(e, r) for e, r in runs if e.variant == variant]
    trained = [r for e, r in mine if r.weights_from is None]
    return VariantRow(
        variant=variant,
        overrides=_variant_overrides(mine[0][0]),
        runs=len(mine),
        trained=len(trained),
        training_seconds=float(np.median([r.training.seconds for r in trained])) if trained else None,
        scores={
            m: _spread(long[(long.variant == variant) & (long.metric == m)]["run_level"]) for m in metrics
        },
        effects=_effects(long, variant, metrics, ratio) if variant != BASELINE else {},
        out_of_fold=_out_of_fold(crossval, variant, metrics),
        shared=sum(_shared(r) for r in trained),
    )


def summarise(
    manifest: AblationManifest,
    runs: list[tuple[PlannedRunEntry, RunRecord]],
    crossval: CrossValidated | None = None,
) -> Summary:
    """The findings (module docstring) from the manifest and the records."""
    first = runs[0][1]
    metrics = first.metrics
    long = _long_table(runs, metrics)
    ratio = _test_over_train(first) if manifest.folds else None
    variants = list(dict.fromkeys(e.variant for e, _ in runs))
    rows = [_variant_row(variant, runs, long, metrics, ratio, crossval) for variant in variants]
    networks = len([e for e, _ in runs if e.variant == BASELINE])
    family = _family(first, rows, manifest.folds) if len(rows) > 1 else None
    return Summary(
        kind=manifest.kind,
        challenge=manifest.challenge,
        metrics=list(metrics),
        primary=first.primary,
        higher_is_better=dict(first.higher_is_better),
        folds=manifest.folds,
        seeds=manifest.seeds,
        test=CORRECTED if manifest.folds else PAIRED,
        test_over_train=ratio,
        networks=networks,
        rows=rows,
        runs=[
            RunScore(
                e.variant,
                e.fold,
                e.seed_index,
                bundled_name(e, Path(e.directory)),  # its name in this ablation, where it was reused too
                len(r.trained.per_image),
                dict(r.trained.aggregate),
            )
            for e, r in runs
        ],
        out_of_fold_images=crossval.entries[0].images if crossval and crossval.entries else None,
        family=family,
    )


def _family(record: RunRecord, rows: list[VariantRow], folds: int | None) -> Family:
    """The primary family (:class:`Family`) from the variants' run-level effects on the primary metric."""
    metric = record.primary
    recorded = record.spec["evaluation"].get("rope", {})
    rope = float(recorded.get(metric, METRICS[metric].rope))
    effects = [(row.variant, row.effects[metric].run_level) for row in rows if row.effects]
    alpha = ALPHA / len(effects)
    adjusted = holm([effect.p for _, effect in effects])
    better_up = record.higher_is_better[metric]
    family_rows = []
    for (variant, effect), p_holm in zip(effects, adjusted, strict=True):
        low, high = effect.at(1 - alpha)
        family_rows.append(
            FamilyRow(
                variant=variant,
                effect=effect,
                family_low=low,
                family_high=high,
                p=effect.p,
                p_holm=p_holm,
                mde=minimum_detectable_effect(effect, alpha, POWER),
                needed=networks_needed(effect, effect.mean, folds or 1, alpha, POWER),
                posterior=correlated_bayes(effect, rope, better_up),
            )
        )
    split = record.data.split
    labelled = sum(len(split.get(part, [])) for part in ("train", "validation", "evaluation"))
    return Family(metric, rope, metric in recorded, alpha, labelled, family_rows)


def _variant_overrides(entry: PlannedRunEntry) -> list[str]:
    """A variant's overrides of the spec file: the first run's (seed index 0, the spec's own seed) without
    the three fold overrides the plan puts last (:func:`unetbench.ablation.plan.plan`)."""
    return list(entry.overrides[:-3] if entry.fold is not None else entry.overrides)


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _shared(record: RunRecord) -> bool:
    """Whether another process kept the CPU busy while any session of the run trained."""
    return any(s.others_busy is not None and s.others_busy >= SHARED for s in record.sessions)


def _image_mean(record: RunRecord, metric: str) -> float:
    values = [_number(s.get(metric)) for s in record.trained.per_image.values()]
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def _test_over_train(record: RunRecord) -> float:
    split = record.data.split
    return len(split[record.data.scored]) / max(1, len(split["train"]))


def _spread(values: pd.Series) -> Spread:
    values = values.dropna()
    sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    return Spread(float(values.mean()) if len(values) else math.nan, sd, len(values))


def _effects(long: pd.DataFrame, variant: str, metrics: list[str], ratio: float | None) -> dict[str, Effect]:
    """Paired by (fold, seed): the variant's run minus the baseline's."""
    effects = {}
    for metric in metrics:
        both = long[long.metric == metric].pivot_table(
            index=["fold", "seed"], columns="variant", values=["run_level", "per_image"], dropna=False
        )
        views = []
        for view in ("run_level", "per_image"):
            differences = (both[view][variant] - both[view][BASELINE]).to_numpy(dtype=float)
            views.append(
                corrected_kfold_interval(differences, ratio)
                if ratio is not None
                else paired_t_interval(differences)
            )
        effects[metric] = Effect(*views)
    return effects


def _out_of_fold(crossval: CrossValidated | None, variant: str, metrics: list[str]) -> dict[str, Spread]:
    if crossval is None:
        return {}
    entries = [e for e in crossval.entries if e.variant == variant]
    if not entries:
        return {}
    return {m: _spread(pd.Series([_number(e.scores.get(m)) for e in entries], dtype=float)) for m in metrics}
