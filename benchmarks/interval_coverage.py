"""How often an ablation's interval holds the true effect: thousands of simulated ablations with a known
effect, fold noise and seed noise (:func:`unetbench.ablation.statistics.simulate_ablations`, the same
simulation as ``tests/test_statistics.py``), for the corrected repeated k-fold t-test the reports use and
for the per-image interval pooled over (seed, image) that earlier tables used. Writes its table to ``--out``.

    python benchmarks/interval_coverage.py [--ablations 4000] [--out reports/benchmarks/interval-coverage.md]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _timing import result_file  # noqa: I001 - the benchmarks folder is on sys.path

from unetbench.ablation.statistics import coverage, simulate_ablations
from unetbench.atomic import atomic_write_text
from unetbench.results import git_revision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablations", type=int, default=4000)
    parser.add_argument("--out", type=result_file, default=None)
    args = parser.parse_args()
    commit, dirty = git_revision()
    lines = [
        "# Coverage of the ablation intervals (simulated)",
        "",
        f"- command: `python {' '.join(sys.argv)}`; commit `{(commit or 'unknown')[:12]}"
        f"{'+changes' if dirty else ''}`",
        f"- {args.ablations} ablations per row, true effect 0.02; 6 folds of 5 test and 20 training images "
        "(fold correlation 5/25); fold and seed noise sd 0.01, image noise sd 0.03; random seed 2015",
        "",
        "| folds | seeds | images per fold | corrected interval (networks) | pooled interval (seed, image) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for seeds in (1, 2, 3):
        network, per_image = simulate_ablations(
            np.random.default_rng(2015),
            ablations=args.ablations,
            folds=6,
            seeds=seeds,
            images=5,
            effect=0.02,
            fold_sd=0.01,
            seed_sd=0.01,
            image_sd=0.03,
            rho=5 / 25,
        )
        corrected, pooled = coverage(network, per_image, 0.02, test_over_train=5 / 20)
        lines.append(f"| 6 | {seeds} | 5 | {corrected:.1%} | {pooled:.1%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
