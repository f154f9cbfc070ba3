"""The run directory and its one results record (``record.json``), from which reports are rendered.

A run directory holds: ``spec.toml`` (the resolved spec), ``checkpoints/`` (``last.pt``, ``best.pt``),
``predictions.h5`` (probability maps), ``figures/`` and ``record.json``. Every file is written
atomically (a temporary file beside it, then a rename), so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from unetbench import __version__

RECORD = "record.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN; a missing score is null
    return value


def write_record(run_dir: Path, record: dict[str, Any]) -> Path:
    path = run_dir / RECORD
    text = json.dumps(_jsonable(record), indent=2, sort_keys=True) + "\n"
    atomic_write_bytes(path, text.encode())
    return path


def read_record(run_dir: Path) -> dict[str, Any]:
    from unetbench.errors import UserError

    path = run_dir / RECORD
    if not path.is_file():
        raise UserError(f"{run_dir}: no {RECORD}; is this a run directory made by `unetbench run`?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


def git_revision(cwd: Path | None = None) -> dict[str, Any]:
    """The commit of the code that ran, and whether the working tree had changes."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd or source,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd or source,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        return {"commit": commit, "dirty": bool(dirty)}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def hardware(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    import numpy
    import scipy
    import skimage
    import torch

    return {
        "unetbench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
    }


def run_id(spec_text: str) -> str:
    """``YYYYMMDD-HHMMSS-<first 8 hex of the resolved spec's sha256>``: sortable, and tells specs apart."""
    digest = hashlib.sha256(spec_text.encode()).hexdigest()[:8]
    return time.strftime("%Y%m%d-%H%M%S") + "-" + digest


def command_line() -> str:
    return " ".join(["unetbench", *sys.argv[1:]])
