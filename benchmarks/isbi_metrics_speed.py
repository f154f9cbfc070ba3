"""Time of the five ISBI 2012 EM metrics on the 30-slice stack, against scikit-image in the same run.

The bar (issue 3): warping, Rand and pixel error, V_rand and V_info at the official thresholds (11 for
the Rand and pixel errors and V-scores, 10 for warping) on the 30 real 512x512 ISBI 2012 slices in at most
3 s on the 2-core CI machine. The reference is ``skimage.metrics.adapted_rand_error`` on the same data at
one threshold (0.5), with scipy's 4-connected labelling of both stacks included, as a user would call it.

With ``--against COMMIT`` it also times ``unetbench evaluate`` of the 30 slices (the blurred proposal) as a
user runs it, start-up included, here and at ``COMMIT`` side by side (``--rounds`` alternating rounds),
and says whether the command imported torch (issue 32: scoring a submission needs no network).

    python benchmarks/isbi_metrics_speed.py [--repeats 3] [--data-root DIR] [--against 1b4fa3b]
                                            [--out reports/benchmarks/isbi-metrics-speed.md]

Needs the real labels, ``isbi2012/train-labels.tif`` below ``--data-root``, ``$UNETBENCH_DATA`` or
``../shared/datasets``; proposals are made from them: the labels themselves,
blurred labels (sigma 2 px), blurred labels with smooth noise, and blurred labels with per-pixel noise
(a stress case no trained network produces).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from _timing import (
    add_data_root,
    commit,
    count,
    isbi2012_file,
    median_seconds,
    result_file,
    result_header,
    write_result,
)  # noqa: I001, E501 - the benchmarks folder is on sys.path
from evaluate_startup import side_by_side  # noqa: I001 - the benchmarks folder is on sys.path
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from unetbench.metrics import isbi2012_scores

FIVE = ["warping_error", "rand_error", "pixel_error", "v_rand", "v_info"]
FOUR = ndimage.generate_binary_structure(3, 1)
FOUR[0] = FOUR[2] = False  # 4-connected within each slice, slices not connected


def skimage_reference(gt: np.ndarray, proposal: np.ndarray) -> float:
    a, _ = ndimage.label(gt > 0, structure=FOUR)
    b, _ = ndimage.label(proposal > 0.5, structure=FOUR)
    return adapted_rand_error(a, b, ignore_labels=(0,))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--against", type=commit, help="also time `unetbench evaluate` here and at this commit"
    )
    parser.add_argument("--rounds", type=count(1), default=3, help="alternating rounds of --against")
    parser.add_argument("--out", type=result_file, help="write the result here too (Markdown)")
    add_data_root(parser)
    args = parser.parse_args()
    labels, where = isbi2012_file(args.data_root, "train-labels.tif")
    if labels is None:
        sys.exit(f"{where}: this benchmark needs the real ISBI 2012 labels; give --data-root")
    gt = tifffile.imread(labels)
    rng = np.random.default_rng(0)
    blurred = np.stack([ndimage.gaussian_filter(s / 255.0, 2) for s in gt]).astype(np.float32)
    smooth = np.stack([ndimage.gaussian_filter(rng.normal(0, 1, s.shape), 3) for s in gt])
    proposals = {
        "labels (perfect)": (gt / 255).astype(np.float32),
        "blurred": blurred,
        "blurred + smooth noise": np.clip(blurred + 0.6 * smooth, 0, 1).astype(np.float32),
        "blurred + pixel noise (stress)": np.clip(blurred + rng.normal(0, 0.15, gt.shape), 0, 1).astype(
            np.float32
        ),
    }
    lines = result_header("The ISBI 2012 metrics: speed on the 30 real slices")
    lines += [
        f"- data: {gt.shape[0]} slices of {gt.shape[1]}x{gt.shape[2]} px ({where}); median of "
        f"{args.repeats} runs"
    ]
    start = time.perf_counter()
    isbi2012_scores(gt[:1], blurred[:1], FIVE)
    lines += [
        f"- first call (numba compilation, or loading its cache): {time.perf_counter() - start:.2f} s",
        "",
    ]
    lines += [
        "| proposal | five metrics | scikit-image ARE | ratio | within 3 s |",
        "|---|---:|---:|---:|---|",
    ]
    for name, proposal in proposals.items():
        ours = median_seconds(lambda p=proposal: isbi2012_scores(gt, p, FIVE), args.repeats)
        reference = median_seconds(lambda p=proposal: skimage_reference(gt, p), args.repeats)
        within = "yes" if ours <= 3 else "NO"
        lines.append(f"| {name} | {ours:.2f} s | {reference:.2f} s | {ours / reference:.1f} | {within} |")
    if args.against:
        lines += ["", *evaluate_command(args.against, labels, proposals["blurred"], args.rounds)]
    write_result(args.out, lines)


def evaluate_command(commit: str, labels: Path, proposal: np.ndarray, rounds: int) -> list[str]:
    """The 30-slice ``unetbench evaluate`` (start-up included) here and at ``commit``, side by side."""
    with tempfile.TemporaryDirectory() as scratch:
        pred = Path(scratch) / "blurred.npy"
        np.save(pred, proposal)
        table = side_by_side(commit, labels, pred, rounds)
    return [
        f"`unetbench evaluate --challenge em --gt {labels.name} --pred blurred.npy` (the blurred proposal, "
        f"all five metrics), a new Python process each time, here and at `{commit}`, alternating, "
        f"{rounds} rounds after one warm-up each:",
        "",
        *table,
        "",
        "The official tool (the organisers' Fiji script) is not timed: Fiji is not installed here and",
        "cannot be fetched (no internet but package registries); no figure for it is given.",
    ]


if __name__ == "__main__":
    main()
