"""Loading a challenge spec: its own rules (:mod:`unetbench.spec`) and the checks against the registries.

``spec`` knows the shape of a spec; the data set registry (:mod:`unetbench.datasets`) and the metric
table (:mod:`unetbench.metrics`) know what exists. This module sits above all three, so none of them
imports another in a circle. Everything in unetbench reads specs through :func:`load_spec` and changes
them through :func:`apply_overrides`.

A spec argument is a file or a built-in challenge's name (:mod:`unetbench.challenges.builtin`).

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
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from unetbench.challenges.builtin import find_spec
from unetbench.datasets import DATASETS
from unetbench.errors import SpecError
from unetbench.metrics import metric_hint, metrics_of
from unetbench.spec import ChallengeSpec, SyntheticSpec, read_spec, with_default_rope, with_overrides
from unetbench.system.memory import memory_problem

# More than any single accelerator or workstation holds (the largest GPUs have ~190 GB): a step this
# large is a typing slip, refused even by `unetbench spec check` on a machine that will not run it.
MAX_STEP_BYTES = 2**40


def load_spec(argument: str | Path) -> ChallengeSpec:
    """Read a challenge spec, a file or a built-in challenge by name (:mod:`unetbench.challenges.builtin`),
    and check it completely (module docstring).

    A relative ``data.root`` is an input: it is read against the spec file's own folder and kept absolute,
    so a Ray worker or a resume started in another folder reads the same data. The spec's ``source`` says
    where it came from, for the record.
    """
    found = find_spec(argument)
    spec = read_spec(found.path)
    root = spec.data.root
    if root is not None and not Path(root).expanduser().is_absolute():
        absolute = os.path.normpath(found.path.resolve().parent / root)
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, root=absolute))
    spec = dataclasses.replace(spec, source=found.describe())
    return check_spec(spec, source=str(found.path))


def apply_overrides(
    spec: ChallengeSpec, overrides: Mapping[str, Any] | Iterable[tuple[str, Any]], *, source: str = "override"
) -> ChallengeSpec:
    """``spec`` with dotted keys replaced (``{"weightmap.enabled": False}``), checked completely, and the
    overrides recorded in ``spec.overrides``."""
    return check_spec(with_overrides(spec, overrides, source=source), source=source)


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
    _check_metrics(spec, adapter, source)
    _check_split(spec, adapter, source)
    problem = memory_problem(spec, MAX_STEP_BYTES, "any machine holds")
    if problem is not None:
        raise SpecError(source, *problem)
    return dataclasses.replace(spec, kind=adapter.kind, evaluation=with_default_rope(spec.evaluation))


def _check_metrics(spec: ChallengeSpec, adapter, source: str) -> None:
    """Every metric of ``evaluation.metrics`` applies to the data set's kind."""
    valid = metrics_of(adapter.kind)
    for metric in spec.evaluation.metrics:
        if metric not in valid:
            raise SpecError(
                source,
                "evaluation.metrics",
                f"{metric!r} does not apply to {spec.data.dataset} ({adapter.kind} data); "
                f"valid choices: {', '.join(valid)}{metric_hint(metric)}",
            )


def _check_split(spec: ChallengeSpec, adapter, source: str) -> None:
    """The split's method suits the data set; a generated set's indices lie within its size."""
    data = spec.data
    if data.split.method == "sequence" and not adapter.sequences:
        raise SpecError(
            source, "data.split.method", f"{data.dataset} has no sequences; use 'indices' or 'kfold'"
        )
    if not adapter.folder and data.split.method == "indices":
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
