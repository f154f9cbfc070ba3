"""The answer an ablation's report opens with: the primary family (every variant against the baseline on
the spec's primary metric, Holm-adjusted, with the MDE, the networks needed and the verdict), the nested
selection where there is one, and the headline table README and docs copy from the report's CSV."""

from __future__ import annotations

import math
from pathlib import Path

from unetbench.ablation.plan import BASELINE
from unetbench.ablation.report_tables import _arrow, _num, _p, _signed, _table
from unetbench.ablation.statistics import DECISIVE, POWER
from unetbench.ablation.summary import FamilyRow, Summary


def _needed(row: FamilyRow, family) -> str:
    needed = row.needed
    if needed.networks is not None:
        return f"{needed.networks} ({needed.folds} folds x {needed.seeds} seeds)"
    if math.isnan(needed.floor):
        return "n/a"
    if needed.folds > 1 and abs(row.effect.mean) <= needed.floor:
        return (
            f"not reachable with {family.labelled} labelled images ({needed.folds} folds: no number of seeds "
            f"resolves a Δ within ±{needed.floor:.3g})"
        )
    return "more than 10,000"


def _posterior(row: FamilyRow) -> str:
    post = row.posterior
    if post is None:
        return "n/a"
    return f"{post.better:.2f} / {post.equivalent:.2f} / {post.worse:.2f}"


def family_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the primary family (the answer): a row per variant."""
    family = summary.family
    level = 1 - family.alpha
    header = [
        "variant",
        "networks",
        f"Δ {_arrow(summary, family.metric)} [{level:.1%} family interval]",
        "p",
        "p (Holm)",
        "answer",
        f"MDE ({POWER:.0%} power)",
        "networks to resolve Δ",
        "P(better) / P(equivalent) / P(worse)",
        f"verdict (±{family.rope:g})",
    ]
    trained = {row.variant: row for row in summary.rows}
    rows = []
    for row in family.rows:
        effect = row.effect
        networks = trained[row.variant]
        rows.append(
            [
                row.variant,
                "the baseline's (prediction only)" if not networks.trained else f"{networks.trained} trained",
                f"{_signed(effect.mean)} [{_signed(row.family_low)}, {_signed(row.family_high)}]",
                _p(row.p),
                _p(row.p_holm),
                "**resolved**" if row.resolved else "not resolved",
                _num(row.mde),
                "resolved" if row.resolved else _needed(row, family),
                _posterior(row),
                row.posterior.words() if row.posterior else "n/a",
            ]
        )
    return header, rows


def _family_caption(summary: Summary) -> str:
    family = summary.family
    m = len(family.rows)
    rope = (
        "the spec's `[evaluation.rope]`"
        if family.rope_recorded
        else "the metric's default; the records predate `[evaluation.rope]`"
    )
    return (
        f"The primary family: every variant against the baseline on the spec's primary metric, "
        f"{family.metric}, {m} test{'s' if m != 1 else ''} by {summary.test_words()}. **Resolved** means "
        "Holm's adjusted p-value (Holm 1979) is below 0.05; nothing else in this report is a claimed "
        f"effect. Each interval is Bonferroni's at 1 - 0.05/{m} = {1 - family.alpha:.1%}, so that the {m} "
        "cover their effects at once with at least 95%. MDE: the smallest Δ (either sign) this design "
        f"resolves with {POWER:.0%} power at the family's level 0.05/{m} (non-central t). Networks to "
        "resolve Δ: how many networks (more seeds on the same folds, the differences' spread as "
        "measured) would resolve the observed Δ with that power; the n_test/n_train term of the "
        "correction does not shrink with seeds, so below its floor no number does. Verdict: the Bayesian "
        "correlated t-test (Corani & Benavoli 2015) with the same correction, against a region of "
        f"practical equivalence of ±{family.rope:g} ({rope}); 'better' and 'worse' are the variant's "
        "against the baseline, and a word is given where its posterior probability reaches "
        f"{DECISIVE}, else 'undecided'."
    )


def _family_sentences(summary: Summary) -> list[str]:
    """One line per variant, in words, and where a resolved effect's family interval touches 0."""
    family = summary.family
    better_up = summary.higher_is_better[family.metric]
    lines = []
    for row in family.rows:
        effect = row.effect
        if math.isnan(effect.mean):
            lines.append(f"- {row.variant}: no paired networks.")
            continue
        direction = "higher" if effect.mean > 0 else "lower"
        good = (effect.mean > 0) == better_up
        if row.resolved:
            text = (
                f"- {row.variant}: resolved: {family.metric} {direction} by {abs(effect.mean):.3g} "
                f"({'better' if good else 'worse'} than the baseline; Holm p = {_p(row.p_holm)})"
            )
            if row.family_low <= 0 <= row.family_high:
                text += "; its Bonferroni interval still holds 0 (Holm is the more powerful of the two)"
            lines.append(text + ".")
            continue
        rules_out = (
            f"this design resolves a Δ of ±{_num(row.mde)} or more with {POWER:.0%} power, so an effect that "
            "large would likely have been found"
        )
        verdict = row.posterior.words() if row.posterior else "n/a"
        lines.append(
            f"- {row.variant}: not resolved (Δ {_signed(effect.mean)}, Holm p = {_p(row.p_holm)}); "
            f"{rules_out}; networks to resolve the observed Δ: {_needed(row, family)}; verdict: {verdict}."
        )
    return lines


