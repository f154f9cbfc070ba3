"""Every metric a spec may ask for, with the data it applies to and its direction: the one list that the
metric lists by kind (spec checks, scoring, reports) are derived from.

``rope``: the default half-width of the region of practical equivalence (ROPE) of a difference in the
metric, in its own units, where a spec's ``[evaluation.rope]`` does not declare one. A convention, not a
finding: for the ISBI 2012 errors about an eighth of the paper's own Rand error (0.0382, Table 1) and a
third of its warping error (0.000353); for the cell scores one point in the second decimal, the
precision the challenges rank by. An ablation calls a variant "equivalent" when its difference to the
baseline lies within ±ROPE with posterior probability 0.95.
"""

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MetricInfo:
    kind: Literal["em", "cells"]  # the data it applies to
    higher_is_better: bool
    title: str
    rope: float  # default ROPE half-width (module docstring)


METRICS: dict[str, MetricInfo] = {
    "warping_error": MetricInfo("em", False, "warping error (splits and mergers)", 0.0001),
    "rand_error": MetricInfo("em", False, "Rand error (foreground-restricted)", 0.005),
    "pixel_error": MetricInfo("em", False, "pixel error", 0.005),
    "v_rand": MetricInfo("em", True, "V_rand (after thinning)", 0.005),
    "v_info": MetricInfo("em", True, "V_info (after thinning)", 0.005),
    "classic_warping_error": MetricInfo("em", False, "classic warping error (all mismatches)", 0.0001),
    "seg": MetricInfo("cells", True, "CTC SEG", 0.01),
    "foreground_iou": MetricInfo("cells", True, "foreground IoU (pixels pooled)", 0.01),
    "precision": MetricInfo("cells", True, "detection precision at IoU 0.5", 0.01),
    "recall": MetricInfo("cells", True, "detection recall at IoU 0.5", 0.01),
    "f1": MetricInfo("cells", True, "detection F1 at IoU 0.5", 0.01),
    "average_precision": MetricInfo("cells", True, "average precision, IoU 0.5:0.95", 0.01),
}


def metrics_of(kind: str) -> list[str]:
    """The metrics that apply to ``kind`` ("em" or "cells") data, in :data:`METRICS` order."""
    return [name for name, info in METRICS.items() if info.kind == kind]
