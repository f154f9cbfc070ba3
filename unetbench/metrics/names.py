"""Every metric a spec may ask for, with the data it applies to and its direction: the one list that the
metric lists by kind (spec checks, scoring, reports) are derived from."""

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    kind: Literal["em", "cells"]  # the data it applies to
    higher_is_better: bool
    title: str


METRICS: dict[str, MetricInfo] = {
    "warping_error": MetricInfo("em", False, "warping error (splits and mergers)"),
    "rand_error": MetricInfo("em", False, "Rand error (foreground-restricted)"),
    "pixel_error": MetricInfo("em", False, "pixel error"),
    "v_rand": MetricInfo("em", True, "V_rand (after thinning)"),
    "v_info": MetricInfo("em", True, "V_info (after thinning)"),
    "classic_warping_error": MetricInfo("em", False, "classic warping error (all mismatches)"),
    "seg": MetricInfo("cells", True, "CTC SEG"),
    "foreground_iou": MetricInfo("cells", True, "foreground IoU (pixels pooled)"),
    "precision": MetricInfo("cells", True, "detection precision at IoU 0.5"),
    "recall": MetricInfo("cells", True, "detection recall at IoU 0.5"),
    "f1": MetricInfo("cells", True, "detection F1 at IoU 0.5"),
    "average_precision": MetricInfo("cells", True, "average precision, IoU 0.5:0.95"),
}


def metrics_of(kind: str) -> list[str]:
    """The metrics that apply to ``kind`` ("em" or "cells") data, in :data:`METRICS` order."""
    return [name for name, info in METRICS.items() if info.kind == kind]
