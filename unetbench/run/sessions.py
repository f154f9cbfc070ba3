"""A run's sessions: each process that works on a run folder adds one to its record (command, start,
end, outcome, the iterations it trained, how busy the machine's other work kept the CPU), ended here
whichever way it ends: finished, interrupted (with the command that resumes it) or failed.

:func:`session` is the session around the stages; :func:`released_unless_prepared` the one around
:func:`~unetbench.run.preparation.prepare`, before a session has begun.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from unetbench.errors import RunInterrupted, UserError
from unetbench.records.run_folder import RunDir
from unetbench.records.run_record import Session
from unetbench.run.context import RunContext
from unetbench.system.atomic_writes import WriteFailed
from unetbench.system.interrupts import Interrupts
from unetbench.training.trainer import TrainingStopped


@dataclass
class SessionBook:
    """This session's bookkeeping while the stages run: what :meth:`end` writes."""

    context: RunContext
    others_busy: float | None = None  # CPU cores others kept busy while this session trained
    ended: tuple[Session, ...] | None = None

    def end(self, outcome: str) -> tuple[Session, ...]:
        """Close this session: its work is what the checkpoint on disk holds (all of it once training
        ended); returns every session of the run, this one last."""
        c = self.context
        sessions = c.run_dir.end_session(
            list(c.sessions), outcome, c.trainer.saved_iteration, others_busy=self.others_busy
        )
        self.ended = tuple(sessions)
        return self.ended


@contextlib.contextmanager
def session(context: RunContext, interrupts: Interrupts) -> Iterator[SessionBook]:
    """This process's session around the stages: ended as finished (by whoever calls ``book.end``),
    interrupted (then :class:`RunInterrupted` says how to resume) or failed."""
    book = SessionBook(context)
    try:
        yield book
    except (TrainingStopped, KeyboardInterrupt) as stopped:
        book.end("interrupted")
        raise RunInterrupted(_interrupted_message(context, stopped), interrupts.requested) from None
    except WriteFailed as failed:
        with contextlib.suppress(WriteFailed):  # the same disk may refuse the session's own note
            book.end("failed")
        raise WriteFailed(
            f"{failed}; once it can be written, resume with: {context.resume_command}"
        ) from None
    except BaseException:
        book.end("failed")
        raise


def _interrupted_message(context: RunContext, stopped: BaseException) -> str:
    if isinstance(stopped, TrainingStopped):
        where = f"stopped after iteration {stopped.iteration}; checkpoint saved"
    else:
        where = f"interrupted; training is checkpointed at iteration {context.trainer.saved_iteration}"
    return f"{context.run_dir.path}: {where}. Resume with: {context.resume_command}"


@contextlib.contextmanager
def released_unless_prepared(
    run_dir: RunDir, resume_command: str, interrupts: Interrupts, note: Callable[[str], None]
) -> Iterator[None]:
    """Until the run is prepared, any failure releases the run folder's lock, and ``note(outcome)``
    records this process's session as it ended, if it has none yet (a first checkpoint the disk refused
    is a session too); Ctrl-C says how to resume. A refused input (a damaged or crafted checkpoint, say)
    is no session: the folder stays as it was."""
    try:
        yield
    except KeyboardInterrupt:
        _noted(note, "interrupted")
        run_dir.release()
        raise RunInterrupted(
            f"{run_dir.path}: interrupted before training started; resume with: {resume_command}",
            interrupts.requested,
        ) from None
    except WriteFailed as failed:
        _noted(note, "failed")
        run_dir.release()
        raise WriteFailed(f"{failed}; once it can be written, resume with: {resume_command}") from None
    except UserError:
        run_dir.release()
        raise
    except BaseException:
        _noted(note, "failed")
        run_dir.release()
        raise


def _noted(note: Callable[[str], None], outcome: str) -> None:
    with contextlib.suppress(WriteFailed, OSError):  # the disk that failed may refuse the note as well
        note(outcome)
