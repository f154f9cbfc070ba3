"""The training loop: one large tile per step by default, SGD with momentum 0.99 (paper, Sec. 3).

Read it top to bottom: :meth:`Trainer.fit` takes optimiser steps, logs the loss, validates now and then,
and checkpoints. A checkpoint holds everything a step depends on (weights, optimiser state, the torch
random states that drop-out draws from, the iteration, the losses since the last curve point) and the
training log with the best validation's weights, so a resumed run continues exactly where it stopped:
interrupted + resumed gives the same weights as straight through, bit for bit on the CPU, in every
precision.

**A step without host synchronisation.** The tiles of a batch are drawn, deformed and cut together on
the device (:class:`~unetbench.training.sampler.TileBatcher`) from a ``torch.Generator`` on the device,
seeded for each step from the run's seed and the iteration (:func:`~unetbench.training.sampler.step_seed`):
the tiles of step k are the same whether the run went straight through or was resumed, and no random
state has to travel between devices. The losses are summed on the device and read back at log points
only; validation and checkpoints are the other places where the host waits for the device.

**Precision, layout, compilation** come from the spec (``training.precision``, ``memory_format``,
``compile``; :mod:`unetbench.system.devices`) and run the same lines on the CPU as on a GPU. The compiled
network serves the training steps; validation and the saved weights use the network itself.

Interrupts are honoured between steps only, on one path (:meth:`Trainer._agreed`): one process asks
``stop()`` after each step, the ranks of a data-parallel run agree at log points; when it says so, ``fit``
writes a checkpoint of the state after the last complete step and raises :class:`TrainingStopped`.

**Several processes** (:mod:`unetbench.system.processes`): the network is wrapped in DistributedDataParallel,
each rank draws its tiles from its own stream (``step_seed(..., stream=rank)``) and its drop-out from its
own seed. The ranks agree at log points, not before every step, whether to stop and whether a time-based
checkpoint is due (one small all-reduce, so the steps between stay free of host waits); a checkpoint is
gathered from every rank (random state, pending losses) and written by rank 0; a resume reads it on rank
0 and hands each rank its part. Rank 0 alone validates.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unetbench.errors import PeerExit, UserError
from unetbench.records.run_record import Best, CurvePoint, ValidationPoint
from unetbench.spec import AugmentationSpec, TrainingSpec
from unetbench.system import devices
from unetbench.system.processes import SINGLE, Group, rank_seed
from unetbench.training.checkpoint import (
    VERSION,
    Checkpoint,
    RankState,
    TrainingLog,
    read_checkpoint,
    save_checkpoint,
    scored_weights,
)
from unetbench.training.loss import weighted_cross_entropy
from unetbench.training.sampler import TileBatcher, step_seed

# A point of the loss curve every 1/200 of the run: about 200 points in the record and its figure
# whatever the length, and the places where the host reads the loss back and the ranks of a
# data-parallel run agree whether to stop (so the steps between stay free of host waits).
CURVE_POINTS = 200


class TrainingStopped(Exception):
    """Training stopped between two steps on request; the checkpoint holds ``iteration``."""

    def __init__(self, iteration: int):
        super().__init__(f"training stopped at iteration {iteration}")
        self.iteration = iteration


def make_optimizer(model: torch.nn.Module, training) -> torch.optim.Optimizer:
    if training.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=training.learning_rate,
            momentum=training.momentum,
            weight_decay=training.weight_decay,
        )
    return torch.optim.Adam(model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)


def learning_rate(training, iteration: int) -> float:
    """The learning rate of step ``iteration`` (0-based): a function of the iteration alone, so a resume
    needs no scheduler state."""
    if training.lr_schedule == "step":
        factor = training.lr_step_factor ** (iteration // training.lr_step_every)
    elif training.lr_schedule == "cosine":
        total = training.iterations
        factor = 0.5 * (1 + math.cos(math.pi * min(iteration, total) / total))
    else:
        factor = 1.0
    return training.learning_rate * factor


@dataclass
class TrainingProgress:
    """Callbacks for whoever shows or tracks progress (the trainer itself prints nothing): ``update`` at
    every step (iteration, the last logged loss, iterations per second); ``logged`` at every point of the
    training curve, with the tiles per second since the previous point; ``validated`` after a
    validation."""

    update: Callable[[int, float, float], None] = lambda iteration, loss, speed: None
    validating: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    logged: Callable[[CurvePoint, float], None] = lambda point, tiles_per_second: None
    validated: Callable[[ValidationPoint], None] = lambda point: None


@dataclass(frozen=True)
class Validation:
    """How the trainer ranks its checkpoints: ``score(model)`` gives each metric on the validation split;
    the ``primary`` metric's best keeps its weights (:meth:`Trainer.scored_weights`)."""

    score: Callable[[torch.nn.Module], dict[str, float]]
    primary: str


