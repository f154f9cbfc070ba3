"""One pass over an ISBI 2012 stack that computes every EM metric, sharing the work between them.

The public functions (:func:`~unetbench.metrics.pixel_error`, :func:`~unetbench.metrics.rand_error`,
:func:`~unetbench.metrics.v_rand`, :func:`~unetbench.metrics.v_info`,
:func:`~unetbench.metrics.warping_error`, :func:`~unetbench.metrics.classic_warping_error`) and
:func:`isbi2012_scores` all run :func:`score_stack`; asking for several metrics at once labels each
binarisation once. Slices run in threads (the kernels release the GIL).

Facts of the official implementation reproduced here (TWS, as called by the challenge's scripts): see
``../shared/metrics-facts.md`` and the docstrings of the public functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from unetbench.metrics.names import metrics_of

EM_METRICS = tuple(metrics_of("em"))
_DEFAULT_RADIUS = 20  # the challenge script's window radius for the split test (41 x 41 px)


def official_thresholds(minimum: float, maximum: float, step: float) -> tuple[float, ...]:
    """The thresholds of TWS's ``for (double th = min; th <= max; th += step)``.

    The sum accumulates in double precision, so 0.0..1.0 step 0.1 gives 11 values, the fourth
    0.30000000000000004 and the last 0.9999999999999999 (not 1.0: with it k = 255 would be background).
    """
    values = []
    th = minimum
    while th <= maximum:
        values.append(th)
        th += step
    return tuple(values)


THRESHOLDS = official_thresholds(0.0, 1.0, 0.1)  # pixel, Rand, V_rand, V_info
WARPING_THRESHOLDS = official_thresholds(0.0, 0.9, 0.1)  # warping errors


def fscore(tp: float, fp: float, fn: float) -> float:
    """TWS ``ClassificationStatistics``: precision 1 when fp == 0 exactly, recall 1 when fn == 0 exactly,
    F = 0 when precision + recall == 0."""
    precision = 1.0 if fp == 0 else tp / (tp + fp)
    recall = 1.0 if fn == 0 else tp / (tp + fn)
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def rand_counts(sums: np.ndarray) -> tuple[float, float, float]:
    """TP, FP, FN of the foreground-restricted Rand index with N^2 normalisation (TWS
    ``foregroundRestrictedStatsN2``): proposal background inside ground-truth cells counts as singletons."""
    n, sum_a2, sum_b2, sum_ab2, aux = sums[:5]
    sum_b2 = sum_b2 + aux / n
    sum_ab2 = sum_ab2 + aux / n
    n2 = n * n
    tp = n2 * sum_ab2
    return tp, n2 * sum_b2 - tp, n2 * sum_a2 - tp


def information_fscore(sums: np.ndarray) -> float:
    """Per-slice V_info F-score (TWS ``VariationOfInformation``), natural logarithms."""
    n, aux = sums[0], sums[4]
    sum_ab, sum_a, sum_b = sums[5], sums[6], sums[7]
    sum_b = sum_b - aux * math.log(n)
    sum_ab = sum_ab - aux * math.log(n)
    h_a, h_b = -sum_a, -sum_b
    h_a_given_b = sum_b - sum_ab
    h_b_given_a = sum_a - sum_ab
    if h_a == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = (h_a - h_a_given_b) / h_a
        recall = math.nan if h_b == 0 else (h_b - h_b_given_a) / h_b
    if h_b == 0:
        precision, recall = 1.0, 0.0
    if precision + recall == 0:
        return math.nan  # 0 / 0 in the official code; a NaN never wins the maximum
    return 2.0 * precision * recall / (precision + recall)


@dataclass
class _SliceScores:
    pixel: np.ndarray  # (11, 3) tp, fp, fn
    rand: np.ndarray  # (11, 3) TP, FP, FN
    v_rand: np.ndarray  # (11,) per-slice F
    v_info: np.ndarray  # (11,)
    splits_merges: np.ndarray  # (10,) pixels
    mismatches: np.ndarray  # (10,) pixels left after warping


def check_stacks(ground_truth, proposal, *, names: tuple[str, str] = ("ground truth", "proposal")):
    """Validate and normalise the inputs: (N, H, W) cell masks (``gt > 0``) and float32 probabilities.

    Raises ValueError with one clear sentence for shape mismatches, non-float or out-of-range proposals,
    NaNs, and ground-truth slices without any cell pixel (the official code divides by zero there).
    """
    gt = np.asarray(ground_truth)
    prop = np.asarray(proposal)
    if gt.ndim == 2:
        gt = gt[None]
    if prop.ndim == 2:
        prop = prop[None]
    if gt.ndim != 3 or prop.ndim != 3:
        raise ValueError(
            f"expected 2D images or (slices, height, width) stacks, got {gt.shape} and {prop.shape}"
        )
    if gt.shape != prop.shape:
        raise ValueError(f"{names[0]} {gt.shape} and {names[1]} {prop.shape} differ in shape")
    if 0 in gt.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} hold no pixel (shape {gt.shape}); give at least one slice"
        )
    if prop.dtype.kind != "f":
        raise ValueError(
            f"{names[1]} must hold probabilities P(cell) as floats in [0, 1], got type {prop.dtype} "
            "(for 8-bit maps use --scale 255)"
        )
    if not np.all(np.isfinite(prop)):
        raise ValueError(f"{names[1]} holds NaN or infinite values")
    low, high = float(prop.min()), float(prop.max())
    if low < 0 or high > 1:
        raise ValueError(
            f"{names[1]} values span [{low:g}, {high:g}], outside [0, 1]; it must be P(cell) "
            "(for 0-255 maps use --scale 255)"
        )
    cell = gt > 0
    empty = np.flatnonzero(~cell.reshape(len(cell), -1).any(axis=1))
    if empty.size:
        raise ValueError(
            f"{names[0]} slice {int(empty[0])} has no cell pixel (non-zero value); the foreground-restricted "
            "metrics are undefined there"
        )
    # The official proposal is a 32-bit float image: values are compared as (double) float32.
    return cell, prop.astype(np.float32, copy=False)


def _score_slice(cell: np.ndarray, prop: np.ndarray, wanted: frozenset, radius: int) -> _SliceScores:
    n_th, n_wth = len(THRESHOLDS), len(WARPING_THRESHOLDS)
    result = _SliceScores(
        pixel=np.zeros((n_th, 3)),
        rand=np.zeros((n_th, 3)),
        v_rand=np.zeros(n_th),
        v_info=np.zeros(n_th),
        splits_merges=np.zeros(n_wth),
        mismatches=np.zeros(n_wth),
    )
    # levels[y, x] = how many thresholds the pixel exceeds: binarisation i is levels > i (strict >, double).
    levels = np.searchsorted(np.asarray(THRESHOLDS), prop.astype(np.float64), side="left")
    if "pixel_error" in wanted:
        in_cell = np.bincount(levels[cell], minlength=n_th + 1)
        in_membrane = np.bincount(levels[~cell], minlength=n_th + 1)
        for i in range(n_th):
            tp, fp = in_cell[i + 1 :].sum(), in_membrane[i + 1 :].sum()
            result.pixel[i] = tp, fp, in_cell.sum() - tp
    if wanted & {"rand_error", "v_rand", "v_info"}:
        _region_scores(cell, levels, wanted, result)
    if wanted & {"warping_error", "classic_warping_error"}:
        _warping_scores(cell, prop, wanted, radius, result)
    return result


def _region_scores(cell: np.ndarray, levels: np.ndarray, wanted: frozenset, result: _SliceScores) -> None:
    """Rand counts and the thinned-basin V scores of every binarisation, into ``result``."""
    from unetbench.metrics import _kernels as k  # numba: imported (and compiled, once) only when scoring

    n_th = len(THRESHOLDS)
    a_labels, _ = k.label4(cell)
    a_flat = a_labels.ravel()
    order = np.flatnonzero(a_flat)
    order = order[np.argsort(a_flat[order], kind="stable")]
    occupied = np.bincount(levels.ravel(), minlength=n_th + 1)
    for i in range(n_th):
        if i > 0 and occupied[i] == 0:  # no pixel sits exactly at this level: same binarisation as i - 1
            result.rand[i], result.v_rand[i], result.v_info[i] = (
                result.rand[i - 1],
                result.v_rand[i - 1],
                result.v_info[i - 1],
            )
            continue
        predicted = levels > i
        if "rand_error" in wanted:
            b_labels, n_b = k.label4(predicted)
            result.rand[i] = rand_counts(k.contingency_sums(order, a_flat, b_labels.ravel(), n_b))
        if wanted & {"v_rand", "v_info"}:
            basins = k.watershed_thinning(predicted)
            sums = k.contingency_sums(order, a_flat, basins.ravel(), int(basins.max()))
            result.v_rand[i] = fscore(*rand_counts(sums))
            result.v_info[i] = information_fscore(sums)


def _warping_scores(cell: np.ndarray, prop: np.ndarray, wanted: frozenset, radius: int, result) -> None:
    """Mismatches (and their splits and merges) after warping the ground truth towards each binarisation."""
    from unetbench.metrics import _kernels as k

    source = cell.astype(np.uint8)
    p64 = prop.astype(np.float64)
    for i, th in enumerate(WARPING_THRESHOLDS):
        warped, _ = k.simple_point_warp(source, prop, th, k.SIMPLE)
        mismatch = warped != (p64 > th)
        result.mismatches[i] = np.count_nonzero(mismatch)
        if "warping_error" in wanted:
            labels, _ = k.label4(warped)
            counts = k.classify_mismatches(warped, labels, mismatch, radius)
            result.splits_merges[i] = counts[0] + counts[1]


def score_stack(
    ground_truth,
    proposal,
    metrics: Iterable[str] = EM_METRICS,
    *,
    radius: int = _DEFAULT_RADIUS,
    workers: int | None = None,
) -> dict[str, float]:
    """Every requested ISBI 2012 metric of a ground-truth stack and a probability stack, in one pass."""
    aggregate, _ = score_stack_and_slices(ground_truth, proposal, metrics, radius=radius, workers=workers)
    return aggregate


def score_stack_and_slices(
    ground_truth,
    proposal,
    metrics: Iterable[str] = EM_METRICS,
    *,
    radius: int = _DEFAULT_RADIUS,
    workers: int | None = None,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The stack's scores and each slice's own scores, from one pass over the slices.

    The per-slice counts at every threshold are what the stack's scores are made of (summed for the
    micro-averaged pixel and Rand errors and the warping error, averaged for the V-scores), so the scores
    of slice i alone come from the same counts as the stack's, without scoring anything twice; they
    equal ``score_stack(ground_truth[i], proposal[i])``.
    """
    wanted = frozenset(metrics)
    unknown = wanted - set(EM_METRICS)
    if unknown:
        raise ValueError(f"unknown EM metric {sorted(unknown)[0]!r}; valid choices: {', '.join(EM_METRICS)}")
    cell, prop = check_stacks(ground_truth, proposal)
    workers = workers or min(len(cell), os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        slices = list(pool.map(lambda s: _score_slice(cell[s], prop[s], wanted, radius), range(len(cell))))
    area = cell.shape[1] * cell.shape[2]
    return _combine(slices, wanted, area), [_combine([one], wanted, area) for one in slices]


def _combine(slices: list[_SliceScores], wanted: frozenset, area: int) -> dict[str, float]:
    """The scores of a stack made of ``slices`` (each of ``area`` pixels), as TWS combines them."""
    scores: dict[str, float] = {}
    if "pixel_error" in wanted:
        totals = sum(s.pixel for s in slices)  # micro-average: counts summed over slices
        scores["pixel_error"] = 1.0 - _best(fscore(*row) for row in totals)
    if "rand_error" in wanted:
        totals = sum(s.rand for s in slices)
        scores["rand_error"] = 1.0 - _best(fscore(*row) for row in totals)
    for name in ("v_rand", "v_info"):
        if name in wanted:  # macro-average: the per-slice score, then the mean over slices
            per_threshold = np.mean([getattr(s, name) for s in slices], axis=0)
            scores[name] = _best(per_threshold)
    if "warping_error" in wanted:
        totals = sum(s.splits_merges for s in slices) / (area * len(slices))
        scores["warping_error"] = _lowest(totals)
    if "classic_warping_error" in wanted:
        per_threshold = np.mean([s.mismatches / area for s in slices], axis=0)
        scores["classic_warping_error"] = _lowest(per_threshold)
    return {name: float(scores[name]) for name in EM_METRICS if name in scores}


def _best(values: Iterable[float]) -> float:
    """TWS's maximum: starts at 0 and takes a value only when strictly larger (a NaN never wins)."""
    best = 0.0
    for value in values:
        if value > best:
            best = float(value)
    return best


def _lowest(values: Iterable[float]) -> float:
    """TWS's minimum for the warping errors: starts at Double.MAX_VALUE, strict <."""
    lowest = float(np.finfo(np.float64).max)
    for value in values:
        if value < lowest:
            lowest = float(value)
    return lowest
