"""Elastic deformation and the tile sampler: the paper's parameters, label safety. (The batched torch
sampler the trainer uses is compared with these, tile by tile, in test_fast_path.py.)"""

import math

import numpy as np
import pytest

from unetbench.spec import AugmentationSpec
from unetbench.training.augment import (
    Deformation,
    dense_field,
    draw_deformation,
    sample_numpy,
    sampling_grid,
)
from unetbench.training.sampler import random_output_origin, sample_tile


def test_coarse_displacements_have_the_configured_spread():
    rng = np.random.default_rng(0)
    spec = AugmentationSpec()  # control points 285.5 px apart, sigma 10 px
    draws = np.stack([draw_deformation(rng, spec, 572).coarse for _ in range(2000)])
    assert draws.shape == (2000, 2, 7, 7)  # the centre, the paper's 3x3 and two rings beyond for the taps
    assert draws.std() == pytest.approx(10.0, rel=0.03) and abs(draws.mean()) < 0.2
    off = AugmentationSpec(elastic=False)
    assert not draw_deformation(rng, off, 572).coarse.any()


def test_on_the_paper_tile_the_field_passes_through_the_paper_3x3_grid():
    coarse = np.random.default_rng(1).normal(0, 10, (2, 7, 7))
    field = dense_field(Deformation(coarse, spacing=285.5), (572, 572))
    # pixel 0, 285.5 (between 285 and 286) and 571 are control points 2, 3, 4
    np.testing.assert_allclose(field[:, ::571, ::571], coarse[:, 2:5:2, 2:5:2], atol=1e-12)
    centre = (field[:, 285:287, 285:287]).mean(axis=(1, 2))
    assert np.abs(centre - coarse[:, 3, 3]).max() < 0.05  # the centre point, read half a pixel away
    assert np.abs(np.diff(field, axis=1)).max() < 1  # smooth: neighbouring pixels move alike


@pytest.mark.parametrize("small", [252, 160, 92])
def test_the_field_per_pixel_does_not_depend_on_the_tile_size(small):
    """The displacement at an offset from the tile centre is the same linear combination of independent
    N(0, sigma) control values for every tile size: equal weights, so equal per-pixel statistics."""
    from unetbench.training.augment import control_points, lattice_matrix

    spacing, big = 285.5, 572
    n_big, n_small = control_points(big, spacing), control_points(small, spacing)
    w_big, w_small = lattice_matrix(big, n_big, spacing), lattice_matrix(small, n_small, spacing)
    start = (big - small) // 2  # the small tile's pixels at the same offsets from the centre
    pad = (n_big - n_small) // 2
    np.testing.assert_allclose(w_big[start : start + small, pad : pad + n_small], w_small, atol=1e-12)
    # per-pixel standard deviation of the field, by the weights and by sampling
    std_big = 10 * np.sqrt(np.outer((w_big**2).sum(1), (w_big**2).sum(1)))
    std_small = 10 * np.sqrt(np.outer((w_small**2).sum(1), (w_small**2).sum(1)))
    np.testing.assert_allclose(std_big[start : start + small, start : start + small], std_small, atol=1e-9)
    rng = np.random.default_rng(5)
    spec = AugmentationSpec(rotation=0.0)
    fields = np.stack([dense_field(draw_deformation(rng, spec, small), (small, small)) for _ in range(1500)])
    np.testing.assert_allclose(
        fields.std(axis=0)[0, :: small // 4, :: small // 4], std_small[:: small // 4, :: small // 4], rtol=0.1
    )
    # the field's spatial gradient (how much the tile is actually bent) is the same per pixel: about 10 px
    # over the 285.5 px spacing, not 10 px over the small tile as a grid stretched over the tile would give
    gradient = np.abs(np.diff(fields[:, 0], axis=1)).mean()
    gradient_big = np.abs(
        np.diff(dense_field(draw_deformation(rng, spec, big), (big, big))[0], axis=0)
    ).mean()
    assert gradient == pytest.approx(gradient_big, rel=0.5)


def test_identity_and_quarter_turn_are_exact():
    image = np.random.default_rng(2).random((40, 40)).astype(np.float32)
    grid = sampling_grid(Deformation.identity(), (40, 40), (19.5, 19.5))
    for mode in ("cubic", "linear", "nearest"):
        np.testing.assert_allclose(sample_numpy(image, grid, mode), image, atol=1e-6)
    quarter = Deformation(coarse=np.zeros((2, 1, 1)), angle=math.pi / 2)
    turned = sample_numpy(image, sampling_grid(quarter, (40, 40), (19.5, 19.5)), "nearest")
    np.testing.assert_array_equal(turned, np.rot90(image, k=-1))


def test_labels_keep_their_values_under_deformation():
    rng = np.random.default_rng(3)
    labels = rng.choice(np.array([0, 7, 255]), size=(60, 60))
    spec = AugmentationSpec(rotation=45.0, shift=5.0)
    for _ in range(5):
        grid = sampling_grid(
            draw_deformation(rng, spec, 80), (80, 80), (30.0, 30.0)
        )  # reaches beyond the border
        warped = sample_numpy(labels, grid, "nearest")
        assert set(np.unique(warped)) <= {0, 7, 255} and warped.dtype == labels.dtype


def test_tile_sampler_aligns_target_and_weights_with_the_valid_output():
    rng = np.random.default_rng(5)
    image = rng.random((70, 80)).astype(np.float32)
    target = rng.integers(0, 2, (70, 80))
    weights = rng.random((70, 80)).astype(np.float32)
    tile, out = 124, 84  # depth-3 valid network: margin 20
    origin = (-5, 3)
    result = sample_tile(
        image, target, weights, tile=tile, out=out, origin=origin, deformation=Deformation.identity()
    )
    assert result.image.shape == (tile, tile) and result.target.shape == (out, out)
    mirrored = np.pad(image, 200, mode="reflect")
    y, x = origin[0] - 20 + 200, origin[1] - 20 + 200
    np.testing.assert_allclose(result.image, mirrored[y : y + tile, x : x + tile], atol=1e-6)
    padded_target = np.pad(target, 200, mode="reflect")
    y, x = origin[0] + 200, origin[1] + 200
    np.testing.assert_array_equal(result.target, padded_target[y : y + out, x : x + out])
    np.testing.assert_allclose(
        result.weights, np.pad(weights, 200, mode="reflect")[y : y + out, x : x + out], atol=1e-6
    )
    for _ in range(50):  # an output window that fits lies inside the image, on both axes
        y0, x0 = random_output_origin(rng, (500, 600), 388)
        assert 0 <= y0 <= 112 and 0 <= x0 <= 212
