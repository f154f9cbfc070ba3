"""The exploratory part of an ablation's report (every metric, unadjusted: the out-of-fold scores, each
variant's scores and intervals, the per-run table, the per-image view) and what each variant compared,
in the spec's numbers."""

from __future__ import annotations

from unetbench.ablation.plan import BASELINE
from unetbench.ablation.report_tables import _arrow, _num, _spread, _table, _training_time
from unetbench.ablation.summary import Summary, VariantRow
from unetbench.ablation.switches import SWITCHES, no_tiling_tile, switch_of
from unetbench.model.sizes import output_size
from unetbench.records.run_record import RunRecord
from unetbench.report.departures import other_data
from unetbench.spec.paper import PAPER

RUNS_CSV = "runs.csv"  # a row per run: every metric


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