def _primary_family(summary: Summary) -> list[str]:
    header, rows = family_table(summary)
    return [
        f"## The answer: {summary.family.metric}, the primary family",
        "",
        _family_caption(summary),
        "",
        *_table(header, rows),
        "",
        *_family_sentences(summary),
        "",
    ]


def _selection(selection, summary: Summary) -> list[str]:
    """Each outer fold's choice and the out-of-fold score of choosing (``ablation.selection``)."""
    metric, key = selection.metric, selection.key
    variants = list(selection.values)
    names = [f"{selection.values[v]}{' (baseline)' if v == BASELINE else ''}" for v in variants]
    header = ["fold", "seed", *[f"validation {metric}: {n}" for n in names], "chosen", f"evaluation {metric}"]
    rows = [
        [str(c.fold), str(c.seed_index)]
        + [_num(c.validation.get(v)) for v in variants]
        + [selection.values[c.chosen], _num(c.evaluation)]
        for c in selection.choices
    ]
    lines = [
        f"## Nested selection: {key} chosen on validation images",
        "",
        f"In each outer fold, the value of `{key}` whose network scored best on the fold that validates "
        f"(its best validation {metric}, which also chose its scored weights) was chosen, and the chosen "
        "network's predictions of the fold that evaluates are that fold's part of the estimate: the "
        "evaluating images chose nothing.",
        "",
        *_table(header, rows),
        "",
    ]
    fixed = {row.variant: row.out_of_fold for row in summary.rows if row.out_of_fold}
    for entry in selection.out_of_fold:
        scores = ", ".join(f"{m} {_num(entry.scores.get(m))}" for m in summary.metrics)
        lines.append(
            f"Out of fold, choosing `{key}` on validation images (seed {entry.seed_index}, {entry.images} "
            f"images as one set): {scores}."
        )
    if fixed:
        shown = "; ".join(
            f"{selection.values.get(v, v)}: {_num(spread[metric].mean)}" for v, spread in fixed.items()
        )
        lines.append(
            f"Each value fixed beforehand, out of fold ({metric}): {shown}. Picking the best of these after "
            "seeing them would choose on the evaluating images; the estimate above does not."
        )
    return lines + [""]


def headline_table(variants_csv: Path) -> list[str]:
    """The primary family as README and docs show it, from an ablation report's CSV alone: a row per
    variant with its switch, Δ with the family interval, the Holm-adjusted p, the answer, the MDE and the
    verdict (``tests/test_docs.py`` keeps README's table equal to it)."""
    import pandas as pd

    table = pd.read_csv(variants_csv, index_col="variant", keep_default_na=False, na_values=[""])
    metric = next(c[: -len("_p_holm")] for c in table.columns if c.endswith("_p_holm"))
    family = table[table[f"{metric}_p_holm"].notna()]
    level = 1 - 0.05 / len(family)
    lines = [
        f"| variant | what it is | Δ {metric} [{level:.1%} family interval] | p (Holm) | answer | MDE | "
        f"verdict (±{family[f'{metric}_rope'].iloc[0]:g}) |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, row in family.iterrows():
        what = f"`{row['switch'] or variant}`" + (", prediction only" if row["trained"] == 0 else "")
        delta = f"{_signed(row[f'{metric}_diff'])} [{_signed(row[f'{metric}_family_low'])}, "
        delta += f"{_signed(row[f'{metric}_family_high'])}]"
        answer = "**resolved**" if str(row[f"{metric}_resolved"]) == "True" else "not resolved"
        verdict = row[f"{metric}_verdict"]
        verdict = f"equivalent within ±{row[f'{metric}_rope']:g}" if verdict == "equivalent" else verdict
        cells = [variant, what, delta, _p(row[f"{metric}_p_holm"]), answer]
        lines.append("| " + " | ".join([*cells, _num(row[f"{metric}_mde"]), verdict]) + " |")
    return lines
