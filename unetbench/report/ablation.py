"""The ablation report: a comparison table (Markdown and CSV) and a bar chart per metric, rendered from
the ablation's manifest and the run records only."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from unetbench.ablation import collect_records, summarise
from unetbench.metrics import METRICS
from unetbench.results import atomic_write_bytes


def _num(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def cell(entry: dict) -> str:
    text = f"{_num(entry['mean'])} ± {_num(entry['std'])}"
    difference = entry.get("difference")
    if difference:
        text += (
            f" (Δ {difference['mean']:+.3g}, 95% CI [{_num(difference['low'])}, {_num(difference['high'])}])"
        )
    return text


def table_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    metrics = summary["metrics"]
    header = ["variant", "seeds"] + [f"{m} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in metrics]
    header.append("training time")
    rows = []
    for row in summary["rows"]:
        rows.append(
            [row["variant"], str(row["seeds"])]
            + [cell(row[m]) for m in metrics]
            + [f"{row['training_seconds']:.0f} s"]
        )
    return header, rows


def _csv(summary: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    metrics = summary["metrics"]
    columns = ["variant", "seeds"]
    for m in metrics:
        columns += [f"{m}_mean", f"{m}_std", f"{m}_diff", f"{m}_diff_low", f"{m}_diff_high"]
    writer.writerow([*columns, "training_seconds"])
    for row in summary["rows"]:
        values = [row["variant"], row["seeds"]]
        for m in metrics:
            d = row[m].get("difference", {})
            values += [row[m]["mean"], row[m]["std"], d.get("mean", ""), d.get("low", ""), d.get("high", "")]
        writer.writerow([*values, round(row["training_seconds"], 1)])
    return buffer.getvalue()


def _bar_charts(summary: dict, directory: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for metric in summary["metrics"]:
        rows = summary["rows"]
        fig, ax = plt.subplots(figsize=(6, 3), dpi=100)
        ax.bar(
            [r["variant"] for r in rows],
            [r[metric]["mean"] for r in rows],
            yerr=[r[metric]["std"] for r in rows],
            color=["tab:green" if r["variant"] == "baseline" else "tab:gray" for r in rows],
            capsize=4,
        )
        ax.set_title(
            f"{metric} ({'higher' if METRICS[metric].higher_is_better else 'lower'} is better)", fontsize=9
        )
        ax.tick_params(axis="x", labelsize=8, rotation=15)
        fig.tight_layout()
        names.append(f"{metric}.png")
        fig.savefig(directory / names[-1])
        plt.close(fig)
    return names


def render_ablation_report(out: Path, reports_root: Path) -> tuple[Path, dict]:
    """Write ``<reports>/<challenge>/<ablation-id>.md``, ``.csv`` and the bar charts; return the path and
    the summary."""
    manifest, records = collect_records(out)
    summary = summarise(records)
    first = records[0]
    destination = reports_root / first["challenge"]
    charts = _bar_charts(summary, destination / out.name)
    header, rows = table_rows(summary)
    commits = sorted(
        {
            (r["git"].get("commit") or "unknown")[:12] + ("+changes" if r["git"].get("dirty") else "")
            for r in records
        }
    )
    hw = first["hardware"]
    lines = [
        f"# {first['challenge']}: ablation {out.name}",
        "",
        f"- command: `{manifest['command']}`",
        f"- runs: {len(records)} ({len(summary['rows'])} variants); "
        f"commit(s): {', '.join(f'`{c}`' for c in commits)}",
        f"- hardware: {hw.get('gpu') or hw['processor']} ({hw['cpu_cores']} CPU cores), "
        f"device `{hw['device']}`",
        "",
        "Each cell: mean ± standard deviation over seeds of the score on the evaluation split; for a switch, "
        "Δ is the mean paired difference to the baseline over (seed, image) with its 95% Student-t interval.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "Overrides of each variant:", ""]
    for row in summary["rows"]:
        overrides = [o for o in row["overrides"] if not o.startswith("training.seed=")]
        lines.append(
            f"- {row['variant']}: " + (", ".join(f"`{o}`" for o in overrides) or "none (the spec file)")
        )
    lines += ["", "## Per metric", ""] + [f"![{name}]({out.name}/{name})" for name in charts] + [""]
    path = destination / f"{out.name}.md"
    atomic_write_bytes(path, "\n".join(lines).encode())
    atomic_write_bytes(destination / f"{out.name}.csv", _csv(summary).encode())
    return path, summary
