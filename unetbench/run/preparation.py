"""Before the first step of ``unetbench run``: device, memory, data, run folder, weight maps, untrained
scores and checkpoint (:func:`prepare`).

Nothing is written until the spec, the device and the data pass. The stages themselves are in
:mod:`unetbench.run.runner`; what they share is a :class:`~unetbench.run.context.RunContext`; the
sessions' bookkeeping is :mod:`unetbench.run.sessions`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetbench.datasets import load_dataset
from unetbench.datasets.splits import Split, split_collection
from unetbench.errors import UserError
from unetbench.evaluation import scoring
from unetbench.metrics import warm_up_kernels
from unetbench.model.unet import unet_from_spec
from unetbench.records.provenance import command_line, run_id
from unetbench.records.run_folder import RunDir, UntrainedScores
from unetbench.records.run_record import Scores, Session
from unetbench.run import predicting
from unetbench.run.commands import resume_command
from unetbench.run.context import SCORED, RunContext
from unetbench.run.progress import Reporter
from unetbench.run.sessions import released_unless_prepared
from unetbench.spec import ChallengeSpec, dump_spec, first_difference, training_part
from unetbench.system import devices, processes
from unetbench.system.atomic_writes import check_folder
from unetbench.system.interrupts import Interrupts
from unetbench.system.processes import Group
from unetbench.tracking.trackers import Tracker, Tracking, open_trackers
from unetbench.training.checkpoint import read_checkpoint
from unetbench.training.trainer import Trainer, Validation
from unetbench.training.weightmap import training_weight_maps


def prepare(
    spec: ChallengeSpec,
    *,
    data_root: Path | None,
    out: Path | None,
    resume: Path | None,
    reports: Path | None,
    reporter: Reporter,
    interrupts: Interrupts,
    group: Group = processes.SINGLE,
    command: str | None = None,
    weights_from: Path | None = None,
    tracking: Tracking | None = None,
) -> RunContext:
    """Everything before the first step; nothing is written until the spec, device and data pass. The
    ranks of a data-parallel run meet at three agreements (:func:`unetbench.run.runner.train_beside_leader`
    meets them in the same order)."""
    device = group.device
    with group.agreement():  # 1: device, memory and data (on every rank)
        devices.check_memory(spec, device)
        reports_root = (reports if reports is not None else Path(spec.report.directory)).absolute()
        check_folder(reports_root / spec.name, what="reports folder (--reports or report.directory)")
        location, split = read_data(spec, data_root, reporter)
        source = _weights_source(spec, weights_from) if weights_from is not None else None
    with group.agreement():  # 2: the run folder
        run_dir = _open_run_dir(spec, out, resume)
    again = resume_command(
        run_dir.spec_file, run_dir.path, data_root=data_root, reports=reports, processes_=group.world_size
    )
    command = command or command_line()
    begun: list[Session] = []
    note = _failure_note(run_dir, spec, group, command, begun)
    with released_unless_prepared(run_dir, again, interrupts, note):
        borrowed = _borrowed(run_dir, source, spec, group)
        with group.agreement():  # 3: weight maps, network, untrained scores
            reporter.line(f"run folder: {run_dir.path}  ({_setting(spec, device, group, split, location)})")
            network = _network(spec, split, device, run_dir, reporter)
        trainer = _trainer(spec, network, split, device, run_dir, reporter, group, borrowed)
        trackers = _trackers(tracking, run_dir, spec, trainer, borrowed, reporter)
        with _closed_on_failure(trackers):
            begun += run_dir.begin_session(
                command=command,
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
        untrained=network.untrained,
        sessions=tuple(begun),
        resume_command=again,
        reports=reports_root,
        weight_map_seconds=network.weight_map_seconds,
        borrowed=borrowed,
        trackers=trackers,
    )


@dataclass(frozen=True)
class Network:
    """The untrained network of a run, its training weight maps and its untrained scores."""

    model: torch.nn.Module
    weight_maps: dict
    untrained: UntrainedScores
    weight_map_seconds: float


def _network(spec: ChallengeSpec, split: Split, device: str, run_dir: RunDir, reporter: Reporter) -> Network:
    """Weight maps, the network as initialised (the same in every session), and its scores (kept in the
    run folder for every later session)."""
    tick = time.perf_counter()
    with reporter.stage("weight maps"):
        weight_maps = training_weight_maps(split.train, spec.weightmap)
    seconds = time.perf_counter() - tick
    torch.manual_seed(spec.training.seed)  # the initial weights: the same in every session
    model = unet_from_spec(spec.model)
    if spec.kind == "em":
        with reporter.stage("metric kernels (compiled on the first run, then loaded from a cache)"):
            warm_up_kernels()
    untrained = run_dir.read_untrained() or _score_untrained(spec, model, split, device, run_dir, reporter)
    return Network(model, weight_maps, untrained, seconds)


def _failure_note(run_dir: RunDir, spec: ChallengeSpec, group: Group, command: str, begun: list[Session]):
    """``note(outcome)``: this process's session, begun and ended at once, where preparing failed before
    it began (rank 0 alone writes sessions)."""

    def note(outcome: str) -> None:
        if begun or not group.leader:
            return
        iteration = max((s.last_iteration for s in run_dir.read_sessions()), default=0)
        sessions = run_dir.begin_session(
            command=command, iteration=iteration, overrides=spec.overrides, processes=group.world_size
        )
        run_dir.end_session(sessions, outcome, iteration, others_busy=None)

    return note


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


def _trainer(
    spec, network: Network, split, device, run_dir: RunDir, reporter: Reporter, group: Group, borrowed
):
    """The trainer: continued from the run's checkpoint, or checkpointed before its first step; or, for a
    run that predicts with another's network, holding that network."""
    made = functools.partial(
        Trainer,
        spec.training,
        spec.augmentation,
        network.model,
        split.train,
        network.weight_maps,
        device=device,
    )
    if borrowed is not None:
        trainer = made(checkpoint=None)
        with reporter.stage(f"taking the trained network of {borrowed.path}"):
            trainer.adopt(read_checkpoint(borrowed.checkpoint), borrowed.checkpoint)
        return trainer
    validation = None
    if split.validation and spec.training.validate_every:

        def validate(net):
            # without test-time averaging: validation only ranks checkpoints, 8x cheaper
            maps = predicting.probabilities(net, split.validation, spec, device, tta="none")
            return scoring.score_maps(spec, split.validation, maps, per_image=False).aggregate

        validation = Validation(validate, spec.evaluation.primary)
    trainer = made(checkpoint=run_dir.checkpoint, validation=validation, group=group)
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
    """Scores of the network as initialised, kept in the run folder for every later session. Where this
    process scored the same initial weights, with the same inference, post-processing and metrics, on the
    same images before (the runs of an ablation that vary the training alone), those scores are taken."""
    tick = time.perf_counter()
    key = _untrained_key(spec, model, split, device)
    if key not in _UNTRAINED_SCORES:
        title = "untrained network: predicting"
        maps = predicting.probabilities(model.to(device), split.evaluation, spec, device, reporter, title)
        with reporter.stage("untrained network: scoring"):
            scores = scoring.score_maps(spec, split.evaluation, maps, names=split.names(SCORED))
        _UNTRAINED_SCORES[key] = scores
    else:
        reporter.line("untrained network: scored already in this process (the same weights and images)")
    untrained = UntrainedScores(scores=_UNTRAINED_SCORES[key], seconds=time.perf_counter() - tick)
    run_dir.write_untrained(untrained)
    return untrained


_UNTRAINED_SCORES: dict[str, Scores] = {}


def _untrained_key(spec: ChallengeSpec, model, split: Split, device: str) -> str:
    """What decides the untrained scores, hashed: the initial weights, the scored images and their
    annotations, and the sections and device that predict and score them."""
    digest = hashlib.blake2b(repr((spec.kind, spec.inference, spec.postprocess, spec.evaluation)).encode())
    digest.update(f"{device} {split.names(SCORED)}".encode())
    for name, tensor in model.state_dict().items():  # names, shapes and types as well as the bytes
        digest.update(f"{name} {tuple(tensor.shape)} {tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    for sample in split.evaluation:
        for array in (sample.image, sample.target, sample.instances):
            if array is not None:
                digest.update(f"{array.shape} {array.dtype}".encode())
                digest.update(np.ascontiguousarray(array))
    return digest.hexdigest()
