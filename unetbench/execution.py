"""How the network runs on its device: number precision, memory layout, compilation.

The spec's ``training.precision`` / ``inference.precision`` (``auto``, ``fp32``, ``bf16``) and
``memory_format`` (``auto``, ``channels_last``, ``contiguous``) are resolved here for the device a run
uses, the same way on every device, so the CPU runs (and CI tests) the very lines a GPU runs:

- ``auto`` precision is bf16 autocast on CUDA and float32 on the CPU; ``bf16`` is bf16 autocast on any
  device (the CPU supports it, slowly on most processors). Under autocast the convolutions run in bf16;
  the loss and the soft-max are always computed in float32 (the callers cast the logits first).
- ``auto`` memory format is channels_last on CUDA (the layout of the tensor cores' convolution kernels)
  and contiguous on the CPU.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def precision(choice: str, device) -> str:
    """``fp32`` or ``bf16``: what ``choice`` means on ``device``."""
    if choice == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32 or bf16, got {choice!r}")
    return choice


def autocast(choice: str, device) -> contextlib.AbstractContextManager:
    """The autocast context of ``choice`` on ``device`` (a no-op for float32)."""
    dtype = PRECISIONS[precision(choice, device)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def memory_format(choice: str, device) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``: what ``choice`` means on ``device``."""
    if choice == "auto":
        choice = "channels_last" if torch.device(device).type == "cuda" else "contiguous"
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format


def describe(choice_precision: str, choice_format: str, device, compiled: bool = False) -> str:
    """One phrase for logs and reports, e.g. ``bf16 autocast, channels_last, compiled``."""
    words = ["bf16 autocast" if precision(choice_precision, device) == "bf16" else "float32"]
    layout = memory_format(choice_format, device)
    words.append("channels_last" if layout == torch.channels_last else "contiguous")
    if compiled:
        words.append("torch.compile")
    return ", ".join(words)
