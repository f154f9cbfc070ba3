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

import pickle
from pathlib import Path
from typing import Any

import torch

from unetbench.atomic import atomic_file
from unetbench.errors import UserError

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
