"""Shared by the benchmarks: the median wall time of a call, after a burn-in call."""

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
