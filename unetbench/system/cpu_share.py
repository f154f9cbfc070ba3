"""Whether a run had its CPU cores to itself while it trained.

A training time measured while a test suite or a second run shares the cores is not the machine's
figure: on the project's 2-core machine one such neighbour made a 4.6-minute em-cpu fold take an hour.
So the runner measures, over the training of each session, how many of the cores this process may run
on were kept busy by *other* processes, on average: the busy time of those cores (``/proc/stat``) less
this process's own CPU time (``os.times``), over the wall time. It is recorded in the session
(:attr:`~unetbench.records.run_record.Session.others_busy`), printed when it passes :data:`SHARED`, and
reports
name the runs it marks.

Linux only; elsewhere, and for spans too short for the kernel's clock ticks, nothing is measured (None).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

SHARED = 0.25  # cores kept busy by others, on average, from which a run's times are called shared
_SHORTEST = 2.0  # seconds: below this the 10 ms ticks of /proc/stat say too little


@dataclass(frozen=True)
class CpuClock:
    """One reading: the wall clock, the busy time of this process's cores, this process's CPU time."""

    wall: float
    busy: float  # core-seconds, every process on the cores this process may use
    own: float  # core-seconds of this process and its waited-for children
    cores: int


def _cores() -> set[int]:
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not on Linux
        return set()


def read_clock(stat: Path = Path("/proc/stat")) -> CpuClock | None:
    """Now, or None where the kernel does not say (no ``/proc/stat``)."""
    cores = _cores()
    try:
        text = stat.read_text()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    busy = 0
    for line in text.splitlines():
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores):
            continue
        # user nice system idle iowait irq softirq steal ...: all but idle and iowait is work
        ticks = [int(f) for f in fields[:8]]
        busy += sum(ticks) - ticks[3] - ticks[4]
    if not cores or not busy:
        return None
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    return CpuClock(wall=time.monotonic(), busy=busy / tick, own=own, cores=len(cores))


def others_busy(start: CpuClock | None, end: CpuClock | None) -> float | None:
    """Cores kept busy by other processes between two readings, on average; None if not measured."""
    if start is None or end is None or end.wall - start.wall < _SHORTEST:
        return None
    others = (end.busy - start.busy) - (end.own - start.own)
    return round(min(max(others / (end.wall - start.wall), 0.0), float(end.cores)), 2)


def shared_note(busy: float | None, cores: int) -> str | None:
    """The warning a run prints (and its report repeats) when others shared its cores; None otherwise."""
    if busy is None or busy < SHARED:
        return None
    return (
        f"other processes kept {busy:.1f} of {cores} CPU cores busy while it trained: "
        "its times are not the machine's alone"
    )
