"""Instance metrics: the Cell Tracking Challenge's SEG, the pixel-level IoU, and detection scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 1.0, 0.05), 2).tolist())  # 0.5, 0.55, ..., 0.95


def _frames(reference, result) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs of 2D integer label images; one 2D image or a (N, H, W) stack or a sequence of 2D images."""
    if isinstance(reference, np.ndarray) and reference.ndim == 2:
        reference, result = [reference], [result]
    if len(reference) != len(result):
        raise ValueError(f"reference has {len(reference)} frames, result {len(result)}")
    pairs = []
    for i, (ref, res) in enumerate(zip(reference, result, strict=True)):
        ref, res = np.asarray(ref), np.asarray(res)
        if ref.shape != res.shape:
            raise ValueError(f"frame {i}: reference {ref.shape} and result {res.shape} differ in shape")
        for name, labels in (("reference", ref), ("result", res)):
            if labels.dtype.kind not in "iub":
                raise ValueError(f"frame {i}: {name} must be integer instance labels, got {labels.dtype}")
            if labels.size and labels.min() < 0:
                raise ValueError(f"frame {i}: {name} labels must be >= 0")
        pairs.append((ref.astype(np.int64), res.astype(np.int64)))
    return pairs


def _overlaps(ref: np.ndarray, res: np.ndarray):
    """Object ids, sizes and the overlap table |R_i and S_j| of the non-zero labels of one frame."""
    ref_ids, ref_index = np.unique(ref, return_inverse=True)
    res_ids, res_index = np.unique(res, return_inverse=True)
    table = np.zeros((len(ref_ids), len(res_ids)), dtype=np.int64)
    np.add.at(table, (ref_index.ravel(), res_index.ravel()), 1)
    keep_ref, keep_res = ref_ids != 0, res_ids != 0
    ref_sizes = table.sum(axis=1)[keep_ref]
    res_sizes = table.sum(axis=0)[keep_res]
    return table[np.ix_(keep_ref, keep_res)], ref_sizes, res_sizes


def seg(reference, result) -> float:
    """The Cell Tracking Challenge SEG measure.

    A reference object R matches a result object S iff |R and S| > 0.5 |R| (so at most one S per R);
    its score is the Jaccard index |R and S| / |R or S|, 0 when unmatched; SEG is the mean over all
    reference objects of all frames. Reproduces the organisers' SEG (``SEGMeasure``, and
    ``ctc_metrics.metrics.seg`` of py-ctcmetrics, which the tests compare against).

    Parameters
    ----------
    reference, result : (H, W) or (N, H, W) integer label images, or sequences of 2D ones
        0 = background.

    Returns
    -------
    float
        In [0, 1], higher is better; NaN when the reference has no object at all (py-ctcmetrics
        returns 0 there; an empty reference has no meaningful score).

    References
    ----------
    Ulman et al. (2017), Nat. Methods 14:1141-1152; Maska et al. (2014), Bioinformatics 30:1609-1617.
    """
    total, count = 0.0, 0
    for ref, res in _frames(reference, result):
        table, ref_sizes, res_sizes = _overlaps(ref, res)
        count += len(ref_sizes)
        if table.size == 0:
            continue
        best = table.argmax(axis=1)
        overlap = table[np.arange(len(ref_sizes)), best]
        matched = overlap > 0.5 * ref_sizes
        union = ref_sizes + res_sizes[best] - overlap
        total += float(np.sum(np.where(matched, overlap / union, 0.0)))
    return total / count if count else float("nan")


def foreground_iou(reference, result) -> float:
    """Pixel-level Jaccard index of the foregrounds (label > 0), pooled over all frames.

    NaN when both foregrounds are empty. Higher is better.
    """
    intersection = union = 0
    for ref, res in _frames(reference, result):
        intersection += int(np.count_nonzero((ref > 0) & (res > 0)))
        union += int(np.count_nonzero((ref > 0) | (res > 0)))
    return intersection / union if union else float("nan")


def detection_scores(reference, result, *, thresholds: Sequence[float] = IOU_THRESHOLDS) -> dict[str, float]:
    """Object detection scores at IoU thresholds, as the cell-segmentation community reports them.

    A result object matches a reference object when their IoU is larger than the threshold t; for
    t >= 0.5 such matches are one-to-one, so TP = matched pairs, FP = unmatched results, FN = unmatched
    references, counted over all frames. Returns precision, recall and F1 at t = 0.5
    (TP / (TP + FP), TP / (TP + FN), 2TP / (2TP + FP + FN)) and ``average_precision``: the mean over
    ``thresholds`` (0.5, 0.55, ..., 0.95) of TP / (TP + FP + FN) (the definition of Stringer et al. 2021,
    Cellpose, and Schmidt et al. 2018, StarDist). A ratio with an empty denominator is NaN.
    """
    if any(t < 0.5 for t in thresholds):
        raise ValueError("IoU thresholds below 0.5 do not give one-to-one matches; use thresholds >= 0.5")
    tp = np.zeros(len(thresholds))
    n_ref = n_res = 0
    for ref, res in _frames(reference, result):
        table, ref_sizes, res_sizes = _overlaps(ref, res)
        n_ref += len(ref_sizes)
        n_res += len(res_sizes)
        if table.size == 0:
            continue
        iou = table / (ref_sizes[:, None] + res_sizes[None, :] - table)
        for k, t in enumerate(thresholds):
            tp[k] += np.count_nonzero(iou > t)

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    fp, fn = n_res - tp, n_ref - tp
    at_half = list(thresholds).index(0.5) if 0.5 in thresholds else 0
    return {
        "precision": ratio(tp[at_half], tp[at_half] + fp[at_half]),
        "recall": ratio(tp[at_half], tp[at_half] + fn[at_half]),
        "f1": ratio(2 * tp[at_half], 2 * tp[at_half] + fp[at_half] + fn[at_half]),
        "average_precision": float(
            np.mean([ratio(tp[k], tp[k] + fp[k] + fn[k]) for k in range(len(thresholds))])
        ),
    }
