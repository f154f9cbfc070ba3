"""The ablation's intervals count trained networks: hand cases, and a simulation of thousands of ablations
with a known effect, seed noise and fold noise in which the corrected interval covers the effect at least
about 95% of the time and the pooled per-image interval it replaced does not."""

import math

import numpy as np
import pytest

from unetbench.ablation.statistics import (
    CORRECTED,
    PAIRED,
    Interval,
    corrected_kfold_interval,
    coverage,
    paired_t_interval,
    simulate_ablations,
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
    assert found.n == 1 and found.mean == 0.5 and math.isnan(found.low) and not found.resolved
    assert "not resolved at n = 1" in found.words()
    assert math.isnan(paired_t_interval([]).mean)


def test_words_say_not_resolved_when_the_interval_holds_zero():
    assert Interval(0.012, -0.003, 0.027, 6, 5, CORRECTED).words() == (
        "Δ +0.012 [-0.003, 0.027], not resolved at n = 6"
    )
    assert Interval(0.02, 0.004, 0.036, 6, 5, CORRECTED).words() == "Δ +0.02 [0.004, 0.036]"


@pytest.mark.parametrize("seeds", [1, 2, 3])
def test_the_corrected_interval_covers_a_known_effect_and_the_pooled_one_does_not(seeds):
    """6 folds of 5 test and 20 training images (em.toml's proportions): correlation n_test / (n_test +
    n_train) between folds, the correlation the correction assumes; image noise three times the seed and
    fold noise."""
    network, per_image = simulate_ablations(
        np.random.default_rng(2015),
        ablations=4000,
        folds=6,
        seeds=seeds,
        images=5,
        effect=0.02,
        fold_sd=0.01,
        seed_sd=0.01,
        image_sd=0.03,
        rho=5 / 25,
    )
    corrected, pooled = coverage(network, per_image, 0.02, test_over_train=5 / 20)
    assert corrected >= 0.94, corrected  # about 95% or more: the correction errs on the safe side
    assert pooled <= 0.85, pooled  # every (seed, image) difference as an independent sample: far too sure
    assert network.shape == (4000, 6, seeds) and per_image.shape == (4000, 6, seeds, 5)


def test_over_seeds_alone_the_paired_t_covers_95_percent():
    rng = np.random.default_rng(7)
    effect = -0.01
    differences = effect + 0.02 * rng.normal(size=(6000, 3))  # 3 seeds on one split
    covered = np.mean([paired_t_interval(d).low <= effect <= paired_t_interval(d).high for d in differences])
    assert 0.94 <= covered <= 0.96
