"""``unetbench ablate --executor ray``: every planned run is a Ray task (DESIGN.md: existing engines).

- **Where.** ``--ray-address host:port`` (or ``ray://host:port``, or ``auto``) joins a running cluster
  (``ray start --head`` on one machine, ``ray start --address ...`` on the others, or Ray's own way of
  starting on Slurm); so does ``RAY_ADDRESS``, Ray's own variable, where no ``--ray-address`` is given.
  Without either, a new local Ray instance is started on this machine, bound to the loopback (127.0.0.1,
  no dashboard): several GPUs of one machine are a local instance. It is started as ``address="local"``:
  left to itself, Ray would join the last cluster recorded in its temporary folder
  (``ray_current_cluster``), and a head killed since leaves a stale address there that it waits on.
- **What a task asks for.** ``1 / runs_per_device`` of a GPU per run where the cluster has GPUs and the
  spec does not train on the CPU (``--runs-per-device N``: N runs share a GPU); otherwise
  ``cpus_per_run`` CPUs, and torch uses that many threads (on CPUs Ray packs tasks by their CPUs, so N
  plays no part there).
- **Files.** Runs write under ``--out``, which must be an absolute folder that every node sees (a shared
  file system): the run folders, their records and checkpoints, and ``logs/<run>.log`` with what each run
  printed. Skip and resume work as with the local executor: a finished run (a record) is skipped, a
  started one (a checkpoint) resumes.
- **Failures.** A task whose process or node dies, or that fails unexpectedly, is retried (``retries``
  times) and resumes from its checkpoint: a failure costs at most one checkpoint interval of that run. A
  user error (bad data, a spec the device cannot hold) is not retried: it would fail again.
- **The table.** The terminal shows every run: queued, running (iteration, attempt, node), done or
  failed; the runs report their iterations to a small actor
  (:class:`~unetbench.ablation.executors.RunProgress`).
- **Order.** The runs that train first, then the inference-only runs, which take their networks.

Ray is an optional extra: ``pip install 'unetbench[ray]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from unetbench.ablation.executors import (
    STOP_SECONDS,
    RunProgress,
    failures,
    finish_logged,
    pending_runs,
    run_table,
    throttled,
    waves,
)
from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import PlannedRun
from unetbench.errors import RunInterrupted, UserError
from unetbench.records.provenance import command_line

LOOPBACK = "127.0.0.1"
INSTALL = "pip install 'unetbench[ray]'"


def on_loopback(address: str | None) -> bool:
    """Whether ``--ray-address`` names this machine's loopback (127.x.x.x, localhost, ::1)."""
    if address is None or address == "auto":
        return False
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def import_ray(*, local: bool):
    """Ray, or one line saying how to install it. ``local``: a local instance will be started, or the
    cluster's address is on the loopback, so Ray is told to keep to the loopback: otherwise it rewrites
    127.0.0.1 to the machine's network address, for the node it starts and for the address it joins."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray reports usage to its makers unless told
    if local:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for one-node use
    try:
        import ray
    except ImportError:
        raise UserError(f"--executor ray needs Ray, an optional extra; install it with: {INSTALL}") from None
    return ray


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an address where nothing listens, in one line and at once (Ray itself retries for long)."""
    if address == "auto":
        return
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(
            f"--ray-address {address}: not an address; give the head's host:port (as `ray start --head` "
            "printed it), ray://host:port, or auto"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as err:
        raise UserError(
            f"--ray-address {address}: nothing answers at {host}:{port} ({err.strerror or err}); start the "
            f"head there with `ray start --head --port {port}`, or check the address"
        ) from None


def run_planned(
    planned: PlannedRun, directory: AblationDir, data_root: Path | None, board, cpus: int, command: str
) -> tuple[str, str]:
    """The Ray task of one planned run: skip, resume or start it, its output in its log file. ``command``:
    the ablation's command line, which the run's session records with the task's node.

    Returns ``("done", how)`` or ``("failed", message)`` for a user error; anything else raises and Ray
    retries the task.
    """
    import torch

    if cpus:
        torch.set_num_threads(cpus)
    name = planned.name
    board.started.remote(name, socket.gethostname())
    watch = throttled(lambda iteration, total: board.progress.remote(name, iteration, total))
    return finish_logged(
        planned, directory, data_root, f"{command}  [Ray task on {socket.gethostname()}]", watch
    )


@contextlib.contextmanager
def _ray_logs() -> Iterator[Callable[[], str]]:
    """Hold what Ray's C++ core writes to this process's stderr while it connects (it retries a refused
    connection with a warning a second): yields a function that returns it. On success it is written out
    after all; on failure the one-line error names Ray's reason instead (:func:`_ray_reason`)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:

        def read() -> str:
            held.seek(0)
            return held.read().decode(errors="replace")

        os.dup2(held.fileno(), 2)
        try:
            yield read
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sys.stderr.write(read())  # reached on success only: a failure has left with its one line


def _ray_reason(logged: str) -> str:
    """Ray's own reason for a refused connection, and what to do, from its log lines ("" if none)."""
    if "InvalidAuthToken" in logged or "Unauthenticated" in logged:
        return (
            "; Ray says: InvalidAuthToken, the cluster uses token authentication and this process sent no "
            "token or another one. Set RAY_AUTH_MODE=token with the head's token (RAY_AUTH_TOKEN, "
            "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), or start the head with RAY_AUTH_MODE=disabled"
        )
    failed = [line for line in logged.splitlines() if "Failed" in line or "rror" in line]
    if not failed:
        return ""
    # "[2026-12-03 14:26:26,230 W 31056 31056] gcs_client.cc:210: Failed ...": the message alone
    message = re.sub(r"^\S+:\d+:\s*", "", failed[-1].split("] ", 1)[-1].strip())
    return f"; Ray says: {message}"


class RayExecutor:
    """Connects on creation (an unreachable cluster is a :class:`UserError` before anything is written);
    ``with executor:`` shuts down a Ray instance it started.

    ``task``: the function each run becomes (default :func:`run_planned`; tests give one that fails once).
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        retries: int = 2,
        cpus_per_run: int = 1,
        runs_per_device: int = 1,
        directory: AblationDir | None = None,
        task: Callable[..., tuple[str, str]] | None = None,
    ):
        if retries < 0:
            raise UserError(f"--retries must be >= 0, got {retries}")
        address = address or os.environ.get("RAY_ADDRESS") or None  # Ray's own variable, as Ray reads it
        self.ray = ray = import_ray(local=address is None or on_loopback(address))
        if address is not None:
            check_reachable(address)
        self.retries, self.cpus_per_run, self.task = retries, cpus_per_run, task or run_planned
        self.runs_per_device, self.directory = runs_per_device, directory
        self.started = False
        if not ray.is_initialized():
            settings: dict[str, Any] = dict(log_to_driver=False, logging_level=logging.WARNING)
            with _ray_logs() as logged:
                try:
                    if address is None:  # "local": a new instance, never a stale recorded one
                        ray.init(
                            address="local", include_dashboard=False, _node_ip_address=LOOPBACK, **settings
                        )
                    else:
                        ray.init(address=address, **settings)
                except (ConnectionError, RuntimeError, ValueError) as err:
                    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                    failure = f"--executor ray: cannot start or join {where} ({first})"
                    raise UserError(failure + _ray_reason(logged())) from None
            self.started = True
            if address is None:
                self._check_loopback()
        self.gpus = int(ray.cluster_resources().get("GPU", 0))

    def _check_loopback(self) -> None:
        nodes = {node["NodeManagerAddress"] for node in self.ray.nodes()}
        if nodes != {LOOPBACK}:
            self.ray.shutdown()
            raise UserError(
                f"--executor ray: the local Ray instance came up on {', '.join(sorted(nodes))}, not on "
                f"{LOOPBACK} (Ray was imported before unetbench could keep it on the loopback); give "
                "--ray-address of a cluster you started, or run `unetbench ablate` in a fresh process"
            )

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc) -> None:
        if self.started:
            self.ray.shutdown()

    def check(self, runs: list[PlannedRun]) -> None:
        """Refuse, before anything is written, runs that no node of the cluster can take."""
        if not self.gpus and any(r.spec.training.device == "cuda" for r in runs):
            raise UserError(
                "training.device: the runs ask for 'cuda', but the Ray cluster has no GPUs "
                f"({self.ray.cluster_resources().get('CPU', 0):.0f} CPUs); use --device auto or cpu, or a "
                "cluster with GPUs"
            )

    def resources(self, planned: PlannedRun) -> dict[str, Any]:
        if self.gpus and planned.spec.training.device != "cpu":
            return {"num_gpus": 1 / self.runs_per_device, "num_cpus": 1}
        return {"num_cpus": self.cpus_per_run}

    def run_all(self, runs: list[PlannedRun], *, data_root: Path | None, progress: bool, log) -> None:
        """Every unfinished run as a task, in two waves (trained, then inference-only); the table of runs
        until all are done or failed."""
        data_root = Path(data_root).absolute() if data_root is not None else None
        for wave in waves(pending_runs(runs, self.directory, log)):
            self._wave(wave, data_root, progress, log)

    def _wave(self, pending: list[PlannedRun], data_root: Path | None, progress: bool, log) -> None:
        ray = self.ray
        board = ray.remote(num_cpus=0)(RunProgress).remote()
        remote = ray.remote(self.task)
        refs = {}
        for planned in pending:
            options = self.resources(planned)
            cpus = 0 if "num_gpus" in options else self.cpus_per_run
            task = remote.options(max_retries=self.retries, retry_exceptions=True, **options)
            refs[task.remote(planned, self.directory, data_root, board, cpus, command_line())] = planned
        where = (
            f"{self.gpus} GPU(s), {self.runs_per_device} run(s) per GPU"
            if self.gpus
            else f"{self.cpus_per_run} CPU(s) per run"
        )
        log(f"ray: {len(refs)} tasks on {int(ray.cluster_resources().get('CPU', 0))} CPUs, {where}")
        results: dict[str, tuple[str, str]] = {}
        with run_table(pending, progress, log) as show:
            try:
                while len(results) < len(refs):
                    waiting = [ref for ref, p in refs.items() if p.name not in results]
                    ready, _ = ray.wait(waiting, num_returns=len(waiting), timeout=0.5)
                    for ref in ready:
                        results[refs[ref].name] = self._outcome(ref)
                    show(ray.get(board.snapshot.remote()), results)
            except KeyboardInterrupt:
                running = [ref for ref, p in refs.items() if p.name not in results]
                for ref in running:
                    ray.cancel(ref)  # a KeyboardInterrupt in the task: its run stops after the step
                _, left = ray.wait(running, num_returns=len(running), timeout=STOP_SECONDS)
                raise RunInterrupted(
                    f"ablation interrupted; {len(running) - len(left)} run(s) stopped at a step with a "
                    f"checkpoint, {len(left)} did not stop within {STOP_SECONDS} s and keep their last one",
                    "SIGINT",
                ) from None
        failures(results, len(refs), self.directory)

    def _outcome(self, ref) -> tuple[str, str]:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as err:  # retries used up: the task's error or its process's
            lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
            return "failed", lines[-1] if lines else type(err).__name__
