"""The ``unetbench run`` command line, one owner: the resume command a run prints (and records) and the
command ``unetbench run --gpus N`` starts in each of its processes are both :func:`run_arguments`."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from unetbench.system import processes


def run_arguments(
    spec_file: Path,
    *,
    resume: Path | None = None,
    out: Path | None = None,
    data_root: Path | None = None,
    reports: Path | None = None,
    overrides: Sequence[str] = (),
    device: str | None = None,
    iterations: int | None = None,
    progress: bool = True,
    track: Sequence[str] = (),
) -> list[str]:
    """The words after ``unetbench`` of a ``run`` command with these options; the data and reports folders
    absolute, so that a printed resume command works from any folder."""
    words = ["run", str(spec_file)]
    words += ["--resume", str(resume)] if resume is not None else []
    words += ["--out", str(out)] if out is not None else []
    for option, folder in (("--data-root", data_root), ("--reports", reports)):
        if folder is not None:
            words += [option, str(Path(folder).absolute())]
    for override in overrides:
        words += ["--set", override]
    words += ["--device", device] if device is not None else []
    words += ["--iterations", str(iterations)] if iterations is not None else []
    words += [] if progress else ["--no-progress"]
    for kind in track:
        words += ["--track", kind]
    return words


def resume_command(
    spec_file: Path, run_folder: Path, *, data_root: Path | None, reports: Path | None, processes_: int = 1
) -> str:
    """The command that resumes a run, as it was started: plain, with ``--gpus N`` (started by ``unetbench
    run --gpus N``), or under torchrun on as many processes."""
    words = ["unetbench", *run_arguments(spec_file, resume=run_folder, data_root=data_root, reports=reports)]
    if processes_ > 1 and os.environ.get(processes.LAUNCHED_BY_GPUS):
        words += ["--gpus", str(processes_)]
    elif processes_ > 1:
        words = ["torchrun", "--nproc-per-node", str(processes_), "-m", "unetbench", *words[1:]]
    return shlex.join(words)
