"""The report of an ablation or a cross-validation, rendered from its folder's typed files only.

``<reports>/<challenge>/<name>.md`` with, beside it in ``<name>/``: a forest plot per metric (Δ with its
interval per variant, a zero line; the primary metric's with the family's intervals and the ROPE),
``<name>.csv`` (a row per variant) and ``runs.csv`` (a row per run), and the bundle that renders the
report again (``ablation.json``, ``crossval.json``, ``records/<run>/record.json``; ``unetbench report
<reports>/<challenge>/<name>``).

An ablation's report opens with its answer: the **primary family** (every variant against the baseline
on the spec's primary metric, Holm-adjusted, with the minimum detectable effect, the networks needed and
the practical-equivalence verdict); everything after it is **exploratory** and says so. The statistics
are :mod:`unetbench.ablation.summary`'s: the unit is a trained network.
"""

from __future__ import annotations

import math
from pathlib import Path

from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import BASELINE, SWITCHES, no_tiling_tile, switch_of
from unetbench.ablation.statistics import DECISIVE, POWER
from unetbench.ablation.summary import FamilyRow, Spread, Summary, VariantRow, summarise
from unetbench.atomic import atomic_write_text
from unetbench.model.sizes import output_size
from unetbench.report.paper import PAPER, differences, other_data, settings_chosen_note
from unetbench.results import RunRecord

RUNS_CSV = "runs.csv"


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3g}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _spread(spread: Spread | None) -> str:
    if spread is None or math.isnan(spread.mean):
        return "n/a"
    return _num(spread.mean) + ("" if math.isnan(spread.sd) else f" ± {_num(spread.sd)}")


def _arrow(summary: Summary, metric: str) -> str:
    return f"{metric} {'↑' if summary.higher_is_better[metric] else '↓'}"


def _training_time(row: VariantRow) -> str:
    if row.training_seconds is None:
        return "none (weights of the paired run)"
    shared = f" ({row.shared} of {row.trained} shared the CPU with other processes)" if row.shared else ""
    return f"{row.training_seconds:.0f} s{shared}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


# --------------------------------------------------------------------------------------------------
# The primary family: the answer


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


# --------------------------------------------------------------------------------------------------
# Nested selection


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


# --------------------------------------------------------------------------------------------------
# Exploratory


def variant_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows: each variant's run-level scores and, for a variant, Δ with its unadjusted interval."""
    metrics = [_arrow(summary, m) for m in summary.metrics]
    header = ["variant", "runs (trained)", *metrics, "training time (median)"]
    rows = []
    for row in summary.rows:
        cells = [row.variant, f"{row.runs} ({row.trained})"]
        for metric in summary.metrics:
            text = _spread(row.scores[metric])
            if metric in row.effects:
                text += f" ({row.effects[metric].run_level.words()})"
            cells.append(text)
        cells.append(_training_time(row))
        rows.append(cells)
    return header, rows


def _out_of_fold(summary: Summary, dataset: str, level: str) -> list[str]:
    if not any(row.out_of_fold for row in summary.rows):
        return []
    paper, where = PAPER.get(dataset, ({}, ""))
    header = ["variant"] + [_arrow(summary, m) for m in summary.metrics]
    rows = [
        [row.variant] + [_spread(row.out_of_fold.get(m)) for m in summary.metrics] for row in summary.rows
    ]
    if paper:
        rows.append(
            ["paper (the challenge's hidden test set: other data)"]
            + [_num(paper.get(m)) for m in summary.metrics]
        )
    seeds = "the mean ± standard deviation over seeds" if summary.seeds > 1 else "one seed"
    lines = [
        f"{level} Cross-validated scores (out of fold)",
        "",
        f"Every one of the {summary.out_of_fold_images} labelled images predicted by the network of the fold "
        "that did not train on it, all scored as one set with the challenge's own metrics "
        f"({seeds}).",
        "",
        *_table(header, rows),
        "",
    ]
    if paper:
        lines += [
            f"Paper: Ronneberger, Fischer & Brox (2015), {where}. "
            + other_data(dataset, summary.out_of_fold_images or 0),
            "",
        ]
    return lines


