"""How fast the synthetic data sets are made, per 512x512 image, against references measured in this run.

The claim to check (issue 2): "seeded and fast, well under 1 s per 512x512 image". The references are the
1 s budget and, where the real ISBI 2012 data is found (``--data-root``, ``$UNETBENCH_DATA``,
``../shared/datasets``), reading and scaling one real ISBI 2012 slice from its
TIFF stack (what the synthetic data stands in for).

    python benchmarks/synthetic_speed.py [--repeats 5] [--data-root DIR] [--out RESULT.md]
"""

from __future__ import annotations

import argparse
import itertools
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from _timing import add_data_root, isbi2012_file, median_seconds, recorded, result_file  # noqa: I001 - the benchmarks folder is on sys.path

from unetbench.datasets import synthetic
from unetbench.datasets.images import to_unit_float


def per_call(fn: Callable[[int], object], repeats: int) -> float:
    """Median time of ``fn(i)`` with a new image index i for every call."""
    counter = itertools.count()
    return median_seconds(lambda: fn(next(counter)), repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=result_file, default=None, help="write the result here (Markdown)")
    add_data_root(parser)
    args = parser.parse_args()
    with recorded(args.out, "Synthetic data: speed"):
        table(args.repeats, args.data_root)


def table(repeats: int, data_root: Path | None = None) -> None:
    """Print the references and one row per generator."""
    machine = platform.processor() or platform.machine()
    print(f"machine: {machine}, numpy {np.__version__}, median of {repeats} after one burn-in call")

    generators = {
        "EM-like slice": lambda i: synthetic.em_slice(0, i, 512, 512),
        "cell frame, phase": lambda i: synthetic.cell_sequence(0, 1, [i], 512, 512, "phase"),
        "cell frame, DIC": lambda i: synthetic.cell_sequence(0, 1, [i], 512, 512, "dic"),
    }
    rows = [(name, per_call(fn, repeats)) for name, fn in generators.items()]
    reference = None
    volume, where = isbi2012_file(data_root, "train-volume.tif")
    if volume is not None:
        reference = per_call(
            lambda i: to_unit_float(tifffile.imread(volume, key=i % 30), source="isbi"), repeats
        )
        print(f"reference: read + scale one slice of {where}: {reference * 1e3:.1f} ms")
    else:
        print(f"reference: {where}; the real-slice ratio is not measured")
    print(f"{'generator (512x512)':<22} {'ms/image':>9} {'x of 1 s budget':>16} {'x of real read':>15}")
    for name, seconds in rows:
        real = f"{seconds / reference:>15.1f}" if reference else f"{'-':>15}"
        print(f"{name:<22} {seconds * 1e3:>9.1f} {seconds / 1.0:>16.3f} {real}")


if __name__ == "__main__":
    main()
