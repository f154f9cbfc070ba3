"""How sure an ablation is of an effect: intervals whose unit is a trained network.

A switch's effect is measured on paired runs: for every (fold, seed) the variant's run-level score minus
the baseline's run of the same fold and seed (same images, same seed). Δ is the mean of these J
differences. Its 95% interval:

- **over folds** (``--folds K``, S seeds, J = K·S): the *corrected repeated k-fold t-test* (Bouckaert &
  Frank 2004, "Evaluating the replicability of significance tests for comparing learning algorithms",
  PAKDD; after Nadeau & Bengio 2003, "Inference for the generalization error", Machine Learning 52).
  The folds' training sets overlap, so their differences are correlated and the plain variance of the
  mean, sigma^2 / J, is too small. The correction replaces 1 / J with 1 / J + n_test / n_train:

      Δ ± t(0.975, J - 1) · sqrt((1 / J + n_test / n_train) · s^2)

  with s^2 the sample variance of the J differences and n_test / n_train the number of images each run
  is scored on over the number it trains on. It errs on the safe side (``tests/test_statistics.py``
  simulates it).
- **without folds** (one split, S seeds): the paired Student t over seeds, Δ ± t(0.975, S - 1) · s / sqrt(S).

An interval that holds 0 is "not resolved at n = J", never an effect. Fewer than two trained networks
give no interval at all.

Per-image differences pooled over (seed, image), which an earlier table used, are not an interval of
this kind: the images of one network share its training, so they are not independent samples of what a
trick is worth (the coverage test shows that interval missing the true effect far more often than 5%).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CORRECTED = "corrected repeated k-fold t-test (Nadeau & Bengio 2003; Bouckaert & Frank 2004)"
PAIRED = "paired t-test over seeds"


@dataclass(frozen=True)
class Interval:
    """Δ and its two-sided 95% interval over ``n`` paired trained networks (NaN bounds below n = 2)."""

    mean: float
    low: float
    high: float
    n: int
    df: int
    test: str

    @property
    def resolved(self) -> bool:
        """The interval excludes 0: an effect can be claimed."""
        return self.low > 0 or self.high < 0

    def words(self, digits: int = 3) -> str:
        """``Δ +0.012 [0.004, 0.020]`` or ``Δ +0.012 [-0.003, 0.027], not resolved at n = 6``."""
        if math.isnan(self.mean):
            return "n/a"
        text = f"Δ {self.mean:+.{digits}g}"
        if math.isnan(self.low):
            return text + f", not resolved at n = {self.n} (no interval below n = 2)"
        text += f" [{self.low:.{digits}g}, {self.high:.{digits}g}]"
        return text if self.resolved else text + f", not resolved at n = {self.n}"


def corrected_kfold_interval(differences, test_over_train: float, confidence: float = 0.95) -> Interval:
    """Δ and its interval by the corrected repeated k-fold t-test (module docstring); ``differences``:
    one per (fold, seed), NaN (an undefined score) left out; ``test_over_train``: n_test / n_train."""
    return _t_interval(differences, test_over_train, confidence, CORRECTED)


def paired_t_interval(differences, confidence: float = 0.95) -> Interval:
    """Δ and its paired Student-t interval, one difference per seed (module docstring)."""
    return _t_interval(differences, 0.0, confidence, PAIRED)


def _t_interval(differences, correction: float, confidence: float, test: str) -> Interval:
    """mean ± t(df) · sqrt((1 / n + correction) · s^2)."""
    from scipy import stats

    values = np.asarray(differences, dtype=float)
    values = values[~np.isnan(values)]
    n = len(values)
    mean = float(values.mean()) if n else math.nan
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, max(n - 1, 0), test)
    variance = float(values.var(ddof=1)) * (1 / n + correction)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * math.sqrt(variance)
    return Interval(mean, mean - half, mean + half, n, n - 1, test)


def simulate_ablations(
    rng: np.random.Generator,
    *,
    ablations: int,
    folds: int,
    seeds: int,
    images: int,
    effect: float,
    fold_sd: float,
    seed_sd: float,
    image_sd: float,
    rho: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulated paired differences of ``ablations`` ablations with a known ``effect``: run-level
    (ablation, fold, seed) and per-image (ablation, fold, seed, image). Each is the effect, plus fold noise
    (correlated across folds by ``rho``, because their training sets overlap), seed noise (a network's
    own) and, per image, image noise (how the images of one network differ). For the coverage test and
    ``benchmarks/interval_coverage.py``."""
    shared = rng.normal(size=(ablations, 1, 1))
    own = rng.normal(size=(ablations, folds, 1))
    fold = fold_sd * (math.sqrt(rho) * shared + math.sqrt(1 - rho) * own)
    network = effect + fold + seed_sd * rng.normal(size=(ablations, folds, seeds))
    return network, network[..., None] + image_sd * rng.normal(size=(ablations, folds, seeds, images))


def coverage(
    network: np.ndarray, per_image: np.ndarray, effect: float, test_over_train: float
) -> tuple[float, float]:
    """How often the corrected interval over the networks, and the pooled Student-t interval over every
    (seed, image) difference it replaced, hold the true ``effect`` (arrays of :func:`simulate_ablations`)."""
    from scipy import stats

    corrected = [corrected_kfold_interval(d.ravel(), test_over_train) for d in network]
    covered = float(np.mean([i.low <= effect <= i.high for i in corrected]))
    pooled = per_image.reshape(len(per_image), -1)
    n = pooled.shape[1]
    half = stats.t.ppf(0.975, n - 1) * pooled.std(axis=1, ddof=1) / math.sqrt(n)
    return covered, float(np.mean(np.abs(pooled.mean(axis=1) - effect) <= half))
