"""One run over several processes: ``torchrun`` + DistributedDataParallel (DESIGN.md: existing engines).

``torchrun --nproc-per-node N -m unetbench run SPEC`` (or ``unetbench run SPEC --gpus N``, which starts
the same through :mod:`torch.distributed.run`) runs N copies of ``unetbench run``. Each finds its place
from the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) in :func:`joined`:

- **One step** is N tiles batches, one per process, each drawn from the process's own stream
  (:func:`~unetbench.training.sampler.step_seed` with ``stream = rank``); DDP averages the gradients, so
  the step equals one process's step on the N batches together (``tests/test_distributed.py``). The
  *effective batch* is N x ``training.batch_size``, and the record says so.
- **The learning rate is not scaled.** ``training.learning_rate`` applies to the averaged gradient as it
  is; a larger effective batch with the same learning rate is what runs, and the record and report say
  so. A user who wants the linear-scaling rule sets the learning rate to N times the spec's themselves.
- **Rank 0 alone** opens the run folder, scores, validates, writes checkpoints (with every rank's random
  state, gathered), predicts and writes the record and report. The other ranks train and leave.
- **Agreement.** A user error on any rank before training is gathered and rank 0 says it in one line
  (:meth:`Group.agreement`); the others exit quietly (:class:`~unetbench.errors.PeerExit`). During
  training the ranks agree at log points whether to stop (Ctrl-C, SIGTERM) and whether a time-based
  checkpoint is due, so every rank stops, and checkpoints, after the same step.

NCCL carries the gradients on CUDA, gloo on the CPU; small agreements (flags, errors, random states) go
through gloo in both cases. A single process (no torchrun) is a :class:`Group` of one, and every call
here is then a no-op: the single-process path runs exactly as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from unetbench.errors import PeerExit, UserError

# Rank 0 validates, scores the untrained network and writes checkpoints while the others wait at the next
# collective; a paper-scale validation on a slow GPU takes minutes, so the wait is long.
TIMEOUT = datetime.timedelta(minutes=60)
FAREWELL_TIMEOUT = datetime.timedelta(seconds=60)  # the barrier before leaving (Group.leave)


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    farewell: Any = field(default=None, compare=False, repr=False)  # gloo group for leaving (see leave)

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    # --- agreement -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def agreement(self) -> Iterator[None]:
        """Run the block on every rank; then raise on every rank if any rank's block raised a UserError.

        Rank 0 raises the first error (by rank, naming the rank when it is not 0); the others raise
        :class:`PeerExit`, which exits quietly, so the user reads one line.
        """
        error: UserError | None = None
        try:
            yield
        except UserError as err:
            if not self.active:
                raise
            error = err
        self.agree(error)

    def agree(self, error: UserError | None) -> None:
        if not self.active:
            if error is not None:
                raise error
            return
        messages: list[str | None] = [None] * self.world_size
        torch.distributed.all_gather_object(messages, str(error) if error is not None else None)
        failed = [(rank, message) for rank, message in enumerate(messages) if message is not None]
        if not failed:
            return
        rank, message = failed[0]
        if self.leader:
            if error is not None and rank == 0:
                raise error
            raise UserError(f"rank {rank} of {self.world_size}: {message}")
        raise PeerExit(1)

    def any(self, *flags: bool) -> list[bool]:
        """Each flag, true when it is true on any rank (one small all-reduce; the host waits for it)."""
        if not self.active:
            return list(flags)
        values = torch.tensor([int(f) for f in flags], dtype=torch.int64)
        torch.distributed.all_reduce(values, op=torch.distributed.ReduceOp.MAX)
        return [bool(v) for v in values.tolist()]

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank."""
        if not self.active:
            return value
        box = [value if self.leader else None]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.active:
            return [value]
        values: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(values, value)
        return values

    def leave(self) -> None:
        """End the collective part, on every rank at once: after training (rank 0 goes on alone), or at
        an agreed error.

        The ranks meet at a barrier and then destroy the process group together: a gloo process group
        torn down on one rank while another still holds it open aborts the process now and then
        (torch 2.13), which the barrier avoids. The barrier is on a gloo group with a short timeout, so
        a rank that never comes (gone, or failing alone) costs a minute, not the run's hour.
        """
        if self.active and torch.distributed.is_initialized():
            with contextlib.suppress(RuntimeError):  # a peer that does not come: leave all the same
                torch.distributed.barrier(group=self.farewell)
            torch.distributed.destroy_process_group()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of a tensor on this rank's device (on its backend: NCCL on CUDA)."""
        if not self.active:
            return tensor
        total = tensor.clone()
        torch.distributed.all_reduce(total)
        return total


SINGLE = Group()

