"""The typed records unetbench writes and reads: a run's ``record.json`` and an ablation's manifest.

This module is the only one that turns them into JSON and back. A record is a tree of frozen dataclasses
with a schema version; reading one checks every field's presence and type, so a damaged, foreign or
outdated file is one clear :class:`~unetbench.errors.UserError` naming the file and the field, never a
``KeyError`` far away. Reports, figures, the ablation table and the command line use the attributes.

Scores that are undefined (a metric's 0 / 0) are ``None`` in the record and NaN nowhere: JSON has no NaN.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetbench import __version__
from unetbench.atomic import atomic_write_json, json_ready
from unetbench.errors import UserError
from unetbench.typed import Dialect, Problem, decode

RECORD_SCHEMA = 2
MANIFEST_SCHEMA = 3  # 3: folds, --vary, inference-only runs
CROSSVAL_SCHEMA = 1

Score = float | None  # None: undefined for this input


# --------------------------------------------------------------------------------------------------
# The run record


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
    # CPU cores other processes kept busy on average while this session trained (unetbench.contention);
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
class ExecutionUsed:
    """What the spec's ``auto`` precision and layout became on the machine that ran
    (:func:`unetbench.devices.resolve`)."""

    training_precision: str  # fp32 or bf16
    training_memory_format: str  # channels_last or contiguous
    compiled: bool
    inference_precision: str
    inference_memory_format: str
    native_bf16: bool  # the CPU computes bf16 in hardware (what ``auto`` decides by on the CPU)

    def describe_training(self) -> str:
        return execution_phrase(self.training_precision, self.training_memory_format, self.compiled)

    def describe_inference(self) -> str:
        return execution_phrase(self.inference_precision, self.inference_memory_format, False)


def execution_phrase(precision: str, layout: str, compiled: bool) -> str:
    """One phrase for logs and reports, e.g. ``bf16 autocast, channels_last, torch.compile``."""
    words = ["bf16 autocast" if precision == "bf16" else "float32", layout]
    return ", ".join(words + (["torch.compile"] if compiled else []))


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


# --------------------------------------------------------------------------------------------------
# The ablation manifest and the cross-validated scores


@dataclass(frozen=True)
class PlannedRunEntry:
    variant: str  # "baseline", "no-weightmap", "no-weightmap+no-elastic", "training.learning_rate=0.003"
    fold: int | None  # None: the spec's own split
    seed_index: int
    # the run's folder relative to the ablation's: below it, or a reused finished run beside it (../cv-*/)
    directory: str
    overrides: list[str]
    weights_from: str | None  # relative like ``directory``: the trained run it predicts with, or None


@dataclass(frozen=True)
class AblationManifest:
    """Which run folder is which variant, fold and seed: with the run records, all a report needs."""

    kind: str  # "ablation" (unetbench ablate) or "cross-validation" (unetbench run --folds)
    challenge: str
    spec_file: str
    command: str
    switches: list[str]
    vary: list[str]  # the --vary arguments, KEY=V1,V2,...
    folds: int | None  # None: every run on the spec's own split
    seeds: int
    grid: str
    runs: list[PlannedRunEntry]
    schema: int = MANIFEST_SCHEMA


@dataclass(frozen=True)
class OutOfFold:
    """One variant and seed, cross-validated: every labelled image predicted by the network of the fold
    that did not train on it, all scored as one stack with the challenge's own metrics."""

    variant: str
    seed_index: int
    images: int
    scores: dict[str, Score]


@dataclass(frozen=True)
class CrossValidated:
    """The out-of-fold scores of an ablation or a cross-validation (``crossval.json``)."""

    folds: int
    dataset: str
    entries: list[OutOfFold]
    schema: int = CROSSVAL_SCHEMA


SELECTION_SCHEMA = 1


@dataclass(frozen=True)
class FoldChoice:
    """One outer fold of a nested selection: each candidate's validation score, the one chosen, and how
    the chosen run scored the fold's evaluation images (its run-level primary score)."""

    fold: int
    seed_index: int
    validation: dict[str, Score]  # variant -> best validation score of the primary metric
    chosen: str  # the variant chosen
    evaluation: Score


