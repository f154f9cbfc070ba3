"""Shared by the benchmarks: the median wall time of a call, after a burn-in call; the device and its name."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path


def median_seconds(fn: Callable[[], object], repeats: int, *, burn_in: bool = True) -> float:
    """Median of ``repeats`` timed calls of ``fn``; one untimed call first (imports, caches, allocations)."""
    if burn_in:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def device_and_name(requested: str):
    """The torch device for ``auto``/``cpu``/``cuda`` (as ``unetbench run`` resolves it) and the words that
    name it beside a figure: the GPU's name, or the processor and its cores."""
    import torch

    from unetbench.records.provenance import hardware
    from unetbench.system.devices import resolve_device

    device = resolve_device(requested)
    machine = hardware(device)
    return torch.device(device), machine.gpu or f"{machine.processor}, {machine.cpu_cores} cores"


def result_file(text: str):
    """``--out``'s argparse type: the result file's path, refused at once (one line, exit 2) when its folder
    is missing, not after the measurement it was to keep."""
    import argparse
    from pathlib import Path

    path = Path(text)
    if not path.absolute().parent.is_dir():
        raise argparse.ArgumentTypeError(
            f"{text}: folder {path.absolute().parent} does not exist; make it first"
        )
    return path


def count(least: int):
    """An argparse type: a whole number >= ``least``, refused at once (one line, exit 2) otherwise."""
    import argparse

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"{text}: give a whole number >= {least}")
        return value

    return parse


def commit(text: str) -> str:
    """``--against``'s argparse type: a commit of this repository, refused at once when git knows none."""
    import argparse
    import subprocess

    done = subprocess.run(
        [
            "git",
            "-C",
            str(Path(__file__).resolve().parents[1]),
            "rev-parse",
            "--verify",
            "-q",
            f"{text}^{{commit}}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise argparse.ArgumentTypeError(
            f"{text}: not a commit of this repository (git rev-parse found none)"
        )
    return text


def result_header(title: str, device: str = "cpu") -> list[str]:
    """The first lines of a benchmark's result file: what, the command, the commit, the machine, and on
    CUDA the card, its driver and the CUDA version (a GPU figure holds for its card only)."""
    import platform
    import sys

    import torch

    from unetbench.records.provenance import git_revision, hardware

    commit, dirty = git_revision()
    machine = hardware(str(device))
    lines = [
        f"# {title}",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- commit: `{(commit or 'unknown')[:12]}{'+changes' if dirty else ''}`; Python "
        f"{platform.python_version()}, torch {torch.__version__}",
        f"- machine: {machine.processor}, {machine.cpu_cores} cores ({platform.machine()})",
    ]
    if machine.gpu is not None:
        lines.append(f"- GPU: {machine.gpu}, driver {_driver()}, CUDA {torch.version.cuda}")
    return [*lines, ""]


def _driver() -> str:
    """The NVIDIA driver's version as nvidia-smi reports it, or "unknown"."""
    import subprocess

    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def write_result(path, lines: list[str]) -> None:
    """Print the result and, with ``path``, write it there atomically (a table is copied from a file)."""
    from unetbench.system.atomic_writes import atomic_write_text

    text = "\n".join(lines) + "\n"
    print(text)
    if path is not None:
        atomic_write_text(path, text)
        print(f"wrote {path}")


class recorded:
    """``with recorded(path, title):`` prints as usual and, with ``path``, also writes what was printed as
    a Markdown result file (header: command, commit, machine, the card on ``device`` CUDA; the output in a
    block, or as it is where it is Markdown already, ``markdown=True``)."""

    def __init__(self, path, title: str, *, device="cpu", markdown: bool = False):
        self.path, self.title, self.device, self.markdown = path, title, device, markdown

    def __enter__(self):
        import contextlib
        import io
        import sys

        self.buffer = io.StringIO()
        self._tee = _Tee(sys.stdout, self.buffer)
        self._redirect = contextlib.redirect_stdout(self._tee)
        self._redirect.__enter__()
        return self

    def __exit__(self, *exc):
        self._redirect.__exit__(*exc)
        if exc[0] is None and self.path is not None:
            from unetbench.system.atomic_writes import atomic_write_text

            output = self.buffer.getvalue().rstrip()
            lines = result_header(self.title, self.device) + (
                [output] if self.markdown else ["```", output, "```"]
            )
            atomic_write_text(self.path, "\n".join(lines) + "\n")
            print(f"wrote {self.path}")


class _Tee:
    def __init__(self, *streams):
        self.streams = streams

    def write(self, text):
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self):
        for stream in self.streams:
            stream.flush()


SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def add_data_root(parser) -> None:
    """``--data-root DIR``: where the real ISBI 2012 stacks are, as ``unetbench`` takes it."""
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="the data root holding isbi2012/ (default: $UNETBENCH_DATA, else ../shared/datasets)",
    )


def isbi2012_file(data_root: Path | None, name: str) -> tuple[Path | None, str]:
    """The real ISBI 2012 stack ``name`` (``train-labels.tif``, ...) below ``--data-root`` where it is
    given, else ``$UNETBENCH_DATA`` or ``../shared/datasets``; with the words that say where it was
    found or looked for."""
    import os

    if data_root is not None:  # given: there, and only there
        roots = [data_root]
    else:
        roots = [Path(os.environ["UNETBENCH_DATA"])] if os.environ.get("UNETBENCH_DATA") else []
        roots.append(SHARED)
    for root in roots:
        if (root / "isbi2012" / name).is_file():
            return root / "isbi2012" / name, f"real ISBI 2012, {root / 'isbi2012' / name}"
    looked = ", ".join(str(root / "isbi2012") for root in roots)
    return None, f"no real ISBI 2012 {name} (looked in {looked})"
