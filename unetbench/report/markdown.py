"""The Markdown report of a run, rendered from its ``record.json`` only.

``render_markdown(record, figures)`` is a pure function of the typed record (and of which figure files
exist); ``render_run_report`` writes it to ``<reports>/<challenge>/<run-id>.md`` with the figures beside
it in ``<run-id>/`` (the training curve drawn from the record, the overlays copied from the run folder).
A figure that is missing from the run folder is named as missing, never linked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from unetbench.metrics import METRICS
from unetbench.records.run_folder import RunDir
from unetbench.records.run_record import RunRecord
from unetbench.report.departures import differences, other_data, settings_chosen_note
from unetbench.spec.paper import PAPER
from unetbench.system import cpu_share
from unetbench.system.atomic_writes import atomic_path, atomic_write_text, check_folder

CURVE = "training-curve.png"


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}" if value != 0 else "0"
    return str(value)


def _images(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= 6 else f"{', '.join(names[:3])}, ..., {names[-1]}"


def scored_on(record: RunRecord) -> str:
    """The line that says what the scores are of: which images, which data, which weights."""
    names = record.data.split[record.data.scored]
    best = record.training.best
    weights = (
        f"the weights of iteration {record.training.scored_iteration} (best validation {best.metric} "
        f"{_fmt(best.value)})"
        if best
        else f"the weights of the last iteration, {record.training.scored_iteration} (no validation)"
    )
    return (
        f"the {record.data.scored} split, {len(names)} image{'s' if len(names) != 1 else ''} "
        f"({_images(names)}) of `{record.data.dataset}` from `{record.data.location}`, with {weights}"
    )


def _sessions(record: RunRecord) -> list[str]:
    cores = record.provenance.hardware.cpu_cores
    if len(record.sessions) == 1:
        s = record.sessions[0]
        shared = cpu_share.shared_note(s.others_busy, cores)
        return [
            f"- command: `{s.command}`",
            f"- started {s.started}, finished {s.ended}" + (f"; {shared}" if shared else ""),
        ]
    lines = [f"- {len(record.sessions)} sessions (a resume continues from the last checkpoint):"]
    for s in record.sessions:
        shared = cpu_share.shared_note(s.others_busy, cores)
        lines.append(
            f"  - `{s.command}` on {s.host}, {s.started} to {s.ended or 'unknown (killed)'}: iterations "
            f"{s.first_iteration}-{s.last_iteration}, {s.outcome}" + (f"; {shared}" if shared else "")
        )
    return lines


def render_markdown(record: RunRecord, figure_dir: str | None = None, present: set[str] | None = None) -> str:
    """The report text. ``figure_dir``: where the figures are, relative to the report; ``present``: the
    figure files that exist there (default: all the record names)."""
    from unetbench.spec import dump_spec

    present = set(record.figures) | {CURVE} if present is None else present
    lines = [f"# {record.challenge}: run {record.run_id}", "", *_where_and_when(record), ""]
    lines += _scores(record)
    if note := settings_chosen_note(record, record.data.split[record.data.scored]):
        lines += [note, ""]
    lines += ["What differs from the paper's setting:", ""] + [f"- {note}" for note in differences(record)]
    lines += ["", "## Training", ""]
    if figure_dir is not None:
        lines += [_figure("training curve", CURVE, figure_dir, present), ""]
    curve = record.training.curve
    if curve:
        lines += [
            f"Loss {curve[0].loss:.4f} at iteration {curve[0].iteration}, "
            f"{curve[-1].loss:.4f} at iteration {curve[-1].iteration}.",
            "",
        ]
    lines += _per_image(record)
    if figure_dir is not None and record.figures:
        lines += [
            "## Examples",
            "",
            "Input, ground truth, P(cell), errors at 0.5 (red: false cell, blue: missed cell).",
            "",
        ]
        lines += [_figure(name, name, figure_dir, present) for name in record.figures] + [""]
    lines += ["## Spec", "", "```toml", dump_spec(record.resolved_spec()).rstrip(), "```", ""]
    return "\n".join(lines)


def _where_and_when(record: RunRecord) -> list[str]:
    """Sessions, commit, hardware, the scored images and the times."""
    prov = record.provenance
    commit = (prov.commit or "unknown")[:12] + (" (with uncommitted changes)" if prov.dirty else "")
    hw = prov.hardware
    return [
        *_sessions(record),
        f"- commit: `{commit}`, unetbench {prov.versions.get('unetbench')}, "
        f"torch {prov.versions.get('torch')}",
        *([f"- spec: {record.spec_source}"] if record.spec_source else []),  # records since 0.2.0
        f"- hardware: {hw.gpu or hw.processor} ({hw.cpu_cores} CPU cores), device `{hw.device}`",
        f"- scored on: {scored_on(record)}",
        "- time: "
        + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in sorted(record.timings_seconds.items())),
    ]


def _scores(record: RunRecord) -> list[str]:
    """The scores table: this run, the untrained network, the paper."""
    trained, untrained = record.trained.aggregate, record.untrained.aggregate
    paper, source = PAPER.get(record.data.dataset, ({}, ""))
    lines = [
        "## Scores",
        "",
        "| metric | this run | untrained network | paper (hidden test set, not the same data) | better |",
        "|---|---|---|---|---|",
    ]
    for name in record.metrics:
        info = METRICS[name]
        lines.append(
            f"| {info.title} | **{_fmt(trained.get(name))}** | {_fmt(untrained.get(name))} | "
            f"{_fmt(paper[name]) if name in paper else '-'} | "
            f"{'higher' if info.higher_is_better else 'lower'} |"
        )
    lines += [""]
    if "warping_error" in trained:
        lines += [
            "The warping error counts only splits and mergers: a constant prediction makes almost none, "
            "so an untrained network can score well on it alone. Read it with the Rand error.",
            "",
        ]
    if paper:
        lines += [
            f"Paper: Ronneberger, Fischer & Brox (2015), {source}, on the challenge's hidden test data. "
            + other_data(record.data.dataset, len(record.data.split[record.data.scored])),
            "",
        ]
    return lines


def _per_image(record: RunRecord) -> list[str]:
    per_image, metrics = record.trained.per_image, record.metrics
    if not per_image:
        return []
    lines = ["## Per image", "", "| image | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for key, values in per_image.items():
        lines.append(f"| {key} | " + " | ".join(_fmt(values.get(n)) for n in metrics) + " |")
    return lines + [""]


def _figure(alt: str, name: str, figure_dir: str, present: set[str]) -> str:
    if name in present:
        return f"![{alt}]({figure_dir}/{name})"
    return f"*({name} is missing from the run folder; it was deleted after the run)*"


def render_run_report(run_path: Path, report_root: Path) -> Path:
    """Write ``<report_root>/<challenge>/<run-id>.md`` and its figures from the run's record, with a copy
    of the record beside them (the run the report is of); return the report's absolute path. Where that
    name is another run's report, the first of ``<run-id>-2.md``, ... that is free or this run's own
    (:mod:`unetbench.report.owners`)."""
    from unetbench.report.figures import training_curve_figure
    from unetbench.report.owners import run_report_path, session_key

    run_dir = RunDir(run_path)
    record = run_dir.read_record()
    destination = Path(report_root).absolute() / record.challenge
    check_folder(destination, what="--reports")
    path = run_report_path(destination, record.run_id, session_key(record.sessions))
    figures = path.with_suffix("")
    if run_dir.path.resolve() != figures.resolve():
        with atomic_path(figures / RunDir.RECORD) as temporary:
            shutil.copyfile(run_dir.record_file, temporary)
    training_curve_figure(record, figures / CURVE)
    for name in record.figures:
        source = run_dir.figures / name
        if source.is_file():
            with atomic_path(figures / name) as temporary:
                shutil.copyfile(source, temporary)
    present = {name for name in (CURVE, *record.figures) if (figures / name).is_file()}
    atomic_write_text(path, render_markdown(record, figure_dir=figures.name, present=present))
    return path
