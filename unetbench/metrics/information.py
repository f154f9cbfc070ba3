"""Information-theoretic score of the ISBI 2012 challenge: V_info."""

from __future__ import annotations

from unetbench.metrics._isbi import score_stack


def v_info(ground_truth, proposal) -> float:
    """The best V_info over the official thresholds, after thinning the proposal's membranes.

    Reproduces ``VariationOfInformation(gt, p).getMaximalVInfoAfterThinning(0.0, 1.0, 0.1)`` of Fiji's
    Trainable Weka Segmentation (the later ISBI 2012 leaderboard's V_info).

    Returns
    -------
    float
        In [0, 1], higher is better.

    Notes
    -----
    A and B as in :func:`~unetbench.metrics.v_rand` (B after watershed thinning), p_ij, a_i, b_j, aux and
    n as in :func:`~unetbench.metrics.rand_error`; natural logarithms, zero terms skipped:
    sumA = sum_{i>=1} a_i ln a_i, sumB = sum_{j>=1} b_j ln b_j - aux ln n,
    sumAB = sum_{i,j>=1} p_ij ln p_ij - aux ln n; H(A) = -sumA, H(B) = -sumB, H(A|B) = sumB - sumAB,
    H(B|A) = sumA - sumAB; precision = (H(A) - H(A|B)) / H(A), recall = (H(B) - H(B|A)) / H(B); if
    H(A) == 0 then precision 0, recall 1; then if H(B) == 0 then precision 1, recall 0;
    F = 2PR / (P + R), averaged over slices, then maximised over the thresholds (a NaN, from P = R = 0,
    never wins).

    References
    ----------
    Arganda-Carreras et al. (2015), Front. Neuroanat. 9:142; Meila (2007), J. Multivar. Anal. 98:873-895.
    """
    return score_stack(ground_truth, proposal, ["v_info"])["v_info"]
