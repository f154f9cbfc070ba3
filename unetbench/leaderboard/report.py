"""The report of a comparison (``unetbench compare``), rendered from its record (``compare.json``) alone.

``<reports>/<title>/compare-<id>.md`` with, beside it in ``compare-<id>/``: ``compare.json`` (the record:
every method's per-image scores), ``per-image.csv``, the blob plot of the bootstrap ranks
(``ranks.png``) and the significance map (``significance.png``). ``unetbench report
<reports>/<title>/compare-<id>`` renders it again; the bootstrap is seeded by the record, so the same
record gives the same report.

What the report answers, and for what unit: for fixed submissions the images are the unit (which
submission is better on this test set); whether one way of training beats another is a question about
trained networks, which ``unetbench ablate`` answers over independent trainings.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from unetbench.leaderboard.ranking import bootstrap_ranks, kendall_taus, protocol_rankings, rank, significance
from unetbench.leaderboard.scores import COMPARISON_SCHEMA, Comparison
from unetbench.records.json_io import read_json_record, write_json_record
from unetbench.spec.paper import PAPER
from unetbench.system.atomic_writes import atomic_write_text

RECORD = "compare.json"
ALPHA = 0.05


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def _arrow(comparison: Comparison, metric: str) -> str:
    return f"{metric} {'↑' if comparison.higher_is_better[metric] else '↓'}"


def leaderboard(comparison: Comparison) -> tuple[list[str], np.ndarray]:
    """Method names best first by the challenge's own aggregate of the primary metric, and their ranks."""
    primary = comparison.primary
    values = np.array([_value(m.aggregate.get(primary)) for m in comparison.methods])
    ranks = rank(values, comparison.higher_is_better[primary])
    order = np.argsort(ranks, kind="stable")
    return [comparison.methods[i].name for i in order], ranks


def _value(value) -> float:
    return math.nan if value is None else float(value)


def _leaderboard(comparison: Comparison, ranks: np.ndarray, order: list[int]) -> list[str]:
    header = ["rank", "method", *(_arrow(comparison, m) for m in comparison.metrics)]
    rows = [
        [_num(ranks[i]), comparison.methods[i].name]
        + [_num(comparison.methods[i].aggregate.get(m)) for m in comparison.metrics]
        for i in order
    ]
    paper, where = PAPER.get("isbi2012" if comparison.challenge == "em" else "", ({}, ""))
    lines = [
        f"## Leaderboard: {comparison.primary}, the challenge's own score of all "
        f"{len(comparison.images)} images",
        "",
        *_table(header, rows),
        "",
    ]
    if paper and comparison.challenge == "em":
        shown = ", ".join(f"{m} {v}" for m, v in paper.items())
        lines += [
            f"For orientation, not as a row: the paper's Table 1 ({shown}) scores the challenge's 30 hidden "
            "test slices, other data in kind than the images scored here.",
            "",
        ]
    return lines


def _of(statistic, values: np.ndarray) -> str:
    """A statistic of the values that are defined (Kendall's tau is not where a ranking ties throughout)."""
    defined = values[~np.isnan(values)]
    return _num(float(statistic(defined))) if len(defined) else "n/a"


def _uncertainty(comparison: Comparison, ranks: np.ndarray, order: list[int], boot, taus, chart) -> list[str]:
    names = [m.name for m in comparison.methods]
    header = ["method", "rank", "median bootstrap rank", "95% rank interval", "ranked first"]
    rows = [
        [
            names[i],
            _num(ranks[i]),
            _num(boot.median[i]),
            f"[{_num(boot.low[i])}, {_num(boot.high[i])}]",
            f"{boot.first()[i]:.0%}",
        ]
        for i in order
    ]
    return [
        "## How sure the ranking is: bootstrap over images",
        "",
        f"{comparison.replicates} replicates (seed {comparison.seed}): the images drawn with replacement, "
        f"each replicate ranking the methods by their mean per-image {comparison.primary} "
        "(aggregate-then-rank; the challenge's own score of a stack is not a mean of its images, so the "
        "full ranking above can differ from the bootstrap's centre). Kendall's tau between the full "
        f"ranking and the replicates' rankings: median {_of(np.nanmedian, taus)}, mean "
        f"{_of(np.nanmean, taus)}, 5th percentile {_of(lambda t: np.nanpercentile(t, 5), taus)} (1: every "
        "replicate ranks as the full data; n/a where every replicate ties).",
        "",
        *_table(header, rows),
        "",
        f"![bootstrap ranks]({chart})",
        "",
    ]


