"""``unetbench evaluate`` of the 30 real slices as a user runs it, start-up included, at this checkout and
at an earlier commit, side by side (alternating, so that both meet the same machine); and whether the
command imported torch (scoring a submission needs no network).

Used by ``isbi_metrics_speed.py --against COMMIT``; the earlier commit is checked out with ``git worktree``
into a temporary folder and run from there with the same interpreter.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# the command as the console script runs it, then one line on stderr: was torch imported?
_PROBE = (
    "import runpy, sys\n"
    "sys.argv = ['unetbench', *sys.argv[1:]]\n"
    "code = 0\n"
    "try:\n"
    "    runpy.run_module('unetbench', run_name='__main__')\n"
    "except SystemExit as stop:\n"
    "    code = stop.code or 0\n"
    "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


@contextlib.contextmanager
def checkout(commit: str) -> Iterator[Path]:
    """``commit`` checked out beside this repository's objects, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="unetbench-at-"))
    git = ["git", "-C", str(REPO), "worktree"]
    subprocess.run([*git, "add", "-q", "--detach", str(folder), commit], check=True)
    try:
        yield folder
    finally:
        subprocess.run([*git, "remove", "--force", str(folder)], check=False)


def _evaluate(source: Path, arguments: list[str], *, probe: bool) -> tuple[float, str]:
    """Seconds of one ``python -m unetbench evaluate ...`` with the package taken from ``source``; with
    ``probe``, the stderr line that says whether torch was imported."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    argv = [sys.executable, "-c", _PROBE] if probe else [sys.executable, "-m", "unetbench"]
    start = time.perf_counter()
    done = subprocess.run(
        [*argv, "evaluate", *arguments], env=env, cwd=source, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"unetbench evaluate at {source} failed:\n{done.stderr}")
    imported = [line for line in done.stderr.splitlines() if line.startswith("torch imported:")]
    return seconds, imported[-1].split(": ")[1] if imported else ""


def side_by_side(commit: str, gt: Path, pred: Path, rounds: int) -> list[str]:
    """Markdown lines: each round's seconds here and at ``commit``, the medians, and torch imported or not."""
    arguments = ["--challenge", "em", "--gt", str(gt), "--pred", str(pred)]
    with checkout(commit) as earlier:
        sources = {"this checkout": REPO, f"`{commit}`": earlier}
        torch = {name: _evaluate(src, arguments, probe=True)[1] for name, src in sources.items()}  # warm-up
        seconds: dict[str, list[float]] = {name: [] for name in sources}
        for _ in range(rounds):
            for name, src in sources.items():
                seconds[name].append(_evaluate(src, arguments, probe=False)[0])
    lines = [
        "| code | torch imported | " + " | ".join(f"round {i + 1}" for i in range(rounds)) + " | median |",
        "|---|---|" + "---:|" * (rounds + 1),
    ]
    for name in sources:
        cells = " | ".join(f"{s:.2f} s" for s in seconds[name])
        lines.append(f"| {name} | {torch[name]} | {cells} | {statistics.median(seconds[name]):.2f} s |")
    return lines
