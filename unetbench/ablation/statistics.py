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

Fewer than two trained networks give no interval at all.

**One primary family.** An effect is claimed ("resolved") only on the spec's primary metric, for the family
of every variant against the baseline, by Holm's step-down adjustment of the t-tests' two-sided p-values
(Holm 1979, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6): resolved
when the adjusted p is below 0.05. The family's intervals are Bonferroni's, each at 1 - 0.05/m for m
variants, so that all m cover their effects at once with at least 95%; Holm rejects whenever Bonferroni
does and sometimes more, so a resolved effect's family interval can touch 0 (the report says so where it
does). Every other metric, and the per-image view, is exploratory: unadjusted, never "resolved".

**What an unresolved answer rules out.** For the design's variance (the corrected s^2 (1/J + n_test /
n_train) and J - 1 degrees of freedom):

- the *minimum detectable effect* (MDE): the smallest |Δ| the two-sided t-test at the family's level
  0.05/m resolves with 80% power (non-central t, :func:`minimum_detectable_effect`);
- the *networks needed* to resolve the observed Δ with 80% power, more seeds on the same K folds
  (:func:`networks_needed`); the n_test / n_train term does not shrink with seeds, so where the observed
  Δ lies below the floor that term sets (z_(1 - 0.025/m) + z_0.8) s sqrt(n_test / n_train), no number of
  seeds resolves it with the labelled images there are;
- a *practical-equivalence verdict* against a region of practical equivalence ±ROPE
  (:func:`correlated_bayes`): the Bayesian correlated t-test (Corani & Benavoli 2015, "A Bayesian approach
  for comparing cross-validated algorithms on multiple data sets", Machine Learning 100; Benavoli et al.
  2017, JMLR 18) with the same correction, whose posterior of the mean difference is Student t with J - 1
  degrees of freedom, location Δ and scale sqrt((1/J + n_test / n_train) s^2); P(better), P(equivalent),
  P(worse) are its mass beyond, within and below ±ROPE in the metric's good direction. The verdict is the
  word whose probability reaches 0.95, else "undecided".

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


ALPHA = 0.05
POWER = 0.8
DECISIVE = 0.95  # the posterior probability a verdict word needs
VERDICTS = ("better", "worse", "equivalent", "undecided")


@dataclass(frozen=True)
class Interval:
    """Δ and its two-sided 95% interval over ``n`` paired trained networks (NaN bounds below n = 2), with
    what the family's statistics need: ``sd`` of the differences and the ``correction`` n_test / n_train
    (0 for the paired t over seeds)."""

    mean: float
    low: float
    high: float
    n: int
    df: int
    test: str
    sd: float = math.nan
    correction: float = 0.0

    @property
    def excludes_zero(self) -> bool:
        """The unadjusted interval excludes 0 (exploratory: only the primary family resolves)."""
        return self.low > 0 or self.high < 0

    @property
    def se(self) -> float:
        """The standard error of Δ: sqrt((1/n + correction) s^2)."""
        return self.sd * math.sqrt(1 / self.n + self.correction) if self.n >= 2 else math.nan

    @property
    def p(self) -> float:
        """The two-sided p-value of Δ = 0 by the same t-test (NaN below n = 2)."""
        from scipy import stats

        if self.n < 2:
            return math.nan
        if self.se == 0:
            return 0.0 if self.mean != 0 else 1.0
        return float(2 * stats.t.sf(abs(self.mean) / self.se, self.df))

    def at(self, confidence: float) -> tuple[float, float]:
        """The interval's bounds at another ``confidence`` (the family's Bonferroni level)."""
        from scipy import stats

        if self.n < 2:
            return math.nan, math.nan
        half = float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.mean - half, self.mean + half

    def words(self, digits: int = 3) -> str:
        """``Δ +0.012 [0.004, 0.020], excludes 0`` or ``Δ +0.012 [-0.003, 0.027]``: unadjusted, so never
        "resolved" (that word is the primary family's)."""
        if math.isnan(self.mean):
            return "n/a"
        text = f"Δ {self.mean:+.{digits}g}"
        if math.isnan(self.low):
            return text + f" (no interval at n = {self.n})"
        text += f" [{self.low:.{digits}g}, {self.high:.{digits}g}]"
        return text + ", excludes 0" if self.excludes_zero else text


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
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd * math.sqrt(1 / n + correction)
    return Interval(mean, mean - half, mean + half, n, n - 1, test, sd, correction)


# --------------------------------------------------------------------------------------------------
# The primary family: Holm, power, networks needed, practical equivalence (module docstring)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN stays NaN and is not counted)."""
    known = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    m = len(known)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(known)):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def _power(effect: float, se: float, df: int, alpha: float) -> float:
    """Power of the two-sided t-test at level ``alpha`` to reject Δ = 0 when the mean difference is
    ``effect`` and its standard error ``se`` (non-central t with ``df`` degrees of freedom)."""
    from scipy import stats

    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = abs(effect) / se
    if shift == 0:  # scipy's non-central t is not defined there; the test's size is its power
        return alpha
    lower = float(stats.nct.cdf(-critical, df, shift))  # the far tail: scipy gives NaN where it is ~0
    return float(stats.nct.sf(critical, df, shift)) + (lower if math.isfinite(lower) else 0.0)


