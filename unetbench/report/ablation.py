"""The ablation's comparison table: from the manifest and the run records only.

Every figure in the table is on one basis, the **per-image score** on the evaluation split:

- a variant's value is the mean over seeds of the mean over images (± the standard deviation over seeds
  of those image means, when there are two or more seeds);
- a switch's Δ is the mean of the paired differences to the baseline over (seed, image), with its
  two-sided 95% Student-t interval. With the same images in every run this mean is exactly the difference
  of the two values shown beside each other.

These are not the challenge's stack scores (its pixel and Rand errors pool the pixels of all slices
before taking the best threshold); each run's own report gives those. pandas does the bookkeeping: the
records become one long table (variant, seed, image, metric, value) that is grouped and paired.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from unetbench.ablation import MANIFEST
from unetbench.atomic import atomic_path, atomic_write_text
from unetbench.errors import UserError
from unetbench.metrics import METRICS
from unetbench.results import MANIFEST_SCHEMA, AblationManifest, RunRecord, read_json_record
from unetbench.rundir import RunDir

CAPTION = (
    "Each cell is on the per-image basis: the mean over seeds of the mean score of the evaluation images "
    "(± the standard deviation over seeds); for a switch, Δ is the mean paired per-image difference to the "
    "baseline over (seed, image), which equals the difference of the two means, with its 95% Student-t "
    "interval. The challenge's own stack scores (pixels pooled over all images) are in each run's report."
)


@dataclass(frozen=True)
class Summary:
    """The table: one row per variant (baseline first)."""

    metrics: list[str]
    overrides: dict[str, list[str]]  # of each variant, beside the spec file's (seeds left out)
    rows: pd.DataFrame  # index: variant; columns: seeds, training_seconds, and per metric
    # <metric>_mean, _std, _diff, _diff_low, _diff_high, _pairs


def collect(out: Path) -> tuple[AblationManifest, list[tuple[str, int, RunRecord]]]:
    """The manifest and the (variant, seed index, record) of every planned run."""
    path = out / MANIFEST
    if not path.is_file():
        raise UserError(f"{out}: no {MANIFEST}; is this an ablation folder made by `unetbench ablate`?")
    manifest = read_json_record(path, AblationManifest, what="an ablation manifest", schema=MANIFEST_SCHEMA)
    return manifest, [
        (e.variant, e.seed_index, RunDir(out / e.directory).read_record()) for e in manifest.runs
    ]


def per_image_table(runs: list[tuple[str, int, RunRecord]]) -> pd.DataFrame:
    """One row per (variant, seed, image, metric) with the trained network's per-image score."""
    rows = [
        (variant, seed, image, metric, math.nan if value is None else value)
        for variant, seed, record in runs
        for image, scores in record.trained.per_image.items()
        for metric, value in scores.items()
    ]
    return pd.DataFrame(rows, columns=["variant", "seed", "image", "metric", "value"])