class Trainer:
    """Trains ``model`` on tiles of ``samples`` with their weight maps, as the spec's ``[training]`` and
    ``[augmentation]`` sections say.

    ``validation`` ranks checkpoints (None: no validation, the last weights are scored); ``checkpoint`` is
    the file the state is written to (by rank 0: the other ranks of a data-parallel run give None);
    ``group``: this process's place in a data-parallel run (:mod:`unetbench.system.processes`).
    """

    def __init__(
        self,
        training: TrainingSpec,
        augmentation: AugmentationSpec,
        model,
        samples,
        weight_maps,
        *,
        device,
        checkpoint: Path | None,
        validation: Validation | None = None,
        group: Group = SINGLE,
    ):
        self.model, self.device = model, torch.device(device)
        self.group = group
        self.training = training
        self.checkpoint = checkpoint
        self.validation = validation
        self.tile = training.tile_size
        self.out = model.output_size(self.tile)
        self.memory_format = devices.memory_format(self.training.memory_format, self.device)
        self.model.to(self.device, memory_format=self.memory_format)
        # the steps go through DDP (several processes) and torch.compile (the spec's); the state dict,
        # validation and prediction use the network itself
        network: torch.nn.Module = self.model
        if group.active:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            network = DistributedDataParallel(self.model, device_ids=ids)
        self.forward = torch.compile(network) if self.training.compile else network
        # training images, targets and weights live on the device once, so tiles are cut there
        self.tiles = TileBatcher(
            samples,
            weight_maps,
            tile=self.tile,
            out=self.out,
            augmentation=augmentation,
            device=self.device,
        )
        self.generator = torch.Generator(device=self.device)
        self.optimizer = make_optimizer(model, self.training)
        torch.manual_seed(rank_seed(self.training.seed, group.rank))  # drop-out's random numbers
        self.iteration = 0
        self.saved_iteration = 0  # the iteration of the checkpoint on disk
        self.log = TrainingLog()
        self.best_weights: dict[str, torch.Tensor] | None = None  # on the CPU
        # the losses since the last curve point, summed on the device (read back at log points only)
        self._pending = torch.zeros((), dtype=torch.float32, device=self.device)
        self._pending_steps = 0
        self._since = time.perf_counter()

    def release(self) -> None:
        """Drop the DDP (and compiled) wrapper of the network, before a data-parallel run's process group
        goes (:meth:`~unetbench.system.processes.Group.leave`); the trainer can then only validate and
        save."""
        self.forward = self.model
        gc.collect()

    @contextlib.contextmanager
    def leaving_group_after(self) -> Iterator[None]:
        """Around training: when it ends at a point the ranks agree on (the last step, or a stop agreed at
        a log point), every rank leaves the process group together; after an error the group is left as
        it is (a peer may be gone, and torchrun ends the others)."""
        try:
            yield
        except TrainingStopped:
            self.release()
            self.group.leave()
            raise
        self.release()
        self.group.leave()

    # --- checkpoints -----------------------------------------------------------------------------

    def _rank_state(self) -> RankState:
        """What differs between the ranks of a data-parallel run: random states and pending losses."""
        return RankState(
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            pending_loss=self._pending.detach().cpu(),
        )

    def state(self, others: list[RankState] | None = None) -> dict[str, Any]:
        """Everything a step depends on, as plain tensors, numbers, strings, lists and dicts; ``others``:
        the rank states of ranks 1, 2, ... of a data-parallel run."""
        mine = self._rank_state()
        return Checkpoint(
            iteration=self.iteration,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            torch_rng=mine.torch_rng,
            cuda_rng=mine.cuda_rng,
            pending_loss=mine.pending_loss,
            log=self.log,
            pending_steps=self._pending_steps,
            best_model=self.best_weights,
            world_size=self.group.world_size,
            ranks=others or [],
        ).to_plain()

    def save(self) -> Path | None:
        """Write the checkpoint (atomically: a kill during the write leaves the previous one intact).

        In a data-parallel run every rank calls it at the same step: the rank states are gathered and
        rank 0 writes the file.
        """
        now = time.perf_counter()
        self.log.seconds += now - self._since
        self._since = now
        states = self.group.gather(self._rank_state())
        if self.group.leader:
            save_checkpoint(self.checkpoint, self.state(states[1:]))
        self.saved_iteration = self.iteration
        return self.checkpoint

    def load(self) -> None:
        """Continue from the checkpoint file; a damaged, unsafe or mismatched one is a :class:`UserError`.

        In a data-parallel run rank 0 reads it and checks it; every rank then takes the weights, the
        optimiser state and its own random state from rank 0.
        """
        with self.group.agreement():
            state = self._restore_leader() if self.group.leader else None
        if self.group.active:
            # what the other ranks need of it: not the log nor the best weights (rank 0 alone validates)
            shared = dataclasses.replace(state, log=TrainingLog(), best_model=None) if state else None
            shared = self.group.broadcast(shared)
            if not self.group.leader:
                self.model.load_state_dict(shared.model)
                self.optimizer.load_state_dict(shared.optimizer)
                self._restore_rank(shared.rank(self.group.rank), shared)

    def _restore_leader(self) -> Checkpoint:
        state = read_checkpoint(self.checkpoint, map_location="cpu")
        if state.version != VERSION:
            raise UserError(
                f"{self.checkpoint}: written by an earlier unetbench that drew its training tiles "
                f"differently (checkpoint version {state.version}); its weights can be applied (unetbench "
                "predict, export) but the run cannot continue exactly; start a new run"
            )
        trained_on = state.world_size
        if trained_on != self.group.world_size:
            raise UserError(
                f"{self.checkpoint}: this run trained on {trained_on} process(es) (effective batch "
                f"{trained_on * self.training.batch_size}); resume it on {trained_on} (torchrun "
                f"--nproc-per-node {trained_on}, or unetbench run --gpus {trained_on})"
                if trained_on > 1
                else f"{self.checkpoint}: this run trained in one process; resume it without torchrun or "
                "--gpus"
            )
        self._take(state, self.checkpoint, optimizer=True)
        self._restore_rank(state.rank(0), state)
        return state

    def adopt(self, state: Checkpoint, source: Path) -> None:
        """Take the trained network of another run's checkpoint ``state`` (read from ``source``): its
        weights, training log and best weights, to predict with. This trainer does not train further."""
        self._take(state, source, optimizer=False)
        self.iteration = self.saved_iteration = state.iteration

    def _take(self, state: Checkpoint, source: Path | None, *, optimizer: bool) -> None:
        try:
            self.model.load_state_dict(state.model)
            if optimizer:
                self.optimizer.load_state_dict(state.optimizer)
            self.log = state.log
            if state.best_model is not None:
                self.best_weights = {k: v.cpu() for k, v in state.best_model.items()}
                if self.best_weights.keys() != self.model.state_dict().keys():
                    raise ValueError("the best weights do not fit the network")
        except (RuntimeError, ValueError, TypeError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"{source}: does not fit this run's network or optimiser ({first}); resume with "
                "the spec the run started with"
            ) from None

    def _restore_rank(self, mine: RankState, common: Checkpoint) -> None:
        torch.set_rng_state(mine.torch_rng.cpu())
        if mine.cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in mine.cuda_rng])
        self._pending = mine.pending_loss.to(self.device, torch.float32)
        self.iteration = self.saved_iteration = common.iteration
        self._pending_steps = common.pending_steps

    def scored_weights(self) -> tuple[dict[str, torch.Tensor], int]:
        """The weights to score and their iteration: the best validation's, else the last."""
        return scored_weights(self.log, self.model.state_dict(), self.iteration, self.best_weights)

    # --- one step --------------------------------------------------------------------------------

    def batch(self, iteration: int):
        """This rank's tiles of step ``iteration``: images (B, 1, T, T), targets (B, O, O), weights
        (B, O, O)."""
        self.generator.manual_seed(step_seed(self.training.seed, iteration, stream=self.group.rank))
        draws = self.tiles.draw(self.generator, self.training.batch_size)
        return self.tiles.cut(draws)

    def step(self, batch=None) -> torch.Tensor:
        """One optimiser step on ``batch`` (default: :meth:`batch` of this iteration); returns the loss as
        a tensor on the device (no host synchronisation)."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.training, self.iteration)
        images, targets, weights = batch if batch is not None else self.batch(self.iteration)
        images = images.contiguous(memory_format=self.memory_format)
        with devices.autocast(self.training.precision, self.device):
            logits = self.forward(images)
        loss = weighted_cross_entropy(logits.float(), targets, weights)  # float32 soft-max and loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.iteration += 1
        return loss.detach()

    # --- the loop --------------------------------------------------------------------------------

    def fit(
        self,
        iterations: int,
        *,
        stop: Callable[[], bool] = lambda: False,
        progress: TrainingProgress | None = None,
    ) -> TrainingLog:
        """Train until ``iterations`` (counted from the start of the run, resumes included).

        A checkpoint is written every ``checkpoint_every`` iterations or ``checkpoint_minutes`` minutes,
        whichever comes first, and at the end. Raises :class:`TrainingStopped` after checkpointing when
        ``stop()`` turns true (asked after each step; in a data-parallel run, agreed at log points).
        """
        progress = progress or TrainingProgress()
        log_every = max(1, iterations // CURVE_POINTS)
        self._since = started = self._last_saved = self._last_logged = time.perf_counter()
        first = self.iteration
        while self.iteration < iterations:
            self._pending = self._pending + self.step()
            self._pending_steps += 1
            log_point = self.iteration % log_every == 0 or self.iteration == iterations
            if log_point:
                self._log_point(progress)
            if self._validation_due(iterations):
                with progress.validating():
                    self._validate()
                progress.validated(self.log.validation[-1])
            due, stopping = self._agreed(log_point, stop)
            if stopping or due or self.iteration % self.training.checkpoint_every == 0:
                self.save()
                self._last_saved = time.perf_counter()
            if stopping:
                raise TrainingStopped(self.iteration)
            loss = self.log.curve[-1].loss if self.log.curve else math.nan
            speed = (self.iteration - first) / max(time.perf_counter() - started, 1e-9)
            progress.update(self.iteration, loss, speed)
        self.save()
        return self.log

    def _log_point(self, progress: TrainingProgress) -> None:
        """A point of the training curve: the mean loss over every rank's tiles since the last point (the
        host waits for the device here only), and the tiles per second since then."""
        total = float(self.group.sum(self._pending))
        mean = total / (self._pending_steps * self.group.world_size)
        if not math.isfinite(mean):
            self._diverged(mean)
        self.log.curve.append(
            CurvePoint(self.iteration, mean, learning_rate(self.training, self.iteration - 1))
        )
        tiles = self._pending_steps * self.group.world_size * self.training.batch_size
        now = time.perf_counter()
        progress.logged(self.log.curve[-1], tiles / max(now - self._last_logged, 1e-9))
        self._last_logged = now
        self._pending = torch.zeros_like(self._pending)
        self._pending_steps = 0

    def _validation_due(self, iterations: int) -> bool:
        """Every ``validate_every`` iterations; and at the last iteration of a run that has not validated
        yet (shorter than ``validate_every``), whose scored weights are then the last ones either way."""
        every = self.training.validate_every
        if not (self.validation and self.group.leader and every):
            return False
        return self.iteration % every == 0 or (self.iteration == iterations and not self.log.validation)

    def _agreed(self, log_point: bool, stop: Callable[[], bool]) -> tuple[bool, bool]:
        """Whether a checkpoint is due by the clock (``checkpoint_minutes``) and whether to stop: the one
        place both are decided. One process asks after every step; the ranks of a data-parallel run agree
        at log points only, in one small all-reduce, so the steps between stay free of host waits."""
        if self.group.active and not log_point:
            return False, False
        due = time.perf_counter() - self._last_saved >= 60 * self.training.checkpoint_minutes
        due, stopping = self.group.any(due, stop())
        return due, stopping

    def _diverged(self, mean: float) -> None:
        """Stop a run whose loss is no longer a number, keeping the checkpoint on disk (its weights are
        finite); scoring NaN weights would only fail later with a less useful message."""
        first = self.iteration - self._pending_steps + 1
        if not self.group.leader:
            raise PeerExit(1)  # every rank has the same mean; rank 0 says it
        raise UserError(
            f"training diverged: the mean loss of iterations {first}-{self.iteration} is {mean} "
            f"(learning rate {learning_rate(self.training, self.iteration - 1)}, {self.training.optimizer}); "
            f"the checkpoint of iteration {self.saved_iteration} is kept, its weights untouched. Lower "
            "training.learning_rate and start a new run"
        )

    def _validate(self) -> None:
        from unetbench.metrics import METRICS

        metrics = self.validation.score(self.model)
        primary = self.validation.primary
        self.log.validation.append(ValidationPoint(self.iteration, metrics))
        higher = METRICS[primary].higher_is_better
        value, best = metrics[primary], self.log.best
        if value is None or math.isnan(value):
            return  # an undefined score is never the best
        if best is None or (value > best.value if higher else value < best.value):
            self.log.best = Best(self.iteration, primary, value)
            self.best_weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
