"""Loading a challenge spec: its own rules (:mod:`unetbench.spec`) and the checks against the registries.

``spec`` knows the shape of a spec; the data set registry (:mod:`unetbench.datasets`) and the metric
table (:mod:`unetbench.metrics`) know what exists. This module sits above all three, so none of them
imports another in a circle. Everything in unetbench reads specs through :func:`load_spec` and changes
them through :func:`apply_overrides`.

Checks made here, each a :class:`~unetbench.errors.SpecError` naming the file and the key:

- the data set exists; ``data.root`` only for data read from disk; ``[data.synthetic]`` only for the
  generated sets (which get its defaults when it is left out); split indices within a generated set;
  sequence splits only for data sets with sequences;
- every metric fits the data set's kind (and gets a ROPE: the spec's, else the metric's default);
- a training step or an inference batch that no machine could hold (over :data:`MAX_STEP_BYTES`, from
  the layer sizes); the run itself compares the same estimate with its device's memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from unetbench.datasets import DATASETS
from unetbench.errors import SpecError
from unetbench.metrics import METRICS, metric_hint, metrics_of
from unetbench.model.sizes import format_bytes, inference_bytes, training_step_bytes
from unetbench.spec import ChallengeSpec, SyntheticSpec, read_spec, with_overrides

# More than any single accelerator or workstation holds (the largest GPUs have ~190 GB): a step this
# large is a typing slip, refused even by `unetbench spec check` on a machine that will not run it.
MAX_STEP_BYTES = 2**40


def load_spec(path: str | Path) -> ChallengeSpec:
    """Read a challenge spec file and check it completely (module docstring)."""
    return check_spec(read_spec(path), source=str(path))


def apply_overrides(
    spec: ChallengeSpec, overrides: Mapping[str, Any] | Iterable[tuple[str, Any]], *, source: str = "override"
) -> ChallengeSpec:
    """``spec`` with dotted keys replaced (``{"weightmap.enabled": False}``), checked completely, and the
    overrides recorded in ``spec.overrides``."""
    return check_spec(with_overrides(spec, overrides, source=source), source=source)


def memory_estimates(spec: ChallengeSpec) -> dict[str, int]:
    """Bytes of one training step and of one inference batch, from the layer sizes."""
    m = spec.model
    network = dict(
        depth=m.depth,
        base_channels=m.base_channels,
        padding=m.padding,
        in_channels=m.in_channels,
        classes=m.classes,
        batch_norm=m.batch_norm,
    )
    return {
        "training": training_step_bytes(spec.training.tile_size, spec.training.batch_size, **network),
        "inference": inference_bytes(spec.inference.tile_size, spec.inference.batch_size, **network),
    }


def memory_problem(
    spec: ChallengeSpec, available: int, where: str, *, runs: int = 1
) -> tuple[str, str] | None:
    """The key and the message for a step that needs more than ``available`` bytes, else None; ``runs``
    runs at once on the same device (``--runs-per-device``) need ``runs`` times a run's peak."""
    estimates = memory_estimates(spec)
    for part, section in (("training", spec.training), ("inference", spec.inference)):
        if estimates[part] > available:
            return (
                f"{part}.tile_size",
                f"{section.tile_size} px tiles in batches of {section.batch_size} with "
                f"{spec.model.base_channels} base channels need about {format_bytes(estimates[part])} per "
                f"{'training step' if part == 'training' else 'forward pass'} (estimated from the layer "
                f"sizes), more than {where} ({format_bytes(available)}); use a smaller {part}.tile_size or "
                f"{part}.batch_size",
            )
    peak = max(estimates.values())  # a run trains or predicts, never both at once
    if peak * runs > available:
        return (
            "--runs-per-device",
            f"{runs} runs at once need about {format_bytes(peak * runs)} ({format_bytes(peak)} each, "
            f"estimated from the layer sizes), more than {where} ({format_bytes(available)}); give at most "
            f"{available // peak}",
        )
    return None


def check_spec(spec: ChallengeSpec, *, source: str) -> ChallengeSpec:
    """Check ``spec`` against the registries; return it with the generated sets' defaults filled in."""
    data = spec.data
    adapter = DATASETS.get(data.dataset)
    if adapter is None:
        raise SpecError(
            source, "data.dataset", f"unknown data set {data.dataset!r}; valid choices: {', '.join(DATASETS)}"
        )
    generated = not adapter.folder
    if generated and data.root is not None:
        raise SpecError(
            source,
            "data.root",
            f"{data.dataset} is generated in memory from [data.synthetic] and reads no files; remove "
            "root, or write it with `unetbench data synth` and read it as a real data set",
        )
    if not generated and data.synthetic is not None:
        raise SpecError(
            source,
            "data.synthetic",
            f"only the generated data sets (synthetic-em, synthetic-cells) use it; {data.dataset} is read "
            "from disk: remove the table",
        )
    if generated and data.synthetic is None:
        spec = dataclasses.replace(spec, data=dataclasses.replace(data, synthetic=SyntheticSpec()))
        data = spec.data
    valid = metrics_of(adapter.kind)
    for metric in spec.evaluation.metrics:
        if metric not in valid:
            raise SpecError(
                source,
                "evaluation.metrics",
                f"{metric!r} does not apply to {data.dataset} ({adapter.kind} data); "
                f"valid choices: {', '.join(valid)}{metric_hint(metric)}",
            )
    if data.split.method == "sequence" and not adapter.sequences:
        raise SpecError(
            source, "data.split.method", f"{data.dataset} has no sequences; use 'indices' or 'kfold'"
        )
    if generated and data.split.method == "indices":
        # A generated set has a known size, so an index past it is caught here rather than at run time.
        n = data.synthetic.samples
        for part in ("train", "validation", "evaluation"):
            for index in getattr(data.split, part):
                if index >= n:
                    raise SpecError(
                        source,
                        f"data.split.{part}",
                        f"index {index} is out of range; data.synthetic.samples = {n} (indices 0-{n - 1})",
                    )
    problem = memory_problem(spec, MAX_STEP_BYTES, "any machine holds")
    if problem is not None:
        raise SpecError(source, *problem)
    return dataclasses.replace(spec, kind=adapter.kind, evaluation=with_default_rope(spec.evaluation))


def with_default_rope(evaluation):
    """``evaluation`` with a ROPE for every metric it lists: the spec's own, else the metric table's
    default (:data:`unetbench.metrics.METRICS`), so that a record holds every value its verdicts used."""
    rope = {m: evaluation.rope.get(m, METRICS[m].rope) for m in evaluation.metrics}
    return dataclasses.replace(evaluation, rope=rope)