def _interval(differences: np.ndarray) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided 95% Student-t interval (NaN with fewer than 2 pairs)."""
    from scipy import stats

    differences = differences[~np.isnan(differences)]
    n = len(differences)
    mean = float(np.mean(differences)) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, n - 1) * np.std(differences, ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def summarise(runs: list[tuple[str, int, RunRecord]]) -> Summary:
    """The comparison table (module docstring) from the runs' records."""
    metrics = runs[0][2].metrics
    long = per_image_table(runs)
    seed_means = long.groupby(["variant", "seed", "metric"])["value"].mean().unstack("metric")
    variants = ["baseline"] + sorted({v for v, _, _ in runs} - {"baseline"})
    variants = [v for v in variants if v in seed_means.index.get_level_values("variant")]
    wide = long.pivot_table(index=["seed", "image"], columns=["variant", "metric"], values="value")
    table = pd.DataFrame(index=pd.Index(variants, name="variant"))
    for variant in variants:
        group = [r for v, _, r in runs if v == variant]
        table.loc[variant, "seeds"] = len(group)
        table.loc[variant, "training_seconds"] = float(np.mean([r.training.seconds for r in group]))
        means = seed_means.loc[variant]
        for metric in metrics:
            table.loc[variant, f"{metric}_mean"] = float(means[metric].mean())
            table.loc[variant, f"{metric}_std"] = (
                float(means[metric].std(ddof=1)) if len(means) > 1 else math.nan
            )
            if variant != "baseline" and "baseline" in variants:
                paired = (wide[(variant, metric)] - wide[("baseline", metric)]).to_numpy(dtype=float)
                mean, low, high = _interval(paired)
                table.loc[variant, [f"{metric}_diff", f"{metric}_diff_low", f"{metric}_diff_high"]] = [
                    mean,
                    low,
                    high,
                ]
                table.loc[variant, f"{metric}_pairs"] = int(np.count_nonzero(~np.isnan(paired)))
    counts = ["seeds"] + [c for c in table.columns if c.endswith("_pairs")]
    table[counts] = table[counts].astype("Int64")  # counts stay integers (blank where there is none)
    overrides = {
        variant: [
            o
            for o in next(r for v, _, r in runs if v == variant).overrides
            if not o.startswith("training.seed=")
        ]
        for variant in variants
    }
    return Summary(metrics=list(metrics), overrides=overrides, rows=table)


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def table_rows(summary: Summary) -> tuple[list[str], list[list[str]]]:
    metrics = summary.metrics
    header = ["variant", "seeds"] + [f"{m} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in metrics]
    header.append("training time")
    rows = []
    for variant, row in summary.rows.iterrows():
        cells = [str(variant), f"{int(row['seeds'])}"]
        for m in metrics:
            text = _num(row[f"{m}_mean"])
            if not math.isnan(row[f"{m}_std"]):
                text += f" ± {_num(row[f'{m}_std'])}"
            if variant != "baseline" and f"{m}_diff" in row and not pd.isna(row[f"{m}_diff"]):
                text += (
                    f" (Δ {row[f'{m}_diff']:+.3g}, 95% CI [{_num(row[f'{m}_diff_low'])}, "
                    f"{_num(row[f'{m}_diff_high'])}])"
                )
            cells.append(text)
        cells.append(f"{row['training_seconds']:.0f} s")
        rows.append(cells)
    return header, rows


def _bar_charts(summary: Summary, directory: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    rows = summary.rows
    for metric in summary.metrics:
        fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
        ax.bar(
            list(rows.index),
            rows[f"{metric}_mean"],
            yerr=rows[f"{metric}_std"].fillna(0.0),
            color=["tab:green" if v == "baseline" else "tab:gray" for v in rows.index],
            capsize=4,
        )
        better = "higher" if METRICS[metric].higher_is_better else "lower"
        ax.set_title(
            f"{metric}, per-image mean ({better} is better)",
            fontsize=9,
        )
        ax.tick_params(axis="x", labelsize=8, rotation=15)
        fig.tight_layout()
        names.append(f"{metric}.png")
        try:
            with atomic_path(directory / names[-1]) as temporary:
                fig.savefig(temporary, format="png")
        finally:
            plt.close(fig)
    return names


def render_ablation_report(out: Path, reports_root: Path) -> tuple[Path, Summary]:
    """Write ``<reports>/<challenge>/<ablation-id>.md``, ``.csv`` and the bar charts; return the report's
    absolute path and the summary."""
    manifest, runs = collect(out)
    summary = summarise(runs)
    records = [record for _, _, record in runs]
    first = records[0]
    destination = Path(reports_root).absolute() / first.challenge
    charts = _bar_charts(summary, destination / out.name)
    header, rows = table_rows(summary)
    commits = sorted(
        {
            (r.provenance.commit or "unknown")[:12] + ("+changes" if r.provenance.dirty else "")
            for r in records
        }
    )
    hw = first.provenance.hardware
    scored = sorted({len(r.data.split[r.data.scored]) for r in records})
    lines = [
        f"# {first.challenge}: ablation {out.name}",
        "",
        f"- command: `{manifest.command}`",
        f"- runs: {len(records)} ({len(summary.rows)} variants); "
        f"commit(s): {', '.join(f'`{c}`' for c in commits)}",
        f"- hardware: {hw.gpu or hw.processor} ({hw.cpu_cores} CPU cores), device `{hw.device}`",
        f"- scored on: the {first.data.scored} split of `{first.data.dataset}`, "
        f"{'/'.join(map(str, scored))} images per run ({', '.join(first.data.split[first.data.scored])})",
        "",
        CAPTION,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Overrides of each variant:", ""]
    for variant, overrides in summary.overrides.items():
        lines.append(f"- {variant}: " + (", ".join(f"`{o}`" for o in overrides) or "none (the spec file)"))
    lines += ["", "## Per metric", ""] + [f"![{name}]({out.name}/{name})" for name in charts] + [""]
    path = destination / f"{out.name}.md"
    atomic_write_text(path, "\n".join(lines))
    atomic_write_text(destination / f"{out.name}.csv", summary.rows.round(10).to_csv())
    return path, summary
