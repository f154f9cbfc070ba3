"""The official challenge metrics, as pure functions on numpy arrays.

One module per family (skimage-style): :mod:`~unetbench.metrics.pixel`, :mod:`~unetbench.metrics.rand`,
:mod:`~unetbench.metrics.information`, :mod:`~unetbench.metrics.warping` (ISBI 2012, reproducing Fiji's
Trainable Weka Segmentation as the challenge called it) and :mod:`~unetbench.metrics.seg` (Cell Tracking
Challenge SEG, pixel IoU, detection scores). :data:`METRICS` names every metric a spec may ask for, with
its direction.

Where these functions differ from the official TWS code (none of it changes a score of valid input):

- A ground-truth slice without any cell pixel raises ``ValueError``; TWS divides by zero there and
  returns NaN for the foreground-restricted scores.
- Proposals are rounded to float32 first, because the official tool reads 32-bit TIFFs; a float64 map
  scored by TWS would have been saved as float32 too.
- Component label numbers differ from ImageJ's; every metric depends only on the partition.
- For images no larger than the split-test radius (20 px) TWS relabels the whole image after a byte
  conversion that maps an all-cell image to 0; we relabel the whole image as it is.
"""

from unetbench.metrics._isbi import official_thresholds, score_stack, score_stack_and_slices
from unetbench.metrics.information import v_info
from unetbench.metrics.names import METRICS, MetricInfo, metrics_of
from unetbench.metrics.pixel import pixel_error
from unetbench.metrics.rand import rand_error, v_rand
from unetbench.metrics.seg import detection_scores, foreground_iou, seg
from unetbench.metrics.warping import classic_warping_error, warping_error

# Names that changed, with what to use instead: a spec or command with the old name is told so.
RENAMED = {
    "iou": "'iou' is now 'foreground_iou' (the pooled foreground-pixel IoU); the paper's Table 2 'IoU' is "
    "the challenge's SEG measure, 'seg'",
}


def metric_hint(name: str) -> str:
    """'; <what to use instead>' for a renamed metric, else ''."""
    return f"; {RENAMED[name]}" if name in RENAMED else ""


def isbi2012_scores(ground_truth, proposal, metrics=None) -> dict[str, float]:
    """Several ISBI 2012 metrics at once (cheaper than one call each: binarisations are shared)."""
    wanted = metrics or metrics_of("em")
    return score_stack(ground_truth, proposal, wanted)


def isbi2012_scores_per_slice(ground_truth, proposal, metrics=None) -> tuple[dict[str, float], list[dict]]:
    """The stack's ISBI 2012 scores and each slice's, from one pass (see ``score_stack_and_slices``)."""
    wanted = metrics or metrics_of("em")
    return score_stack_and_slices(ground_truth, proposal, wanted)


def warm_up_kernels() -> None:
    """Compile (first run) or load from the cache (later runs) the metrics' numba kernels now, so that a
    run can say so instead of pausing silently at its first scoring."""
    import numpy as np

    truth = np.ones((1, 24, 24), dtype=np.uint8)
    truth[0, 12] = 0
    score_stack(truth, np.full((1, 24, 24), 0.5, dtype=np.float32))


def instance_scores(reference, result, metrics=None) -> dict[str, float]:
    """The Cell Tracking Challenge and instance metrics of integer label images."""
    wanted = metrics or metrics_of("cells")
    scores: dict[str, float] = {}
    if "seg" in wanted:
        scores["seg"] = seg(reference, result)
    if "foreground_iou" in wanted:
        scores["foreground_iou"] = foreground_iou(reference, result)
    if set(wanted) & {"precision", "recall", "f1", "average_precision"}:
        detection = detection_scores(reference, result)
        scores.update({k: v for k, v in detection.items() if k in wanted})
    return scores


__all__ = [
    "METRICS",
    "MetricInfo",
    "RENAMED",
    "classic_warping_error",
    "detection_scores",
    "foreground_iou",
    "instance_scores",
    "isbi2012_scores",
    "isbi2012_scores_per_slice",
    "metric_hint",
    "metrics_of",
    "official_thresholds",
    "pixel_error",
    "rand_error",
    "seg",
    "v_info",
    "v_rand",
    "warm_up_kernels",
    "warping_error",
]
