"""Every way a run departs from the paper, in the lines its report lists: the rows of
:data:`unetbench.spec.paper.PAPER_SETTINGS` where the spec departs, and the lines that depend on the run's
record (data, iterations, the loss's scale, the scored weights, the precision that ran, the overrides)."""

from __future__ import annotations

from typing import Any

from unetbench.records.run_record import RunRecord
from unetbench.spec.paper import PAPER, PAPER_PARAMETERS, PAPER_SETTINGS, Setting
from unetbench.system.execution import ExecutionUsed


def settings_table(specs: dict[str, Any]) -> list[str]:
    """The Markdown table of :data:`PAPER_SETTINGS` against ``specs`` (name -> checked spec): a row for
    each setting that applies to one of them, the paper's words, and each spec's values where it departs
    ("as the paper" where it does not, "-" where the row is about other data, "all runs" for a note that
    holds for every run)."""
    lines = ["| setting | the paper | " + " | ".join(specs) + " |", "|---" * (len(specs) + 2) + "|"]
    for row in PAPER_SETTINGS:
        if any(row.kind in ("", spec.kind) for spec in specs.values()):
            cells = [_cell(row, spec) for spec in specs.values()]
            lines.append(f"| {row.topic} | {row.says} | " + " | ".join(cells) + " |")
    return lines


def _cell(row: Setting, spec) -> str:
    if row.kind not in ("", spec.kind):
        return "-"
    if not row.keys:
        return "all runs"
    return "as the paper" if row.difference(spec, spec.kind) is None else row.shown(spec)


def differences(record: RunRecord, overrides: list[str] | None = None) -> list[str]:
    """Every way this run's setting differs from the paper's, one line each; ``overrides``: the spec
    overrides to list (default: the record's)."""
    spec = record.resolved_spec()
    overrides = record.overrides if overrides is None else overrides
    notes = _data_differences(record, spec)
    notes += [line for row in PAPER_SETTINGS if (line := row.difference(spec, record.kind)) is not None]
    if record.parameters != PAPER_PARAMETERS:
        notes.append(
            f"Network size: {record.parameters:,} parameters (paper's network: {PAPER_PARAMETERS:,})."
        )
    training = spec.training
    notes.append(
        f"Training: {record.training.iterations} iterations; the paper trained for 10 hours on a 6 GB "
        "GPU and gives no iteration count."
    )
    pixels = record.training.effective_batch or training.batch_size
    pixels *= record.output_size**2
    notes.append(
        f"Loss scale: the weighted cross-entropy is the mean over the {pixels:,} output pixels of a step "
        f"(Eq. 1 sums them), so learning rate {training.learning_rate} here equals "
        f"{training.learning_rate / pixels:.3g} on Eq. 1's sum; the paper gives no rate."
    )
    if record.training.processes > 1:
        notes.append(
            f"Training tiles: data-parallel over {record.training.processes} processes, an effective "
            f"batch of "
            f"{record.training.effective_batch} tiles per step at the spec's learning rate (not scaled)."
        )
    best = record.training.best
    if best is not None:
        notes.append(
            f"Scored weights: those of the best validation {best.metric} (iteration {best.iteration} of "
            f"{record.training.iterations}); the paper scores the network it trained, and does not say it "
            "chose a checkpoint."
        )
    notes.append(_precision_difference(spec, record.provenance.hardware.device, record.execution))
    if overrides:
        notes.append("Overrides of the spec file: " + ", ".join(f"`{o}`" for o in overrides) + ".")
    return notes


def other_data(dataset: str, scored: int) -> str:
    """What the paper's scores beside ours are: other data in kind, not only in number."""
    if dataset == "isbi2012":
        return (
            "The data differ in kind: the paper's row scores the 30 hidden test slices with a network "
            f"trained on all 30 labelled ones; ours score {scored} labelled slices held out from training."
        )
    return "The data differ: the paper's row scores the challenge's hidden test sequences."


def settings_chosen_note(record: RunRecord, scored: list[str]) -> str | None:
    """The line a report carries when it scores images its spec's settings were chosen on
    (``report.settings_chosen_on``); ``scored``: the image names it scores (``evaluation/25``)."""
    chosen = list(record.spec.get("report", {}).get("settings_chosen_on", []))
    names = {name.split("/", 1)[-1] for name in scored}
    hit = [name for name in chosen if name in names]
    if not hit:
        return None
    return (
        f"Settings chosen on scored images: this spec's settings were chosen on images {', '.join(chosen)} "
        f"(`report.settings_chosen_on`), not on validation images alone, and {len(hit)} of the images "
        f"scored here ({', '.join(hit)}) are among them: their scores are optimistic."
    )


def _precision_difference(spec, device: str, used: ExecutionUsed | None = None) -> str:
    """The precision line of a run's differences: what ran (``used``, the record's), else what ``auto``
    meant when records did not say: bf16 channels_last on CUDA; on a CPU it depended on the processor,
    which the line says."""
    auto = {spec.training.precision, spec.inference.precision} == {"auto"}
    if used is None and auto and not device.startswith("cuda"):
        # records from before `execution` was recorded: on the CPU `auto` depended on the processor
        return (
            "Precision: `auto`, not recorded by the unetbench that ran (on a CPU, by version and processor: "
            "float32, or bf16 autocast where the processor computes bf16 in hardware); loss and soft-max in "
            "float32."
        )
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
    if dataset in PAPER:  # the Cell Tracking Challenge sets
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
