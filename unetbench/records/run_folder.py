"""The run folder: the one place that knows its layout, and the only code that creates, locks and opens it.

::

    runs/<challenge>/<run-id>/
        spec.toml            the resolved spec (written first; a resume must match it)
        run.lock             held (flock) by the process working on the run; names its pid and host
        sessions.json        every process that worked on the run (command, times, iterations, overrides)
        untrained.json       scores of the untrained network
        checkpoints/last.pt  weights, optimiser, random states, training log, best weights
        predictions.h5       P(cell) of the evaluation and test images
        figures/             overlays of evaluation images
        record.json          the run record, written last: its presence means the run is finished
        weights-from.json    only in a run that predicts with another run's trained network instead
                             of training its own (an ablation's inference-only variant): that run's folder
        events.out.tfevents.*  only with --track tensorboard: the run's TensorBoard event files
        mlflow.json          only with --track mlflow: the MLflow store and run id a resume continues

A folder is created with one exclusive ``mkdir`` (never check-then-create), locked at once, and stays
locked for the life of the run or resume; a second process is refused with one line naming the holder.
The lock is an advisory ``flock`` that the kernel drops when its process dies, so a killed run never
leaves a stale lock behind. Opening a folder under its lock also removes temporary files that a killed
writer left (:func:`unetbench.system.atomic_writes.remove_temporaries`).
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from unetbench.errors import UserError
from unetbench.records.json_io import read_json_record, write_json_record
from unetbench.records.provenance import host_name, now
from unetbench.records.run_record import RECORD_SCHEMA, RunRecord, Scores, Session
from unetbench.spec import (
    ChallengeSpec,
    dump_spec,
    first_difference,
    read_spec,
    spec_to_dict,
    with_default_rope,
)
from unetbench.system.atomic_writes import atomic_write_bytes, atomic_write_text, remove_temporaries

UNTRAINED_SCHEMA = 1
SESSIONS_SCHEMA = 1
WEIGHTS_FROM_SCHEMA = 1


@dataclass(frozen=True)
class UntrainedScores:
    scores: Scores
    seconds: float
    schema: int = UNTRAINED_SCHEMA


@dataclass(frozen=True)
class WeightsFrom:
    run: str  # the absolute path of the run folder whose trained network this run predicts with
    schema: int = WEIGHTS_FROM_SCHEMA


@dataclass(frozen=True)
class Sessions:
    sessions: list[Session]
    schema: int = SESSIONS_SCHEMA


# The file that makes a folder of runs an ablation's (AblationDir's manifest, unetbench.ablation.folder),
# here so that readers of folders (the leaderboard's inputs) tell one without importing the planner.
ABLATION_MANIFEST = "ablation.json"


class RunDir:
    """One run folder (module docstring). Use :meth:`create` or :meth:`open`; both return it locked, and
    ``with run_dir:`` releases the lock at the end."""

    SPEC = "spec.toml"
    LOCK = "run.lock"
    SESSIONS = "sessions.json"
    UNTRAINED = "untrained.json"
    CHECKPOINTS = "checkpoints"
    LAST = "last.pt"
    PREDICTIONS = "predictions.h5"
    FIGURES = "figures"
    RECORD = "record.json"
    WEIGHTS_FROM = "weights-from.json"

    def __init__(self, path: Path):
        self.path = Path(path).absolute()
        self._lock_fd: int | None = None

    # --- layout ------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec_file(self) -> Path:
        return self.path / self.SPEC

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINTS / self.LAST

    @property
    def predictions(self) -> Path:
        return self.path / self.PREDICTIONS

    @property
    def figures(self) -> Path:
        return self.path / self.FIGURES

    @property
    def record_file(self) -> Path:
        return self.path / self.RECORD

    # --- creating and opening ------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path, spec_text: str) -> RunDir:
        """Make a new run folder (exclusively), lock it and write the resolved spec into it."""
        run_dir = cls(path)
        if not run_dir._make():
            if not run_dir.path.is_dir():
                raise UserError(f"{path}: is a file; choose a new folder for --out")
            raise UserError(
                f"{path} already exists; choose a new --out, or continue that run with --resume {path}"
            )
        return run_dir._claim(spec_text)

    @classmethod
    def create_unique(cls, parent: Path, name: str, spec_text: str) -> RunDir:
        """:meth:`create` ``parent/name``, or ``name-2``, ``name-3``, ... if another run took the name (two
        runs of one spec started in the same second)."""
        for attempt in range(1, 100):
            run_dir = cls(parent / (name if attempt == 1 else f"{name}-{attempt}"))
            if run_dir._make():
                return run_dir._claim(spec_text)
        raise UserError(f"{parent}: 99 runs named {name}-*; choose a folder with --out")

    def _claim(self, spec_text: str) -> RunDir:
        """Lock the folder this process just made and write the resolved spec into it."""
        self.lock()
        atomic_write_text(self.spec_file, spec_text)
        return self

    def _make(self) -> bool:
        """One exclusive mkdir: True if this call made the folder, False if something is there already."""
        try:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise UserError(f"{self.path}: a part of this path is a file; choose another --out") from None
            self.path.mkdir()
        except FileExistsError:
            return False
        except OSError as err:
            raise UserError(f"{self.path}: cannot create the run folder ({err.strerror or err})") from None
        return True

    @classmethod
    def open(cls, path: Path, spec_text: str) -> RunDir:
        """Lock an existing run folder to continue it; check it is a run of the same spec.

        A folder whose first process was killed before it wrote ``spec.toml`` (it holds nothing else) is
        continued with ``spec_text``.
        """
        run_dir = cls(path)
        if not run_dir.path.exists():
            raise UserError(f"{path}: no such run folder to resume")
        if not run_dir.path.is_dir():
            raise UserError(f"{path}: is a file, not a run folder")
        run_dir.lock()
        try:
            remove_temporaries(run_dir.path)
            if not run_dir.spec_file.is_file():
                others = [p.name for p in run_dir.path.iterdir() if p.name != cls.LOCK]
                if others:
                    raise UserError(
                        f"{path}: not a run folder (no {cls.SPEC}; it holds "
                        f"{', '.join(sorted(others)[:3])}); give the folder `unetbench run` made"
                    )
                atomic_write_text(run_dir.spec_file, spec_text)
            return run_dir
        except BaseException:
            run_dir.release()
            raise

    @classmethod
    def resume(cls, path: Path, spec: ChallengeSpec) -> RunDir:
        """:meth:`open` a run to continue it with ``spec``, which must be the spec it started with but for
        ``training.iterations`` (and the overrides that made it)."""
        run_dir = cls.open(path, dump_spec(spec))
        try:
            started = read_spec(
                run_dir.spec_file
            )  # its own rules; a ROPE an older unetbench left out filled in
            started = dataclasses.replace(started, evaluation=with_default_rope(started.evaluation))
            changed = first_difference(_comparable(started), _comparable(spec))
            if changed:
                raise UserError(
                    f"{path}: the spec differs from the one this run started with ({run_dir.spec_file}: "
                    f"{changed}); resume with the same spec (only training.iterations may change)"
                )
        except BaseException:
            run_dir.release()
            raise
        return run_dir

    @staticmethod
    def state(path: Path) -> Literal["absent", "started", "finished"]:
        """What a folder holds, without locking it: nothing yet, an unfinished run, or a finished one."""
        path = Path(path)
        if (path / RunDir.RECORD).is_file():
            return "finished"
        return "started" if path.exists() else "absent"

    # --- the lock ------------------------------------------------------------------------------------

    def lock(self) -> None:
        fd = os.open(self.path / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 512).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"{self.path}: in use by {holder}; wait for it to finish, or stop it (Ctrl-C saves a "
                "checkpoint) and resume"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {host_name()} (since {now()})\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # --- the typed files -----------------------------------------------------------------------------

    def read_record(self) -> RunRecord:
        if not self.record_file.is_file():
            hint = (
                "the run has not finished; continue it with `unetbench run "
                f"{self.spec_file} --resume {self.path}`"
                if self.spec_file.is_file()
                else "is this a run folder made by `unetbench run`?"
            )
            raise UserError(f"{self.path}: no {self.RECORD}; {hint}")
        return read_json_record(
            self.record_file, RunRecord, what="a unetbench run record", schema=RECORD_SCHEMA
        )

    def write_record(self, record: RunRecord) -> Path:
        return write_json_record(self.record_file, record)

    def write_predictions(self, groups: dict[str, dict[str, np.ndarray]]) -> Path:
        """``predictions.h5``: one dataset per image named as the run names it (``evaluation/25``),
        P(cell) as float32."""
        # Built in memory and written as bytes: HDF5 failing to write at close (a full disk, a file-size
        # limit) crashes the process in h5py's clean-up instead of raising.
        image = io.BytesIO()
        import h5py  # heavy (0.4 s): only where predictions are written

        with h5py.File(image, "w") as f:
            f.attrs["content"] = "P(cell / foreground) in [0, 1] per pixel"
            for maps in groups.values():
                for name, value in maps.items():
                    f.create_dataset(name, data=value.astype(np.float32), compression="gzip")
        return atomic_write_bytes(self.predictions, image.getvalue())

    def read_untrained(self) -> UntrainedScores | None:
        path = self.path / self.UNTRAINED
        if not path.is_file():
            return None
        return read_json_record(path, UntrainedScores, what="untrained scores", schema=UNTRAINED_SCHEMA)

    def write_untrained(self, untrained: UntrainedScores) -> None:
        write_json_record(self.path / self.UNTRAINED, untrained)

    def read_sessions(self) -> list[Session]:
        path = self.path / self.SESSIONS
        if not path.is_file():
            return []
        return read_json_record(path, Sessions, what="a session list", schema=SESSIONS_SCHEMA).sessions

    def write_sessions(self, sessions: list[Session]) -> None:
        write_json_record(self.path / self.SESSIONS, Sessions(sessions))

    def begin_session(self, *, command: str, iteration: int, overrides, processes: int) -> list[Session]:
        """The earlier sessions (those still "running" were killed) and a new one of this process, written
        to the folder."""
        sessions = []
        for session in self.read_sessions():
            if session.outcome == "running":  # killed: its work up to the checkpoint we resume from survives
                session = dataclasses.replace(
                    session, outcome="killed", last_iteration=max(session.first_iteration, iteration)
                )
            sessions.append(session)
        sessions.append(
            Session(
                command=command,
                started=now(),
                ended=None,
                host=host_name(),
                pid=os.getpid(),
                first_iteration=iteration,
                last_iteration=iteration,
                overrides=list(overrides),
                outcome="running",
                processes=processes,
            )
        )
        self.write_sessions(sessions)
        return sessions

    def end_session(
        self, sessions: list[Session], outcome: str, saved_iteration: int, *, others_busy: float | None
    ) -> list[Session]:
        """Close this process's session (the last): its work is what the checkpoint on disk holds."""
        session = sessions[-1]
        last = max(session.first_iteration, saved_iteration)
        closed = dataclasses.replace(
            session, ended=now(), outcome=outcome, last_iteration=last, others_busy=others_busy
        )
        sessions = [*sessions[:-1], closed]
        self.write_sessions(sessions)
        return sessions

    def read_weights_from(self) -> RunDir | None:
        """The run whose trained network this one predicts with (None: it trains its own)."""
        path = self.path / self.WEIGHTS_FROM
        if not path.is_file():
            return None
        found = read_json_record(path, WeightsFrom, what="a weights-from note", schema=WEIGHTS_FROM_SCHEMA)
        return RunDir(Path(found.run))

    def write_weights_from(self, source: RunDir) -> None:
        write_json_record(self.path / self.WEIGHTS_FROM, WeightsFrom(str(source.path)))


def _comparable(spec: ChallengeSpec) -> dict[str, Any]:
    """The spec without what a resume may change: the iteration count and the recorded overrides."""
    table = spec_to_dict(spec)
    table.pop("overrides")
    table["training"] = {k: v for k, v in table["training"].items() if k != "iterations"}
    return table