def _per_run(summary: Summary, level: str) -> list[str]:
    primary = summary.primary
    variants = [row.variant for row in summary.rows]
    keys = sorted({(r.fold if r.fold is not None else -1, r.seed_index) for r in summary.runs})
    header = ["fold", "seed", *variants]
    rows = []
    for fold, seed in keys:
        cells = ["-" if fold < 0 else str(fold), str(seed)]
        for variant in variants:
            found = [
                r
                for r in summary.runs
                if r.variant == variant
                and (r.fold if r.fold is not None else -1) == fold
                and r.seed_index == seed
            ]
            cells.append(_num(found[0].scores.get(primary)) if found else "-")
        rows.append(cells)
    return [
        f"{level} Per {'fold and seed' if summary.folds else 'seed'}: run-level {primary}",
        "",
        "Each cell: one trained network's score of the images it evaluated (the paired differences behind "
        f"the intervals). Every metric is in `{RUNS_CSV}`.",
        "",
        *_table(header, rows),
        "",
    ]


def _second_view(summary: Summary) -> list[str]:
    switches = [row for row in summary.rows if row.effects]
    if not switches:
        return []
    header = ["variant"] + [_arrow(summary, m) for m in summary.metrics]
    rows = [[row.variant] + [row.effects[m].per_image.words() for m in summary.metrics] for row in switches]
    return [
        "### Second view: per-image means",
        "",
        "The same paired runs, each scored by the mean of its per-image scores instead of the challenge's "
        "score of its images as a whole; same test, same n, unadjusted.",
        "",
        *_table(header, rows),
        "",
    ]


def _exploratory(summary: Summary, dataset: str, charts: list[str], name: str) -> list[str]:
    """Everything but the answer: scores of every metric, the unadjusted intervals, the per-run scores."""
    family = summary.family is not None
    level = "###" if family else "##"
    lines = (
        [
            "## Exploratory: every metric, unadjusted",
            "",
            "Nothing in this section is a claimed effect: the intervals are unadjusted for the many metrics "
            "and views, and 'excludes 0' here is a lead for a new ablation with this metric as its primary.",
            "",
        ]
        if family
        else []
    )
    lines += _out_of_fold(summary, dataset, level)
    header, rows = variant_table(summary)
    lines += [
        f"{level} Every metric" if family else "## The runs",
        "",
        summary.caption(),
        "",
        *_table(header, rows),
        "",
    ]
    if charts:
        lines += [f"![{chart}]({name}/{chart})" for chart in charts] + [""]
    return lines + _per_run(summary, level) + _second_view(summary)


# --------------------------------------------------------------------------------------------------
# What was compared


def _switch_of(row: VariantRow, summary: Summary, spec) -> tuple[str | None, str]:
    """The switch a variant is (by its overrides, whatever the ablation named it) and a note where its
    name is another switch's."""
    name = switch_of(summary.own_overrides(row.variant), spec)
    if name is None:
        return None, ""
    switch = SWITCHES[name]
    if row.variant == switch.variant:
        return name, ""
    return name, f" (what {switch.flag} runs today; this ablation named it {row.variant})"


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


def switches_table() -> list[str]:
    """The switches as docs/ablations.md shows them: flag, what the pair compares, what it trains."""
    lines = ["| switch | what the pair (baseline, variant) compares | trains |", "|---|---|---|"]
    for switch in SWITCHES.values():
        trains = "nothing: the baseline's weights" if switch.inference_only else "a network per fold and seed"
        lines.append(f"| `{switch.flag}` | {switch.compares} | {trains} |")
    return lines


def compared_words(name: str, spec) -> str:
    """What the pair (baseline, variant of switch ``name``) compares, in the spec's numbers."""
    train, infer = spec.training.tile_size, spec.inference.tile_size
    depth = spec.model.depth
    if name == "tiling":
        out = output_size(train, depth=depth, padding="valid")
        return (
            f"the baseline's network (valid padding, trained on {train} px tiles) predicting each image in "
            f"isolated {out} px output tiles, each fed with itself mirrored to {train} px, against "
            f"overlap-tile with {infer} px input tiles and the image around each tile as context"
        )
    if name == "mirror":
        return (
            f"overlap-tile with {infer} px input tiles whose context beyond the image border is zeros, "
            "against the mirrored image"
        )
    if name == "tiling-same-padding":
        tile = no_tiling_tile(spec)
        return (
            f"a same-padded network trained on {tile} px tiles and predicting on {tile} px tiles without "
            f"context (zeros at every tile and image border), against the valid network trained on {train} "
            f"px tiles predicting with overlap-tile on {infer} px input tiles: two networks as well as two "
            "ways of predicting, so not overlap-tile alone"
        )
    return SWITCHES[name].compares


