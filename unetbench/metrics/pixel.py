"""Pixel error of the ISBI 2012 challenge."""

from __future__ import annotations

from unetbench.metrics._isbi import score_stack


def pixel_error(ground_truth, proposal) -> float:
    """1 - the best pixel F-score over the official thresholds.

    Reproduces ``1 - PixelError(gt, p).getPixelErrorMaximalFScore(0.0, 1.0, 0.1)`` of Fiji's Trainable
    Weka Segmentation, as the ISBI 2012 challenge called it.

    Parameters
    ----------
    ground_truth : array_like, (H, W) or (N, H, W)
        Non-zero = cell, 0 = membrane.
    proposal : array_like of float, same shape
        P(cell) in [0, 1] (for EM: 1 = non-membrane); rounded to float32 as the official 32-bit input.

    Returns
    -------
    float
        In [0, 1], lower is better. 0 for a perfect proposal.

    Notes
    -----
    For each threshold th in 0.0, 0.1, ..., 0.9999999999999999 (accumulated in double precision) a pixel
    is predicted cell iff ``(double) p > th``; cell is the positive class; TP, FP and FN are summed over all
    slices before one F-score (precision = 1 when FP = 0, recall = 1 when FN = 0, F = 0 when both are 0).
    The best F-score is the largest, starting from 0.

    Raises
    ------
    ValueError
        Shape mismatch, non-float or out-of-range proposal, NaN, a slice without cell pixels.

    References
    ----------
    Arganda-Carreras et al. (2015), Front. Neuroanat. 9:142.
    """
    return score_stack(ground_truth, proposal, ["pixel_error"])["pixel_error"]