# Set by ``unetbench run --gpus N`` for the processes it starts, so the resume command it prints says so.
LAUNCHED_BY_GPUS = "UNETBENCH_GPUS"


def launched() -> bool:
    """True in a process that torchrun started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def joined(requested: str, resolve: Callable[[str], str]) -> Iterator[Group]:
    """This process's :class:`Group` for a run on the ``requested`` device (``auto``, ``cpu``, ``cuda``;
    ``resolve`` turns it into ``cpu`` or ``cuda`` or raises a UserError).

    Outside torchrun (or with one process) it is a group of one. Under torchrun the process group is
    initialised here (gloo for the CPU and for the agreements, NCCL for CUDA tensors), each rank takes
    GPU ``LOCAL_RANK``, and the group is destroyed at the end. A device problem is agreed like any other
    user error: rank 0 says it once.
    """
    if not launched():
        yield Group(device=resolve(requested))
        return
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = requested in ("cuda", "auto") and torch.cuda.is_available()
    _loopback_for_gloo()
    torch.distributed.init_process_group(backend="cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)
    farewell = torch.distributed.new_group(backend="gloo", timeout=FAREWELL_TIMEOUT)
    group = Group(rank=rank, world_size=world, local_rank=local, farewell=farewell)
    try:
        with group.agreement():
            device = resolve(requested)
            if device == "cuda":
                count = torch.cuda.device_count()
                if local >= count:
                    raise UserError(
                        f"torchrun started more processes on this machine than it has GPUs (local rank "
                        f"{local}, {count} GPU(s)); give --nproc-per-node (or --gpus) at most {count}"
                    )
                torch.cuda.set_device(local)
                device = f"cuda:{local}"
        group = dataclasses.replace(group, device=device)
        yield group
    except (UserError, PeerExit):
        group.leave()  # every rank stops at the same agreement: leave together, as after training
        raise
    finally:
        if torch.distributed.is_initialized():  # not left already (Group.leave): an error on the way
            torch.distributed.destroy_process_group()


def _loopback_for_gloo() -> None:
    """When the run's rendezvous is on this machine's loopback, keep gloo's connections there too (gloo
    otherwise takes the address the host name resolves to)."""
    if os.environ.get("MASTER_ADDR") not in ("127.0.0.1", "localhost", "::1"):
        return
    if "GLOO_SOCKET_IFNAME" in os.environ:
        return
    names = {name for _, name in socket.if_nameindex()}
    for loopback in ("lo", "lo0"):
        if loopback in names:
            os.environ["GLOO_SOCKET_IFNAME"] = loopback
            return


def rank_seed(seed: int, rank: int) -> int:
    """The seed of a rank's drop-out random numbers: the run's seed on rank 0 (so one process is the
    single-process run), a distinct stream on each other rank."""
    if rank == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch(processes: int, argv: list[str]) -> int:
    """``unetbench ARGV`` in ``processes`` processes on this machine, through torchrun's own launcher
    (:mod:`torch.distributed.run`, rendezvous on the loopback); returns the exit status.

    The processes say what went wrong themselves (rank 0, one line); torchrun's report of a failed
    process, a traceback of its own, is not repeated. torchrun's log folder is a temporary one, removed
    afterwards (by default torchrun leaves a ``torchelastic_*`` folder in the system's temporary folder
    on every launch).
    """
    from torch.distributed import run as torchrun

    with tempfile.TemporaryDirectory(prefix="unetbench-torchrun-") as logs:
        options = torchrun.parse_args(
            [
                "--nnodes=1",
                f"--nproc-per-node={processes}",
                "--master-addr=127.0.0.1",
                f"--master-port={free_loopback_port()}",
                "--local-addr=127.0.0.1",
                f"--log-dir={logs}",
                "--module",
                "unetbench",
                *argv,
            ]
        )
        return _run_launcher(torchrun, options, processes)


def _run_launcher(torchrun, options, processes: int) -> int:
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ[LAUNCHED_BY_GPUS] = str(processes)
    # torchrun sets 1 thread per process (with a warning) when this is unset; share the cores instead
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    elastic = logging.getLogger("torch.distributed.elastic")
    level, elastic.level = elastic.level, logging.CRITICAL
    try:
        torchrun.run(options)
    except ChildFailedError as failed:
        exits = [failure.exitcode for _, failure in sorted(failed.failures.items())]
        codes = [128 - c if c < 0 else c for c in exits]  # killed by a signal: the shell's 128 + its number
        # the process that failed, not those torchrun then ended with SIGTERM
        causes = [code for code in codes if code != 128 + signal.SIGTERM]
        return (causes or codes or [1])[0]
    except SignalException as signalled:
        return 128 + int(signalled.sigval)
    finally:
        elastic.setLevel(level)
        os.environ.pop(LAUNCHED_BY_GPUS, None)
    return 0