def _compared(record: RunRecord, summary: Summary) -> list[str]:
    """Each variant's overrides, and what each pair compares, in the spec's numbers."""
    spec = record.resolved_spec()
    lines = ["## What was compared", ""]
    for row in summary.rows:
        if row.variant == BASELINE:  # the command line's --set, which every run shares
            lines.append(
                f"- baseline: {', '.join(f'`{o}`' for o in row.overrides) or 'none (the spec file)'}."
            )
            continue
        overrides = ", ".join(f"`{o}`" for o in summary.own_overrides(row.variant))
        name, note = _switch_of(row, summary, spec)
        what = compared_words(name, spec) if name else "the overrides against the baseline's values"
        borrowed = (
            "; predicted with the scored weights of the baseline run of the same fold and seed (their "
            "records name it), so each pair differs in prediction alone"
            if row.runs and not row.trained
            else ""
        )
        lines.append(f"- {row.variant}{note}: {overrides}: {what}{borrowed}.")
    return lines + [""]


# --------------------------------------------------------------------------------------------------
# The report


def _shown(path: Path) -> Path:
    """A path as the command line would name it from here: relative below the current folder."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _paper_differences(baseline: RunRecord, folds: int | None) -> list[str]:
    """The baseline run's differences from the paper, its fold's overrides told as the folds they are."""
    if not folds:
        return differences(baseline)
    kept = [o for o in baseline.overrides if not o.startswith("data.split.")]
    return differences(baseline, kept) + [
        f"Folds: each of the {folds} networks trained on the folds it does not evaluate or validate on (the "
        "Data line is fold 0's); the out-of-fold scores are of labelled training images, not of the "
        "challenge's hidden test images."
    ]


def render_ablation_report(directory: AblationDir, reports_root: Path) -> tuple[Path, Summary]:
    """Write the report (module docstring); return its absolute path and the summary. Where its name is
    another ablation's report, the first of ``<name>-2.md``, ... that is free or this ablation's own
    (:mod:`unetbench.report.owners`)."""
    from unetbench.report.figures import forest_figure
    from unetbench.report.owners import ablation_report_path, session_key

    manifest, runs = directory.read_runs()
    crossval = directory.read_crossval()
    summary = summarise(manifest, runs, crossval)
    records = [record for _, record in runs]
    baseline = next(record for entry, record in runs if entry.variant == BASELINE)
    destination = Path(reports_root).absolute() / manifest.challenge
    mine = {key for record in records if (key := session_key(record.sessions))}
    path = ablation_report_path(destination, directory.name, mine)
    folder = path.with_suffix("")
    directory.bundle(folder)
    charts = []
    if any(row.effects for row in summary.rows):
        for metric in summary.metrics:
            charts.append(f"forest-{metric}.png")
            forest_figure(summary, metric, folder / charts[-1])
    lines = _heading(manifest, directory, records, baseline, summary, folder)
    if summary.family is not None:
        lines += _primary_family(summary)
    selection = directory.read_selection()
    if selection is not None:
        lines += _selection(selection, summary)
    lines += _exploratory(summary, baseline.data.dataset, charts, folder.name)
    if summary.family is not None:
        lines += _compared(baseline, summary)
    lines += ["## What differs from the paper (the baseline)", ""]
    lines += [f"- {note}" for note in _paper_differences(baseline, manifest.folds)] + [""]
    atomic_write_text(path, "\n".join(lines))
    _write_csvs(summary, folder, path.with_suffix(".csv"), baseline.resolved_spec())
    return path, summary


def _hardware(records: list[RunRecord]) -> str:
    """Where the trained networks were trained: each processor or GPU with its count."""
    places: dict[str, int] = {}
    for record in records:
        if record.weights_from is None:
            hw = record.provenance.hardware
            where = f"{hw.gpu or hw.processor} ({hw.cpu_cores} CPU cores), device `{hw.device}`"
            places[where] = places.get(where, 0) + 1
    return "; ".join(f"{where}: {count} trained network(s)" for where, count in places.items())


def _heading(
    manifest, directory: AblationDir, records: list[RunRecord], baseline: RunRecord, summary, folder: Path
) -> list[str]:
    """Title, what superseded it, command, runs, commits, hardware, where the records are and, where its
    spec's settings were chosen on images it scores, the line that says so."""
    name = folder.name  # the ablation's name, or name-2, ... where another ablation's report had it
    commits = sorted(
        {
            (r.provenance.commit or "unknown")[:12] + ("+changes" if r.provenance.dirty else "")
            for r in records
        }
    )
    trained = sum(row.trained for row in summary.rows)
    folds = (
        f"{manifest.folds} contiguous folds of the labelled images (fold k evaluates, fold k+1 validates, "
        "the rest trains)"
        if manifest.folds
        else f"the spec's own split ({', '.join(baseline.data.split[baseline.data.scored])} evaluated)"
    )
    title = "cross-validation" if manifest.kind == "cross-validation" else "ablation"
    lines = [f"# {manifest.challenge}: {title} {name}", ""]
    superseded = directory.read_superseded()
    if superseded is not None:
        lines += [f"**Superseded** by {superseded.by}: {superseded.why}", ""]
    lines += [
        f"- command: `{manifest.command}`",
        f"- runs: {len(records)} ({trained} trained networks), {len(summary.rows)} variant(s), "
        f"{manifest.seeds} seed(s), on {folds}",
        f"- commit(s): {', '.join(f'`{c}`' for c in commits)}",
        f"- hardware: {_hardware(records)}",
        f"- records: [`{name}/`]({name}/) holds the manifest, the out-of-fold scores and "
        f"every run's `record.json`; `unetbench report {_shown(folder)}` renders this report again",
        "",
    ]
    scored = sorted({n for r in records for n in r.data.split[r.data.scored]})
    note = settings_chosen_note(baseline, scored)
    return lines + ([note, ""] if note else [])


