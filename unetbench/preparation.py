"""Before the first step of ``unetbench run``: device, memory, data, run folder, weight maps, untrained
scores and checkpoint (:func:`prepare`), and the run's session around the stages (:func:`session`).

Nothing is written until the spec, the device and the data pass. The stages themselves are in
:mod:`unetbench.runner`; what they share is a :class:`RunContext`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unetbench import devices, distributed, evaluation
from unetbench.atomic import WriteFailed, check_folder
from unetbench.datasets import load_dataset
from unetbench.datasets.splits import Split, split_collection
from unetbench.distributed import Group
from unetbench.errors import RunInterrupted, UserError
from unetbench.interrupts import Interrupts
from unetbench.metrics import warm_up_kernels
from unetbench.model.unet import unet_from_spec
from unetbench.progress import Reporter
from unetbench.results import Session, command_line, run_id
from unetbench.rundir import RunDir, UntrainedScores
from unetbench.spec import ChallengeSpec, dump_spec, first_difference, training_part
from unetbench.tracking import Tracker, Tracking, open_trackers
from unetbench.training.checkpoint import read_checkpoint
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
    trackers: Tracker = field(default_factory=Tracker)  # where the run is shown (--track)


@contextlib.contextmanager
def session(context: RunContext, interrupts: Interrupts) -> Iterator[None]:
    """This process's entry in the run's sessions: closed as finished (by :func:`record`), interrupted
    (then :class:`RunInterrupted` says how to resume) or failed."""
    try:
        yield
    except (TrainingStopped, KeyboardInterrupt) as stopped:
        end_session(context, "interrupted")
        raise RunInterrupted(_interrupted_message(context, stopped), interrupts.requested) from None
    except WriteFailed as failed:
        with contextlib.suppress(WriteFailed):  # the same disk may refuse the session's own note
            end_session(context, "failed")
        raise WriteFailed(
            f"{failed}; once it can be written, resume with: {context.resume_command}"
        ) from None
    except BaseException:
        end_session(context, "failed")
        raise


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
    tracking: Tracking | None = None,
) -> RunContext:
    """Everything before the first step; nothing is written until the spec, device and data pass."""
    device = group.device
    with group.agreement():  # 1: device, memory and data (on every rank)
        devices.check_memory(spec, device)
        reports_root = (reports if reports is not None else Path(spec.report.directory)).absolute()
        check_folder(reports_root / spec.name, what="reports folder (--reports or report.directory)")
        location, split = read_data(spec, data_root, reporter)
        source = _weights_source(spec, weights_from) if weights_from is not None else None
    with group.agreement():  # 2: the run folder
        run_dir = _open_run_dir(spec, out, resume)
    resume_command = _resume_command(run_dir, data_root, reports, group)
    begun: list[Session] = []

    def note_failure(outcome: str) -> None:
        """This process's session, begun and ended here, where preparing failed before it began."""
        if begun or not group.leader:
            return
        iteration = max((s.last_iteration for s in run_dir.read_sessions()), default=0)
        sessions = run_dir.begin_session(
            command=command or command_line(),
            iteration=iteration,
            overrides=spec.overrides,
            processes=group.world_size,
        )
        run_dir.end_session(sessions, outcome, iteration, others_busy=None)

    with _released_unless_prepared(run_dir, resume_command, interrupts, note_failure):
        borrowed = _borrowed(run_dir, source, spec, group)
        with group.agreement():  # 3: weight maps, network, untrained scores
            reporter.line(f"run folder: {run_dir.path}  ({_setting(spec, device, group, split, location)})")
            tick = time.perf_counter()
            with reporter.stage("weight maps"):
                weight_maps = training_weight_maps(split.train, spec.weightmap)
            timings = {"weight_maps": time.perf_counter() - tick}
            torch.manual_seed(spec.training.seed)  # the initial weights: the same in every session
            model = unet_from_spec(spec.model)
            if spec.kind == "em":
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
                trainer.adopt(read_checkpoint(borrowed.checkpoint), borrowed.checkpoint)
        trackers = _trackers(tracking, run_dir, spec, trainer, borrowed, reporter)
        with _closed_on_failure(trackers):
            sessions = run_dir.begin_session(
                command=command or command_line(),
                iteration=trainer.iteration,
                overrides=spec.overrides,
                processes=group.world_size,
            )
            begun.extend(sessions)
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
        trackers=trackers,
    )


def _trackers(tracking, run_dir: RunDir, spec, trainer: Trainer, borrowed, reporter: Reporter) -> Tracker:
    """Where the run is also shown (``--track``); nothing without it."""
    if tracking is None or not tracking.kinds:
        return Tracker()
    # a run that predicts with another's network has no training of its own to show
    history = trainer.log if borrowed is None else None
    trackers = open_trackers(tracking, run_dir.path, spec, start=trainer.iteration, log=history)
    reporter.line(f"tracking: {trackers.where}")
    return trackers


@contextlib.contextmanager
def _closed_on_failure(trackers: Tracker) -> Iterator[None]:
    """The trackers opened before the session began are closed (an MLflow run marked killed) if it fails."""
    try:
        yield
    except BaseException:
        trackers.close()
        raise


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
    how = devices.describe(training.precision, training.memory_format, device, training.compile)
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


