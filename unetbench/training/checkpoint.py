"""Checkpoints: plain tensors, numbers, strings, lists and dicts, and nothing that can run code.

A checkpoint is written with ``torch.save`` through the atomic writer and read with
``torch.load(..., weights_only=True)``, whose unpickler refuses every class and function that is not a
tensor or a built-in container: a crafted file (a pickle that calls ``os.system`` on load) is refused
with one line naming it, before anything in it runs. A truncated or foreign file is refused the same way.

What a checkpoint holds (see :meth:`unetbench.training.trainer.Trainer.state`): the iteration, the
weights, the optimiser state, the torch random states, the training log (loss curve,
validation history, the best validation and the losses since the last curve point), and the weights of
the best validation. The log and the best weights are in the same file, written in one rename, so they
cannot disagree.
"""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetbench.errors import UserError
from unetbench.records.json_io import PlainProblem, from_plain
from unetbench.records.run_record import Best, CurvePoint, ValidationPoint
from unetbench.system.atomic_writes import atomic_file

FORMAT = "unetbench-checkpoint"
# 2: training tiles drawn on the device per step (no numpy random state). Version 1 files are still read
# for their weights (predict, export); the trainer refuses to continue them.
VERSION = 2
READABLE = (1, 2)
_REQUIRED = {
    "format": str,
    "version": int,
    "iteration": int,
    "model": dict,
    "optimizer": dict,
    "torch_rng": torch.Tensor,
    "log": dict,
    "pending_loss": torch.Tensor,
    "pending_steps": int,
}


Weights = dict[str, torch.Tensor]


@dataclass
class TrainingLog:
    """The training so far, in the run record's types
    (:class:`~unetbench.records.run_record.TrainingSummary`)."""

    curve: list[CurvePoint] = field(default_factory=list)
    validation: list[ValidationPoint] = field(default_factory=list)
    best: Best | None = None  # the best validation: its weights are the ones scored
    seconds: float = 0.0  # training time, summed over sessions

    def to_plain(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> TrainingLog:
        return from_plain(cls, plain, "log")


def scored_weights(
    log: TrainingLog, last: Weights, iteration: int, best: Weights | None
) -> tuple[Weights, int]:
    """The one rule for the weights a run scores, and their iteration: the best validation's, else the
    last."""
    if log.best is not None and best is not None:
        return best, log.best.iteration
    return last, iteration


@dataclass
class RankState:
    """What differs between the ranks of a data-parallel run: the random states drop-out draws from and
    the losses since the last curve point. Rank 0's is kept at the top of the checkpoint (the only one of
    a one-process run), those of ranks 1, 2, ... in its ``ranks``."""

    torch_rng: torch.Tensor
    pending_loss: torch.Tensor
    cuda_rng: list[torch.Tensor] | None = None

    @classmethod
    def from_plain(cls, plain: dict[str, Any]) -> RankState:
        return cls(plain["torch_rng"], plain["pending_loss"], plain.get("cuda_rng"))


@dataclass
class Checkpoint:
    """What a checkpoint holds (module docstring), typed; :meth:`to_plain` is what is saved."""

    iteration: int
    model: Weights
    optimizer: dict[str, Any]
    torch_rng: torch.Tensor
    pending_loss: torch.Tensor
    pending_steps: int
    log: TrainingLog
    cuda_rng: list[torch.Tensor] | None = None
    best_model: Weights | None = None
    world_size: int = 1
    ranks: list[RankState] = field(default_factory=list)  # the rank states of ranks 1, 2, ...
    version: int = 2

    def scored_weights(self) -> tuple[Weights, int]:
        return scored_weights(self.log, self.model, self.iteration, self.best_model)

    def rank(self, rank: int) -> RankState:
        """The state of rank ``rank`` (0: the leader's, kept at the top)."""
        if rank == 0:
            return RankState(self.torch_rng, self.pending_loss, self.cuda_rng)
        return self.ranks[rank - 1]

    def to_plain(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "version"}
        plain["log"] = self.log.to_plain()
        plain["ranks"] = [dataclasses.asdict(r) for r in self.ranks]
        return plain

    @classmethod
    def from_plain(cls, state: dict[str, Any], source: Path) -> Checkpoint:
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            log = TrainingLog.from_plain(state["log"])
        except PlainProblem as problem:
            raise UserError(f"{source}: checkpoint field {problem.where!r}: {problem.message}") from None
        fields = {k: v for k, v in state.items() if k in names and k not in ("log", "ranks")}
        try:
            ranks = [RankState.from_plain(r) for r in state.get("ranks", [])]
        except (KeyError, TypeError):
            raise UserError(f"{source}: checkpoint field 'ranks' is damaged; start the run again") from None
        return cls(**fields, log=log, ranks=ranks)


def read_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """:func:`load_checkpoint`, typed."""
    return Checkpoint.from_plain(load_checkpoint(path, map_location=map_location), Path(path))


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (see the module docstring) atomically: a kill mid-write keeps the previous file."""
    with atomic_file(path) as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)
    return path


def load_checkpoint(path: Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; every problem is one :class:`UserError` naming the file."""
    path = Path(path)
    what = "start the run again, or resume from another copy"
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except pickle.UnpicklingError as err:
        if "unsupported global" not in str(err).lower():  # not a refused class: damaged or foreign
            raise UserError(f"{path}: damaged or not a checkpoint ({_detail(err)}); {what}") from None
        raise UserError(
            f"{path}: refused; it holds objects other than tensors and numbers, which a unetbench "
            f"checkpoint never does, and nothing in it was run ({_detail(err)}); {what}"
        ) from None
    except Exception as err:  # torch raises RuntimeError, EOFError, zipfile errors for damaged files
        raise UserError(f"{path}: damaged or not a checkpoint ({_detail(err)}); {what}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a unetbench checkpoint; {what}")
    if state.get("version") not in READABLE:
        raise UserError(
            f"{path}: checkpoint version {state.get('version')!r}; this unetbench reads versions "
            f"{', '.join(map(str, READABLE))}"
        )
    for key, kind in _REQUIRED.items():
        if not isinstance(state.get(key), kind):
            raise UserError(f"{path}: checkpoint field {key!r} is missing or of the wrong type; {what}")
    return state


def _detail(err: BaseException) -> str:
    """The informative line of torch's long error messages."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "unsupported global" in line.lower() or "unsupported operand" in line.lower():
            return line.rstrip(".")
    return (lines[0] if lines else type(err).__name__).rstrip(".")