def _effect_columns(summary: Summary, row: VariantRow) -> dict:
    """A variant's CSV columns for its effects: unadjusted for every metric, the family's for the primary."""
    entry = {}
    for metric in summary.metrics:
        if metric not in row.effects:
            continue
        effect = row.effects[metric].run_level
        entry.update(
            {
                f"{metric}_diff": effect.mean,
                f"{metric}_diff_low": effect.low,
                f"{metric}_diff_high": effect.high,
                f"{metric}_n": effect.n,
                f"{metric}_df": effect.df,
                f"{metric}_p": effect.p,
                f"{metric}_excludes_0": effect.excludes_zero,
            }
        )
    family = {r.variant: r for r in summary.family.rows} if summary.family else {}
    if row.variant in family:
        found, metric = family[row.variant], summary.family.metric
        post = found.posterior
        entry.update(
            {
                f"{metric}_family_low": found.family_low,
                f"{metric}_family_high": found.family_high,
                f"{metric}_p_holm": found.p_holm,
                f"{metric}_resolved": found.resolved,
                f"{metric}_mde": found.mde,
                f"{metric}_networks_needed": found.needed.networks,
                f"{metric}_floor": found.needed.floor,
                f"{metric}_rope": summary.family.rope,
                f"{metric}_p_better": post.better if post else None,
                f"{metric}_p_equivalent": post.equivalent if post else None,
                f"{metric}_p_worse": post.worse if post else None,
                f"{metric}_verdict": post.verdict if post else None,
            }
        )
    return entry


def _write_csvs(summary: Summary, folder: Path, variants_csv: Path, spec) -> None:
    import pandas as pd

    rows = []
    for row in summary.rows:
        name = switch_of(summary.own_overrides(row.variant), spec) if row.variant != BASELINE else None
        entry = {
            "variant": row.variant,
            "switch": SWITCHES[name].flag if name else "",  # what the variant is, whatever it was named
            "runs": row.runs,
            "trained": row.trained,
            "training_seconds": row.training_seconds,
        }
        for metric in summary.metrics:
            entry[f"{metric}_mean"], entry[f"{metric}_sd"] = row.scores[metric].mean, row.scores[metric].sd
            if metric in row.out_of_fold:
                entry[f"{metric}_oof_mean"] = row.out_of_fold[metric].mean
                entry[f"{metric}_oof_sd"] = row.out_of_fold[metric].sd
        entry.update(_effect_columns(summary, row))
        rows.append(entry)
    table = pd.DataFrame(rows).set_index("variant")
    atomic_write_text(variants_csv, table.round(10).to_csv())
    per_run = pd.DataFrame(
        [
            {
                "variant": r.variant,
                "fold": r.fold,
                "seed": r.seed_index,
                "run": r.run,
                "images": r.images,
                **r.scores,
            }
            for r in summary.runs
        ]
    )
    atomic_write_text(folder / RUNS_CSV, per_run.to_csv(index=False))
