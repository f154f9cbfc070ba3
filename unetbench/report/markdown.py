"""The Markdown report of a run, rendered from its ``record.json`` only.

``render_markdown(record)`` is a pure function of the record; ``render_run_report`` writes it to
``<reports>/<challenge>/<run-id>.md`` with the figures beside it in ``<run-id>/`` (the training curve
drawn from the record, the overlays copied from the run directory).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from unetbench.metrics import METRICS
from unetbench.results import atomic_write_bytes, read_record

# The paper's numbers (Ronneberger, Fischer & Brox 2015), on the challenges' hidden test sets.
PAPER = {
    "isbi2012": ({"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}, "Table 1"),
    "phc-u373": ({"seg": 0.9203}, "Table 2, reported as IoU (the challenge's segmentation measure)"),
    "dic-hela": ({"seg": 0.7756}, "Table 2, reported as IoU (the challenge's segmentation measure)"),
}


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}" if value != 0 else "0"
    return str(value)


def _differences(record: dict) -> list[str]:
    spec = record["spec"]
    notes = []
    dataset = spec["data"]["dataset"]
    split = record["data"]["split"]
    if dataset in ("isbi2012",):
        notes.append(
            f"Scored on {len(split['evaluation'])} held-out training slices "
            f"({', '.join(split['evaluation'])}), "
            "not on the challenge's 30 test slices, whose labels were never published."
        )
    elif dataset in ("phc-u373", "dic-hela"):
        notes.append(
            "Scored on the annotated frames of the held-out sequence, not on the challenge's hidden test "
            "sequences; instances are the 4-connected components of P > 0.5."
        )
    else:
        notes.append(
            f"Data set `{dataset}` is synthetic: these numbers show the pipeline works; the paper has none."
        )
    model = spec["model"]
    paper_model = (model["depth"], model["base_channels"], model["padding"]) == (5, 64, "valid")
    if not paper_model:
        notes.append(
            f"The network is smaller than the paper's: depth {model['depth']}, {model['base_channels']} base "
            f"channels, {record['model']['parameters']:,} parameters "
            "(paper: 5 levels, 64 channels, 31,030,658)."
        )
    training = spec["training"]
    notes.append(
        f"Training: {record['training']['iterations']} iterations of {training['batch_size']} tile(s) of "
        f"{training['tile_size']} px, {training['optimizer']} (lr {training['learning_rate']}), on "
        f"{record['hardware']['device']}; the paper trained for 10 hours on a GPU."
    )
    if record["overrides"]:
        notes.append("Overrides of the spec file: " + ", ".join(f"`{o}`" for o in record["overrides"]) + ".")
    return notes


def render_markdown(record: dict, figure_dir: str | None = None) -> str:
    """The report text. ``figure_dir``: where the figures are, relative to the report."""
    spec = record["spec"]
    metrics = record["metrics"]
    trained, untrained = metrics["trained"]["aggregate"], metrics["untrained"]["aggregate"]
    paper, source = PAPER.get(spec["data"]["dataset"], ({}, ""))
    git = record["git"]
    commit = (git.get("commit") or "unknown")[:12] + (
        " (with uncommitted changes)" if git.get("dirty") else ""
    )
    hw = record["hardware"]
    device = hw.get("gpu") or hw["processor"]
    lines = [
        f"# {record['challenge']}: run {record['run_id']}",
        "",
        f"- command: `{record['command']}`",
        f"- commit: `{commit}`, unetbench {record['versions']['unetbench']}, "
        f"torch {record['versions']['torch']}",
        f"- hardware: {device} ({hw['cpu_cores']} CPU cores), device `{hw['device']}`",
        f"- started {record['started']}, finished {record['finished']}",
        "- time: "
        + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in record["timings_seconds"].items()),
        "",
        "## Scores",
        "",
        "| metric | this run | untrained network | paper | better |",
        "|---|---|---|---|---|",
    ]
    for name in spec["evaluation"]["metrics"]:
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
        lines.append(
            f"Paper: Ronneberger, Fischer & Brox (2015), {source}, on the challenge's hidden test data."
        )
        lines.append("")
    lines += ["What differs from the paper's setting:", ""] + [f"- {note}" for note in _differences(record)]
    best = record["training"]["best"]
    lines += [
        "",
        f"Scores use the `{record['training']['checkpoint_used']}` checkpoint"
        + (
            f" (best validation {best['metric']} {_fmt(best['value'])} at iteration {best['iteration']})."
            if best
            else "."
        ),
        "",
        "## Training",
        "",
    ]
    if figure_dir is not None:
        lines += [f"![training curve]({figure_dir}/training-curve.png)", ""]
    curve = record["training"]["curve"]
    if curve:
        lines.append(
            f"Loss {curve[0]['loss']:.4f} at iteration {curve[0]['iteration']}, "
            f"{curve[-1]['loss']:.4f} at iteration {curve[-1]['iteration']}."
        )
        lines.append("")
    per_image = metrics["trained"]["per_image"]
    if per_image:
        names = spec["evaluation"]["metrics"]
        lines += ["## Per image", "", "| image | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for key, values in per_image.items():
            lines.append(f"| {key} | " + " | ".join(_fmt(values.get(n)) for n in names) + " |")
        lines.append("")
    if figure_dir is not None and record.get("figures"):
        lines += [
            "## Examples",
            "",
            "Input, ground truth, P(cell), errors at 0.5 (red: false cell, blue: missed cell).",
            "",
        ]
        lines += [f"![{name}]({figure_dir}/{name})" for name in record["figures"]] + [""]
    lines += ["## Spec", "", "```toml", record["spec_toml"].rstrip(), "```", ""]
    return "\n".join(lines)


def render_run_report(run_dir: Path, report_root: Path) -> Path:
    """Write ``<report_root>/<challenge>/<run-id>.md`` and its figures from ``run_dir``'s record."""
    from unetbench.report.figures import training_curve_figure

    record = read_record(run_dir)
    destination = report_root / record["challenge"]
    figures = destination / record["run_id"]
    figures.mkdir(parents=True, exist_ok=True)
    training_curve_figure(record, figures / "training-curve.png")
    for name in record.get("figures", []):
        source = run_dir / "figures" / name
        if source.is_file():
            shutil.copyfile(source, figures / name)
    path = destination / f"{record['run_id']}.md"
    atomic_write_bytes(path, render_markdown(record, figure_dir=record["run_id"]).encode())
    return path
