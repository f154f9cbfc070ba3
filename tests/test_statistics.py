"""The ablation's intervals count trained networks: hand cases; a simulation of thousands of ablations with
a known effect in which the corrected interval covers it within [0.93, 0.99] at the fold correlation it
assumes (and an interval without the correction, or twice too wide, fails that test), the pooled
per-image interval far less; and the primary family's statistics (Holm, power, networks needed, the
Bayesian correlated t-test, checked against baycomp)."""

import math

import numpy as np
import pytest

from unetbench.ablation.statistics import (
    CORRECTED,
    PAIRED,
    Interval,
    _power,
    corrected_kfold_interval,
    correlated_bayes,
    coverage,
    holm,
    minimum_detectable_effect,
    networks_needed,
    paired_t_interval,
    pooled_coverage,
    simulate_em_design,
)
from unetbench.ablation.statistics import (
    SIMULATED_EFFECT as EFFECT,
)
from unetbench.ablation.statistics import (
    SIMULATED_TEST_OVER_TRAIN as TEST_OVER_TRAIN,
)


def test_paired_t_hand_case():
    found = paired_t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert (found.mean, found.low, found.high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert (found.n, found.df, found.test) == (3, 2, PAIRED)


def test_corrected_hand_case():
    # 6 folds x 1 seed, 5 test and 20 training images: variance x (1/6 + 5/20) instead of x 1/6
    differences = [0.01, 0.03, 0.02, 0.00, 0.04, 0.02]
    found = corrected_kfold_interval(differences, test_over_train=5 / 20)
    s2 = np.var(differences, ddof=1)
    half = 2.570581835636314 * math.sqrt((1 / 6 + 0.25) * s2)  # t(0.975, 5)
    assert (found.mean, found.high - found.mean) == pytest.approx((0.02, half))
    assert (found.n, found.df, found.test) == (6, 5, CORRECTED)
    plain = paired_t_interval(differences)
    assert found.high - found.low > plain.high - plain.low  # wider: the folds' training sets overlap


def test_undefined_scores_are_left_out_and_one_network_gives_no_interval():
    found = paired_t_interval([0.5, math.nan])
    assert found.n == 1 and found.mean == 0.5 and math.isnan(found.low) and not found.excludes_zero
    assert found.words() == "Δ +0.5 (no interval at n = 1)" and math.isnan(found.p)
    assert math.isnan(paired_t_interval([]).mean)


def test_words_are_unadjusted_and_never_say_resolved():
    assert Interval(0.012, -0.003, 0.027, 6, 5, CORRECTED).words() == "Δ +0.012 [-0.003, 0.027]"
    assert Interval(0.02, 0.004, 0.036, 6, 5, CORRECTED).words() == "Δ +0.02 [0.004, 0.036], excludes 0"


def test_p_and_the_interval_agree_and_holm_steps_down():
    differences = [0.01, 0.03, 0.02, 0.00, 0.04, 0.02]
    found = corrected_kfold_interval(differences, test_over_train=0.25)
    low, high = found.at(1 - found.p)  # at the confidence 1 - p the interval just touches 0
    assert low == pytest.approx(0.0, abs=1e-12) and high > 0
    # Holm 1979 by hand: sorted p 0.01, 0.02, 0.03, 0.5 times 4, 3, 2, 1, made monotone
    assert holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert holm([0.2, math.nan, 0.01]) == pytest.approx([0.2, math.nan, 0.02], nan_ok=True)


def test_the_minimum_detectable_effect_has_the_power_it_claims():
    """At the MDE, the t-test at the family's level rejects in 80% of simulated designs."""
    rng = np.random.default_rng(11)
    sd, n, ratio, alpha = 0.013, 6, 0.25, 0.05 / 4
    pilot = Interval(0.0, -1.0, 1.0, n, n - 1, CORRECTED, sd, ratio)
    mde = minimum_detectable_effect(pilot, alpha)
    assert _power(mde, pilot.se, 5, alpha) == pytest.approx(0.8, abs=1e-6)
    # correlated differences whose corrected variance is exact (rho = 5/25), Δ = the MDE
    shared = rng.normal(size=(20000, 1)) * math.sqrt(0.2)
    differences = mde + sd / math.sqrt(0.8) * (shared + math.sqrt(0.8) * rng.normal(size=(20000, n)))
    rejected = [corrected_kfold_interval(d, ratio).at(1 - alpha)[0] > 0 for d in differences]
    assert 0.74 <= np.mean(rejected) <= 0.86  # the simulation's s varies: power about 0.8


def test_networks_needed_and_the_floor_the_folds_set():
    pilot = Interval(0.01, -1.0, 1.0, 6, 5, CORRECTED, 0.013, 0.25)
    needed = networks_needed(pilot, 0.022, folds=6)
    assert needed.seeds > 1
    assert needed.folds == 6 and needed.networks == 6 * needed.seeds
    more = Interval(0.01, -1.0, 1.0, needed.networks, needed.networks - 1, CORRECTED, 0.013, 0.25)
    fewer = Interval(0.01, -1.0, 1.0, needed.networks - 6, needed.networks - 7, CORRECTED, 0.013, 0.25)
    assert _power(0.022, more.se, more.df, 0.05) >= 0.8 > _power(0.022, fewer.se, fewer.df, 0.05)
    floor = (1.959964 + 0.841621) * 0.013 * math.sqrt(0.25)  # z_0.975 + z_0.8, times s sqrt(ratio)
    unreachable = networks_needed(pilot, 0.9 * floor, folds=6)
    assert unreachable.networks is None and unreachable.floor == pytest.approx(floor, rel=1e-5)
    seeds = Interval(0.01, -1.0, 1.0, 3, 2, PAIRED, 0.013, 0.0)  # one split: every seed helps
    assert networks_needed(seeds, 0.005, folds=1).networks is not None


def test_the_correlated_bayesian_posterior_equals_baycomps():
    """baycomp's CorrelatedTTest (Benavoli et al.'s own implementation) fixes the correction at
    1/(K - 1) for K folds of a plain cross-validation; on that design the two agree."""
    baycomp = pytest.importorskip("baycomp", reason="baycomp is in the test extra")
    rng = np.random.default_rng(3)
    x = rng.normal(0.10, 0.01, size=10)
    y = x + rng.normal(0.004, 0.006, size=10)
    runs, folds = 2, 5  # 2 repetitions of 5-fold cross-validation: 1/(5 - 1) = n_test / n_train
    theirs = baycomp.CorrelatedTTest.probs(x, y, rope=0.005, runs=runs)  # (left, rope, right) of y - x
    interval = corrected_kfold_interval(y - x, test_over_train=1 / (folds - 1))
    ours = correlated_bayes(interval, 0.005, higher_is_better=True)
    assert (ours.worse, ours.equivalent, ours.better) == pytest.approx(theirs, abs=1e-12)
    lower = correlated_bayes(interval, 0.005, higher_is_better=False)  # a Rand error: lower is better
    assert (lower.better, lower.worse) == pytest.approx((ours.worse, ours.better))


def _nominal(covered: float) -> bool:
    """The coverage test: two-sided, so that too wide fails as well as too narrow."""
    return 0.93 <= covered <= 0.99


def _at_the_assumed_correlation():
    return simulate_em_design()


def test_the_corrected_interval_covers_nominally_at_the_correlation_it_assumes():
    network, per_image = _at_the_assumed_correlation()
    assert _nominal(coverage(network, EFFECT, test_over_train=TEST_OVER_TRAIN))
    assert pooled_coverage(per_image, EFFECT) <= 0.85  # every (seed, image) as independent: far too sure


def test_the_coverage_test_fails_without_the_correction_and_for_an_interval_twice_too_wide():
    """The mutations the coverage test must catch."""
    network, _ = _at_the_assumed_correlation()
    uncorrected = coverage(network, EFFECT, test_over_train=0.0)
    too_wide = coverage(network, EFFECT, test_over_train=TEST_OVER_TRAIN, widen=2.0)
    assert not _nominal(uncorrected) and uncorrected < 0.93
    assert not _nominal(too_wide) and too_wide > 0.99


def test_above_the_assumed_correlation_the_interval_covers_less():
    """The correction's assumption, measured: at a fold correlation of 0.6 it covers far below 95%."""
    network, _ = simulate_em_design(rho=0.6)
    assert coverage(network, EFFECT, test_over_train=TEST_OVER_TRAIN) < 0.9


@pytest.mark.parametrize("seeds", [2, 3])
def test_with_seeds_the_corrected_interval_still_covers_and_the_pooled_one_does_not(seeds):
    network, per_image = simulate_em_design(seeds=seeds, seed_sd=0.01)
    assert _nominal(coverage(network, EFFECT, test_over_train=TEST_OVER_TRAIN))
    assert pooled_coverage(per_image, EFFECT) <= 0.85
    assert network.shape == (4000, 6, seeds) and per_image.shape == (4000, 6, seeds, 5)


def test_over_seeds_alone_the_paired_t_covers_95_percent():
    rng = np.random.default_rng(7)
    effect = -0.01
    differences = effect + 0.02 * rng.normal(size=(6000, 3))  # 3 seeds on one split
    covered = np.mean([paired_t_interval(d).low <= effect <= paired_t_interval(d).high for d in differences])
    assert 0.94 <= covered <= 0.96
