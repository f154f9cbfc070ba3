"""Ctrl-C and SIGTERM during a run: stop at a step boundary, never in the middle of one.

Inside ``with Interrupts() as interrupts:`` the first SIGINT or SIGTERM that arrives while
``interrupts.deferred()`` is active only sets :attr:`Interrupts.requested`; the training loop looks at it
between steps, checkpoints the state after the last complete step, and stops. Outside the deferred parts
(loading data, predicting, scoring), or at a second signal, :class:`KeyboardInterrupt` is raised at once:
nothing of the step in flight is saved, and the atomic writer removes any half-written file.

Signal handlers can only be installed from the main thread; elsewhere (a run started in a worker thread)
this does nothing and Python's defaults apply.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """``patient``: further signals while deferring wait too. For the ranks of a torchrun run: a signal
    can reach a rank twice (from a scheduler that signals every process, and passed on by torchrun), and
    the ranks stop together at the next agreed point anyway; torchrun kills those that take too long."""

    def __init__(self, *, patient: bool = False) -> None:
        self.requested: str | None = None  # "SIGINT" or "SIGTERM" once one arrived while deferring
        self.patient = patient
        self._deferring = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
        self._previous.clear()

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block the first signal waits for :attr:`requested` to be looked at."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def stop_requested(self) -> bool:
        return self.requested is not None

    def _handle(self, number: int, frame) -> None:
        name = signal.Signals(number).name
        if self._deferring and (self.requested is None or self.patient):
            self.requested = name
            return
        self.requested = self.requested or name
        raise KeyboardInterrupt(name)


def exit_status(signal_name: str | None) -> int:
    """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
    number = getattr(signal, signal_name or "SIGINT", signal.SIGINT)
    return 128 + int(number)