def _significance(comparison: Comparison, adjusted: np.ndarray, order: list[int], chart: str) -> list[str]:
    names = [m.name for m in comparison.methods]
    k = len(names)
    header = ["better than →", *(names[j] for j in order)]
    rows = []
    for i in order:
        cells = []
        for j in order:
            if i == j:
                cells.append("-")
            else:
                cells.append(
                    f"**{_num(adjusted[i, j])}**" if adjusted[i, j] < ALPHA else _num(adjusted[i, j])
                )
        rows.append([names[i], *cells])
    significant = [
        (names[i], names[j]) for i in range(k) for j in range(k) if i != j and adjusted[i, j] < ALPHA
    ]
    said = (
        "; ".join(f"{a} better than {b}" for a, b in significant)
        if significant
        else "no method is significantly better than another"
    )
    return [
        "## Which differences hold: significance map",
        "",
        f"Each cell: the one-sided Wilcoxon signed-rank test that the row's method scores better than the "
        f"column's on the same images ({comparison.primary}, per image), Holm-adjusted over all "
        f"{k * (k - 1)} ordered pairs; bold where below {ALPHA}: {said}.",
        "",
        *_table(header, rows),
        "",
        f"![significance map]({chart})",
        "",
    ]


def _sensitivity(comparison: Comparison, ranks: np.ndarray) -> list[str]:
    names = [m.name for m in comparison.methods]
    primary = comparison.primary
    protocols = {f"{primary}, the challenge's own score (the leaderboard)": ranks}
    for metric in comparison.metrics:
        if metric != primary:
            values = np.array([_value(m.aggregate.get(metric)) for m in comparison.methods])
            protocols[f"{metric}, the challenge's own score"] = rank(
                values, comparison.higher_is_better[metric]
            )
    scores = comparison.matrix(primary)
    for protocol, found in protocol_rankings(scores, comparison.higher_is_better[primary]).items():
        protocols[f"{primary}, {protocol}"] = found
    winner = names[int(np.argmin(ranks))]
    rows, changes = [], []
    for protocol, found in protocols.items():
        order = np.argsort(found, kind="stable")
        first = names[int(order[0])]
        tau = kendall_taus(ranks, found[None])[0]
        rows.append([protocol, " > ".join(names[i] for i in order), _num(tau), first])
        if first != winner and not np.isclose(found[int(np.argmin(ranks))], found[int(order[0])]):
            changes.append(f"{protocol}: {first}")
    said = (
        f"The winner changes with the protocol: {'; '.join(changes)} (the leaderboard's: {winner})."
        if changes
        else f"{winner} wins under every protocol here."
    )
    return [
        "## Does the ranking depend on how it is made: protocol sensitivity",
        "",
        "The ranking under each metric (the challenge's own score) and, for the primary metric, under "
        "aggregate-then-rank (the mean or the median over images) and rank-then-aggregate (each image ranks "
        "the methods, then the mean or median rank); Kendall's tau against the leaderboard's ranking "
        "(Maier-Hein et al. 2018: winners can change with the metric and the aggregation).",
        "",
        *_table(["protocol", "ranking", "Kendall's tau", "winner"], rows),
        "",
        said,
        "",
    ]


def _per_image(comparison: Comparison, order: list[int]) -> list[str]:
    primary = comparison.primary
    names = [comparison.methods[i].name for i in order]
    rows = [
        [image] + [_num(comparison.methods[i].per_image[image].get(primary)) for i in order]
        for image in comparison.images
    ]
    return [
        f"## Per image: {primary}",
        "",
        "Every metric of every image is in `per-image.csv`.",
        "",
        *_table(["image", *names], rows),
        "",
    ]


