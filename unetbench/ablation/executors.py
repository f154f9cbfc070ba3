"""How the planned runs of an ablation get done: one interface, two executors.

- :class:`LocalExecutor` (``--executor local``): on this machine. With ``--runs-per-device 1`` one run
  after another in this process; with N > 1, N runs at once, each in a process of its own on the same
  device (a paper-setting run at batch 1 fills about a sixth of an H100). On the CPU the cores are split
  between them: each run's torch uses cores / N threads.
- :class:`~unetbench.ablation.ray.RayExecutor` (``--executor ray``): every run a Ray task on a cluster,
  N per GPU with ``num_gpus = 1/N``.

Both take the runs in two waves: the runs that train, then the inference-only runs, which predict with
the networks the first wave trained. Both skip finished runs, resume started ones, and show a table of the
runs (:func:`run_table`): queued, running (iteration/total, attempt, where), done or failed.

Ctrl-C with N processes: this process passes one SIGINT on to each run's process (they run in process
groups of their own, so the terminal's reaches them once, through here); each stops after its step with a
checkpoint, as a run in this process would. A run process whose parent is killed (SIGKILL) goes on to
the end of its run, holding its run folder's lock until then.
"""

from __future__ import annotations

import contextlib
import os
import queue as queues
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import PlannedRun
from unetbench.errors import RunInterrupted, UserError
from unetbench.records.provenance import command_line
from unetbench.records.run_folder import RunDir
from unetbench.run.runner import run

STOP_SECONDS = 60  # after Ctrl-C: how long the running runs get to checkpoint and stop


class Executor(Protocol):
    def run_all(self, runs: list[PlannedRun], *, data_root: Path | None, progress: bool, log) -> None:
        """Finish every run (skip, resume or start); a failure is a :class:`UserError` once all are done."""


def waves(runs: list[PlannedRun]) -> list[list[PlannedRun]]:
    """The runs that train, then those that predict with a network the first wave trained."""
    return [w for w in ([r for r in runs if r.trains], [r for r in runs if not r.trains]) if w]


def pending_runs(runs: list[PlannedRun], directory: AblationDir, log) -> list[PlannedRun]:
    """The runs without a record; the others are said to be skipped (or reused)."""
    pending = []
    for r in runs:
        if RunDir.state(r.directory) != "finished":
            pending.append(r)
        elif r.directory.parent != directory.path:
            log(f"{r.name}: reused, finished in {r.directory.parent}")
        else:
            log(f"{r.name}: done before, skipped")
    return pending


def run_one(
    planned: PlannedRun, *, data_root, reports: Path, progress: bool, log, watch=None, command=None
) -> str:
    """Finish one planned run: skip it when it is finished, resume it when it was started, or start it.

    ``watch(iteration, total)`` hears of the training steps, ``command`` is what the run's session records
    (see :func:`unetbench.run.runner.run`); ``reports``: where the run's own report goes.
    """
    common = dict(
        data_root=data_root,
        reports=reports,
        progress=progress,
        log=log,
        watch=watch,
        command=command,
        weights_from=planned.weights_from,
        tracking=planned.tracking() if planned.track else None,
    )
    state = RunDir.state(planned.directory)
    if state == "finished":
        return "done before"
    if state == "started":
        run(planned.spec, resume=planned.directory, **common)
        return "resumed"
    run(planned.spec, out=planned.directory, **common)
    return "ran"


def finish_logged(
    planned: PlannedRun,
    directory: AblationDir,
    data_root: Path | None,
    command: str,
    watch: Callable[[int, int], None],
) -> tuple[str, str]:
    """One run in a process of an executor's (a Ray task, a run process): its output to its log file.

    Returns ``("done", how)`` or ``("failed", message)`` for a user error; anything else raises.
    """
    directory.logs.mkdir(parents=True, exist_ok=True)
    with open(directory.log_file(planned), "a", encoding="utf-8") as file:

        def log(text: str) -> None:
            print(text, file=file, flush=True)

        log(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} on {socket.gethostname()}, pid {os.getpid()}")
        try:
            how = run_one(
                planned,
                data_root=data_root,
                reports=directory.run_reports,
                progress=False,
                log=log,
                watch=watch,
                command=command,
            )
            return "done", how
        except UserError as err:
            log(f"error: {err}")
            return "failed", str(err)


