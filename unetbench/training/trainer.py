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
``compile``; :mod:`unetbench.execution`) and run the same lines on the CPU as on a GPU. The compiled
network serves the training steps; validation and the saved weights use the network itself.

Interrupts are honoured between steps only: ``fit`` asks ``stop()`` before each step, and when it says
so, writes a checkpoint of the state after the last complete step and raises :class:`TrainingStopped`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetbench import execution
from unetbench.errors import UserError
from unetbench.training.checkpoint import VERSION, load_checkpoint, save_checkpoint
from unetbench.training.loss import weighted_cross_entropy
from unetbench.training.sampler import TileBatcher, step_seed


class TrainingStopped(Exception):
    """Training stopped between two steps on request; the checkpoint holds ``iteration``."""

    def __init__(self, iteration: int):
        super().__init__(f"training stopped at iteration {iteration}")
        self.iteration = iteration


@dataclass
class TrainingLog:
    curve: list[dict[str, float]] = field(default_factory=list)  # iteration, loss (mean since last), lr
    validation: list[dict[str, Any]] = field(default_factory=list)  # iteration, metrics
    best: dict[str, Any] | None = None  # iteration, metric, value: the weights kept as the best
    seconds: float = 0.0  # training time, summed over sessions


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
    """Callbacks for whoever shows progress (the trainer itself prints nothing)."""

    update: Callable[[int, float, float], None] = lambda iteration, loss, speed: None
    validating: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


