"""How an ablation's report writes numbers and tables (shared by its sections)."""

from __future__ import annotations

import math

from unetbench.ablation.summary import Spread, Summary, VariantRow


def _num(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def _signed(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.3g}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _spread(spread: Spread | None) -> str:
    if spread is None or math.isnan(spread.mean):
        return "n/a"
    return _num(spread.mean) + ("" if math.isnan(spread.sd) else f" ± {_num(spread.sd)}")


def _arrow(summary: Summary, metric: str) -> str:
    return f"{metric} {'↑' if summary.higher_is_better[metric] else '↓'}"


def _training_time(row: VariantRow) -> str:
    if row.training_seconds is None:
        return "none (weights of the paired run)"
    shared = f" ({row.shared} of {row.trained} shared the CPU with other processes)" if row.shared else ""
    return f"{row.training_seconds:.0f} s{shared}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]
