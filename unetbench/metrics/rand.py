"""Rand-based scores of the ISBI 2012 challenge: the Rand error and V_rand."""

from __future__ import annotations

from unetbench.metrics._isbi import score_stack


def rand_error(ground_truth, proposal) -> float:
    """1 - the best foreground-restricted Rand F-score over the official thresholds.

    Reproduces ``1 - RandError(gt, p).getForegroundRestrictedRandIndexMaximalFScore(0.0, 1.0, 0.1)``
    of Fiji's Trainable Weka Segmentation (the ISBI 2012 "Rand error").

    Parameters
    ----------
    ground_truth : array_like, (H, W) or (N, H, W)
        Non-zero = cell, 0 = membrane.
    proposal : array_like of float, same shape
        P(cell) in [0, 1].

    Returns
    -------
    float
        In [0, 1], lower is better; 0 when the proposal's cells match the ground truth's.

    Notes
    -----
    Per slice and threshold: A = 4-connected components of the ground-truth cells, B = 4-connected
    components of ``proposal > th``; only ground-truth cell pixels count (n of them);
    p_ij = |A=i, B=j| / n, a_i = sum_j p_ij, b_j = sum_{i>=1} p_ij for j >= 1, aux = sum_i p_i0.
    sumA2 = sum a_i^2, sumB2 = sum b_j^2 + aux/n, sumAB2 = sum_{i,j>=1} p_ij^2 + aux/n (proposal membrane
    inside a cell counts as singletons); TP = n^2 sumAB2, FP = n^2 sumB2 - TP, FN = n^2 sumA2 - TP.
    TP, FP, FN are summed over slices, then one F-score per threshold (precision = sumAB2 / sumB2,
    recall = sumAB2 / sumA2 in one slice); thresholds and F-score rules as in :func:`pixel_error`.

    References
    ----------
    Arganda-Carreras et al. (2015), Front. Neuroanat. 9:142; Rand (1971), JASA 66:846-850.
    """
    return score_stack(ground_truth, proposal, ["rand_error"])["rand_error"]


def v_rand(ground_truth, proposal) -> float:
    """The best V_rand over the official thresholds, after thinning the proposal's membranes.

    Reproduces ``RandError(gt, p).getMaximalVRandAfterThinning(0.0, 1.0, 0.1, true)`` of Fiji's
    Trainable Weka Segmentation (the later ISBI 2012 leaderboard's V_rand).

    Returns
    -------
    float
        In [0, 1], higher is better; 1 (up to rounding, the official tool prints 1.0000000000000002)
        for a perfect proposal.

    Notes
    -----
    B is not the connected components of the proposal: the binary image (255 where ``p <= th``, else 0)
    is flooded by TWS's ``WatershedTransform2D`` (Vincent-Soille, 4-connectivity) and only its watershed
    lines stay membrane (label 0); a membrane region that touches no cell becomes a segment of its own,
    so an all-membrane proposal is one segment, like an all-cell one. Ties follow the official order:
    pixels by grey level then scan order x-outer / y-inner, a FIFO queue, neighbours left, up, right,
    down. The per-slice F-score of the foreground-restricted Rand counts (see :func:`rand_error`) is
    averaged over slices (``perSliceAverage = true``), then maximised over the thresholds.
    """
    return score_stack(ground_truth, proposal, ["v_rand"])["v_rand"]
