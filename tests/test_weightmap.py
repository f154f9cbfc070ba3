"""Border weight maps (paper, Eq. 2): the formula by hand, the fast map against the naive reference."""

import math

import numpy as np
import pytest
import tifffile

from unetbench.datasets import ctc, synthetic
from unetbench.training.weightmap import (
    border_margin,
    border_weight_map,
    border_weight_map_naive,
    class_balance_weights,
    training_weight_maps,
)


def test_two_cells_hand_case():
    target = np.zeros((5, 10), np.uint8)
    target[:, 0:3] = 1  # cell A: columns 0-2
    target[:, 5:10] = 1  # cell B: columns 5-9; background gap: columns 3-4
    w = border_weight_map(target, w0=10.0, sigma=5.0)
    expected_gap = 1.0 + 10.0 * math.exp(-((1 + 2) ** 2) / (2 * 25))  # d1 = 1, d2 = 2 for both gap columns
    np.testing.assert_allclose(w[:, 3:5], expected_gap, rtol=1e-6)
    np.testing.assert_allclose(w[:, :3], 1.0)  # inside cells: w_c only
    np.testing.assert_allclose(w[:, 5:], 1.0)


def test_one_cell_has_no_border_term_and_class_weights_add():
    target = np.zeros((6, 6), np.uint8)
    target[1:3, 1:3] = 1
    weights = class_balance_weights(target)  # 32 background, 4 cell pixels
    np.testing.assert_allclose(weights, [36 / (2 * 32), 36 / (2 * 4)])
    w = border_weight_map(target, class_weights=weights)
    np.testing.assert_allclose(w[target == 0], weights[0], rtol=1e-6)  # no second cell: d2 = inf
    np.testing.assert_allclose(w[target == 1], weights[1], rtol=1e-6)
    assert class_balance_weights([target, target]).tolist() == pytest.approx(weights.tolist())


def test_touching_cells_get_a_heavy_separation_border():
    instances = np.zeros((8, 12), np.int32)
    instances[:, :6] = 1
    instances[:, 6:] = 2  # two cells touching along a vertical line
    target = ctc.semantic_target(instances)  # the touching columns 5 and 6 become background
    w = border_weight_map(target, instances)
    np.testing.assert_allclose(w[:, 5:7], 1.0 + 10.0 * math.exp(-((1 + 2) ** 2) / 50), rtol=1e-6)


def test_margin_gives_the_documented_bound():
    m = border_margin(10.0, 5.0, 1e-3)
    assert m == 22 and 10.0 * math.exp(-(m**2) / 50) < 1e-3 <= 10.0 * math.exp(-((m - 1) ** 2) / 50)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_map_equals_the_naive_reference_on_synthetic_cells(seed):
    _, instances = synthetic.cell_sequence(seed, 1, [0], 160, 200)
    target = ctc.semantic_target(instances[0].astype(np.int32))
    weights = class_balance_weights(target)
    fast = border_weight_map(target, instances[0], class_weights=weights)
    naive = border_weight_map_naive(target, instances[0], class_weights=weights)
    assert np.abs(fast - naive).max() < 1e-3


@pytest.mark.slow
def test_fast_map_equals_the_naive_reference_on_real_isbi_slices(real_isbi):
    labels = tifffile.imread(real_isbi / "train-labels.tif")
    for s in (0, 14, 29):
        target = (labels[s] > 0).astype(np.uint8)
        fast = border_weight_map(target, class_weights=class_balance_weights(target))
        naive = border_weight_map_naive(target, class_weights=class_balance_weights(target))
        assert np.abs(fast - naive).max() < 1e-3
        assert fast.max() > 5  # narrow membranes between cells carry large weights


def test_em_synthetic_slice_fast_equals_naive():
    _, labels = synthetic.em_slice(3, 0, 128, 128)
    target = (labels > 0).astype(np.uint8)
    assert np.abs(border_weight_map(target) - border_weight_map_naive(target)).max() < 1e-3


def test_training_maps_follow_the_spec():
    from unetbench.datasets import DATASETS
    from unetbench.spec import WeightmapSpec

    from .helpers import synthetic_data

    samples = (
        DATASETS["synthetic-em"]
        .load(None, synthetic_data("synthetic-em", samples=2, height=64, width=64))
        .labelled
    )
    on = training_weight_maps(samples, WeightmapSpec())
    assert set(on) == {s.key for s in samples} and all(m.dtype == np.float32 for m in on.values())
    off = training_weight_maps(samples, WeightmapSpec(enabled=False))
    balance = class_balance_weights([s.target for s in samples])
    for s in samples:  # no border term: exactly the data set's class weights
        np.testing.assert_allclose(off[s.key], balance[s.target], rtol=1e-6)
        assert (on[s.key] >= off[s.key] - 1e-6).all() and on[s.key].max() > off[s.key].max()
    plain = training_weight_maps(samples, WeightmapSpec(enabled=False, class_balance="none"))
    assert all((m == 1.0).all() for m in plain.values())
    per_image = training_weight_maps(samples, WeightmapSpec(enabled=False, class_balance="per-image"))
    s = samples[0]
    np.testing.assert_allclose(per_image[s.key], class_balance_weights(s.target)[s.target], rtol=1e-6)
