"""Errors that are the user's to fix.

Anything raised as a :class:`UserError` reaches the command line as one clear line and a non-zero exit
status, never as a traceback. Everything else is a bug in unetbench and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input (a file, a key, an option) that the message tells how to fix."""


class SpecError(UserError):
    """A challenge spec that cannot be used: names the file, the dotted key and what is wrong."""

    def __init__(self, source: str, key: str, message: str):
        self.source = source
        self.key = key
        self.message = message
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


class DataError(UserError):
    """Data that is missing, corrupt or in a layout the adapters do not read."""


class RunInterrupted(Exception):
    """A run stopped by Ctrl-C or SIGTERM after saving what can be resumed; the message says how.

    Not a :class:`UserError`: nothing is wrong, and the exit status is the signal's (130 for SIGINT).
    """

    def __init__(self, message: str, signal_name: str | None):
        super().__init__(message)
        self.signal_name = signal_name


class PeerExit(Exception):
    """Exit quietly with ``status``: another process of the same run (rank 0 of a torchrun run) says
    why, so the user reads one line, not one per process."""

    def __init__(self, status: int):
        super().__init__(f"exit status {status}")
        self.status = status
