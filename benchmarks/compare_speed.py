"""How long ``unetbench compare`` takes to score and rank 8 methods on the 30 real ISBI 2012 training
slices, side by side with 8 calls of ``unetbench evaluate`` in the same run, and how long a comparison
that adds one method to 8 cached ones takes against one ``evaluate``.

The methods are made from the real labels (the metrics' speed depends on how the proposal looks, not on
where it came from): the labels blurred by 1 to 4 px, and with smooth noise of four strengths. Every
step is a fresh process running the command as a user would (``python -m unetbench ...``), so imports
count; the scores' cache is a new folder, empty for the first comparison.

    python benchmarks/compare_speed.py [--data-root DIR] [--out reports/benchmarks/compare-speed.md]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from _timing import add_data_root, isbi2012_file, result_file, result_header, write_result  # noqa: I001 - the benchmarks folder is on sys.path
from scipy import ndimage


def methods(labels: np.ndarray, folder: Path) -> list[Path]:
    """Nine proposals of P(cell) from the labels, written as .npy files (the ninth is the one added)."""
    rng = np.random.default_rng(0)
    smooth = np.stack([ndimage.gaussian_filter(rng.normal(0, 1, s.shape), 3) for s in labels])
    paths = []
    for sigma in (1, 2, 3, 4):
        blurred = np.stack([ndimage.gaussian_filter(s / 255.0, sigma) for s in labels]).astype(np.float32)
        paths.append(folder / f"blur{sigma}.npy")
        np.save(paths[-1], blurred)
    base = np.load(folder / "blur2.npy")
    for strength in (0.2, 0.4, 0.6, 0.8, 1.0):
        paths.append(folder / f"noise{strength}.npy")
        np.save(paths[-1], np.clip(base + strength * smooth, 0, 1).astype(np.float32))
    return paths


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "unetbench", *command], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"`unetbench {' '.join(command)}` failed:\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=result_file, help="write the result here too (Markdown)")
    add_data_root(parser)
    args = parser.parse_args()
    path, where = isbi2012_file(args.data_root, "train-labels.tif")
    if path is None:
        sys.exit(f"{where}: this benchmark needs the real ISBI 2012 labels; give --data-root")
    from unetbench.system import cpu_share

    start = cpu_share.read_clock()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        proposals = methods(tifffile.imread(path), folder)
        gt = str(path)
        timed(["evaluate", "--challenge", "em", "--gt", gt, "--pred", str(proposals[0])])  # numba's cache
        evaluates = [
            timed(["evaluate", "--challenge", "em", "--gt", gt, "--pred", str(p)]) for p in proposals[:8]
        ]
        common = ["compare", "--challenge", "em", "--gt", gt, "--cache", str(folder / "cache")]
        common += ["--reports", str(folder / "reports")]
        eight = timed([*common, *map(str, proposals[:8])])
        cached = timed([*common, *map(str, proposals[:8])])
        nine = timed([*common, *map(str, proposals)])
    lines = result_header("unetbench compare: speed on the 30 real ISBI 2012 slices")
    lines += [
        f"- data: {where}; 9 proposals made from the labels (blurred by 1-4 px; blurred by 2 px with smooth "
        "noise of 5 strengths); every step a fresh `python -m unetbench` process; 1000 bootstrap replicates",
        "",
        "| what | seconds | against one evaluate (median of the 8) |",
        "|---|---:|---:|",
    ]
    one = float(np.median(evaluates))
    rows = [
        ("8 x `unetbench evaluate`, one method each (sum)", sum(evaluates)),
        ("`unetbench compare` of the 8, the cache empty", eight),
        ("`unetbench compare` of the same 8, all cached", cached),
        ("`unetbench compare` of 9: the 8 cached and one new", nine),
    ]
    lines += [f"| {name} | {seconds:.1f} | {seconds / one:.2f} |" for name, seconds in rows]
    lines += ["", f"One `unetbench evaluate` (median of the 8): {one:.1f} s."]
    busy = cpu_share.others_busy(start, cpu_share.read_clock())
    if busy is not None:  # the measured commands are this benchmark's children: counted as its own
        lines.append(
            f"Other processes kept {busy:.1f} of the machine's cores busy meanwhile"
            + ("; the times are not the machine's alone." if busy >= cpu_share.SHARED else ".")
        )
    write_result(args.out, lines)


if __name__ == "__main__":
    main()
