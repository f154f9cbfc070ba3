"""The typed run record: ``record.json``, one per finished run, from which every report is rendered.

A record is a tree of frozen dataclasses with a schema version, read and written by
:mod:`unetbench.records.json_io`: a damaged, foreign or outdated file is one clear
:class:`~unetbench.errors.UserError` naming the file and the field, never a ``KeyError`` far away.
Scores that are undefined (a metric's 0 / 0) are ``None`` in the record and NaN nowhere: JSON has no NaN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from unetbench.system.execution import ExecutionUsed

RECORD_SCHEMA = 2


Score = float | None  # None: undefined for this input


@dataclass(frozen=True)
class Scores:
    """Scores of one network on the scored split: the challenge's scores of the whole split, and each
    image's own, by image name (``evaluation/25``)."""

    aggregate: dict[str, Score]
    per_image: dict[str, dict[str, Score]]


@dataclass(frozen=True)
class Session:
    """One process that worked on the run: a first run, or a ``--resume``.

    ``first_iteration`` .. ``last_iteration`` is the training it contributed to the weights (a session
    killed before its next checkpoint contributed up to the checkpoint the next session resumed from).
    """

    command: str
    started: str
    ended: str | None  # None: it was killed and could not say when
    host: str
    pid: int
    first_iteration: int
    last_iteration: int
    overrides: list[str]  # the overrides of the spec this session was given
    outcome: str  # "finished", "interrupted", "killed" (found so by the next session), "running"
    processes: int = 1  # data-parallel processes (torchrun); 1 in records written before there were any
    # CPU cores other processes kept busy on average while this session trained (unetbench.system.cpu_share);
    # None: not measured (not Linux, no training in this session, or a record from before it was)
    others_busy: float | None = None


@dataclass(frozen=True)
class CurvePoint:
    iteration: int
    loss: float  # mean weighted cross-entropy since the previous point
    lr: float


@dataclass(frozen=True)
class ValidationPoint:
    iteration: int
    metrics: dict[str, Score]


@dataclass(frozen=True)
class Best:
    iteration: int
    metric: str
    value: float


@dataclass(frozen=True)
class TrainingSummary:
    iterations: int
    seconds: float  # training time, summed over sessions
    curve: list[CurvePoint]  # of the whole run, not only up to the scored weights
    validation: list[ValidationPoint]
    best: Best | None  # the best validation, whose weights were scored; None: no validation
    scored_iteration: int  # the iteration whose weights were scored
    processes: int = 1  # data-parallel processes, each with its own tiles; averaged gradients
    effective_batch: int | None = None  # tiles per optimiser step: processes x training.batch_size


@dataclass(frozen=True)
class Hardware:
    machine: str
    processor: str
    cpu_cores: int
    device: str
    gpu: str | None = None


@dataclass(frozen=True)
class Provenance:
    versions: dict[str, str]
    commit: str | None
    dirty: bool | None  # the working tree had uncommitted changes
    hardware: Hardware


@dataclass(frozen=True)
class DataUsed:
    dataset: str
    location: str
    split: dict[str, list[str]]  # image names per part: train, validation, evaluation, test
    scored: str  # the split part the scores are of


@dataclass(frozen=True)
class RunRecord:
    """Everything a report says about a run (DESIGN.md: "one JSON per run")."""

    run_id: str
    challenge: str
    kind: str  # "em" or "cells"
    spec: dict[str, Any]  # the resolved spec in file form (read it with :meth:`resolved_spec`)
    overrides: list[str]  # of the spec file: those given at the start, then any added by a resume
    seeds: dict[str, int | None]
    sessions: list[Session]
    provenance: Provenance
    data: DataUsed
    parameters: int
    output_size: int  # of a training tile
    timings_seconds: dict[str, float]
    training: TrainingSummary
    trained: Scores
    untrained: Scores
    higher_is_better: dict[str, bool]
    figures: list[str]  # overlay files in the run's figures/ folder
    reports_directory: str  # absolute: where `unetbench report` writes unless told otherwise
    schema: int = RECORD_SCHEMA
    # What `auto` precision and layout became (None in records written before it was recorded: then
    # float32 contiguous on the CPU, bf16 channels_last on CUDA, the rule of that time).
    execution: ExecutionUsed | None = None
    # The run folder whose trained network this run predicted with, instead of training its own (an
    # ablation's inference-only variant); None: the run trained its network. Its `training` is that run's.
    weights_from: str | None = None
    # Where the spec came from: "built-in em (unetbench 0.2.0)" or the spec file's absolute path (None in
    # records written before 0.2.0, which kept only the command line in `sessions`).
    spec_source: str | None = None

    def resolved_spec(self):
        """The spec the run ran with, as a :class:`~unetbench.spec.ChallengeSpec`."""
        from unetbench.spec import parse_spec

        return dataclasses.replace(
            parse_spec(self.spec, source=f"record of {self.run_id}"),
            overrides=tuple(self.overrides),
            kind=self.kind,
        )

    @property
    def metrics(self) -> list[str]:
        return list(self.spec["evaluation"]["metrics"])

    @property
    def primary(self) -> str:
        return self.spec["evaluation"]["primary"]
