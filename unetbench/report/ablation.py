"""The report of an ablation or a cross-validation, rendered from its folder's typed files only.

``<reports>/<challenge>/<name>.md`` with, beside it in ``<name>/``: a forest plot per metric (Δ with its
interval per variant, a zero line), ``<name>.csv`` (a row per variant) and ``runs.csv`` (a row per run),
and the bundle that renders the report again (``ablation.json``, ``crossval.json``,
``records/<run>/record.json``; ``unetbench report <reports>/<challenge>/<name>``).

The statistics are :mod:`unetbench.ablation.summary`'s: the unit is a trained network.
"""

from __future__ import annotations

import math
from pathlib import Path

from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import BASELINE, no_tiling_tile
from unetbench.ablation.summary import Spread, Summary, VariantRow, summarise
from unetbench.atomic import atomic_write_text
from unetbench.report.paper import PAPER, differences
from unetbench.results import RunRecord

RUNS_CSV = "runs.csv"


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


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


def variant_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Header and rows: each variant's run-level scores and, for a switch, Δ with its interval."""
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


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _out_of_fold(summary: Summary, dataset: str) -> list[str]:
    if not any(row.out_of_fold for row in summary.rows):
        return []
    paper, where = PAPER.get(dataset, ({}, ""))
    header = ["variant"] + [_arrow(summary, m) for m in summary.metrics]
    rows = [
        [row.variant] + [_spread(row.out_of_fold.get(m)) for m in summary.metrics] for row in summary.rows
    ]
    if paper:
        rows.append(
            ["paper (hidden test set, not the same data)"] + [_num(paper.get(m)) for m in summary.metrics]
        )
    seeds = "the mean ± standard deviation over seeds" if summary.seeds > 1 else "one seed"
    lines = [
        "## Cross-validated scores (out of fold)",
        "",
        f"Every one of the {summary.out_of_fold_images} labelled images predicted by the network of the fold "
        "that did not train on it, all scored as one set with the challenge's own metrics "
        f"({seeds})."
        + (
            " These are all 30 labelled slices, the size of the hidden test stack of the paper's Table 1."
            if dataset == "isbi2012"
            else ""
        ),
        "",
        *_table(header, rows),
        "",
    ]
    if paper:
        lines += [f"Paper: Ronneberger, Fischer & Brox (2015), {where}.", ""]
    return lines


def _per_run(summary: Summary) -> list[str]:
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
        f"## Per {'fold and seed' if summary.folds else 'seed'}: run-level {primary}",
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
        "## Second view: per-image means",
        "",
        "The same paired runs, each scored by the mean of its per-image scores instead of the challenge's "
        "score of its images as a whole; same test, same n.",
        "",
        *_table(header, rows),
        "",
    ]


