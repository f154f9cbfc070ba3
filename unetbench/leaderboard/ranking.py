"""How sure a leaderboard is of its ranking: fixed submissions on one test set, the images the unit.

The methods of challengeR (Wiesenfarth et al. 2021, "Methods and open-source toolkit for analyzing and
visualizing challenge results", Scientific Reports 11:2369), after Maier-Hein et al. (2018, "Why
rankings of biomedical image analysis competitions should be interpreted with care", Nature
Communications 9:5217), on a ``(methods, images)`` array of per-image scores:

- **Bootstrap ranking** (:func:`bootstrap_ranks`): the images are drawn with replacement ``replicates``
  times (a seeded generator); each replicate ranks the methods by their mean score over the drawn images
  (aggregate-then-rank). Per method: the rank distribution, its median and its 95% interval (2.5th and
  97.5th percentiles); and Kendall's tau between the full ranking and each replicate's, whose spread says
  how stable the ranking is (:func:`kendall_taus`).
- **Significance** (:func:`significance`): for every ordered pair (a, b), the one-sided Wilcoxon
  signed-rank test that a scores better than b on the same images, Holm-adjusted over all k(k - 1)
  ordered pairs (:func:`unetbench.ablation.statistics.holm`).
- **Protocol sensitivity** (:func:`protocol_rankings`): the ranking under aggregate-then-rank (mean,
  median) and under rank-then-aggregate (each image ranks the methods, then the mean or median rank).

Ranks are 1 for the best; tied scores share the mean of their ranks. A score that is undefined for an
image (NaN) is left out of that image's mean; an image where every method's score is undefined adds
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def rank(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Ranks (1 = best) of ``values`` along the last axis, ties sharing the mean of their ranks; NaN last."""
    from scipy.stats import rankdata

    keyed = -np.asarray(values, dtype=float) if higher_is_better else np.asarray(values, dtype=float)
    keyed = np.where(np.isnan(keyed), np.inf, keyed)
    return rankdata(keyed, axis=-1)


@dataclass(frozen=True)
class BootstrapRanks:
    ranks: np.ndarray  # (replicates, methods)
    seed: int

    @property
    def median(self) -> np.ndarray:
        return np.median(self.ranks, axis=0)

    @property
    def low(self) -> np.ndarray:
        return np.percentile(self.ranks, 2.5, axis=0)

    @property
    def high(self) -> np.ndarray:
        return np.percentile(self.ranks, 97.5, axis=0)

    def first(self) -> np.ndarray:
        """How often each method ranked first (shared first places count for each)."""
        return np.mean(self.ranks <= 1.5, axis=0)


def _means(scores: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(scores), axis=-1)
        totals = np.nansum(scores, axis=-1)
    return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def bootstrap_ranks(
    scores: np.ndarray, higher_is_better: bool, *, replicates: int = 1000, seed: int = 0
) -> BootstrapRanks:
    """The rankings of ``replicates`` resamplings of the images (module docstring); ``scores``:
    (methods, images)."""
    scores = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    images = scores.shape[1]
    drawn = rng.integers(0, images, size=(replicates, images))
    means = _means(np.transpose(scores[:, drawn], (1, 0, 2)))  # (replicates, methods)
    return BootstrapRanks(rank(means, higher_is_better), seed)


def kendall_taus(reference: np.ndarray, rankings: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between ``reference`` and each row of ``rankings``, all rows at once: (concordant -
    discordant pairs) / sqrt((pairs - ties in one) (pairs - ties in the other)), scipy's ``kendalltau``
    (tested equal); NaN where a ranking ties throughout."""
    reference = np.asarray(reference, dtype=float)
    rankings = np.atleast_2d(np.asarray(rankings, dtype=float))
    upper = np.triu_indices(len(reference), k=1)
    ours = np.sign(reference[:, None] - reference[None, :])[upper]  # (pairs,)
    theirs = np.sign(rankings[:, :, None] - rankings[:, None, :])[:, upper[0], upper[1]]  # (rows, pairs)
    pairs = len(ours)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (theirs * ours).sum(axis=1) / np.sqrt(
            (pairs - np.sum(ours == 0)) * (pairs - np.sum(theirs == 0, axis=1))
        )


def significance(scores: np.ndarray, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    """(p, Holm-adjusted p), each (methods, methods): entry [a, b] tests that a scores better than b on the
    same images (one-sided Wilcoxon signed-rank, images where either is undefined left out, the
    diagonal NaN); an all-zero difference has p = 1."""
    from scipy.stats import wilcoxon

    from unetbench.ablation.statistics import holm

    scores = np.asarray(scores, dtype=float)
    k = len(scores)
    p = np.full((k, k), math.nan)
    for a in range(k):
        for b in range(k):
            if a == b:
                continue
            difference = scores[a] - scores[b] if higher_is_better else scores[b] - scores[a]
            difference = difference[~np.isnan(difference)]
            if not np.any(difference != 0):
                p[a, b] = 1.0
                continue
            p[a, b] = float(wilcoxon(difference, alternative="greater").pvalue)
    pairs = [(a, b) for a in range(k) for b in range(k) if a != b]
    adjusted = np.full((k, k), math.nan)
    for (a, b), value in zip(pairs, holm([p[a, b] for a, b in pairs]), strict=True):
        adjusted[a, b] = value
    return p, adjusted


def protocol_rankings(scores: np.ndarray, higher_is_better: bool) -> dict[str, np.ndarray]:
    """The ranking of the methods (ranks, 1 = best) under each way of aggregating over images."""
    scores = np.asarray(scores, dtype=float)
    per_image = rank(scores.T, higher_is_better).T  # (methods, images): each image ranks the methods
    with np.errstate(all="ignore"):
        medians = np.nanmedian(scores, axis=1)
    return {
        "mean, then rank": rank(_means(scores), higher_is_better),
        "median, then rank": rank(medians, higher_is_better),
        "rank each image, then mean rank": rank(per_image.mean(axis=1), higher_is_better=False),
        "rank each image, then median rank": rank(np.median(per_image, axis=1), higher_is_better=False),
    }
