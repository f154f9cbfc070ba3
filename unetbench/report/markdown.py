"""The Markdown report of a run, rendered from its ``record.json`` only.

``render_markdown(record, figures)`` is a pure function of the typed record (and of which figure files
exist); ``render_run_report`` writes it to ``<reports>/<challenge>/<run-id>.md`` with the figures beside
it in ``<run-id>/`` (the training curve drawn from the record, the overlays copied from the run folder).
A figure that is missing from the run folder is named as missing, never linked.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from unetbench import contention
from unetbench.atomic import atomic_path, atomic_write_text, check_folder
from unetbench.metrics import METRICS
from unetbench.results import ExecutionUsed, RunRecord
from unetbench.rundir import RunDir

_TABLE_2 = (
    'Table 2, whose "IOU" column is the challenge\'s SEG measure (the mean Jaccard index of each '
    "reference cell with the segment that covers more than half of it), the quantity the organisers ranked "
    "by; it is compared with this run's SEG, not with the pooled foreground IoU"
)
# The paper's numbers (Ronneberger, Fischer & Brox 2015), on the challenges' hidden test sets.
PAPER = {
    "isbi2012": ({"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}, "Table 1"),
    "phc-u373": ({"seg": 0.9203}, _TABLE_2),
    "dic-hela": ({"seg": 0.7756}, _TABLE_2),
}
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


def differences(record: RunRecord, overrides: list[str] | None = None) -> list[str]:
    """Every way this run's setting differs from the paper's, one line each; ``overrides``: the spec
    overrides to list (default: the record's)."""
    spec = record.resolved_spec()
    overrides = record.overrides if overrides is None else overrides
    notes = _data_differences(record, spec)
    model = spec.model
    if (model.depth, model.base_channels, model.padding) != (5, 64, "valid"):
        notes.append(
            f"Network: smaller than the paper's, depth {model.depth}, {model.base_channels} base channels, "
            f"{model.padding} padding, {record.parameters:,} parameters (paper: 5 levels, 64 to 1024 "
            "channels, unpadded, 31,030,658)."
        )
    if model.dropout != 0.5 or model.batch_norm:
        notes.append(
            f"Network: drop-out {model.dropout}{', batch normalisation' if model.batch_norm else ''} "
            "(the authors' release: element-wise 0.5 on the two deepest levels, no batch normalisation)."
        )
    training = spec.training
    notes.append(
        f"Training: {record.training.iterations} iterations; the paper trained for 10 hours on a 6 GB "
        "GPU and gives no iteration count."
    )
    processes = record.training.processes
    if processes > 1:
        notes.append(
            f"Training tiles: data-parallel over {processes} processes, {training.batch_size} tile(s) of "
            f"{training.tile_size} px each, an effective batch of {processes * training.batch_size} tiles "
            f"per step, at the spec's learning rate {training.learning_rate} (not scaled for the larger "
            "batch; paper: one 572 px tile per step on one GPU)."
        )
    elif (training.tile_size, training.batch_size) != (572, 1):
        notes.append(
            f"Training tiles: {training.batch_size} tile(s) of {training.tile_size} px per step (paper: one "
            "572 px tile)."
        )
    if (training.optimizer, training.momentum) != ("sgd", 0.99):
        notes.append(
            f"Optimiser: {training.optimizer} (lr {training.learning_rate}"
            + (f", momentum {training.momentum}" if training.optimizer == "sgd" else "")
            + "); the paper used SGD with momentum 0.99."
        )
    augmentation = spec.augmentation
    if not augmentation.elastic or (augmentation.elastic_spacing, augmentation.elastic_sigma) != (
        285.5,
        10.0,
    ):
        notes.append(
            "Elastic deformation: "
            + (
                f"control points {augmentation.elastic_spacing} px apart, {augmentation.elastic_sigma} px std"
                if augmentation.elastic
                else "off"
            )
            + " (paper: a 3x3 grid over the 572 px tile, 10 px std)."
        )
    weightmap = spec.weightmap
    if not weightmap.enabled or (weightmap.w0, weightmap.sigma) != (10.0, 5.0):
        notes.append(
            "Weight map: "
            + (f"w0 {weightmap.w0}, sigma {weightmap.sigma} px" if weightmap.enabled else "no border term")
            + " (paper: w0 = 10, sigma = 5 px)."
        )
    inference = spec.inference
    if inference.tiling != "overlap-tile":
        notes.append("Prediction: independent zero-padded tiles without context (paper: overlap-tile).")
    notes.append(_tta_difference(spec))
    notes.append(_precision_difference(spec, record.provenance.hardware.device, record.execution))
    if overrides:
        notes.append("Overrides of the spec file: " + ", ".join(f"`{o}`" for o in overrides) + ".")
    return notes


def _precision_difference(spec, device: str, used: ExecutionUsed | None = None) -> str:
    """The precision line of a run's differences: what ran (``used``, the record's), else what ``auto``
    meant when records did not say: bf16 channels_last on CUDA, float32 contiguous on every CPU."""
    if used is None:
        cuda = device.startswith("cuda")
        training, inference = spec.training, spec.inference

        def chosen(value: str, on_cuda: str, on_cpu: str) -> str:
            return value if value != "auto" else on_cuda if cuda else on_cpu

        used = ExecutionUsed(
            training_precision=chosen(training.precision, "bf16", "fp32"),
            training_memory_format=chosen(training.memory_format, "channels_last", "contiguous"),
            compiled=training.compile,
            inference_precision=chosen(inference.precision, "bf16", "fp32"),
            inference_memory_format=chosen(inference.memory_format, "channels_last", "contiguous"),
            native_bf16=False,
        )
    if {used.training_precision, used.inference_precision} == {"fp32"} and not used.compiled:
        return "Precision: float32 throughout, as in the paper."
    return (
        f"Precision: training {used.describe_training()}; prediction {used.describe_inference()}; loss and "
        "soft-max in float32 (the paper's Caffe computed in float32)."
    )


def _data_differences(record: RunRecord, spec) -> list[str]:
    dataset = record.data.dataset
    trained_on = len(record.data.split.get("train", []))
    if dataset == "isbi2012":
        return [
            f"Data: scored on {len(record.data.split[record.data.scored])} held-out training slices, not on "
            "the challenge's 30 test slices, whose labels were never published; trained on "
            f"{trained_on} slices (the paper: all 30)."
        ]
    if dataset in ("phc-u373", "dic-hela"):
        post = spec.postprocess
        removed = (
            f"segments of at most {post.remove_small} px removed" if post.remove_small else "no size filter"
        )
        return [
            "Data: scored on the annotated frames of the held-out sequence, not on the challenge's hidden "
            "test sequences.",
            f"Instances: P(cell) > 0.5 (the arg-max), {post.connectivity}-connected components, {removed}"
            f"{', holes filled' if post.fill_holes else ''}; the release: arg-max, 8-connected, segments of "
            "at most 500 px removed (PhC-U373), and a field-of-interest rule at the border that is not "
            "applied here.",
        ]
    return [f"Data: `{dataset}` is synthetic; these numbers show the pipeline works, the paper has none."]


def _tta_difference(spec) -> str:
    paper = (
        "the paper averaged the image and 7 rotated versions (Table 1)"
        if spec.data.dataset == "isbi2012"
        else "the authors' release averaged mirrored versions for the cell data"
    )
    done = {
        "none": "none, one prediction per image",
        "flips": "the image and its 3 mirror images, averaged",
        "dihedral": "the image and its 7 rotated and mirrored versions, averaged",
    }[spec.inference.tta]
    return f"Test-time averaging: {done}; {paper}."


def _sessions(record: RunRecord) -> list[str]:
    cores = record.provenance.hardware.cpu_cores
    if len(record.sessions) == 1:
        s = record.sessions[0]
        shared = contention.shared_note(s.others_busy, cores)
        return [
            f"- command: `{s.command}`",
            f"- started {s.started}, finished {s.ended}" + (f"; {shared}" if shared else ""),
        ]
    lines = [f"- {len(record.sessions)} sessions (a resume continues from the last checkpoint):"]
    for s in record.sessions:
        shared = contention.shared_note(s.others_busy, cores)
        lines.append(
            f"  - `{s.command}` on {s.host}, {s.started} to {s.ended or 'unknown (killed)'}: iterations "
            f"{s.first_iteration}-{s.last_iteration}, {s.outcome}" + (f"; {shared}" if shared else "")
        )
    return lines


def render_markdown(record: RunRecord, figure_dir: str | None = None, present: set[str] | None = None) -> str:
    """The report text. ``figure_dir``: where the figures are, relative to the report; ``present``: the
    figure files that exist there (default: all the record names)."""
    metrics = record.metrics
    trained, untrained = record.trained.aggregate, record.untrained.aggregate
    paper, source = PAPER.get(record.data.dataset, ({}, ""))
    prov = record.provenance
    commit = (prov.commit or "unknown")[:12] + (" (with uncommitted changes)" if prov.dirty else "")
    hw = prov.hardware
    present = set(record.figures) | {CURVE} if present is None else present
    lines = [
        f"# {record.challenge}: run {record.run_id}",
        "",
        *_sessions(record),
        f"- commit: `{commit}`, unetbench {prov.versions.get('unetbench')}, "
        f"torch {prov.versions.get('torch')}",
        f"- hardware: {hw.gpu or hw.processor} ({hw.cpu_cores} CPU cores), device `{hw.device}`",
        f"- scored on: {scored_on(record)}",
        "- time: "
        + ", ".join(f"{k.replace('_', ' ')} {v:.1f} s" for k, v in sorted(record.timings_seconds.items())),
        "",
        "## Scores",
        "",
        "| metric | this run | untrained network | paper (hidden test set, not the same data) | better |",
        "|---|---|---|---|---|",
    ]
    for name in metrics:
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
            f"Paper: Ronneberger, Fischer & Brox (2015), {source}, on the challenge's hidden test data.",
            "",
        ]
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
    per_image = record.trained.per_image
    if per_image:
        lines += [
            "## Per image",
            "",
            "| image | " + " | ".join(metrics) + " |",
            "|---|" + "---|" * len(metrics),
        ]
        for key, values in per_image.items():
            lines.append(f"| {key} | " + " | ".join(_fmt(values.get(n)) for n in metrics) + " |")
        lines.append("")
    if figure_dir is not None and record.figures:
        lines += [
            "## Examples",
            "",
            "Input, ground truth, P(cell), errors at 0.5 (red: false cell, blue: missed cell).",
            "",
        ]
        lines += [_figure(name, name, figure_dir, present) for name in record.figures] + [""]
    from unetbench.spec import dump_spec

    lines += ["## Spec", "", "```toml", dump_spec(record.resolved_spec()).rstrip(), "```", ""]
    return "\n".join(lines)


def _figure(alt: str, name: str, figure_dir: str, present: set[str]) -> str:
    if name in present:
        return f"![{alt}]({figure_dir}/{name})"
    return f"*({name} is missing from the run folder; it was deleted after the run)*"


def render_run_report(run_path: Path, report_root: Path) -> Path:
    """Write ``<report_root>/<challenge>/<run-id>.md`` and its figures from the run's record; return the
    report's absolute path."""
    from unetbench.report.figures import training_curve_figure

    run_dir = RunDir(run_path)
    record = run_dir.read_record()
    destination = Path(report_root).absolute() / record.challenge
    figures = destination / record.run_id
    check_folder(destination, what="--reports")
    training_curve_figure(record, figures / CURVE)
    for name in record.figures:
        source = run_dir.figures / name
        if source.is_file():
            with atomic_path(figures / name) as temporary:
                shutil.copyfile(source, temporary)
    present = {name for name in (CURVE, *record.figures) if (figures / name).is_file()}
    path = destination / f"{record.run_id}.md"
    atomic_write_text(path, render_markdown(record, figure_dir=record.run_id, present=present))
    return path
