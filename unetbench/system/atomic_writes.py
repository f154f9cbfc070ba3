"""The one way unetbench writes a result file: completely or not at all.

Every checkpoint, prediction file, record, report and JSON output goes through :func:`atomic_path`: the
content is written to a temporary file in the destination's own folder (so the final rename never crosses
a file system), flushed and ``fsync``-ed, then renamed over the destination, which is atomic on POSIX. On
any failure before the rename, Ctrl-C and SIGTERM included, the temporary file is removed, so a reader
sees the old file or the new one, never half of one.

Only a kill that gives Python no chance to clean up (SIGKILL, power loss) can leave a temporary file
behind. Those carry :data:`TEMPORARY_MARK` and their writer's process id in their name:
:func:`remove_temporaries` deletes them all (the run folder does so whenever it is opened under its
lock), and every write first deletes the temporaries of the same file whose writer is gone (a report
folder, which no lock guards, is swept so).

A write the machine refuses (a full disk, a file-size limit, a folder without write permission) is a
:class:`WriteFailed`: one line naming the file and the system's reason, the previous file kept. Writers do
not all say why they failed (``torch.save`` reports "unexpected pos 704 vs 598"), so when the error has
no errno the machine is asked: a finite file-size limit, a nearly full file system, a folder we may not
write in.
"""

from __future__ import annotations

import errno
import glob
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from unetbench.errors import UserError

try:
    import resource
except ImportError:  # Windows: no file-size limits to ask about
    resource = None

TEMPORARY_MARK = ".unetbench-tmp-"
# errors that mean the machine refused the write, not that unetbench did something wrong
_REFUSED = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO}
_NEARLY_FULL = 16 * 2**20  # bytes left on a file system below which a failed write is put down to it


class WriteFailed(UserError):
    """A result file the machine would not let us write; the file's previous version, if any, is intact."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp makes files readable by their owner only; results get the permissions any new file would.
_FILE_MODE = 0o666 & ~_umask()


def _temporary_name(path: Path) -> str:
    return f".{path.name}{TEMPORARY_MARK}"


def _writer_gone(leftover: Path, prefix: str) -> bool:
    """Whether the process that wrote ``leftover`` (its id follows ``prefix``) has ended."""
    pid = leftover.name[len(prefix) :].partition("-")[0]
    if not pid.isdigit():
        return False  # another naming; remove_temporaries deals with it under the run's lock
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, someone else's
        return False
    return False


def _sweep_leftovers(path: Path) -> None:
    """Delete the temporaries of ``path`` that a killed writer left."""
    prefix = _temporary_name(path)
    for leftover in path.parent.glob(glob.escape(prefix) + "*"):
        if _writer_gone(leftover, prefix):
            leftover.unlink(missing_ok=True)


def check_writable(path: Path, *, what: str = "output") -> None:
    """Refuse, before any work is done, a destination that can never be written.

    A folder in the file's place, a parent that is a file, or a parent that cannot be made is a
    :class:`UserError` naming the path; nothing is created.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; give a file name for the {what}")
    _check_folder(path.parent, shown=path, what=f"place for the {what}")


def check_folder(path: Path, *, what: str = "output folder") -> None:
    """Refuse, before any work is done, a folder to write into that is a file, lies below one, or sits
    where nothing can be written; nothing is created."""
    _check_folder(Path(path), shown=Path(path), what=what)


def _check_folder(path: Path, *, shown: Path, what: str) -> None:
    """The first existing folder at or above ``path`` must be a folder we may write in."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "" if folder == shown else f"{folder} "
                raise UserError(f"{shown}: {where}is a file, not a folder; choose another {what}")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UserError(
                    f"{shown}: cannot write in {folder} (permission denied); choose another {what}"
                )
            return


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on success it replaces ``path``.

    For writers that want a file name (h5py, matplotlib). The temporary file is fsync-ed before the rename
    and removed on every failure, interrupts included.
    """
    path = Path(path)
    check_writable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_leftovers(path)
        fd, name = tempfile.mkstemp(prefix=f"{_temporary_name(path)}{os.getpid()}-", dir=path.parent)
    except OSError as err:
        raise WriteFailed(f"{path}: cannot be written ({err.strerror or err})") from None
    os.close(fd)
    temporary = Path(name)
    os.chmod(temporary, _FILE_MODE)
    try:
        yield temporary
        with open(temporary, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException as err:
        temporary.unlink(missing_ok=True)
        reason = refused_write(err, path)
        if reason is None:
            raise
        kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written there"
        raise WriteFailed(f"{path}: cannot be written ({reason}); {kept}") from None
    _sync_folder(path.parent)


def refused_write(err: BaseException, path: Path) -> str | None:
    """Why the machine refused to write ``path``, or None when ``err`` is something else."""
    code = err.errno if isinstance(err, OSError) and err.errno in _REFUSED else None
    if code is None and isinstance(err, (OSError, RuntimeError)) and _about_writing(str(err)):
        code = _probable_cause(path.parent)
    if code is None:
        return None
    reason = os.strerror(code)
    if code == errno.EFBIG and (limit := _file_size_limit()) is not None:
        reason += f": the file-size limit (ulimit -f) is {limit} bytes"
    elif code in (errno.ENOSPC, errno.EDQUOT):
        reason += f" on the file system of {path.parent}"
    return reason


def _about_writing(message: str) -> bool:
    """Messages of writers that fail without an errno: torch.save, h5py."""
    lowered = message.lower()
    return any(words in lowered for words in ("write", "unexpected pos", "errno = "))


def _file_size_limit() -> int | None:
    if resource is None:
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else limit


def _probable_cause(folder: Path) -> int | None:
    if _file_size_limit() is not None:
        return errno.EFBIG
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    if stats.f_bavail * stats.f_frsize < _NEARLY_FULL:
        return errno.ENOSPC
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return None


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file object whose content replaces ``path`` when the block ends without error."""
    with atomic_path(path) as temporary, open(temporary, "wb") as f:
        yield f
        f.flush()


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    with atomic_file(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, payload: Any) -> Path:
    """JSON with sorted keys and a final newline (records diff cleanly); NaN and infinities, which JSON
    does not have, become null."""
    return atomic_write_text(
        path, json.dumps(json_ready(payload), indent=2, sort_keys=True, allow_nan=False) + "\n"
    )


def json_ready(value: Any) -> Any:
    """``value`` as JSON can hold it: string keys, lists for tuples, Python numbers for NumPy scalars,
    and null for NaN and the infinities (the one walker every JSON writer goes through)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # NumPy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files an earlier, killed writer left in ``folder`` and below it.

    Call it only while nobody else writes there (the run folder's lock guarantees that).
    """
    removed = []
    for leftover in Path(folder).rglob(f".*{TEMPORARY_MARK}*"):
        if leftover.is_file():
            leftover.unlink(missing_ok=True)
            removed.append(leftover)
    return removed


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        return
    finally:
        os.close(fd)
