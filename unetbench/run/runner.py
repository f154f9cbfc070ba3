"""``unetbench run``: from a challenge spec to a record and a report, in five named stages.

:func:`run` reads like the table of contents: :func:`~unetbench.run.preparation.prepare` (device, memory,
data, run folder, weight maps, untrained scores, checkpoint), :func:`train`, :func:`predict`,
:func:`score`, :func:`record`; then :func:`report`. Problems with the spec, the device or the data show
in ``prepare``, before anything is trained. The run folder (:class:`~unetbench.records.run_folder.RunDir`) is
locked
for the whole run.

What a kill can lose: a checkpoint is written before the first step and then every
``training.checkpoint_every`` iterations or ``training.checkpoint_minutes`` minutes, so ``--resume``
after a SIGKILL repeats at most that much training (and the prediction and scoring, if it was in those).
Ctrl-C and SIGTERM lose nothing: the step in flight completes, a checkpoint is written, and the process
exits with the resume command.

Under torchrun (several processes, :mod:`unetbench.system.processes`) rank 0 runs every stage; the other
ranks run :func:`train_beside_leader`: the same data and network, the same checkpoint, and the training
steps. The ranks meet at three agreements before training (device and data; run folder; network and
untrained scores), so a user error on any rank stops every rank with one line from rank 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetbench.errors import PeerExit, RunInterrupted
from unetbench.evaluation import scoring
from unetbench.metrics import METRICS
from unetbench.model.unet import unet_from_spec
from unetbench.records.provenance import provenance
from unetbench.records.run_record import DataUsed, RunRecord, Scores, TrainingSummary
from unetbench.run import predicting
from unetbench.run.context import SCORED, RunContext
from unetbench.run.preparation import prepare, read_data, start_or_resume
from unetbench.run.progress import Reporter
from unetbench.run.sessions import SessionBook, session
from unetbench.spec import ChallengeSpec, spec_to_table
from unetbench.system import cpu_share, devices, processes
from unetbench.system.atomic_writes import WriteFailed
from unetbench.system.interrupts import Interrupts, exit_status
from unetbench.system.processes import Group
from unetbench.tracking.trackers import Tracking
from unetbench.training.trainer import Trainer, TrainingStopped
from unetbench.training.weightmap import training_weight_maps


def run(
    spec: ChallengeSpec,
    *,
    data_root: Path | None = None,
    out: Path | None = None,
    resume: Path | None = None,
    reports: Path | None = None,
    progress: bool = True,
    log=print,
    watch=None,
    command: str | None = None,
    weights_from: Path | None = None,
    tracking: Tracking | None = None,
) -> Path | None:
    """Train, predict, score, record and report; returns the run folder (None on the ranks > 0 of a
    data-parallel run, which train only).

    ``weights_from``: a finished run of the same spec but for :data:`~unetbench.spec.PREDICTION_SECTIONS`,
    whose trained network (the weights it scored) this run predicts with instead of training its own; the
    run folder notes it, so a resume continues the same way.

    ``reports``: the reports folder (default: the spec's ``report.directory``, from the current folder);
    ``watch(iteration, total)``: told of every training step (see :class:`~unetbench.run.progress.Reporter`);
    ``command``: the command this session records (default: this process's command line);
    ``tracking``: where the run is also shown (``--track``, :mod:`unetbench.tracking.trackers`; rank 0 alone).
    """
    with processes.joined(spec.training.device, devices.resolve_device) as group:
        if not group.leader:
            train_beside_leader(spec, data_root=data_root, resume=resume, group=group)
            return None
        reporter = Reporter(log=log, bars=progress, watch=watch)
        # several processes: a repeated signal waits for the ranks' agreed stop (see Interrupts)
        with Interrupts(patient=group.active) as interrupts:
            context = prepare(
                spec,
                data_root=data_root,
                out=out,
                resume=resume,
                reports=reports,
                reporter=reporter,
                interrupts=interrupts,
                group=group,
                command=command,
                weights_from=weights_from,
                tracking=tracking,
            )
            with contextlib.closing(context.trackers):
                with context.run_dir, session(context, interrupts) as book:
                    trained = train(context, interrupts, reporter)
                    book.others_busy = trained.others_busy
                    predicted = predict(context, reporter)
                    scored = score(context, predicted, reporter)
                    finished = record(context, book, trained, predicted, scored, reporter)
                path = report(context, finished, interrupts, reporter)
                context.trackers.finished(finished, context.run_dir.figures, path)
        return context.run_dir.path


def train_beside_leader(
    spec: ChallengeSpec, *, data_root: Path | None, resume: Path | None, group: Group
) -> None:
    """Ranks 1, 2, ... of a data-parallel run: read the data, build the network, take the checkpoint from
    rank 0 and train; rank 0 does everything else (:func:`prepare` meets these agreements in order)."""
    quiet = Reporter(log=lambda text: None, bars=False)
    with group.agreement():  # 1: device, memory and data
        devices.check_memory(spec, group.device)
        _, split = read_data(spec, data_root, quiet)
    group.agree(None)  # 2: rank 0 opens the run folder; nothing of ours can fail here
    with group.agreement():  # 3: weight maps and the network (rank 0 also scores it untrained)
        weight_maps = training_weight_maps(split.train, spec.weightmap)
        torch.manual_seed(spec.training.seed)
        model = unet_from_spec(spec.model)
    trainer = Trainer(
        spec.training,
        spec.augmentation,
        model,
        split.train,
        weight_maps,
        device=group.device,
        checkpoint=None,
        group=group,
    )
    start_or_resume(trainer, spec, quiet, fresh=group.broadcast(None))
    with Interrupts(patient=True) as interrupts, interrupts.deferred():
        try:
            with trainer.leaving_group_after():
                if trainer.iteration < spec.training.iterations:  # as rank 0 does
                    trainer.fit(spec.training.iterations, stop=interrupts.stop_requested)
        except TrainingStopped:
            raise PeerExit(exit_status(interrupts.requested)) from None


# --------------------------------------------------------------------------------------------------
# Stage 2: train (stage 1, prepare, is in unetbench.run.preparation). Each stage returns what it made.


@dataclass(frozen=True)
class Trained:
    """What training did in this session: its seconds over every session (None: the network is another
    run's), and how busy other work kept the CPU meanwhile."""

    seconds: float | None
    others_busy: float | None = None


@dataclass(frozen=True)
class Predicted:
    """P(cell) of each split part's images (``evaluation``, ``test``), and how long predicting took."""

    maps: dict[str, list[np.ndarray]]
    seconds: float


@dataclass(frozen=True)
class Scored:
    scores: Scores
    seconds: float


def train(context: RunContext, interrupts: Interrupts, reporter: Reporter) -> Trained:
    """Train up to ``training.iterations``, checkpointing; stops between steps on Ctrl-C or SIGTERM."""
    if context.borrowed is not None:
        return Trained(seconds=None)  # the network was trained by another run
    trainer, target = context.trainer, context.spec.training.iterations
    busy = None
    with trainer.leaving_group_after():
        if trainer.iteration < target:
            # the other ranks of a data-parallel run share the machine by design: not measured there
            start = None if context.group.active else cpu_share.read_clock()
            with reporter.training(target, trainer.iteration) as bar, interrupts.deferred():
                shown = dataclasses.replace(
                    bar, logged=context.trackers.logged, validated=context.trackers.validated
                )
                trainer.fit(target, stop=interrupts.stop_requested, progress=shown)
            busy = cpu_share.others_busy(start, cpu_share.read_clock())
            if note := cpu_share.shared_note(busy, os.cpu_count() or 1):
                reporter.line(f"note: {note}")
    if interrupts.stop_requested():  # a signal after the last step: stop before predicting
        raise TrainingStopped(trainer.iteration)
    return Trained(seconds=trainer.log.seconds, others_busy=busy)


# --------------------------------------------------------------------------------------------------
# Stage 3: predict


def predict(context: RunContext, reporter: Reporter) -> Predicted:
    """P(cell) of the evaluation and test images with the scored weights, written to predictions.h5."""
    weights, _ = context.trainer.scored_weights()
    model = context.trainer.model
    model.load_state_dict(weights)
    split, spec, device = context.split, context.spec, context.device
    tick = time.perf_counter()
    maps = {  # a data set without test images (a generated one) is not said to predict them
        part: predicting.probabilities(
            model, getattr(split, part), spec, device, reporter, f"predicting the {part} images"
        )
        if getattr(split, part)
        else []
        for part in (SCORED, "test")
    }
    seconds = time.perf_counter() - tick
    context.run_dir.write_predictions(
        {part: dict(zip(split.names(part), maps[part], strict=True)) for part in maps}
    )
    return Predicted(maps, seconds)


# --------------------------------------------------------------------------------------------------
# Stage 4: score


def score(context: RunContext, predicted: Predicted, reporter: Reporter) -> Scored:
    tick = time.perf_counter()
    with reporter.stage(f"scoring the {SCORED} images"):
        scores = scoring.score_maps(
            context.spec, context.split.evaluation, predicted.maps[SCORED], names=context.split.names(SCORED)
        )
    return Scored(scores, time.perf_counter() - tick)


# --------------------------------------------------------------------------------------------------
# Stage 5: record


def record(
    context: RunContext,
    book: SessionBook,
    trained: Trained,
    predicted: Predicted,
    scored: Scored,
    reporter: Reporter,
) -> RunRecord:
    """Overlays and ``record.json``: the run is finished once the record is there."""
    spec, split, trainer = context.spec, context.split, context.trainer
    count = min(spec.report.overlays, len(split.evaluation))
    figures = []
    if count:
        from unetbench.report.figures import overlay_figures

        with reporter.stage(f"drawing {count} overlays"):
            figures = overlay_figures(
                split.names(SCORED)[:count],
                split.evaluation[:count],
                predicted.maps[SCORED][:count],
                context.run_dir.figures,
            )
    sessions = book.end("finished")
    overrides: list[str] = []
    for each in sessions:
        overrides += [o for o in each.overrides if o not in overrides]
    timings = {"weight_maps": context.weight_map_seconds}
    timings |= {"training": trained.seconds} if trained.seconds is not None else {}
    timings |= {"prediction": predicted.seconds, "evaluation": scored.seconds}
    finished = RunRecord(
        run_id=context.run_dir.name,
        challenge=spec.name,
        kind=spec.kind,
        spec=spec_to_table(spec),
        overrides=overrides,
        seeds={
            "training": spec.training.seed,
            "data": spec.data.synthetic.seed if spec.data.synthetic else None,
        },
        sessions=list(sessions),
        provenance=provenance(context.device),
        data=DataUsed(
            dataset=spec.data.dataset, location=context.location, split=split.keys(), scored=SCORED
        ),
        parameters=sum(p.numel() for p in trainer.model.parameters()),
        output_size=trainer.out,
        timings_seconds={**timings, "untrained_evaluation": context.untrained.seconds},
        training=_training_summary(context),
        trained=scored.scores,
        untrained=context.untrained.scores,
        higher_is_better={m: METRICS[m].higher_is_better for m in spec.evaluation.metrics},
        figures=figures,
        reports_directory=str(context.reports),
        execution=devices.resolve(spec, context.device),
        weights_from=str(context.borrowed.path) if context.borrowed else None,
        spec_source=spec.source or None,
    )
    context.run_dir.write_record(finished)
    return finished


def _training_summary(context: RunContext) -> TrainingSummary:
    trainer, world = context.trainer, context.group.world_size
    log = trainer.log
    return TrainingSummary(
        processes=world,
        effective_batch=world * context.spec.training.batch_size,
        iterations=trainer.iteration,
        seconds=log.seconds,
        curve=list(log.curve),
        validation=list(log.validation),
        best=log.best,
        scored_iteration=trainer.scored_weights()[1],
    )


# --------------------------------------------------------------------------------------------------
# Then the report


def report(context: RunContext, finished: RunRecord, interrupts: Interrupts, reporter: Reporter) -> Path:
    """The Markdown report, rendered from the record alone (``unetbench report`` does the same)."""
    from unetbench.report.markdown import render_run_report

    again = f"unetbench report {shlex.quote(str(context.run_dir.path))}"
    try:
        path = render_run_report(context.run_dir.path, Path(finished.reports_directory))
    except KeyboardInterrupt:
        raise RunInterrupted(
            f"{context.run_dir.path}: the run is finished, the report was not written; write it with: "
            + again,
            interrupts.requested,
        ) from None
    except WriteFailed as failed:
        raise WriteFailed(
            f"{failed}; the run is finished: once it can be written, write the report with: {again}"
        ) from None
    reporter.line(f"report: {path}")
    return path
