"""``unetbench run``: from a challenge spec to a record and a report, in five named stages.

:func:`run` reads like the table of contents: :func:`prepare` (device, memory, data, run folder, weight
maps, untrained scores, checkpoint), :func:`train`, :func:`predict`, :func:`score`, :func:`record`; then
:func:`report`. Problems with the spec, the device or the data show in ``prepare``, before anything is
trained. The run folder (:class:`~unetbench.rundir.RunDir`) is locked for the whole run.

What a kill can lose: a checkpoint is written before the first step and then every
``training.checkpoint_every`` iterations or ``training.checkpoint_minutes`` minutes, so ``--resume``
after a SIGKILL repeats at most that much training (and the prediction and scoring, if it was in those).
Ctrl-C and SIGTERM lose nothing: the step in flight completes, a checkpoint is written, and the process
exits with the resume command.

Under torchrun (several processes, :mod:`unetbench.distributed`) rank 0 runs every stage; the other
ranks run :func:`follow`: the same data and network, the same checkpoint, and the training steps. The
ranks meet at three agreements before training (device and data; run folder; network and untrained
scores), so a user error on any rank stops every rank with one line from rank 0.
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from unetbench import contention, distributed, evaluation, execution
from unetbench.atomic import WriteFailed, atomic_write_bytes, check_folder
from unetbench.datasets import load_dataset
from unetbench.datasets.splits import Split, split_collection
from unetbench.distributed import Group
from unetbench.errors import PeerExit, RunInterrupted, UserError
from unetbench.inference.tiling import predict_image
from unetbench.interrupts import Interrupts, exit_status
from unetbench.metrics import METRICS, warm_up_kernels
from unetbench.model.unet import unet_from_spec
from unetbench.progress import Reporter
from unetbench.results import (
    Best,
    CurvePoint,
    DataUsed,
    RunRecord,
    Scores,
    Session,
    TrainingSummary,
    ValidationPoint,
    command_line,
    provenance,
    run_id,
)
from unetbench.rundir import RunDir, UntrainedScores
from unetbench.spec import ChallengeSpec, dump_spec, first_difference, spec_to_table, training_part
from unetbench.training.checkpoint import load_checkpoint
from unetbench.training.trainer import Trainer, TrainingStopped
from unetbench.training.weightmap import training_weight_maps

SCORED = "evaluation"  # the split part a run scores


@dataclass
class RunContext:
    """What the stages share: made by :func:`prepare`, read by the rest."""

    spec: ChallengeSpec
    device: str
    group: Group
    location: str  # where the data came from
    split: Split
    run_dir: RunDir
    trainer: Trainer
    untrained: UntrainedScores
    sessions: list[Session]  # the earlier sessions, then this one (the last)
    resume_command: str
    reports: Path
    timings: dict[str, float] = field(default_factory=dict)
    borrowed: RunDir | None = None  # the run whose trained network this one predicts with
    others_busy: float | None = None  # CPU cores others kept busy while this session trained

    @property
    def kind(self) -> str:
        return METRICS[self.spec.evaluation.metrics[0]].kind


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
) -> Path | None:
    """Train, predict, score, record and report; returns the run folder (None on the ranks > 0 of a
    data-parallel run, which train only).

    ``weights_from``: a finished run of the same spec but for :data:`~unetbench.spec.PREDICTION_SECTIONS`,
    whose trained network (the weights it scored) this run predicts with instead of training its own; the
    run folder notes it, so a resume continues the same way.

    ``reports``: the reports folder (default: the spec's ``report.directory``, from the current folder);
    ``watch(iteration, total)``: told of every training step (see :class:`~unetbench.progress.Reporter`);
    ``command``: the command this session records (default: this process's command line).
    """
    with distributed.joined(spec.training.device, execution.resolve_device) as group:
        if not group.leader:
            follow(spec, data_root=data_root, resume=resume, group=group)
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
            )
            with context.run_dir, _session(context, interrupts):
                train(context, interrupts, reporter)
                maps = predict(context, reporter)
                scores = score(context, maps, reporter)
                finished = record(context, scores, maps, reporter)
            report(context, finished, interrupts, reporter)
        return context.run_dir.path


def follow(spec: ChallengeSpec, *, data_root: Path | None, resume: Path | None, group: Group) -> None:
    """Ranks 1, 2, ... of a data-parallel run: read the data, build the network, take the checkpoint from
    rank 0 and train; rank 0 does everything else (:func:`prepare` meets these agreements in order)."""
    quiet = Reporter(log=lambda text: None, bars=False)
    with group.agreement():  # 1: device, memory and data
        execution.check_memory(spec, group.device)
        _, split = _read_data(spec, data_root, quiet)
    group.agree(None)  # 2: rank 0 opens the run folder; nothing of ours can fail here
    with group.agreement():  # 3: weight maps and the network (rank 0 also scores it untrained)
        weight_maps = training_weight_maps(split.train, spec.weightmap)
        torch.manual_seed(spec.training.seed)
        model = unet_from_spec(spec.model)
    trainer = Trainer(
        spec, model, split.train, weight_maps, device=group.device, checkpoint=None, group=group
    )
    _continue(trainer, spec, quiet, fresh=group.broadcast(None))
    with Interrupts(patient=True) as interrupts, interrupts.deferred():
        try:
            with _leaving(trainer):
                if trainer.iteration < spec.training.iterations:  # as rank 0 does
                    trainer.fit(spec.training.iterations, stop=interrupts.stop_requested)
        except TrainingStopped:
            raise PeerExit(exit_status(interrupts.requested)) from None


@contextlib.contextmanager
def _leaving(trainer: Trainer) -> Iterator[None]:
    """After training that ended at a point the ranks agree on (the last step, or a stop agreed at a
    log point), every rank leaves the process group together; after an error the group is left as it is
    (a peer may be gone, and torchrun ends the others)."""
    try:
        yield
    except TrainingStopped:
        trainer.release()
        trainer.group.leave()
        raise
    trainer.release()
    trainer.group.leave()


@contextlib.contextmanager
def _session(context: RunContext, interrupts: Interrupts) -> Iterator[None]:
    """This process's entry in the run's sessions: closed as finished (by :func:`record`), interrupted
    (then :class:`RunInterrupted` says how to resume) or failed."""
    try:
        yield
    except (TrainingStopped, KeyboardInterrupt) as stopped:
        _end_session(context, "interrupted")
        raise RunInterrupted(_interrupted_message(context, stopped), interrupts.requested) from None
    except WriteFailed as failed:
        with contextlib.suppress(WriteFailed):  # the same disk may refuse the session's own note
            _end_session(context, "failed")
        raise WriteFailed(
            f"{failed}; once it can be written, resume with: {context.resume_command}"
        ) from None
    except BaseException:
        _end_session(context, "failed")
        raise


# --------------------------------------------------------------------------------------------------
# Stage 1: prepare


def prepare(
    spec: ChallengeSpec,
    *,
    data_root: Path | None,
    out: Path | None,
    resume: Path | None,
    reports: Path | None,
    reporter: Reporter,
    interrupts: Interrupts,
    group: Group = distributed.SINGLE,
    command: str | None = None,
    weights_from: Path | None = None,
) -> RunContext:
    """Everything before the first step; nothing is written until the spec, device and data pass."""
    device = group.device
    with group.agreement():  # 1: device, memory and data (on every rank)
        execution.check_memory(spec, device)
        reports_root = (reports if reports is not None else Path(spec.report.directory)).absolute()
        check_folder(reports_root / spec.name, what="reports folder (--reports or report.directory)")
        location, split = _read_data(spec, data_root, reporter)
        source = _weights_source(spec, weights_from) if weights_from is not None else None
    with group.agreement():  # 2: the run folder
        run_dir = _open_run_dir(spec, out, resume)
    resume_command = _resume_command(run_dir, data_root, reports, group)
    with _released_unless_prepared(run_dir, resume_command, interrupts):
        borrowed = _borrowed(run_dir, source, spec, group)
        with group.agreement():  # 3: weight maps, network, untrained scores
            reporter.line(f"run folder: {run_dir.path}  ({_setting(spec, device, group, split, location)})")
            tick = time.perf_counter()
            with reporter.stage("weight maps"):
                weight_maps = training_weight_maps(split.train, spec.weightmap)
            timings = {"weight_maps": time.perf_counter() - tick}
            torch.manual_seed(spec.training.seed)  # the initial weights: the same in every session
            model = unet_from_spec(spec.model)
            if METRICS[spec.evaluation.metrics[0]].kind == "em":
                with reporter.stage("metric kernels (compiled on the first run, then loaded from a cache)"):
                    warm_up_kernels()
            untrained = run_dir.read_untrained() or _score_untrained(
                spec, model, split, device, run_dir, reporter
            )
        if borrowed is None:
            trainer = _trainer(spec, model, split, weight_maps, device, run_dir, reporter, group)
        else:
            trainer = Trainer(spec, model, split.train, weight_maps, device=device, checkpoint=None)
            with reporter.stage(f"taking the trained network of {borrowed.path}"):
                trainer.adopt(load_checkpoint(borrowed.checkpoint), borrowed.checkpoint)
        sessions = run_dir.begin_session(
            command=command or command_line(),
            iteration=trainer.iteration,
            overrides=spec.overrides,
            processes=group.world_size,
        )
    return RunContext(
        spec=spec,
        device=device,
        group=group,
        location=location,
        split=split,
        run_dir=run_dir,
        trainer=trainer,
        untrained=untrained,
        sessions=sessions,
        resume_command=resume_command,
        reports=reports_root,
        timings=timings,
        borrowed=borrowed,
    )


def _weights_source(spec: ChallengeSpec, path: Path) -> RunDir:
    """The finished run whose network a run predicts with: refused unless it trained the same network."""
    source = RunDir(path)
    other = source.read_record().resolved_spec()
    if training_part(other) != training_part(spec):
        changed = first_difference(training_part(other), training_part(spec))
        raise UserError(
            f"{source.path}: trained another network than this run's spec describes ({changed}); a run "
            "predicts with another's weights only where the two differ in inference, postprocess or report"
        )
    return source


def _borrowed(run_dir: RunDir, source: RunDir | None, spec: ChallengeSpec, group: Group) -> RunDir | None:
    """The run whose network this run predicts with: noted in a new folder, read back on a resume."""
    noted = run_dir.read_weights_from()
    if source is not None and noted is None:
        if run_dir.checkpoint.is_file():
            raise UserError(
                f"{run_dir.path}: trains its own network; resume it without weights from another run"
            )
        run_dir.write_weights_from(source)
        noted = source
    elif source is not None and noted.path != source.path:
        raise UserError(f"{run_dir.path}: predicts with the network of {noted.path}, not of {source.path}")
    if noted is not None and group.active:
        raise UserError(f"{run_dir.path}: predicts with another run's network; it needs no torchrun")
    if noted is not None and source is None:
        _weights_source(spec, noted.path)  # a resume: the noted run must still be there and fit
    return noted


def _setting(spec: ChallengeSpec, device: str, group: Group, split: Split, location: str) -> str:
    """The run's first line: device, precision, processes and data."""
    training = spec.training
    how = execution.describe(training.precision, training.memory_format, device, training.compile)
    words = f"device {device}, training in {how}; "
    if group.active:
        words += (
            f"data-parallel over {group.world_size} processes: effective batch {group.world_size} x "
            f"{training.batch_size} = {group.world_size * training.batch_size} tiles per step, learning "
            f"rate {training.learning_rate} as the spec gives it (not scaled); "
        )
    return words + (
        f"{len(split.train)} training, {len(split.validation)} validation, {len(split.evaluation)} "
        f"evaluation images from {location}"
    )


def _read_data(spec: ChallengeSpec, data_root: Path | None, reporter: Reporter) -> tuple[str, Split]:
    with reporter.stage("reading the data"):
        collection = load_dataset(spec.data, data_root)
        split = split_collection(collection, spec.data.split)
    if not split.train:
        raise UserError("data.split: the training split is empty")
    if not split.evaluation:
        raise UserError("data.split: the evaluation split is empty; a run scores the evaluation images")
    return collection.location, split


@contextlib.contextmanager
def _released_unless_prepared(run_dir: RunDir, resume_command: str, interrupts: Interrupts) -> Iterator[None]:
    """Until the run is prepared, any failure releases the run folder's lock; Ctrl-C says how to resume."""
    try:
        yield
    except KeyboardInterrupt:
        run_dir.release()
        raise RunInterrupted(
            f"{run_dir.path}: interrupted before training started; resume with: {resume_command}",
            interrupts.requested,
        ) from None
    except WriteFailed as failed:
        run_dir.release()
        raise WriteFailed(f"{failed}; once it can be written, resume with: {resume_command}") from None
    except BaseException:
        run_dir.release()
        raise


def _trainer(
    spec, model, split, weight_maps, device, run_dir: RunDir, reporter: Reporter, group: Group
) -> Trainer:
    """The trainer, continued from the run's checkpoint, or checkpointed before its first step."""
    validate = None
    if split.validation and spec.training.validate_every:

        def validate(net):
            # without test-time averaging: validation only ranks checkpoints, 8x cheaper
            maps = probabilities(net, split.validation, spec, device, tta="none")
            return evaluation.score_maps(spec, split.validation, maps, per_image=False).aggregate

    trainer = Trainer(
        spec,
        model,
        split.train,
        weight_maps,
        device=device,
        checkpoint=run_dir.checkpoint,
        validate=validate,
        group=group,
    )
    _continue(trainer, spec, reporter, fresh=group.broadcast(not run_dir.checkpoint.is_file()))
    return trainer


def _continue(trainer: Trainer, spec: ChallengeSpec, reporter: Reporter, *, fresh: bool) -> None:
    """Checkpoint a new run before its first step (every started run can be resumed), or continue it
    from its checkpoint; every rank of a data-parallel run calls it together."""
    if fresh:
        trainer.save()
        return
    with reporter.stage(f"loading {trainer.checkpoint}"):
        trainer.load()
    reporter.line(f"resuming at iteration {trainer.iteration}")
    with trainer.group.agreement():
        if trainer.iteration > spec.training.iterations:
            raise UserError(
                f"training.iterations: the run has trained {trainer.iteration} iterations already; "
                "give at least that many (or start a new run)"
            )


def _open_run_dir(spec: ChallengeSpec, out: Path | None, resume: Path | None) -> RunDir:
    text = dump_spec(spec)
    if resume is not None:
        return RunDir.resume(resume, spec)
    if out is not None:
        return RunDir.create(out, text)
    return RunDir.create_unique(Path("runs") / spec.name, run_id(text), text)


def _score_untrained(spec, model, split, device, run_dir: RunDir, reporter: Reporter) -> UntrainedScores:
    """Scores of the network as initialised, kept in the run folder for every later session."""
    tick = time.perf_counter()
    title = "untrained network: predicting"
    maps = probabilities(model.to(device), split.evaluation, spec, device, reporter, title)
    with reporter.stage("untrained network: scoring"):
        scores = evaluation.score_maps(spec, split.evaluation, maps, names=split.names(SCORED))
    untrained = UntrainedScores(scores=scores, seconds=time.perf_counter() - tick)
    run_dir.write_untrained(untrained)
    return untrained


def _end_session(context: RunContext, outcome: str) -> None:
    """Close this session: its work is what the checkpoint on disk holds (all of it once training ended)."""
    context.sessions = context.run_dir.end_session(
        context.sessions, outcome, context.trainer.saved_iteration, others_busy=context.others_busy
    )


def _resume_command(run_dir: RunDir, data_root: Path | None, reports: Path | None, group: Group) -> str:
    words = ["unetbench", "run", str(run_dir.spec_file), "--resume", str(run_dir.path)]
    if data_root is not None:
        words += ["--data-root", str(Path(data_root).absolute())]
    if reports is not None:
        words += ["--reports", str(Path(reports).absolute())]
    if group.active and os.environ.get(distributed.LAUNCHED_BY_GPUS):
        words += ["--gpus", str(group.world_size)]  # started by `unetbench run --gpus N`
    elif group.active:  # started by torchrun: resumed the same way, on as many processes
        words = ["torchrun", "--nproc-per-node", str(group.world_size), "-m", "unetbench", *words[1:]]
    return shlex.join(words)


def _interrupted_message(context: RunContext, stopped: BaseException) -> str:
    if isinstance(stopped, TrainingStopped):
        where = f"stopped after iteration {stopped.iteration}; checkpoint saved"
    else:
        where = f"interrupted; training is checkpointed at iteration {context.trainer.saved_iteration}"
    return f"{context.run_dir.path}: {where}. Resume with: {context.resume_command}"


# --------------------------------------------------------------------------------------------------
# Stage 2: train


def train(context: RunContext, interrupts: Interrupts, reporter: Reporter) -> None:
    """Train up to ``training.iterations``, checkpointing; stops between steps on Ctrl-C or SIGTERM."""
    if context.borrowed is not None:
        return  # the network was trained by another run
    trainer, target = context.trainer, context.spec.training.iterations
    with _leaving(trainer):
        if trainer.iteration < target:
            # the other ranks of a data-parallel run share the machine by design: not measured there
            start = None if context.group.active else contention.read_clock()
            with reporter.training(target, trainer.iteration) as bar, interrupts.deferred():
                trainer.fit(target, stop=interrupts.stop_requested, progress=bar)
            context.others_busy = contention.others_busy(start, contention.read_clock())
            if note := contention.shared_note(context.others_busy, os.cpu_count() or 1):
                reporter.line(f"note: {note}")
    if interrupts.stop_requested():  # a signal after the last step: stop before predicting
        raise TrainingStopped(trainer.iteration)
    context.timings["training"] = trainer.log.seconds


# --------------------------------------------------------------------------------------------------
# Stage 3: predict


def predict(context: RunContext, reporter: Reporter) -> dict[str, list[np.ndarray]]:
    """P(cell) of the evaluation and test images with the scored weights, written to predictions.h5."""
    weights, _ = context.trainer.scored_weights()
    model = context.trainer.model
    model.load_state_dict(weights)
    split, spec, device = context.split, context.spec, context.device
    tick = time.perf_counter()
    maps = {
        part: probabilities(
            model, getattr(split, part), spec, device, reporter, f"predicting the {part} images"
        )
        for part in (SCORED, "test")
    }
    context.timings["prediction"] = time.perf_counter() - tick
    _write_predictions(
        context.run_dir.predictions,
        {part: dict(zip(split.names(part), maps[part], strict=True)) for part in maps},
    )
    return maps


def probabilities(
    model, samples, spec, device, reporter: Reporter | None = None, title: str = "", *, tta: str | None = None
) -> list[np.ndarray]:
    """P(cell / foreground) of each sample (DESIGN.md: the second class), by the spec's tiling and
    test-time averaging (``tta`` overrides the spec's)."""
    model.eval()
    maps = []
    if reporter is None:
        return [predict_image(model, s.image, spec.inference, device=device, tta=tta)[1] for s in samples]
    with reporter.items(title, len(samples)) as advance:
        for sample in samples:
            maps.append(predict_image(model, sample.image, spec.inference, device=device, tta=tta)[1])
            advance()
    return maps


def _write_predictions(path: Path, groups: dict[str, dict[str, np.ndarray]]) -> None:
    """HDF5 with one dataset per image named as the run names it (``evaluation/25``), P(cell) float32."""
    # Built in memory and written as bytes: HDF5 failing to write at close (a full disk, a file-size
    # limit) crashes the process in h5py's clean-up instead of raising.
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        f.attrs["content"] = "P(cell / foreground) in [0, 1] per pixel"
        for maps in groups.values():
            for name, value in maps.items():
                f.create_dataset(name, data=value.astype(np.float32), compression="gzip")
    atomic_write_bytes(path, image.getvalue())


# --------------------------------------------------------------------------------------------------
# Stage 4: score


def score(context: RunContext, maps: dict[str, list[np.ndarray]], reporter: Reporter) -> Scores:
    tick = time.perf_counter()
    with reporter.stage(f"scoring the {SCORED} images"):
        scores = evaluation.score_maps(
            context.spec, context.split.evaluation, maps[SCORED], names=context.split.names(SCORED)
        )
    context.timings["evaluation"] = time.perf_counter() - tick
    return scores


# --------------------------------------------------------------------------------------------------
# Stage 5: record


def record(
    context: RunContext, trained: Scores, maps: dict[str, list[np.ndarray]], reporter: Reporter
) -> RunRecord:
    """Overlays and ``record.json``: the run is finished once the record is there."""
    spec, split, trainer = context.spec, context.split, context.trainer
    count = min(spec.report.overlays, len(split.evaluation))
    figures = []
    if count:
        from unetbench.report.figures import overlay_figure

        with reporter.stage(f"drawing {count} overlays"):
            for name, sample, probability in list(
                zip(split.names(SCORED), split.evaluation, maps[SCORED], strict=True)
            )[:count]:
                figures.append("overlay-" + name.replace("/", "-") + ".png")
                overlay_figure(sample, probability, context.run_dir.figures / figures[-1], title=name)
    _end_session(context, "finished")
    log = trainer.log
    _, scored_iteration = trainer.scored_weights()
    best = log.best
    overrides: list[str] = []
    for session in context.sessions:
        overrides += [o for o in session.overrides if o not in overrides]
    finished = RunRecord(
        run_id=context.run_dir.name,
        challenge=spec.name,
        kind=context.kind,
        spec=spec_to_table(spec),
        overrides=overrides,
        seeds={
            "training": spec.training.seed,
            "data": spec.data.synthetic.seed if spec.data.synthetic else None,
        },
        sessions=context.sessions,
        provenance=provenance(context.device),
        data=DataUsed(
            dataset=spec.data.dataset, location=context.location, split=split.keys(), scored=SCORED
        ),
        parameters=sum(p.numel() for p in trainer.model.parameters()),
        output_size=trainer.out,
        timings_seconds={
            **context.timings,
            "untrained_evaluation": context.untrained.seconds,
        },
        training=TrainingSummary(
            processes=context.group.world_size,
            effective_batch=context.group.world_size * spec.training.batch_size,
            iterations=trainer.iteration,
            seconds=log.seconds,
            curve=[CurvePoint(**point) for point in log.curve],
            validation=[ValidationPoint(**point) for point in log.validation],
            best=Best(**best) if best else None,
            scored_iteration=scored_iteration,
        ),
        trained=trained,
        untrained=context.untrained.scores,
        higher_is_better={m: METRICS[m].higher_is_better for m in spec.evaluation.metrics},
        figures=figures,
        reports_directory=str(context.reports),
        execution=execution.resolve(spec, context.device),
        weights_from=str(context.borrowed.path) if context.borrowed else None,
    )
    context.run_dir.write_record(finished)
    return finished


# --------------------------------------------------------------------------------------------------
# Then the report


def report(context: RunContext, finished: RunRecord, interrupts: Interrupts, reporter: Reporter) -> Path:
    """The Markdown report, rendered from the record alone (``unetbench report`` does the same)."""
    from unetbench.report.markdown import render_run_report

    try:
        path = render_run_report(context.run_dir.path, Path(finished.reports_directory))
    except KeyboardInterrupt:
        raise RunInterrupted(
            f"{context.run_dir.path}: the run is finished, the report was not written; write it with: "
            f"unetbench report {shlex.quote(str(context.run_dir.path))}",
            interrupts.requested,
        ) from None
    except WriteFailed as failed:
        raise WriteFailed(
            f"{failed}; the run is finished: once it can be written, write the report with: "
            f"unetbench report {shlex.quote(str(context.run_dir.path))}"
        ) from None
    reporter.line(f"report: {path}")
    return path
