"""ISBI 2012 metrics: hand-computed cases, official-implementation facts, properties, independent checks."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.metrics import adapted_rand_error, variation_of_information

from unetbench.metrics import _kernels as k
from unetbench.metrics import (
    classic_warping_error,
    isbi2012_scores,
    official_thresholds,
    pixel_error,
    rand_error,
    v_info,
    v_rand,
    warping_error,
)
from unetbench.metrics._isbi import fscore, information_fscore, rand_counts


def test_thresholds_accumulate_in_double_precision():
    assert official_thresholds(0.0, 1.0, 0.1) == (
        0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.7999999999999999,
        0.8999999999999999, 0.9999999999999999,
    )  # fmt: skip
    assert official_thresholds(0.0, 0.9, 0.1) == official_thresholds(0.0, 1.0, 0.1)[:10]


def test_pixel_error_hand_case():
    gt = np.array([[255, 255], [0, 0]], np.uint8)
    p = np.array([[1.0, 0.25], [0.5, 0.0]], np.float32)
    # th 0.0-0.2: TP 2 FP 1 FN 0 -> F 0.8; th 0.3-0.4: F 0.5; th >= 0.5: TP 1 FP 0 FN 1 -> F 2/3
    assert pixel_error(gt, p) == pytest.approx(0.2, abs=1e-15)


def test_binarisation_compares_float32_values_in_double_precision():
    gt = np.array([[255, 0]], np.uint8)
    # float32(102/255) = 0.40000000596 > 0.4 in double: only th = 0.4 separates cell from membrane (0.35).
    # Comparing in float32 (NumPy 2 casts the Python float to float32) would miss it.
    p = np.array([[np.float32(102 / 255), 0.35]], np.float32)
    assert pixel_error(gt, p) == 0.0
    # The last threshold is 0.9999999999999999, not 1.0: p = 1 is still cell there.
    p = np.array([[1.0, 0.99999]], np.float32)
    assert pixel_error(gt, p) == 0.0


def test_pixel_counts_are_summed_over_slices_before_the_f_score():
    gt = np.array([[[255, 0]], [[255, 255]]], np.uint8)
    p = np.array([[[1.0, 1.0]], [[1.0, 0.0]]], np.float32)
    # summed: TP 2, FP 1, FN 1 -> F = 2/3 (the mean of per-slice F-scores would be (2/3 + 2/3) / 2 too, so
    # make the slices differ): slice 2 alone has P 1, R 1/2.
    assert pixel_error(gt, p) == pytest.approx(1 - 2 / 3, abs=1e-15)


def test_rand_error_hand_cases():
    # Two cells merged into one segment: p_11 = p_21 = 1/2 -> P = 1/2, R = 1, F = 2/3.
    gt = np.array([[255, 255, 0, 255, 255]], np.uint8)
    assert rand_error(gt, np.ones((1, 5), np.float32)) == pytest.approx(1 / 3, abs=1e-12)
    # One cell split, one of its pixels predicted membrane (a singleton): TP 6, FP 0, FN 10 -> F = 6/11.
    gt = np.full((1, 4), 255, np.uint8)
    p = np.array([[1.0, 0.0, 1.0, 1.0]], np.float32)
    assert rand_error(gt, p) == pytest.approx(5 / 11, abs=1e-12)


def test_rand_counts_match_the_n2_formulas():
    sums = np.array([4.0, 1.0, 5 / 16, 5 / 16, 1 / 4, 0, 0, 0])
    tp, fp, fn = rand_counts(sums)
    assert (tp, fp, fn) == pytest.approx((6.0, 0.0, 10.0))
    assert fscore(tp, 0.0, fn) == pytest.approx(6 / 11)
    assert fscore(0.0, 0.0, 0.0) == 1.0 and fscore(0.0, 1.0, 1.0) == 0.0


def test_watershed_thinning_keeps_one_line_and_breaks_ties_in_flooding_order():
    cell = np.array([[1, 1, 0, 0, 0, 1, 1]], bool)
    np.testing.assert_array_equal(k.watershed_thinning(cell), [[1, 1, 1, 0, 2, 2, 2]])
    cell = np.array([[1, 1, 0, 0, 1, 1]], bool)  # even gap: the later pixel (x-outer order) becomes the line
    np.testing.assert_array_equal(k.watershed_thinning(cell), [[1, 1, 1, 0, 2, 2]])
    assert (k.watershed_thinning(np.zeros((3, 4), bool)) == 1).all()  # all membrane: one segment
    assert (k.watershed_thinning(np.ones((3, 4), bool)) == 1).all()  # all cell: one segment
    cell = np.array([[1, 0, 0], [0, 0, 0], [0, 0, 0]], bool)
    assert (k.watershed_thinning(cell) == 1).all()  # membrane flooded from the only basin: no line


def test_v_rand_and_v_info_hand_case_after_thinning():
    gt = np.array([[255, 255, 0, 255, 255, 255, 255]], np.uint8)
    p = np.array([[1, 1, 0, 1, 1, 0, 1]], np.float32)
    # thinned B = [1, 1, 0, 2, 2, 0, 3]; n = 6; p(A1,B1) = 2/6, p(A2,B2) = 2/6, p(A2,B3) = 1/6, aux = 1/6
    assert v_rand(gt, p) == pytest.approx(2 / 3, abs=1e-12)  # P = 1, R = (10/36) / (20/36)
    log = math.log
    sum_a = (1 / 3) * log(1 / 3) + (2 / 3) * log(2 / 3)
    sum_b = 2 * (1 / 3) * log(1 / 3) + (1 / 6) * log(1 / 6) - (1 / 6) * log(6)
    recall = sum_a / sum_b  # precision 1: H(A|B) = 0
    assert v_info(gt, p) == pytest.approx(2 * recall / (1 + recall), abs=1e-12)


def test_thick_membranes_are_thinned_for_v_rand_but_not_for_the_rand_error():
    gt = np.array([[255, 255, 255, 0, 255, 255, 255]], np.uint8)
    p = np.array([[1, 1, 0, 0, 0, 1, 1]], np.float32)
    assert v_rand(gt, p) == pytest.approx(1.0, abs=1e-12)
    assert rand_error(gt, p) == pytest.approx(2 / 7, abs=1e-12)  # the two membrane pixels are singletons


def test_all_cell_and_all_membrane_proposals_are_one_segment_after_thinning():
    gt = np.array([[255, 255, 0, 255, 255]], np.uint8)
    ones, zeros = np.ones((1, 5), np.float32), np.zeros((1, 5), np.float32)
    assert v_rand(gt, ones) == v_rand(gt, zeros) == pytest.approx(2 / 3, abs=1e-12)
    assert v_info(gt, ones) == v_info(gt, zeros) == 0.0  # H(B) = 0: precision 1, recall 0


def test_information_fscore_special_cases():
    # H(A) = 0 (one ground-truth cell): precision 0, recall 1 -> F = 0
    assert (
        information_fscore(np.array([4.0, 1.0, 0, 0, 0, 0.5 * math.log(0.5) * 2, 0.0, math.log(0.5)])) == 0.0
    )


def _image_with(block_rows, block_cols, shape=(9, 16)):
    image = np.zeros(shape, np.uint8)
    image[block_rows, block_cols] = 255
    return image


def test_warping_a_shifted_boundary_costs_nothing():
    gt = _image_with(slice(2, 7), slice(2, 12))
    p = (_image_with(slice(3, 8), slice(3, 13)) / 255).astype(np.float32)
    assert warping_error(gt, p) == 0.0
    assert classic_warping_error(gt, p) == 0.0


def test_warping_counts_a_split():
    gt = _image_with(slice(2, 7), slice(2, 14))
    p = (gt / 255).astype(np.float32)
    p[2:7, 8] = 0.0  # a membrane across the cell
    # Flips in scan order remove rows 2-5 of the cut; (6, 8) is not simple and stays, and removing it would
    # split the warped cell in two: one split pixel at every threshold.
    assert warping_error(gt, p) == pytest.approx(1 / (9 * 16))
    assert classic_warping_error(gt, p) == pytest.approx(1 / (9 * 16))


def test_warping_counts_a_merge_pixel_by_pixel():
    gt = _image_with(slice(2, 7), slice(2, 14))
    gt[2:7, 8] = 0  # two cells
    p = np.zeros(gt.shape, np.float32)
    p[2:7, 2:14] = 1.0  # merged
    assert warping_error(gt, p) == pytest.approx(5 / (9 * 16))  # no pixel of the joining line is simple


def test_object_deletion_is_not_a_split_or_merge():
    gt = _image_with(slice(3, 5), slice(3, 5))
    p = np.zeros(gt.shape, np.float32)
    assert warping_error(gt, p) == 0.0
    assert classic_warping_error(gt, p) == pytest.approx(1 / (9 * 16))  # one pixel of the cell is left


def _ring(size, outer, inner):
    yy, xx = np.mgrid[:size, :size] - size // 2
    r = np.hypot(yy, xx)
    return np.where((r <= outer) & (r > inner), 255, 0).astype(np.uint8)


def test_a_ring_larger_than_the_window_counts_as_splits():
    big = _ring(96, 40, 36)
    zeros = np.zeros(big.shape, np.float32)
    # The ring cannot shrink to a point; around any remaining pixel of a ring wider than the 41 x 41 window,
    # the window sees two arcs: every remaining pixel is a split.
    classic = classic_warping_error(big, zeros)
    assert classic > 0
    assert warping_error(big, zeros) == pytest.approx(classic, abs=1e-15)
    small = _ring(96, 6, 3)
    assert warping_error(small, zeros) == 0.0 < classic_warping_error(small, zeros)


def _bertrand_3d_simple(code: int) -> bool:
    """Independent check: the 3x3 patch in the middle plane of a 3x3x3 cube, simple for 6/26-connectivity
    (Bertrand & Malandain 1994): T6 on the 18-neighbourhood, T26 on the 26-neighbourhood."""
    cube = np.zeros((3, 3, 3), bool)
    for bit, (dy, dx) in enumerate(k._OFFSETS):
        cube[1, 1 + dy, 1 + dx] = (code >> bit) & 1
    n18 = np.ones((3, 3, 3), bool)
    for corner in itertools.product((0, 2), repeat=3):
        n18[corner] = False
    n18[1, 1, 1] = False
    fg, _ = ndimage.label(cube & n18, structure=ndimage.generate_binary_structure(3, 1))
    faces = [(0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)]
    t6 = len({fg[f] for f in faces} - {0})
    background = ~cube
    background[1, 1, 1] = False
    bg, t26 = ndimage.label(background, structure=np.ones((3, 3, 3)))
    return t6 == 1 and t26 == 1


def test_simple_point_table_equals_the_official_3d_embedding():
    assert [bool(v) for v in k.SIMPLE] == [_bertrand_3d_simple(code) for code in range(256)]


@pytest.mark.slow
def test_perfect_proposal_scores_perfectly(real_isbi_labels):
    gt = real_isbi_labels[:3]
    scores = isbi2012_scores(gt, (gt / 255).astype(np.float32))
    for name in ("pixel_error", "rand_error", "warping_error", "classic_warping_error"):
        assert scores[name] == 0.0
    assert scores["v_rand"] == pytest.approx(1.0, abs=1e-12)
    assert scores["v_info"] == pytest.approx(1.0, abs=1e-12)


@pytest.fixture(scope="module")
def real_isbi_labels(real_isbi):
    import tifffile

    return tifffile.imread(real_isbi / "train-labels.tif")


@pytest.mark.slow
def test_blurred_and_perturbed_real_labels_get_plausible_errors(real_isbi_labels):
    gt = real_isbi_labels[:6]
    rng = np.random.default_rng(0)
    blurred = np.stack([ndimage.gaussian_filter(g / 255.0, 2) for g in gt]).astype(np.float32)
    noisy = np.clip(blurred + rng.normal(0, 0.15, blurred.shape), 0, 1).astype(np.float32)
    mild, worse = isbi2012_scores(gt, blurred), isbi2012_scores(gt, noisy)
    for name in ("pixel_error", "rand_error", "warping_error"):
        assert 0 < mild[name] < worse[name] < 0.2
    for name in ("v_rand", "v_info"):
        assert 1 > mild[name] > worse[name] > 0.8
    assert mild["warping_error"] <= mild["classic_warping_error"]


def _random_case(seed, shape=(24, 24)):
    rng = np.random.default_rng(seed)
    gt = (ndimage.gaussian_filter(rng.random(shape), 2) > 0.45).astype(np.uint8) * 255
    if not gt.any():
        gt[0, 0] = 255
    p = np.clip(ndimage.gaussian_filter(rng.random(shape), 1.5) * 1.6 - 0.3, 0, 1).astype(np.float32)
    return gt, p


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_properties_on_random_images(seed):
    gt, p = _random_case(seed)
    scores = isbi2012_scores(gt, p)
    for name in ("pixel_error", "rand_error", "warping_error", "classic_warping_error"):
        assert 0.0 <= scores[name] <= 1.0
    assert scores["warping_error"] <= scores["classic_warping_error"]  # splits and merges are mismatches
    for name in ("v_rand", "v_info"):
        assert 0.0 <= scores[name] <= 1.0 + 1e-12
    perfect = isbi2012_scores(gt, (gt / 255).astype(np.float32))
    assert perfect["rand_error"] == perfect["pixel_error"] == perfect["warping_error"] == 0.0
    # Each metric alone equals the shared pass.
    assert rand_error(gt, p) == scores["rand_error"] and warping_error(gt, p) == scores["warping_error"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_warping_leaves_only_non_simple_mismatches(seed):
    gt, p = _random_case(seed)
    th = 0.5
    warped, _ = k.simple_point_warp((gt > 0).astype(np.uint8), p, th, k.SIMPLE)
    padded = np.pad(warped, 1)
    target = p.astype(np.float64) > th
    for y, x in zip(*np.nonzero(warped != target), strict=True):
        code = sum(int(padded[y + 1 + dy, x + 1 + dx]) << bit for bit, (dy, dx) in enumerate(k._OFFSETS))
        assert not k.SIMPLE[code]
    # and the warp never changes the number of cells' topology: same components, same holes
    assert (
        ndimage.label(warped, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])[1]
        == ndimage.label(gt > 0, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])[1]
    )


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_rand_and_information_sums_agree_with_scikit_image(seed):
    """Where the proposal has no background inside ground-truth cells (aux = 0) the overlap sums give
    scikit-image's adapted Rand error (which counts pairs without self-pairs: sum n_ij^2 - n, where TWS
    normalises by N^2) and its VI terms exactly."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, (20, 20))
    if not a.any():
        a[0, 0] = 1
    b = rng.integers(1, 6, (20, 20))
    a_flat = a.ravel().astype(np.int64)
    order = np.flatnonzero(a_flat)
    order = order[np.argsort(a_flat[order], kind="stable")]
    sums = k.contingency_sums(order, a_flat, b.ravel().astype(np.int64), int(b.max()))
    are, _, _ = adapted_rand_error(a, b, ignore_labels=(0,))
    n = sums[0]
    pairs_ab, pairs_a, pairs_b = (n * n * sums[i] - n for i in (3, 1, 2))
    precision, recall = pairs_ab / pairs_b, pairs_ab / pairs_a
    assert 2 * precision * recall / (precision + recall) == pytest.approx(1 - are, abs=1e-12)
    assert fscore(*rand_counts(sums)) != pytest.approx(1 - are, abs=1e-6)  # the normalisations differ
    h_b_given_a, h_a_given_b = variation_of_information(a, b, ignore_labels=(0,))  # H(1|0), H(0|1)
    sum_ab, sum_a, sum_b = sums[5], sums[6], sums[7]
    assert (sum_b - sum_ab) / math.log(2) == pytest.approx(h_a_given_b, abs=1e-12)  # skimage: bits
    assert (sum_a - sum_ab) / math.log(2) == pytest.approx(h_b_given_a, abs=1e-12)


