"""The training loop: one large tile per step by default, SGD with momentum 0.99 (paper, Sec. 3).

Read it top to bottom: :meth:`Trainer.fit` draws tiles, takes optimiser steps, logs the loss, validates
now and then, and checkpoints. Everything a step depends on (weights, optimiser and schedule state, the
numpy and torch random states, the iteration) is in the checkpoint, so a resumed run continues exactly
where it stopped: N + N iterations with a resume in between give the same weights as 2N straight (CPU).
"""

from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from unetbench.results import atomic_write_bytes
from unetbench.training.augment import draw_deformation
from unetbench.training.loss import weighted_cross_entropy
from unetbench.training.sampler import random_output_origin, sample_tile_torch

LAST, BEST = "last.pt", "best.pt"


@dataclass
class TrainingLog:
    curve: list[dict[str, float]] = field(default_factory=list)  # iteration, loss (mean since last), lr
    validation: list[dict[str, Any]] = field(default_factory=list)  # iteration, metrics
    best: dict[str, Any] | None = None  # iteration, metric, value
    seconds: float = 0.0  # training time, summed over resumed sessions


def make_optimizer(model: torch.nn.Module, training) -> torch.optim.Optimizer:
    if training.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=training.learning_rate,
            momentum=training.momentum,
            weight_decay=training.weight_decay,
        )
    return torch.optim.Adam(model.parameters(), lr=training.learning_rate, weight_decay=training.weight_decay)


def make_schedule(optimizer, training) -> torch.optim.lr_scheduler.LambdaLR:
    total = training.iterations

    def factor(step: int) -> float:
        if training.lr_schedule == "step":
            return training.lr_step_factor ** (step // training.lr_step_every)
        if training.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Trainer:
    """Trains ``model`` on tiles of ``samples`` with their weight maps, as ``spec`` says.

    ``validate(model) -> dict[str, float]`` scores the model on the validation split (or is None);
    ``checkpoints`` is the folder for ``last.pt`` and ``best.pt``.
    """

    def __init__(
        self, spec, model, samples, weight_maps, *, device, checkpoints: Path, validate=None, progress=True
    ):
        self.spec, self.model, self.device = spec, model, torch.device(device)
        self.training = spec.training
        self.checkpoints = checkpoints
        self.validate = validate
        self.progress = progress
        self.tile = spec.training.tile_size
        self.out = model.output_size(self.tile)
        self.model.to(self.device)
        if self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        # training images, targets and weights live on the device once, so tiles are cut there
        self.data = [
            (
                torch.from_numpy(s.image).to(self.device),
                torch.from_numpy(s.target.astype(np.int64)).to(self.device),
                torch.from_numpy(weight_maps[s.key]).to(self.device),
            )
            for s in samples
        ]
        self.optimizer = make_optimizer(model, self.training)
        self.schedule = make_schedule(self.optimizer, self.training)
        self.rng = np.random.default_rng(self.training.seed)
        torch.manual_seed(self.training.seed)
        self.iteration = 0
        self.log = TrainingLog()

    # --- checkpoints -----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "log": self.log.__dict__,
        }

    def save(self, name: str = LAST) -> Path:
        """Write a checkpoint atomically: a kill during the write leaves the previous one intact."""
        buffer = io.BytesIO()
        torch.save(self.state(), buffer)
        path = self.checkpoints / name
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def load(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.iteration = state["iteration"]
        self.log = TrainingLog(**state["log"])

    # --- one step --------------------------------------------------------------------------------

    def _batch(self):
        images, targets, weights = [], [], []
        for _ in range(self.training.batch_size):
            image, target, weight = self.data[int(self.rng.integers(len(self.data)))]
            origin = random_output_origin(self.rng, tuple(image.shape), self.out)
            deformation = draw_deformation(self.rng, self.spec.augmentation)
            tile = sample_tile_torch(
                image,
                target,
                weight,
                tile=self.tile,
                out=self.out,
                origin=origin,
                deformation=deformation,
                interpolation=self.spec.augmentation.interpolation,
            )
            images.append(tile.image)
            targets.append(tile.target)
            weights.append(tile.weights)
        return (
            torch.stack(images)[:, None],
            torch.stack(targets),
            torch.stack(weights),
        )  # (B,1,T,T) (B,O,O) (B,O,O)

    def step(self) -> float:
        self.model.train()
        images, targets, weights = self._batch()
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = self.model(images)
        loss = weighted_cross_entropy(logits, targets, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        self.iteration += 1
        return float(loss.detach())

    # --- the loop --------------------------------------------------------------------------------

    def fit(self, iterations: int) -> TrainingLog:
        """Train until ``iterations`` (counted from the start of the run, resumes included)."""
        log_every = max(1, iterations // 200)
        losses: list[float] = []
        columns = (
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[speed]:.2f} it/s"),
            TimeRemainingColumn(),
        )
        fit_start = self._since = time.perf_counter()
        started_at = self.iteration
        try:
            with Progress(*columns, disable=not self.progress) as bar:
                task = bar.add_task(
                    "train", total=iterations, completed=self.iteration, loss=float("nan"), speed=0.0
                )
                while self.iteration < iterations:
                    losses.append(self.step())
                    if self.iteration % log_every == 0 or self.iteration == iterations:
                        lr = self.optimizer.param_groups[0]["lr"]
                        self.log.curve.append(
                            {"iteration": self.iteration, "loss": float(np.mean(losses)), "lr": lr}
                        )
                        losses = []
                    if (
                        self.validate
                        and self.training.validate_every
                        and self.iteration % self.training.validate_every == 0
                    ):
                        self._validate()
                    if self.iteration % self.training.checkpoint_every == 0:
                        self._checkpoint()
                    elapsed = max(time.perf_counter() - fit_start, 1e-9)
                    bar.update(
                        task,
                        completed=self.iteration,
                        loss=self.log.curve[-1]["loss"] if self.log.curve else float("nan"),
                        speed=(self.iteration - started_at) / elapsed,
                    )
        except KeyboardInterrupt:
            self._checkpoint()  # Ctrl-C leaves a resumable checkpoint
            raise
        self._checkpoint()
        return self.log

    def _checkpoint(self) -> None:
        now = time.perf_counter()
        self.log.seconds += now - self._since
        self._since = now
        self.save(LAST)

    def _validate(self) -> None:
        metrics = self.validate(self.model)
        primary = self.spec.evaluation.primary
        self.log.validation.append({"iteration": self.iteration, "metrics": metrics})
        from unetbench.metrics import METRICS

        higher = METRICS[primary].higher_is_better
        value = metrics[primary]
        best = self.log.best
        if best is None or (value > best["value"] if higher else value < best["value"]):
            self.log.best = {"iteration": self.iteration, "metric": primary, "value": value}
            self.save(BEST)