def minimum_detectable_effect(interval: Interval, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest |Δ| this design resolves with ``power`` at level ``alpha`` (module docstring)."""
    from scipy import optimize

    if interval.n < 2 or not interval.se > 0:
        return math.nan
    se, df = interval.se, interval.df
    high = se
    while _power(high, se, df, alpha) < power:
        high *= 2
    return float(optimize.brentq(lambda d: _power(d, se, df, alpha) - power, 0.0, high, xtol=se * 1e-9))


@dataclass(frozen=True)
class Needed:
    """The networks that resolve an effect with the power asked: ``folds`` x ``seeds`` = ``networks``;
    None where no number of seeds on these folds does (``floor``: the smallest |Δ| any number could)."""

    networks: int | None
    folds: int
    seeds: int | None
    floor: float


def networks_needed(
    interval: Interval,
    effect: float,
    folds: int,
    alpha: float = ALPHA,
    power: float = POWER,
    most: int = 10_000,
) -> Needed:
    """How many networks (``folds`` x seeds) resolve ``effect`` with ``power`` at ``alpha``, assuming the
    differences' s stays as measured; None beyond the floor the correction sets (module docstring) or
    beyond ``most`` networks. Without folds (``folds`` = 1, correction 0) every seed is a network."""
    from scipy import stats

    if interval.n < 2 or math.isnan(effect) or not interval.sd > 0:
        return Needed(None, folds, None, math.nan)
    sd, ratio = interval.sd, interval.correction
    floor = float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd * math.sqrt(ratio))
    if abs(effect) <= floor:
        return Needed(None, folds, None, floor)

    def enough(seeds: int) -> bool:
        n = folds * seeds
        return n >= 2 and _power(effect, sd * math.sqrt(1 / n + ratio), n - 1, alpha) >= power

    low, high = 1, 1
    while not enough(high):
        if folds * high > most:
            return Needed(None, folds, None, floor)
        low, high = high, high * 2
    while low < high:  # the fewest seeds that are enough: power grows with the seeds
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle + 1, high)
    return Needed(folds * high, folds, high, floor)


@dataclass(frozen=True)
class Posterior:
    """The Bayesian correlated t-test's probabilities that the variant is better than the baseline by more
    than ``rope``, within ±``rope`` of it, or worse by more than ``rope``; and the verdict word."""

    better: float
    equivalent: float
    worse: float
    rope: float

    @property
    def verdict(self) -> str:
        for word, probability in (
            ("better", self.better),
            ("worse", self.worse),
            ("equivalent", self.equivalent),
        ):
            if probability >= DECISIVE:
                return word
        return "undecided"

    def words(self) -> str:
        if self.verdict == "equivalent":
            return f"equivalent within ±{self.rope:g}"
        return self.verdict


def correlated_bayes(interval: Interval, rope: float, higher_is_better: bool) -> Posterior | None:
    """The posterior of the mean difference (variant - baseline), Student t with ``interval.df`` degrees
    of freedom, location Δ, scale the corrected standard error (module docstring); None below n = 2."""
    from scipy import stats

    if interval.n < 2 or math.isnan(interval.mean):
        return None
    if interval.se == 0:  # every difference the same: the posterior is a point
        above, below = float(interval.mean > rope), float(interval.mean < -rope)
    else:
        posterior = stats.t(interval.df, loc=interval.mean, scale=interval.se)
        above, below = float(posterior.sf(rope)), float(posterior.cdf(-rope))
    within = max(0.0, 1.0 - above - below)
    better, worse = (above, below) if higher_is_better else (below, above)
    return Posterior(better, within, worse, rope)


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


# The one simulated design of the coverage test (tests/test_statistics.py) and of
# benchmarks/interval_coverage.py: em.toml's proportions, 6 folds of 5 test and 20 training images.
SIMULATED_EFFECT = 0.02
SIMULATED_TEST_OVER_TRAIN = 5 / 20


def simulate_em_design(
    *, ablations: int = 4000, seeds: int = 1, seed_sd: float = 0.0, rho: float = 5 / 25
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`simulate_ablations` of em.toml's design: effect 0.02, fold noise 0.01 correlated across folds
    by ``rho``, image noise 0.03, 5 images per fold, random seed 2015. One seed without seed noise puts all
    the network noise in the fold term: at ``rho`` = n_test / (n_test + n_train) = 0.2 the folds correlate
    as the correction assumes."""
    return simulate_ablations(
        np.random.default_rng(2015),
        ablations=ablations,
        folds=6,
        seeds=seeds,
        images=5,
        effect=SIMULATED_EFFECT,
        fold_sd=0.01,
        seed_sd=seed_sd,
        image_sd=0.03,
        rho=rho,
    )


def coverage(network: np.ndarray, effect: float, test_over_train: float, *, widen: float = 1.0) -> float:
    """How often the corrected interval over the networks (its half-width times ``widen``) holds the true
    ``effect``; ``network``: the run-level differences of :func:`simulate_ablations`. The interval assumes
    the folds' differences correlate by n_test / (n_test + n_train) (Nadeau & Bengio 2003): at that
    correlation it covers about 95%, at a higher one less (``benchmarks/interval_coverage.py``)."""
    found = [corrected_kfold_interval(d.ravel(), test_over_train) for d in network]
    return float(np.mean([abs(i.mean - effect) <= widen * (i.high - i.mean) for i in found]))


def pooled_coverage(per_image: np.ndarray, effect: float) -> float:
    """How often the Student-t interval pooled over every (seed, image) difference, which the network-level
    interval replaced, holds the true ``effect`` (``per_image`` of :func:`simulate_ablations`)."""
    from scipy import stats

    pooled = per_image.reshape(len(per_image), -1)
    n = pooled.shape[1]
    half = stats.t.ppf(0.975, n - 1) * pooled.std(axis=1, ddof=1) / math.sqrt(n)
    return float(np.mean(np.abs(pooled.mean(axis=1) - effect) <= half))
