"""How often an ablation's interval holds the true effect: thousands of simulated ablations with a known
effect, fold noise and seed noise (:func:`unetbench.ablation.statistics.simulate_ablations`, the same
simulation as ``tests/test_statistics.py``), for the corrected repeated k-fold t-test the reports use and
for the per-image interval pooled over (seed, image) that earlier tables used; and, one seed per fold, how
the corrected interval's coverage falls as the folds' correlation rises past the n_test / (n_test +
n_train) = 0.2 that the correction assumes. Writes its tables to ``--out``.

    python benchmarks/interval_coverage.py [--ablations 4000] [--out reports/benchmarks/interval-coverage.md]
"""

from __future__ import annotations

import argparse
import sys

from _timing import result_file  # noqa: I001 - the benchmarks folder is on sys.path

from unetbench.ablation.statistics import SIMULATED_EFFECT as EFFECT
from unetbench.ablation.statistics import SIMULATED_TEST_OVER_TRAIN as TEST_OVER_TRAIN
from unetbench.ablation.statistics import coverage, pooled_coverage, simulate_em_design
from unetbench.records.provenance import git_revision
from unetbench.system.atomic_writes import atomic_write_text


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
        f"- {args.ablations} ablations per row, true effect {EFFECT}; 6 folds of 5 test and 20 training "
        "images, so the correction (1/J + n_test/n_train) assumes the folds' differences correlate by "
        "5/25 = 0.2; fold noise sd 0.01, image noise sd 0.03; random seed 2015. The coverage test "
        "(`tests/test_statistics.py`) asks [0.93, 0.99].",
        "",
        "## With seed noise (sd 0.01): the corrected interval against the pooled one",
        "",
        "| folds | seeds | correlation of the fold term | corrected interval (networks) "
        "| pooled interval (seed, image) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for seeds in (1, 2, 3):
        network, per_image = simulate_em_design(ablations=args.ablations, seeds=seeds, seed_sd=0.01)
        corrected = coverage(network, EFFECT, test_over_train=TEST_OVER_TRAIN)
        lines.append(f"| 6 | {seeds} | 0.2 | {corrected:.1%} | {pooled_coverage(per_image, EFFECT):.1%} |")
    lines += [
        "",
        "(With seed noise the differences of two folds correlate by less than 0.2, so the corrected "
        "interval is wider than it needs to be.)",
        "",
        "## One seed, all network noise in the fold term: the correlation the correction assumes, and above",
        "",
        "| fold correlation | corrected interval | without the correction | twice as wide |",
        "|---:|---:|---:|---:|",
    ]
    for rho in (0.2, 0.4, 0.6, 0.8):
        network, _ = simulate_em_design(ablations=args.ablations, rho=rho)
        cells = [
            coverage(network, EFFECT, test_over_train=TEST_OVER_TRAIN),
            coverage(network, EFFECT, test_over_train=0.0),
            coverage(network, EFFECT, test_over_train=TEST_OVER_TRAIN, widen=2.0),
        ]
        lines.append(f"| {rho} | " + " | ".join(f"{c:.1%}" for c in cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
