"""Shared by the benchmarks: the median wall time of a call, after a burn-in call; the device and its name."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, *, burn_in: bool = True) -> float:
    """Median of ``repeats`` timed calls of ``fn``; one untimed call first (imports, caches, allocations)."""
    if burn_in:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_and_name(requested: str):
    """The torch device for ``auto``/``cpu``/``cuda`` (as ``unetbench run`` resolves it) and the words that
    name it beside a figure: the GPU's name, or the processor and its cores."""
    import torch

    from unetbench.devices import resolve_device
    from unetbench.results import hardware

    device = resolve_device(requested)
    machine = hardware(device)
    return torch.device(device), machine.gpu or f"{machine.processor}, {machine.cpu_cores} cores"