def _shown(path: Path) -> Path:
    """A path as the command line would name it from here: relative below the current folder."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _heading(comparison: Comparison, folder: Path) -> list[str]:
    commit = (comparison.commit or "unknown")[:12] + ("+changes" if comparison.dirty else "")
    methods = "; ".join(f"{m.name}: `{m.source}`" for m in comparison.methods)
    return [
        f"# {comparison.title}: comparison {comparison.identifier}",
        "",
        f"- command: `{comparison.command}`",
        f"- commit: `{commit}`; unetbench {comparison.versions.get('unetbench')}",
        f"- ground truth: `{comparison.ground_truth}`, {len(comparison.images)} images; methods: {methods}",
        f"- record: [`{folder.name}/{RECORD}`]({folder.name}/{RECORD}) holds every method's per-image "
        f"scores; `unetbench report {_shown(folder)}` renders this report again",
        "",
        "**The unit is an image.** These methods are fixed submissions: the answers say which submission is "
        "better on these images, and how sure the ranking can be with this many of them. Whether one way "
        "of training beats another is a question about trained networks, whose unit is a network: "
        "`unetbench ablate` answers it over independent trainings.",
        "",
    ]


def render_compare_report(comparison: Comparison, reports_root: Path) -> Path:
    """Write the report, its figures, CSV and record (module docstring); return the report's path."""
    from unetbench.report.figures import blob_figure, significance_figure

    destination = Path(reports_root).absolute() / comparison.title
    folder = destination / comparison.identifier
    write_json_record(folder / RECORD, comparison)
    primary = comparison.primary
    scores = comparison.matrix(primary)
    better_up = comparison.higher_is_better[primary]
    _, ranks = leaderboard(comparison)
    order = [int(i) for i in np.argsort(ranks, kind="stable")]
    boot = bootstrap_ranks(scores, better_up, replicates=comparison.replicates, seed=comparison.seed)
    taus = kendall_taus(ranks, boot.ranks)
    _, adjusted = significance(scores, better_up)
    names = [m.name for m in comparison.methods]
    blob_figure(
        names, ranks, boot, folder / "ranks.png", title=f"{comparison.title}: bootstrap ranks, {primary}"
    )
    significance_figure(names, adjusted, order, folder / "significance.png", alpha=ALPHA)
    lines = _heading(comparison, folder)
    lines += _leaderboard(comparison, ranks, order)
    lines += _uncertainty(comparison, ranks, order, boot, taus, f"{folder.name}/ranks.png")
    lines += _significance(comparison, adjusted, order, f"{folder.name}/significance.png")
    lines += _sensitivity(comparison, ranks)
    lines += _per_image(comparison, order)
    path = destination / f"{comparison.identifier}.md"
    atomic_write_text(path, "\n".join(lines))
    _write_csv(comparison, folder / "per-image.csv")
    return path


def _write_csv(comparison: Comparison, path: Path) -> None:
    """A row per (method, image), a column per metric (empty where undefined)."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["method", "image", *comparison.metrics])
    for m in comparison.methods:
        for image in comparison.images:
            values = [m.per_image[image].get(k) for k in comparison.metrics]
            writer.writerow([m.name, image, *("" if v is None else repr(float(v)) for v in values)])
    atomic_write_text(path, text.getvalue())


def read_comparison(folder: Path) -> Comparison:
    return read_json_record(folder / RECORD, Comparison, what="a comparison record", schema=COMPARISON_SCHEMA)


def render_compare_folder(folder: Path, reports_root: Path | None = None) -> Path:
    """Render a comparison's report again from its record (``compare.json`` in ``folder``); by default
    beside it, ``folder`` being ``<reports>/<title>/compare-<id>``."""
    comparison = read_comparison(folder)
    root = reports_root if reports_root is not None else Path(folder).absolute().parent.parent
    return render_compare_report(comparison, root)