def throttled(send: Callable[[int, int], None], seconds: float = 1.0) -> Callable[[int, int], None]:
    """``watch(iteration, total)`` that passes at most one message per ``seconds`` on (and the last)."""
    last = [0.0]

    def watch(iteration: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= seconds or iteration == total:
            last[0] = now
            send(iteration, total)

    return watch


def failures(results: dict[str, tuple[str, str]], total: int, directory: AblationDir) -> None:
    """One :class:`UserError` for the runs that failed, naming the first and where the logs are."""
    failed = [(name, detail) for name, (state, detail) in results.items() if state == "failed"]
    if failed:
        name, detail = failed[0]
        raise UserError(
            f"{len(failed)} of {total} ablation run(s) failed (first: {name}: {detail}); each run's output "
            f"is in {directory.logs}; run the same command again to retry them (finished runs are skipped, "
            "started ones resume)"
        )


# --------------------------------------------------------------------------------------------------
# What runs report, and the table of runs


class RunProgress:
    """What the running runs report: per run, its attempts, where it runs and its last iteration (a Ray
    actor under the Ray executor, a plain object fed from a queue under the local one)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def started(self, name: str, node: str) -> None:
        entry = self.runs.setdefault(name, {"attempts": 0})
        entry.update(attempts=entry["attempts"] + 1, node=node, iteration=None, total=None)

    def progress(self, name: str, iteration: int, total: int) -> None:
        self.runs.setdefault(name, {"attempts": 1}).update(iteration=iteration, total=total)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.runs


@contextlib.contextmanager
def run_table(pending: list[PlannedRun], progress: bool, log) -> Iterator[Callable]:
    """``show(board, results)``: a live table of the runs with ``progress``, else a line per change."""
    from rich.live import Live
    from rich.table import Table

    def state(planned: PlannedRun, board, results) -> tuple[str, str, str, str]:
        name = planned.name
        entry = board.get(name, {})
        attempt = str(entry.get("attempts", "")) if entry else ""
        node = entry.get("node", "")
        if name in results:
            outcome, detail = results[name]
            return (outcome if outcome == "failed" else f"done ({detail})"), "", attempt, node
        if not entry:
            return "queued", "", "", ""
        iteration = entry.get("iteration")
        where = f"{iteration}/{entry['total']}" if iteration is not None else "preparing"
        return "running", where, attempt, node

    def render(board, results) -> Table:
        table = Table(title="ablation runs", title_justify="left")
        for column in ("run", "state", "iteration", "attempt", "node"):
            table.add_column(column, overflow="fold")
        for planned in pending:
            table.add_row(planned.name, *state(planned, board, results))
        return table

    if progress:
        with Live(render({}, {}), refresh_per_second=2) as live:
            yield lambda board, results: live.update(render(board, results))
        return
    said: dict[str, tuple[str, str]] = {}

    def lines(board, results) -> None:
        for planned in pending:
            now, _, attempt, node = state(planned, board, results)
            if said.get(planned.name) != (now, attempt):
                said[planned.name] = (now, attempt)
                if now != "queued":
                    extra = f" (attempt {attempt}, {node})" if now == "running" else ""
                    log(f"{planned.name}: {now}{extra}")

    yield lines


# --------------------------------------------------------------------------------------------------
# The local executor


class LocalExecutor:
    """``--executor local`` (module docstring)."""

    def __init__(self, directory: AblationDir, *, runs_per_device: int = 1):
        self.directory = directory
        self.runs_per_device = runs_per_device

    def run_all(self, runs: list[PlannedRun], *, data_root: Path | None, progress: bool, log) -> None:
        pending = pending_runs(runs, self.directory, log)
        for wave in waves(pending):
            if self.runs_per_device == 1:
                self._one_by_one(wave, data_root=data_root, progress=progress, log=log)
            else:
                self._in_processes(wave, data_root=data_root, progress=progress, log=log)

    def _one_by_one(self, runs: list[PlannedRun], *, data_root, progress: bool, log) -> None:
        for index, r in enumerate(runs, start=1):
            log(f"[{index}/{len(runs)}] {r.describe()}: {r.directory}")
            how = run_one(
                r, data_root=data_root, reports=self.directory.run_reports, progress=progress, log=log
            )
            log(f"  {how}")

    def _in_processes(self, runs: list[PlannedRun], *, data_root, progress: bool, log) -> None:
        """N runs at once, each in a process of its own (module docstring)."""
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state of this one's torch
        messages = context.Queue()
        todo, running, results = list(runs), {}, {}
        board = RunProgress()
        threads = _threads_per_run(runs[0], self.runs_per_device)
        command = command_line()
        log(
            f"{len(runs)} runs, {self.runs_per_device} at a time in processes of their own"
            + (f", {threads} torch thread(s) each" if threads else "")
            + f"; their output goes to {self.directory.logs}"
        )
        with run_table(runs, progress, log) as show, _sigterm_as_interrupt():
            try:
                while todo or running:
                    while todo and len(running) < self.runs_per_device:
                        planned = todo.pop(0)
                        process = context.Process(
                            target=_run_process,
                            args=(planned, self.directory, data_root, threads, command, messages),
                            name=f"unetbench {planned.name}",
                        )
                        process.start()
                        running[planned.name] = process
                    _read_messages(messages, board, results)
                    for name, process in list(running.items()):
                        if not process.is_alive():
                            process.join()
                            _read_messages(messages, board, results, wait=0.0)
                            if name not in results:
                                results[name] = (
                                    "failed",
                                    f"its process ended with status {process.exitcode}; see "
                                    f"{self.directory.logs / (name + '.log')}",
                                )
                            del running[name]
                    show(board.snapshot(), results)
            except KeyboardInterrupt as stop:
                _stop(running)
                stopped = [n for n, p in running.items() if p.exitcode is not None]
                raise RunInterrupted(
                    f"ablation interrupted; {len(stopped)} running run(s) stopped at a step with a "
                    f"checkpoint, {len(running) - len(stopped)} did not stop within {STOP_SECONDS} s and "
                    "keep their last one",
                    str(stop) or "SIGINT",
                ) from None
        failures(results, len(runs), self.directory)


def _threads_per_run(planned: PlannedRun, runs_per_device: int) -> int | None:
    """On the CPU, each of N runs gets cores / N threads; on a GPU torch keeps its default."""
    from unetbench.system.devices import resolve_device

    if resolve_device(planned.spec.training.device) != "cpu":
        return None
    return max(1, (os.cpu_count() or 1) // runs_per_device)


def _read_messages(messages, board: RunProgress, results: dict, wait: float = 0.5) -> None:
    """Take what the run processes said: ``(kind, name, *values)``."""
    deadline = time.monotonic() + wait
    while True:
        try:
            kind, name, *values = messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queues.Empty:
            return
        if kind == "started":
            board.started(name, *values)
        elif kind == "progress":
            board.progress(name, *values)
        else:
            results[name] = (kind, values[0])


def _stop(running: dict) -> None:
    """One SIGINT to each run process; wait for them to checkpoint and end."""
    for process in running.values():
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_SECONDS
    for process in running.values():
        process.join(max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM to this process stops the runs as Ctrl-C does (a scheduler, ``kill``)."""

    def handle(number, frame):
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_process(planned, directory, data_root, threads, command, messages) -> None:
    """A run process of the local executor: in its own process group, its output in its log file."""
    os.setpgrp()  # Ctrl-C in the terminal reaches the executor, which passes it on once
    directory.logs.mkdir(parents=True, exist_ok=True)
    with open(directory.log_file(planned), "a", encoding="utf-8") as output:
        os.dup2(output.fileno(), sys.stdout.fileno())  # a traceback, too, goes to the run's log
        os.dup2(output.fileno(), sys.stderr.fileno())
    import torch

    if threads:
        torch.set_num_threads(threads)
    name = planned.name
    messages.put(("started", name, f"pid {os.getpid()}"))
    watch = throttled(lambda iteration, total: messages.put(("progress", name, iteration, total)))
    try:
        state, detail = finish_logged(planned, directory, data_root, command, watch)
    except RunInterrupted as stopped:
        messages.put(("interrupted", name, str(stopped)))
        sys.exit(130)
    messages.put((state, name, detail))