@dataclass(frozen=True)
class Selection:
    """``unetbench ablate --vary KEY=... --select`` (``selection.json``): in each outer fold the value of
    ``key`` with the best validation score is chosen; the chosen runs' evaluation images, stacked over the
    folds, are the out-of-fold estimate of "choose the value, then train"."""

    key: str
    metric: str
    values: dict[str, str]  # variant -> the value of ``key`` it trains with, as the spec writes it
    choices: list[FoldChoice]
    out_of_fold: list[OutOfFold]  # per seed, variant "selected"
    schema: int = SELECTION_SCHEMA


SUPERSEDED_SCHEMA = 1


@dataclass(frozen=True)
class Superseded:
    """A committed report that a later one replaces (``superseded.json`` in its bundle): its runs stay
    evidence of what they measured, the report's banner names the replacement and why."""

    by: str  # the report that replaces it, as a link from the report's folder
    why: str
    schema: int = SUPERSEDED_SCHEMA


# --------------------------------------------------------------------------------------------------
# JSON in and out, checked against the dataclasses


def to_json(record: Any) -> Any:
    """A record as JSON-ready values (:func:`~unetbench.atomic.json_ready`); non-finite floats become None."""
    return json_ready(dataclasses.asdict(record))


def write_json_record(path: Path, record: Any) -> Path:
    return atomic_write_json(path, to_json(record))


def read_json_record(path: Path, cls: type, *, what: str, schema: int):
    """Read ``path`` as a ``cls``; every problem is one :class:`UserError` naming the file and the field."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); is it {what}?") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path}: holds {_json_type(payload)}, not {what} (a JSON object)")
    found = payload.get("schema")
    if found != schema:
        raise UserError(
            f"{path}: schema {found!r}, but this unetbench ({__version__}) reads schema {schema}; "
            "render it with the unetbench that wrote it, or run again"
        )
    try:
        return from_plain(cls, payload)
    except Problem as problem:
        raise UserError(
            f"{path}: {problem.where or 'the record'}: {problem.message}; is it {what}?"
        ) from None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, bool) or type(value) in names:
        return names[type(value)]
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


# How the decoder (unetbench.typed) speaks of a record: JSON's words; keys a later unetbench added are
# ignored, so that records stay readable within a schema.
JSON = Dialect(
    table="an object",
    describe=_json_type,
    type_words={float: "a number", int: "a number", str: "a string", bool: "a boolean", list: "a list"},
    strict=False,
    missing="missing",
)
PlainProblem = Problem  # what from_plain raises: ``where`` (the field) and ``message``


def from_plain(cls: type, value: Any, where: str = "") -> Any:
    """Plain values (dicts, lists, numbers, strings: JSON, or a checkpoint's part) as a ``cls``, checked
    against its annotations; a field that does not fit raises :data:`PlainProblem`."""
    return decode(cls, value, where, JSON)


# --------------------------------------------------------------------------------------------------
# Where a run came from


def git_revision(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """The commit of the code that ran and whether the working tree had changes (None, None outside git)."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd or source, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def hardware(device: str) -> Hardware:
    import torch

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return Hardware(
        machine=platform.machine(),
        processor=_cpu_name(),
        cpu_cores=os.cpu_count() or 1,
        device=device,
        gpu=gpu,
    )


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import numpy
    import scipy
    import skimage
    import torch

    return {
        "unetbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
    }


def provenance(device: str) -> Provenance:
    commit, dirty = git_revision()
    return Provenance(versions=versions(), commit=commit, dirty=dirty, hardware=hardware(device))


def run_id(spec_text: str) -> str:
    """``YYYYMMDD-HHMMSS-<first 8 hex of the resolved spec's sha256>``: sortable, and tells specs apart."""
    digest = hashlib.sha256(spec_text.encode()).hexdigest()[:8]
    return time.strftime("%Y%m%d-%H%M%S") + "-" + digest


def command_line() -> str:
    return " ".join(["unetbench", *sys.argv[1:]])


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def host_name() -> str:
    return socket.gethostname()


__all__ = [
    "AblationManifest",
    "CrossValidated",
    "ExecutionUsed",
    "OutOfFold",
    "Best",
    "CurvePoint",
    "DataUsed",
    "Hardware",
    "PlannedRunEntry",
    "Provenance",
    "RunRecord",
    "Scores",
    "FoldChoice",
    "Selection",
    "Session",
    "Superseded",
    "TrainingSummary",
    "ValidationPoint",
]
