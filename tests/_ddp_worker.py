"""Workers of tests/test_distributed.py: one rank of a data-parallel trainer on the CPU (gloo, loopback).

Not collected by pytest. ``torch.multiprocessing.spawn`` starts each function in a fresh process; the
process group comes from :func:`unetbench.system.processes.joined`, exactly as under torchrun.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from unetbench.datasets import load_dataset
from unetbench.datasets.splits import split_collection
from unetbench.model.unet import unet_from_spec
from unetbench.system import processes
from unetbench.training.trainer import Trainer
from unetbench.training.weightmap import training_weight_maps


def environment(rank: int, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        GLOO_SOCKET_IFNAME="lo",
    )
    torch.set_num_threads(1)


def trainer(spec, group, checkpoint: Path | None) -> Trainer:
    split = split_collection(load_dataset(spec.data, None), spec.data.split)
    torch.manual_seed(spec.training.seed)
    model = unet_from_spec(spec.model)
    maps = training_weight_maps(split.train, spec.weightmap)
    return Trainer(
        spec.training,
        spec.augmentation,
        model,
        split.train,
        maps,
        device="cpu",
        checkpoint=checkpoint,
        group=group,
    )


def one_step(rank: int, world: int, port: int, spec, folder: Path) -> None:
    """One step on each rank; each rank's batch and rank 0's weights after the step go to ``folder``."""
    environment(rank, world, port)
    with processes.joined("cpu", lambda device: device) as group:
        trainer_ = trainer(spec, group, folder / "c.pt" if group.leader else None)
        torch.save(trainer_.batch(0), folder / f"batch-{rank}.pt")
        trainer_.step()
        if group.leader:
            torch.save(trainer_.model.state_dict(), folder / "weights.pt")
        trainer_.release()
        group.leave()


def train(rank: int, world: int, port: int, spec, folder: Path, stop_at: int | None, resume: bool) -> None:
    """Train to ``spec.training.iterations`` (checkpointing into ``folder``), or to ``stop_at`` and stop
    as a Ctrl-C would; ``resume``: continue from the checkpoint first."""
    environment(rank, world, port)
    with processes.joined("cpu", lambda device: device) as group:
        trainer_ = trainer(spec, group, folder / "c.pt" if group.leader else None)
        if resume:
            trainer_.load()
        else:
            trainer_.save()
        try:
            trainer_.fit(spec.training.iterations, stop=lambda: trainer_.iteration >= (stop_at or 1 << 30))
        except Exception as stopped:  # TrainingStopped
            if type(stopped).__name__ != "TrainingStopped":
                raise
        trainer_.release()
        group.leave()