def _compared(record: RunRecord, summary: Summary) -> list[str]:
    """Each variant's overrides, and what the variants that need it compare, in the spec's numbers."""
    spec = record.resolved_spec()
    lines = [
        "## What was compared",
        "",
        "Overrides of each variant (beside the spec file's, folds and seeds left out):",
        "",
    ]
    for row in summary.rows:
        lines.append(
            f"- {row.variant}: " + (", ".join(f"`{o}`" for o in row.overrides) or "none (the spec file)")
        )
    lines.append("")
    if any(row.variant == "no-tiling" for row in summary.rows):
        tile = no_tiling_tile(spec)
        lines.append(
            f"- no-tiling: a same-padded network trained and predicting on {tile} px tiles without context "
            f"(the valid network's output for the {spec.training.tile_size} px training tile, rounded down "
            f"to the pooling factor), against overlap-tile prediction with {spec.inference.tile_size} px "
            "input tiles and mirrored context."
        )
    borrowed = [row.variant for row in summary.rows if row.runs and not row.trained]
    if borrowed:
        lines.append(
            f"- {', '.join(borrowed)}: predicted with the scored weights of the baseline run of the same "
            "fold and seed (their records name it), so each pair differs in prediction alone."
        )
    return lines


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
    """Write the report (module docstring); return its absolute path and the summary."""
    from unetbench.report.figures import forest_figure

    manifest, runs = directory.read_runs()
    crossval = directory.read_crossval()
    summary = summarise(manifest, runs, crossval)
    records = [record for _, record in runs]
    baseline = next(record for entry, record in runs if entry.variant == BASELINE)
    destination = Path(reports_root).absolute() / manifest.challenge
    folder = destination / directory.name
    directory.bundle(folder)
    charts = []
    if any(row.effects for row in summary.rows):
        for metric in summary.metrics:
            charts.append(f"forest-{metric}.png")
            forest_figure(summary, metric, folder / charts[-1])
    lines = _heading(manifest, directory.name, records, baseline, summary, folder)
    lines += _out_of_fold(summary, baseline.data.dataset)
    header, rows = variant_table(summary)
    lines += [
        "## What each variant is worth" if summary.rows[1:] else "## The runs",
        "",
        summary.caption(),
        "",
        *_table(header, rows),
        "",
    ]
    if charts:
        lines += [f"![{name}]({directory.name}/{name})" for name in charts] + [""]
    lines += _per_run(summary) + _second_view(summary)
    lines += _compared(baseline, summary)
    lines += ["", "## What differs from the paper (the baseline)", ""]
    lines += [f"- {note}" for note in _paper_differences(baseline, manifest.folds)] + [""]
    path = destination / f"{directory.name}.md"
    atomic_write_text(path, "\n".join(lines))
    _write_csvs(summary, folder, destination / f"{directory.name}.csv")
    return path, summary


def _heading(
    manifest, name: str, records: list[RunRecord], baseline: RunRecord, summary, folder: Path
) -> list[str]:
    """Title, command, runs, commits, hardware and where the records are."""
    commits = sorted(
        {
            (r.provenance.commit or "unknown")[:12] + ("+changes" if r.provenance.dirty else "")
            for r in records
        }
    )
    hw = baseline.provenance.hardware
    trained = sum(row.trained for row in summary.rows)
    folds = (
        f"{manifest.folds} contiguous folds of the labelled images (fold k evaluates, fold k+1 validates, "
        "the rest trains)"
        if manifest.folds
        else f"the spec's own split ({', '.join(baseline.data.split[baseline.data.scored])} evaluated)"
    )
    title = "cross-validation" if manifest.kind == "cross-validation" else "ablation"
    return [
        f"# {manifest.challenge}: {title} {name}",
        "",
        f"- command: `{manifest.command}`",
        f"- runs: {len(records)} ({trained} trained networks), {len(summary.rows)} variant(s), "
        f"{manifest.seeds} seed(s), on {folds}",
        f"- commit(s): {', '.join(f'`{c}`' for c in commits)}",
        f"- hardware: {hw.gpu or hw.processor} ({hw.cpu_cores} CPU cores), device `{hw.device}`",
        f"- records: [`{name}/`]({name}/) holds the manifest, the out-of-fold scores and "
        f"every run's `record.json`; `unetbench report {_shown(folder)}` renders this report again",
        "",
    ]


def _write_csvs(summary: Summary, folder: Path, variants_csv: Path) -> None:
    import pandas as pd

    rows = []
    for row in summary.rows:
        entry = {
            "variant": row.variant,
            "runs": row.runs,
            "trained": row.trained,
            "training_seconds": row.training_seconds,
        }
        for metric in summary.metrics:
            entry[f"{metric}_mean"], entry[f"{metric}_sd"] = row.scores[metric].mean, row.scores[metric].sd
            if metric in row.out_of_fold:
                entry[f"{metric}_oof_mean"] = row.out_of_fold[metric].mean
                entry[f"{metric}_oof_sd"] = row.out_of_fold[metric].sd
            if metric in row.effects:
                effect = row.effects[metric].run_level
                entry.update(
                    {
                        f"{metric}_diff": effect.mean,
                        f"{metric}_diff_low": effect.low,
                        f"{metric}_diff_high": effect.high,
                        f"{metric}_n": effect.n,
                        f"{metric}_df": effect.df,
                        f"{metric}_resolved": effect.resolved,
                    }
                )
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
