"""How the network runs on its device: number precision, memory layout, compilation.

The spec's ``training.precision`` / ``inference.precision`` (``auto``, ``fp32``, ``bf16``) and
``memory_format`` (``auto``, ``channels_last``, ``contiguous``) are resolved here for the device a run
uses, the same way on every device, so the CPU runs (and CI tests) the very lines a GPU runs:

- ``auto`` precision is bf16 autocast on CUDA and on a CPU that computes bf16 natively (x86 with
  AVX512-BF16 or AMX-BF16, Arm with BF16: :func:`native_bf16`), float32 on other CPUs, where bf16 is
  emulated and slower than float32. ``bf16`` is bf16 autocast on any device. Under autocast the
  convolutions run in bf16; the loss and the soft-max are always computed in float32 (the callers cast
  the logits first).
- ``auto`` memory format, for training, is channels_last where ``auto`` precision is bf16 (the layout of
  the tensor cores' and of oneDNN's blocked bf16 convolution kernels) and contiguous elsewhere; for
  prediction it is channels_last on every device. Prediction puts the network's weights in its layout for
  the call and back afterwards (:func:`laid_out`), so validation in the middle of a training run leaves
  the training's layout as it was.

Why: on a CPU with bf16 in hardware, bf16 autocast with channels_last is the fastest of the four
settings for em-cpu's training step (``benchmarks/cpu_precision.py`` measures the four against each other
in one run and writes its table to ``reports/benchmarks/``). In float32, channels_last predicts about
twice as fast as contiguous on both processors measured (``cpu-precision.md``, an Intel Xeon with bf16;
``cpu-precision-epyc.md``, an AMD EPYC without: 4.01 -> 2.08 and 4.12 -> 2.30 s per em-cpu slice). The
float32 training step gains 1.12-1.13x there too, yet stays contiguous under ``auto``: a float32 run
trained before would no longer count as this machine's twin for an ablation to reuse, so that change
waits for a measurement of what it does to the trained networks.

What ``auto`` became on the machine that ran is recorded in the run
(:class:`~unetbench.system.execution.ExecutionUsed`), so a report rendered on another machine names what ran,
not
what its own processor would choose.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from pathlib import Path

import torch

from unetbench.errors import UserError
from unetbench.spec import ChallengeSpec
from unetbench.system.execution import ExecutionUsed, execution_phrase
from unetbench.system.memory import memory_problem

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}
# /proc/cpuinfo flags of processors with bf16 arithmetic in hardware (x86: "flags", Arm: "Features")
BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


@functools.cache
def native_bf16() -> bool:
    """Whether this machine's CPU computes bf16 in hardware (module docstring); False where it cannot
    tell (no ``/proc/cpuinfo``)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return platform.machine() == "arm64" and platform.system() == "Darwin"  # Apple M2 and later
    for line in cpuinfo.read_text(errors="replace").splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return bool(BF16_FLAGS & set(value.split()))
    return False


def _fast_bf16(device) -> bool:
    return torch.device(device).type == "cuda" or native_bf16()


def precision(choice: str, device) -> str:
    """``fp32`` or ``bf16``: what ``choice`` means on ``device``."""
    if choice == "auto":
        return "bf16" if _fast_bf16(device) else "fp32"
    if choice not in PRECISIONS:
        raise ValueError(f"precision must be auto, fp32 or bf16, got {choice!r}")
    return choice


def autocast(choice: str, device) -> contextlib.AbstractContextManager:
    """The autocast context of ``choice`` on ``device`` (a no-op for float32)."""
    dtype = PRECISIONS[precision(choice, device)]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def memory_format(choice: str, device, *, inference: bool = False) -> torch.memory_format:
    """``torch.channels_last`` or ``torch.contiguous_format``: what ``choice`` means on ``device``, for
    training or, with ``inference``, for prediction (module docstring)."""
    if choice == "auto":
        choice = "channels_last" if inference or _fast_bf16(device) else "contiguous"
    return torch.channels_last if choice == "channels_last" else torch.contiguous_format


def layout_name(choice: str, device, *, inference: bool = False) -> str:
    layout = memory_format(choice, device, inference=inference)
    return "channels_last" if layout == torch.channels_last else "contiguous"


def _layout_of(model: torch.nn.Module) -> torch.memory_format:
    """The layout of ``model``'s convolution weights (contiguous where none tells the two apart)."""
    for weight in model.parameters():
        if weight.dim() == 4 and weight.shape[1] > 1 and weight.shape[2] * weight.shape[3] > 1:
            if not weight.is_contiguous() and weight.is_contiguous(memory_format=torch.channels_last):
                return torch.channels_last
            return torch.contiguous_format
    return torch.contiguous_format


@contextlib.contextmanager
def laid_out(model: torch.nn.Module, layout: torch.memory_format):
    """``model``'s 4-D weights in ``layout`` within the block, and in their own layout again after it
    (a layout change copies the values, so the weights are bit for bit what they were)."""
    before = _layout_of(model)
    if before == layout:
        yield model
        return
    model.to(memory_format=layout)
    try:
        yield model
    finally:
        model.to(memory_format=before)


def describe(choice_precision: str, choice_format: str, device, compiled: bool = False) -> str:
    """One phrase for logs and reports, e.g. ``bf16 autocast, channels_last, torch.compile``."""
    return execution_phrase(precision(choice_precision, device), layout_name(choice_format, device), compiled)


def resolve(spec, device) -> ExecutionUsed:
    """The run's precision, layout and compilation on ``device``, as :class:`ExecutionUsed`."""
    training, inference = spec.training, spec.inference
    return ExecutionUsed(
        training_precision=precision(training.precision, device),
        training_memory_format=layout_name(training.memory_format, device),
        compiled=training.compile,
        inference_precision=precision(inference.precision, device),
        inference_memory_format=layout_name(inference.memory_format, device, inference=True),
        native_bf16=native_bf16(),
    )


# --- the device: which one, and whether a run fits it --------------------------------------------------


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for, but torch sees no GPU; use --device cpu or auto")
    return requested


def device_memory(device: str) -> tuple[int, str]:
    """Total memory of the device and how to name it in a message."""
    if torch.device(device).type == "cuda":
        index = torch.device(device).index or 0
        properties = torch.cuda.get_device_properties(index)
        return properties.total_memory, f"the memory of GPU {index}, {properties.name}"
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's memory"


def check_memory(spec: ChallengeSpec, device: str, runs: int = 1) -> None:
    """Refuse tiles and batches that cannot fit the device, from the layer sizes, before allocating;
    ``runs``: how many runs share the device at once (``--runs-per-device``)."""
    available, where = device_memory(device)
    problem = memory_problem(spec, available, where, runs=runs)
    if problem is not None:
        key, message = problem
        raise UserError(f"{key}: {message}")
