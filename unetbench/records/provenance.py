"""Where a run came from: the commit and whether the tree had changes, the versions, the hardware, the
command line, the time, and the run's id."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

from unetbench import __version__
from unetbench.records.run_record import (
    Hardware,
    Provenance,
)


def git_revision(cwd: Path | None = None) -> tuple[str | None, bool | None]:
    """The commit of the code that ran and whether the working tree had changes (None, None outside git)."""
    source = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd or source, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None, None


def hardware(device: str) -> Hardware:
    import torch

    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return Hardware(
        machine=platform.machine(),
        processor=_cpu_name(),
        cpu_cores=os.cpu_count() or 1,
        device=device,
        gpu=gpu,
    )


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
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


def provenance(device: str) -> Provenance:
    commit, dirty = git_revision()
    return Provenance(versions=versions(), commit=commit, dirty=dirty, hardware=hardware(device))


def run_id(spec_text: str) -> str:
    """``YYYYMMDD-HHMMSS-<first 8 hex of the resolved spec's sha256>``: sortable, and tells specs apart."""
    digest = hashlib.sha256(spec_text.encode()).hexdigest()[:8]
    return time.strftime("%Y%m%d-%H%M%S") + "-" + digest


def command_line() -> str:
    return " ".join(["unetbench", *sys.argv[1:]])


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def host_name() -> str:
    return socket.gethostname()
