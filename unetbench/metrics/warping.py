"""Warping errors of the ISBI 2012 challenge (Jain et al. 2010): topology-aware pixel errors."""

from __future__ import annotations

from unetbench.metrics._isbi import score_stack


def warping_error(ground_truth, proposal, *, radius: int = 20) -> float:
    """The smallest splits-and-mergers warping error over the official thresholds 0.0..0.9.

    Reproduces ``WarpingError(gt, p).getMinimumSplitsAndMergersErrorValue(0.0, 0.9, 0.1, false, 20)`` of
    Fiji's Trainable Weka Segmentation, the ISBI 2012 "warping error".

    Parameters
    ----------
    ground_truth : array_like, (H, W) or (N, H, W)
        Non-zero = cell, 0 = membrane.
    proposal : array_like of float, same shape
        P(cell) in [0, 1].
    radius : int, keyword-only
        Half-size of the window of the split test (20: a 41 x 41 window, as the challenge called it).

    Returns
    -------
    float
        (split + merge pixels over all slices) / (width * height * slices); lower is better.

    Notes
    -----
    Per slice and threshold th: the ground truth (source, cell = 1) is warped towards ``p > th``
    (target); both are padded by one membrane pixel. Passes repeat until no mismatch is left or a pass
    flips nothing: the mismatches are listed x-outer / y-inner, sorted stably by descending
    ``(float) |p - th|``, and flipped in that order when simple (4-connected cells, 8-connected membrane)
    in the source as already changed by the pass. Each remaining mismatch is classified on the warped
    source's 4-connected components from the set U of labels among its 8 neighbours inside the image:
    U = {0}: object deletion / addition; one cell: hole addition / deletion; two labels: hole addition
    when the pixel is membrane, else it is set to membrane in a (2r+1)^2 window (outside the image =
    membrane), the window is relabelled, and more than two labels around it make a **split** (else a hole
    deletion); three or more labels: **merge** (membrane) or **split** (cell). Only splits and merges
    count (object additions and deletions, e.g. cells that vanish at a high threshold, do not).

    References
    ----------
    Jain et al. (2010), CVPR, 2488-2495; Arganda-Carreras et al. (2015), Front. Neuroanat. 9:142.
    """
    return score_stack(ground_truth, proposal, ["warping_error"], radius=radius)["warping_error"]


def classic_warping_error(ground_truth, proposal) -> float:
    """The smallest classic warping error over the thresholds 0.0..0.9: every mismatch left after
    warping, over the pixels of a slice, averaged over slices.

    Reproduces ``WarpingError(gt, p).getMinimumMetricValue(0.0, 0.9, 0.1)`` of Fiji's Trainable Weka
    Segmentation; the warping is that of :func:`warping_error`. Lower is better.
    """
    return score_stack(ground_truth, proposal, ["classic_warping_error"])["classic_warping_error"]
