"""What the stages of ``unetbench run`` share: :class:`RunContext`, made by
:func:`~unetbench.run.preparation.prepare` and read, never changed, by the stages of
:mod:`unetbench.run.runner`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from unetbench.datasets.splits import Split
from unetbench.records.run_folder import RunDir, UntrainedScores
from unetbench.records.run_record import Session
from unetbench.spec import ChallengeSpec
from unetbench.system.processes import Group
from unetbench.tracking.trackers import Tracker
from unetbench.training.trainer import Trainer

SCORED = "evaluation"  # the split part a run scores


@dataclass(frozen=True)
class RunContext:
    """The prepared run: spec, device, data, folder, trainer, untrained scores, and how to resume it."""

    spec: ChallengeSpec
    device: str
    group: Group
    location: str  # where the data came from
    split: Split
    run_dir: RunDir
    trainer: Trainer
    untrained: UntrainedScores
    sessions: tuple[Session, ...]  # the earlier sessions, then this one (the last), as it began
    resume_command: str
    reports: Path
    weight_map_seconds: float
    borrowed: RunDir | None = None  # the run whose trained network this one predicts with
    trackers: Tracker = field(default_factory=Tracker)  # where the run is shown (--track)