class Trainer:
    """Trains ``model`` on tiles of ``samples`` with their weight maps, as ``spec`` says.

    ``validate(model) -> dict[str, float]`` scores the model on the validation split (or is None);
    ``checkpoint`` is the file the state is written to.
    """

    def __init__(self, spec, model, samples, weight_maps, *, device, checkpoint: Path, validate=None):
        self.spec, self.model, self.device = spec, model, torch.device(device)
        self.training = spec.training
        self.checkpoint = checkpoint
        self.validate = validate
        self.tile = spec.training.tile_size
        self.out = model.output_size(self.tile)
        self.memory_format = execution.memory_format(self.training.memory_format, self.device)
        self.model.to(self.device, memory_format=self.memory_format)
        # compiled for the steps only: the state dict, validation and prediction use the network itself
        self.forward = torch.compile(self.model) if self.training.compile else self.model
        # training images, targets and weights live on the device once, so tiles are cut there
        self.tiles = TileBatcher(
            samples,
            weight_maps,
            tile=self.tile,
            out=self.out,
            augmentation=spec.augmentation,
            device=self.device,
        )
        self.generator = torch.Generator(device=self.device)
        self.optimizer = make_optimizer(model, self.training)
        torch.manual_seed(self.training.seed)  # drop-out's random numbers
        self.iteration = 0
        self.saved_iteration = 0  # the iteration of the checkpoint on disk
        self.log = TrainingLog()
        self.best_weights: dict[str, torch.Tensor] | None = None  # on the CPU
        # the losses since the last curve point, summed on the device (read back at log points only)
        self._pending = torch.zeros((), dtype=torch.float32, device=self.device)
        self._pending_steps = 0
        self._since = time.perf_counter()

    # --- checkpoints -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything a step depends on, as plain tensors, numbers, strings, lists and dicts."""
        return {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "log": asdict(self.log),
            "pending_loss": self._pending.detach().cpu(),
            "pending_steps": self._pending_steps,
            "best_model": self.best_weights,
        }

    def save(self) -> Path:
        """Write the checkpoint (atomically: a kill during the write leaves the previous one intact)."""
        now = time.perf_counter()
        self.log.seconds += now - self._since
        self._since = now
        save_checkpoint(self.checkpoint, self.state())
        self.saved_iteration = self.iteration
        return self.checkpoint

    def load(self) -> None:
        """Continue from the checkpoint file; a damaged, unsafe or mismatched one is a :class:`UserError`."""
        state = load_checkpoint(self.checkpoint, map_location=self.device)
        if state["version"] != VERSION:
            raise UserError(
                f"{self.checkpoint}: written by an earlier unetbench that drew its training tiles "
                f"differently (checkpoint version {state['version']}); its weights can be applied (unetbench "
                "predict, export) but the run cannot continue exactly; start a new run"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.log = TrainingLog(**state["log"])
            if state.get("best_model") is not None:
                self.best_weights = {k: v.cpu() for k, v in state["best_model"].items()}
                if self.best_weights.keys() != self.model.state_dict().keys():
                    raise ValueError("the best weights do not fit the network")
        except (RuntimeError, ValueError, TypeError, KeyError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"{self.checkpoint}: does not fit this run's network or optimiser ({first}); resume with "
                "the spec the run started with"
            ) from None
        torch.set_rng_state(state["torch_rng"].cpu())
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self.iteration = self.saved_iteration = state["iteration"]
        self._pending = state["pending_loss"].to(self.device, torch.float32)
        self._pending_steps = state["pending_steps"]

    def scored_weights(self) -> tuple[dict[str, torch.Tensor], int]:
        """The weights to score and their iteration: the best validation's, else the last."""
        if self.log.best is not None and self.best_weights is not None:
            return self.best_weights, int(self.log.best["iteration"])
        return self.model.state_dict(), self.iteration

    # --- one step --------------------------------------------------------------------------------

    def batch(self, iteration: int):
        """The tiles of step ``iteration``: images (B, 1, T, T), targets (B, O, O), weights (B, O, O)."""
        self.generator.manual_seed(step_seed(self.training.seed, iteration))
        draws = self.tiles.draw(self.generator, self.training.batch_size)
        return self.tiles.cut(draws)

    def step(self) -> torch.Tensor:
        """One optimiser step; returns the loss as a tensor on the device (no host synchronisation)."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.training, self.iteration)
        images, targets, weights = self.batch(self.iteration)
        images = images.contiguous(memory_format=self.memory_format)
        with execution.autocast(self.training.precision, self.device):
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
        ``stop()`` turns true.
        """
        progress = progress or TrainingProgress()
        log_every = max(1, iterations // 200)
        every, minutes = self.training.checkpoint_every, self.training.checkpoint_minutes
        self._since = started = last_saved = time.perf_counter()
        first = self.iteration
        while self.iteration < iterations:
            if stop():
                self.save()
                raise TrainingStopped(self.iteration)
            self._pending = self._pending + self.step()
            self._pending_steps += 1
            if self.iteration % log_every == 0 or self.iteration == iterations:
                mean = float(self._pending) / self._pending_steps  # host sync: log points only
                if not math.isfinite(mean):
                    self._diverged(mean)
                self.log.curve.append(
                    {
                        "iteration": self.iteration,
                        "loss": mean,
                        "lr": learning_rate(self.training, self.iteration - 1),
                    }
                )
                self._pending = torch.zeros_like(self._pending)
                self._pending_steps = 0
            if (
                self.validate
                and self.training.validate_every
                and self.iteration % self.training.validate_every == 0
            ):
                with progress.validating():
                    self._validate()
            now = time.perf_counter()
            if self.iteration % every == 0 or now - last_saved >= 60 * minutes:
                self.save()
                last_saved = time.perf_counter()
            loss = self.log.curve[-1]["loss"] if self.log.curve else math.nan
            progress.update(self.iteration, loss, (self.iteration - first) / max(now - started, 1e-9))
        self.save()
        return self.log

    def _diverged(self, mean: float) -> None:
        """Stop a run whose loss is no longer a number, keeping the checkpoint on disk (its weights are
        finite); scoring NaN weights would only fail later with a less useful message."""
        first = self.iteration - self._pending_steps + 1
        raise UserError(
            f"training diverged: the mean loss of iterations {first}-{self.iteration} is {mean} "
            f"(learning rate {learning_rate(self.training, self.iteration - 1)}, {self.training.optimizer}); "
            f"the checkpoint of iteration {self.saved_iteration} is kept, its weights untouched. Lower "
            "training.learning_rate and start a new run"
        )

    def _validate(self) -> None:
        from unetbench.metrics import METRICS

        metrics = self.validate(self.model)
        primary = self.spec.evaluation.primary
        self.log.validation.append({"iteration": self.iteration, "metrics": metrics})
        higher = METRICS[primary].higher_is_better
        value, best = metrics[primary], self.log.best
        if value is None or math.isnan(value):
            return  # an undefined score is never the best
        if best is None or (value > best["value"] if higher else value < best["value"]):
            self.log.best = {"iteration": self.iteration, "metric": primary, "value": value}
            self.best_weights = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
