"""Downloading official files: progress, sha256 verification, safe extraction, atomic placement.

The guarantee: an interrupted or corrupted download leaves nothing that looks like data. Files are
downloaded into a hidden staging directory beside their final place (``.<name>.staging-*``), checked
against the sha256 constant of their data set module, extracted (zip members with absolute paths, ``..``
components or links are refused before anything is written) and checked by the data set's adapter; only
then is the staging directory renamed to its final name, which is atomic on one file system.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from unetbench.errors import DataError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Resource:
    """One file to download: its official URL and the sha256 of its bytes."""

    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return PurePosixPath(self.url).name

    def url_from(self, mirror: str | None) -> str:
        """The official URL, or the same file name below ``mirror`` (a local copy, a test server)."""
        return f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    resource: Resource, directory: Path, *, mirror: str | None = None, progress: bool = True
) -> Path:
    """Download ``resource`` into ``directory`` and verify its sha256; return the verified file.

    On any failure (network, HTTP status, short read, checksum) the partial file is deleted and a
    :class:`DataError` says what happened.
    """
    url = resource.url_from(mirror)
    target = directory / resource.filename
    partial = directory / f"{resource.filename}.part"
    digest = hashlib.sha256()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    done = False
    try:
        with (
            urllib.request.urlopen(url, timeout=60) as response,
            open(partial, "wb") as out,
            Progress(*columns, console=Console(stderr=True), disable=not progress) as bar,
        ):
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            task = bar.add_task(resource.filename, total=total)
            received = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.advance(task, len(chunk))
            if total is not None and received != total:
                raise DataError(f"{url}: the connection closed after {received} of {total} bytes; try again")
        done = True
    except urllib.error.HTTPError as err:
        raise DataError(f"{url}: the server answered HTTP {err.code} ({err.reason})") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise DataError(f"{url}: download failed ({reason}); check the network and try again") from None
    finally:
        if not done:
            partial.unlink(missing_ok=True)
    actual = digest.hexdigest()
    if actual != resource.sha256:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"{url}: sha256 mismatch (expected {resource.sha256}, got {actual}); the file was deleted. "
            "Try again, or bring a copy you trust with `unetbench data import`"
        )
    partial.replace(target)
    return target


def _unsafe_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "a '..' component"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    return None


def safe_extract(archive: Path, destination: Path) -> None:
    """Extract a zip archive, refusing the whole archive if any member could land outside ``destination``.

    Refused: absolute paths (``/x``, ``C:x``), ``..`` components, symbolic links. Nothing is written
    when a member is refused.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            root = destination.resolve()
            for info in members:
                reason = _unsafe_reason(info)
                if reason is None and not (root / info.filename).resolve().is_relative_to(root):
                    reason = "a path outside the destination"
                if reason:
                    raise DataError(
                        f"{archive}: refused to extract: member {info.filename!r} has {reason}; "
                        "the archive is not a genuine copy of the data set"
                    )
            for info in members:
                zf.extract(info, destination)
    except zipfile.BadZipFile as err:
        raise DataError(f"{archive}: not a valid zip archive ({err})") from None


@contextmanager
def staged_directory(final: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a new hidden directory beside ``final``; rename it to ``final`` when the block succeeds.

    If the block raises (or is interrupted) the staging directory is removed and ``final`` is untouched.
    An existing ``final`` is replaced only with ``force``; it is removed only after the new one is in place.
    """
    if final.exists() and not force:
        raise DataError(f"{final} already exists; pass --force to replace it")
    made = [p for p in (final.parent, *final.parent.parents) if not p.exists()]  # folders this call makes
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.staging-", dir=final.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    stage.chmod(0o777 & ~umask)  # mkdtemp makes it private; the data should get the usual permissions
    try:
        yield stage
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            final.rename(old)
            stage.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            stage.rename(final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for folder in made:  # deepest first: leave no empty data root behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