@pytest.mark.parametrize(
    ("gt", "p", "fragment"),
    [
        (np.ones((2, 3)), np.ones((3, 2), np.float32), "differ in shape"),
        (np.ones((2, 2)), np.ones((2, 2), np.uint8), "--scale 255"),
        (np.ones((2, 2)), np.full((2, 2), 255.0, np.float32), "outside [0, 1]"),
        (np.ones((2, 2)), np.full((2, 2), np.nan, np.float32), "NaN"),
        (np.zeros((2, 2)), np.ones((2, 2), np.float32), "no cell pixel"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(gt, p, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        isbi2012_scores(gt, p)


@settings(max_examples=50, deadline=None)
@given(
    keys=st.lists(
        st.sampled_from([0.0, 1e-40, 0.1, 0.25, 0.5, 0.9999999, 1.0]) | st.floats(0, 1, width=32),
        max_size=300,
    )
)
def test_warping_order_is_a_stable_descending_sort(keys):
    """The radix sort of the warping passes orders like Java's stable Collections.sort on (float) keys."""
    array = np.array(keys, dtype=np.float32)
    np.testing.assert_array_equal(k._stable_descending_order(array), np.argsort(-array, kind="stable"))


def test_ground_truth_values_do_not_matter_only_cell_versus_membrane():
    gt, p = _random_case(7, shape=(40, 40))
    instances, _ = ndimage.label(gt > 0, structure=[[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    reference = isbi2012_scores(gt, p)
    assert isbi2012_scores((gt > 0).astype(np.uint8), p) == reference  # 1 instead of 255
    assert isbi2012_scores(instances.astype(np.uint16), p) == reference  # instance labels