def read_data(spec: ChallengeSpec, data_root: Path | None, reporter: Reporter) -> tuple[str, Split]:
    with reporter.stage("reading the data"):
        collection = load_dataset(spec.data, data_root)
        split = split_collection(collection, spec.data.split)
    _check_chosen_on(spec, [sample.key for sample in collection.labelled])
    if not split.train:
        raise UserError("data.split: the training split is empty")
    if not split.evaluation:
        raise UserError("data.split: the evaluation split is empty; a run scores the evaluation images")
    return collection.location, split


def _check_chosen_on(spec: ChallengeSpec, labelled: list[str]) -> None:
    """``report.settings_chosen_on`` names labelled images of the data, or one :class:`UserError`."""
    unknown = [name for name in spec.report.settings_chosen_on if name not in labelled]
    if unknown:
        shown = ", ".join(labelled[:3]) + (f", ..., {labelled[-1]}" if len(labelled) > 3 else "")
        raise UserError(
            f"report.settings_chosen_on: {unknown[0]!r} is not a labelled image of {spec.data.dataset} "
            f"(its labelled images: {shown}); name the images as records and reports do"
        )


@contextlib.contextmanager
def _released_unless_prepared(
    run_dir: RunDir, resume_command: str, interrupts: Interrupts, note: Callable[[str], None]
) -> Iterator[None]:
    """Until the run is prepared, any failure releases the run folder's lock, and ``note(outcome)``
    records this process's session as it ended, if it has none yet (a first checkpoint the disk refused
    is a session too); Ctrl-C says how to resume."""
    try:
        yield
    except KeyboardInterrupt:
        _noted(note, "interrupted")
        run_dir.release()
        raise RunInterrupted(
            f"{run_dir.path}: interrupted before training started; resume with: {resume_command}",
            interrupts.requested,
        ) from None
    except WriteFailed as failed:
        _noted(note, "failed")
        run_dir.release()
        raise WriteFailed(f"{failed}; once it can be written, resume with: {resume_command}") from None
    except BaseException:
        _noted(note, "failed")
        run_dir.release()
        raise


def _noted(note: Callable[[str], None], outcome: str) -> None:
    with contextlib.suppress(WriteFailed, OSError):  # the disk that failed may refuse the note as well
        note(outcome)


def _trainer(
    spec, model, split, weight_maps, device, run_dir: RunDir, reporter: Reporter, group: Group
) -> Trainer:
    """The trainer, continued from the run's checkpoint, or checkpointed before its first step."""
    validate = None
    if split.validation and spec.training.validate_every:

        def validate(net):
            # without test-time averaging: validation only ranks checkpoints, 8x cheaper
            maps = evaluation.probabilities(net, split.validation, spec, device, tta="none")
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
    start_or_resume(trainer, spec, reporter, fresh=group.broadcast(not run_dir.checkpoint.is_file()))
    return trainer


def start_or_resume(trainer: Trainer, spec: ChallengeSpec, reporter: Reporter, *, fresh: bool) -> None:
    """Checkpoint a new run before its first step (every started run can be resumed), or continue it
    from its checkpoint; every rank of a data-parallel run calls it together."""
    if fresh:
        trainer.save()
        return
    with reporter.stage(f"loading {trainer.checkpoint}"):
        trainer.load()
    target = spec.training.iterations
    if trainer.iteration == target:
        reporter.line(
            f"resuming at iteration {trainer.iteration}: all {target} iterations are trained; predicting and "
            "scoring again"
        )
    elif trainer.iteration < target:
        reporter.line(f"resuming at iteration {trainer.iteration}, training on to {target}")
    with trainer.group.agreement():
        if trainer.iteration > spec.training.iterations:
            raise UserError(
                f"training.iterations: the run has trained {trainer.iteration} iterations already; "
                "give at least that many (or start a new run)"
            )


def _open_run_dir(spec: ChallengeSpec, out: Path | None, resume: Path | None) -> RunDir:
    text = dump_spec(spec)
    if resume is not None:
        _check_finished(spec, resume)
        return RunDir.resume(resume, spec)
    if out is not None:
        return RunDir.create(out, text)
    return RunDir.create_unique(Path("runs") / spec.name, run_id(text), text)


def _check_finished(spec: ChallengeSpec, resume: Path) -> None:
    """A finished run trains on only when told how far: a spec whose iteration count differs from the one
    the run finished at, without ``--iterations`` (or ``--set training.iterations=...``), is one line."""
    if RunDir.state(resume) != "finished":
        return
    finished = RunDir(resume).read_record().training.iterations
    asked = any(o.startswith("training.iterations=") for o in spec.overrides)
    if spec.training.iterations != finished and not asked:
        raise UserError(
            f"{resume}: the run finished at {finished} iterations, and this spec says "
            f"training.iterations = {spec.training.iterations}; give --iterations "
            f"{spec.training.iterations} to train it on (its record and report are written again), resume "
            f"it with its own {RunDir(resume).spec_file}, or start a new run"
        )


def _score_untrained(spec, model, split, device, run_dir: RunDir, reporter: Reporter) -> UntrainedScores:
    """Scores of the network as initialised, kept in the run folder for every later session."""
    tick = time.perf_counter()
    title = "untrained network: predicting"
    maps = evaluation.probabilities(model.to(device), split.evaluation, spec, device, reporter, title)
    with reporter.stage("untrained network: scoring"):
        scores = evaluation.score_maps(spec, split.evaluation, maps, names=split.names(SCORED))
    untrained = UntrainedScores(scores=scores, seconds=time.perf_counter() - tick)
    run_dir.write_untrained(untrained)
    return untrained


def end_session(context: RunContext, outcome: str) -> None:
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
