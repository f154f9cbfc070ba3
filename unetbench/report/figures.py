"""Figures of a report: the training curve (from the record) and image overlays (from the run)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from unetbench.records.run_record import RunRecord
from unetbench.system.atomic_writes import atomic_path


def _save(fig, path: Path) -> Path:
    """Write a figure as PNG through the atomic writer, and free it."""
    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, format="png")
    finally:
        plt.close(fig)
    return path


def training_curve_figure(record: RunRecord, path: Path) -> Path:
    """Loss over iterations, and the validation scores of the primary metric where there are any."""
    curve = record.training.curve
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    if curve:
        ax.plot([c.iteration for c in curve], [c.loss for c in curve], color="tab:blue", lw=1.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("weighted cross-entropy", color="tab:blue")
    ax.set_yscale("log")
    validation = record.training.validation
    primary = record.primary
    if validation:
        other = ax.twinx()
        other.plot(
            [v.iteration for v in validation],
            [np.nan if v.metrics.get(primary) is None else v.metrics[primary] for v in validation],
            "o-",
            color="tab:orange",
            ms=3,
        )
        other.set_ylabel(f"validation {primary}", color="tab:orange")
    ax.set_title(f"{record.challenge} {record.run_id}: training curve", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def overlay_figure(sample, probability: np.ndarray, path: Path, *, title: str) -> Path:
    """Input, ground truth, prediction (P(cell) > 0.5) and errors (red: false cell, blue: missed cell)."""
    prediction = probability > 0.5
    truth = sample.target > 0
    errors = np.zeros((*truth.shape, 3))
    errors[prediction & ~truth] = (1.0, 0.2, 0.2)
    errors[~prediction & truth] = (0.2, 0.4, 1.0)
    panels = [
        (sample.image, "input", "gray"),
        (truth, "ground truth (cell)", "gray"),
        (probability, "P(cell)", "magma"),
        (errors, "errors at 0.5", None),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.3), dpi=100)
    for ax, (data, title, cmap) in zip(axes, panels, strict=True):
        ax.imshow(
            data, cmap=cmap, vmin=0 if cmap else None, vmax=1 if cmap else None, interpolation="nearest"
        )
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def forest_figure(summary, metric: str, path: Path) -> Path:
    """Δ of each variant against the baseline with its interval over trained networks, and a zero line
    (``summary``: :class:`unetbench.ablation.summary.Summary`). The primary metric's figure shows the
    family's intervals (Bonferroni, 1 - 0.05/m), resolved effects (Holm) in red and the ROPE shaded; the
    other metrics' show unadjusted 95% intervals, exploratory."""
    family = summary.family if summary.family and summary.family.metric == metric else None
    rows = [row for row in summary.rows if metric in row.effects]
    fig, ax = plt.subplots(figsize=(6.5, 0.5 + 0.45 * max(1, len(rows))), dpi=110)
    found = {r.variant: r for r in family.rows} if family else {}
    for y, row in enumerate(reversed(rows)):
        effect = row.effects[metric].run_level
        if family:
            low, high = found[row.variant].family_low, found[row.variant].family_high
            colour = "tab:red" if found[row.variant].resolved else "tab:gray"
        else:
            low, high = effect.low, effect.high
            colour = "tab:orange" if effect.excludes_zero else "tab:gray"
        if not np.isnan(low):
            ax.plot([low, high], [y, y], color=colour, lw=2)
        ax.plot([effect.mean], [y], "o", color=colour)
    if family:
        ax.axvspan(-family.rope, family.rope, color="tab:green", alpha=0.15, lw=0)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(rows)), [row.variant for row in reversed(rows)], fontsize=8)
    better = "higher" if summary.higher_is_better[metric] else "lower"
    ax.set_xlabel(f"Δ {metric} against the baseline ({better} is better)", fontsize=8)
    first = rows[0].effects[metric].run_level if rows else None
    n = f"n = {first.n} trained networks, df = {first.df}" if first else ""
    if family:
        title = (
            f"{summary.challenge}, primary family: Δ with {1 - family.alpha:.1%} intervals ({n}); red: "
            f"resolved (Holm); green: ±ROPE {family.rope:g}"
        )
    else:
        title = f"{summary.challenge}, exploratory: Δ with unadjusted 95% intervals ({n}); orange: excludes 0"
    ax.set_title(title, fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def blob_figure(names: list[str], ranks, boot, path: Path, *, title: str) -> Path:
    """challengeR's blob plot: per method (best first), a disc for each bootstrap rank, its area the
    share of replicates with that rank, the median bootstrap rank as a cross and the 95% rank interval
    as a line (``boot``: :class:`unetbench.leaderboard.ranking.BootstrapRanks`)."""
    order = np.argsort(ranks, kind="stable")
    k = len(names)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.7 * k + 1.5), 3.6), dpi=110)
    for x, i in enumerate(order):
        values, counts = np.unique(boot.ranks[:, i], return_counts=True)
        ax.scatter(
            np.full(len(values), x), values, s=600 * counts / len(boot.ranks), color="tab:blue", alpha=0.6
        )
        ax.plot([x, x], [boot.low[i], boot.high[i]], color="black", lw=1)
        ax.plot([x], [boot.median[i]], "x", color="black")
    ax.set_xticks(range(k), [names[i] for i in order], rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(1, k + 1))
    ax.set_ylim(k + 0.5, 0.5)
    ax.set_ylabel("rank (1 = best)", fontsize=8)
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def significance_figure(names: list[str], adjusted, order, path: Path, *, alpha: float) -> Path:
    """The significance map: cell [row, column] dark where the row's method is significantly better than
    the column's (Holm-adjusted p below ``alpha``), methods in leaderboard order."""
    k = len(names)
    grid = np.array([[adjusted[i, j] < alpha if i != j else False for j in order] for i in order], float)
    fig, ax = plt.subplots(figsize=(0.55 * k + 2.2, 0.55 * k + 1.6), dpi=110)
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=1.4)
    labels = [names[i] for i in order]
    ax.set_xticks(range(k), labels, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("... is significantly better than this method (dark)", fontsize=8)
    ax.set_ylabel("this method ...", fontsize=8)
    ax.set_title(f"one-sided Wilcoxon, Holm-adjusted p < {alpha}", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def overlay_figures(names: list[str], samples, maps: list[np.ndarray], folder: Path) -> list[str]:
    """:func:`overlay_figure` of each named sample, as ``overlay-<name>.png`` in ``folder`` (a ``/`` in a
    name becomes ``-``); returns the file names."""
    files = []
    for name, sample, probability in zip(names, samples, maps, strict=True):
        files.append("overlay-" + name.replace("/", "-") + ".png")
        overlay_figure(sample, probability, folder / files[-1], title=name)
    return files
