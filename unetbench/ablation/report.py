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

from pathlib import Path

from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import BASELINE
from unetbench.ablation.report_answer import _primary_family, _selection
from unetbench.ablation.report_exploratory import RUNS_CSV, _compared, _exploratory
from unetbench.ablation.summary import Summary, VariantRow, summarise
from unetbench.ablation.switches import SWITCHES, switch_of
from unetbench.records.run_record import RunRecord
from unetbench.report.departures import differences, settings_chosen_note
from unetbench.system.atomic_writes import atomic_write_text


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
