"""Overlap-tile prediction is seamless; the ablated strategy is what its docstring says."""

import numpy as np
import pytest
import torch

from unetbench.inference.tiling import (
    independent_tile_predict,
    isolated_tile_predict,
    overlap_tile_predict,
    predict_image,
)
from unetbench.model.sizes import nearest_valid_input_sizes
from unetbench.model.unet import UNet
from unetbench.spec import InferenceSpec


@pytest.fixture(scope="module")
def valid_net():
    torch.manual_seed(0)
    return UNet(depth=3, base_channels=4, dropout=0.0).eval()


def _whole_image_pass(net, image, mode="reflect"):
    """One forward pass over the mirror-extended image (a valid input size covering it); ``mode``
    "constant": over the zero-extended image."""
    margin = net.margin
    h, w = image.shape
    size_y = next(
        s for s in nearest_valid_input_sizes(h + 2 * margin, depth=net.depth) if s >= h + 2 * margin
    )
    size_x = next(
        s for s in nearest_valid_input_sizes(w + 2 * margin, depth=net.depth) if s >= w + 2 * margin
    )
    padded = np.pad(image, ((margin, size_y - h - margin), (margin, size_x - w - margin)), mode=mode)
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(padded)[None, None]), dim=1)[0, :, :h, :w].numpy()


@pytest.mark.parametrize(("height", "width"), [(100, 130), (37, 45), (200, 90), (173, 251)])
def test_overlap_tile_equals_one_pass_over_the_mirrored_image(valid_net, height, width):
    image = np.random.default_rng(height).random((height, width)).astype(np.float32)
    tiled = overlap_tile_predict(valid_net, image, tile_size=92, batch_size=3)
    assert tiled.shape == (2, height, width)
    np.testing.assert_allclose(tiled, _whole_image_pass(valid_net, image), atol=1e-5)
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)


def _pass(net, padded):
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(np.ascontiguousarray(padded))[None, None]), dim=1)[
            0
        ].numpy()


def test_zeros_beyond_the_border_equal_one_pass_over_the_zero_padded_image(valid_net):
    """--no-mirror: overlap-tile with zeros as the context beyond the image, the same inside it."""
    image = np.random.default_rng(5).random((100, 130)).astype(np.float32)
    margin = valid_net.margin
    zeros = overlap_tile_predict(valid_net, image, tile_size=92, batch_size=3, border="zeros")
    np.testing.assert_allclose(zeros, _whole_image_pass(valid_net, image, mode="constant"), atol=1e-5)
    mirrored = overlap_tile_predict(valid_net, image, tile_size=92, batch_size=3)
    reach = margin + 4  # the context margin plus the pooling slack (factor 4 at depth 3)
    inner = (slice(None), slice(reach, -reach), slice(reach, -reach))
    np.testing.assert_allclose(zeros[inner], mirrored[inner], atol=1e-5)  # no border in reach: equal
    assert np.abs(zeros[:, :4] - mirrored[:, :4]).max() > 1e-4  # at the border: the zeros show


def test_isolated_tiles_see_only_themselves(valid_net):
    """--no-tiling: each output tile is one pass over that tile alone, mirrored from itself; it equals
    overlap-tile where the context stays inside the tile and differs at the seams."""
    image = np.random.default_rng(6).random((100, 130)).astype(np.float32)
    margin, tile = valid_net.margin, 92
    out = tile - 2 * margin  # 52, on the pooling grid of depth 3
    isolated = isolated_tile_predict(valid_net, image, tile_size=tile, batch_size=3)
    assert isolated.shape == (2, 100, 130)
    extended = np.pad(image, ((0, 2 * out - 100), (0, 3 * out - 130)), mode="reflect")  # whole tiles
    for y in (0, out):
        for x in (0, out, 2 * out):
            alone = np.pad(extended[y : y + out, x : x + out], margin, mode="reflect")
            expected = _pass(valid_net, alone)
            got = isolated[:, y : y + out, x : x + out]
            np.testing.assert_allclose(got, expected[:, : got.shape[1], : got.shape[2]], atol=1e-5)
    overlap = overlap_tile_predict(valid_net, image, tile_size=tile, batch_size=3)
    reach = margin + 4  # the context margin plus the pooling slack (factor 4 at depth 3)
    inside = (slice(None), slice(reach, out - reach), slice(out + reach, 2 * out - reach))
    np.testing.assert_allclose(isolated[inside], overlap[inside], atol=1e-5)
    seam = (slice(None), slice(out - 4, out + 4), slice(None))
    assert np.abs(isolated[seam] - overlap[seam]).max() > 1e-4


def test_the_spec_picks_the_tiling_and_the_border(valid_net):
    image = np.random.default_rng(7).random((60, 60)).astype(np.float32)
    for spec, single in (
        (InferenceSpec(tiling="isolated", tile_size=92), isolated_tile_predict),
        (
            InferenceSpec(border="zeros", tile_size=92),
            lambda *a, **k: overlap_tile_predict(*a, **k, border="zeros"),
        ),
    ):
        spec = InferenceSpec(**{**spec.__dict__, "precision": "fp32"})
        np.testing.assert_allclose(
            predict_image(valid_net, image, spec), single(valid_net, image, tile_size=92), atol=1e-5
        )
    with pytest.raises(ValueError, match="isolated-tile prediction needs a valid-padding network"):
        isolated_tile_predict(UNet(depth=3, base_channels=2, padding="same"), image, tile_size=92)


def test_independent_tiles_are_not_seamless():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=4, dropout=0.0, padding="same").eval()
    image = np.random.default_rng(0).random((70, 50)).astype(np.float32)
    tiled = independent_tile_predict(net, image, tile_size=32)
    assert tiled.shape == (2, 70, 50)
    # the first tile is exactly a same-padded pass over that tile alone
    with torch.no_grad():
        first = torch.softmax(net(torch.from_numpy(image[:32, :32])[None, None]), dim=1)[0].numpy()
    np.testing.assert_allclose(tiled[:, :32, :32], first, atol=1e-5)  # batched convolutions round differently
    # ...and differs from a pass over the whole image near the tile borders
    with torch.no_grad():
        whole = torch.softmax(net(torch.from_numpy(np.pad(image, ((0, 2), (0, 2))))[None, None]), dim=1)[
            0
        ].numpy()
    assert np.abs(tiled[:, 28:36, :] - whole[:, 28:36, :50]).max() > 1e-4


def test_strategies_refuse_the_wrong_network(valid_net):
    image = np.zeros((40, 40), np.float32)
    with pytest.raises(ValueError, match="needs a same-padding network"):
        independent_tile_predict(valid_net, image, tile_size=32)
    same = UNet(depth=3, base_channels=2, padding="same")
    with pytest.raises(ValueError, match="needs a valid-padding network"):
        overlap_tile_predict(same, image, tile_size=92)
    with pytest.raises(ValueError, match="nearest valid sizes"):
        overlap_tile_predict(valid_net, image, tile_size=90)
    out = predict_image(valid_net, image, InferenceSpec(tile_size=92, batch_size=2))
    assert out.shape == (2, 40, 40)


# --- test-time averaging ----------------------------------------------------------------------------


def test_transforms_are_the_dihedral_group_and_restore_inverts_them():
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    from unetbench.inference.tiling import TTA_VERSIONS, restore, transform

    versions = [transform(image, v) for v in range(8)]
    assert len({v.tobytes() + bytes(v.shape) for v in versions}) == 8  # eight different versions
    for v in range(8):
        np.testing.assert_array_equal(restore(transform(image, v), v), image)
    flips = {transform(image, v).tobytes() for v in TTA_VERSIONS["flips"]}
    assert flips == {a.tobytes() for a in (image, image[::-1], image[:, ::-1], image[::-1, ::-1])}


@pytest.mark.parametrize("tta", ["flips", "dihedral"])
@pytest.mark.parametrize("tiling", ["overlap-tile", "isolated", "none"])
def test_tta_is_the_mean_of_the_transformed_predicted_restored_maps(valid_net, tta, tiling):
    """One batched pass over all versions' tiles equals predicting each version on its own, turning it
    back and averaging."""
    from unetbench.inference.tiling import TTA_VERSIONS

    torch.manual_seed(1)
    net = valid_net if tiling != "none" else UNet(depth=3, base_channels=4, padding="same").eval()
    size = 92 if tiling != "none" else 32
    image = np.random.default_rng(3).random((70, 110)).astype(np.float32)
    single = {
        "overlap-tile": overlap_tile_predict,
        "isolated": isolated_tile_predict,
        "none": independent_tile_predict,
    }[tiling]

    def version_predicted(v):  # written out with numpy alone, not with the module's transform / restore
        mirrored = image[:, ::-1] if v >= 4 else image
        predicted = single(net, np.rot90(mirrored, v % 4).copy(), tile_size=size)
        back = np.rot90(predicted, -(v % 4), axes=(1, 2))
        return back[:, :, ::-1] if v >= 4 else back

    expected = np.mean([version_predicted(v) for v in TTA_VERSIONS[tta]], axis=0)
    spec = InferenceSpec(tiling=tiling, tile_size=size, batch_size=5, tta=tta, precision="fp32")
    averaged = predict_image(net, image, spec)
    assert averaged.shape == (2, 70, 110)
    np.testing.assert_allclose(averaged, expected, atol=1e-5)
    np.testing.assert_allclose(averaged.sum(axis=0), 1.0, atol=1e-5)
    assert np.abs(averaged - predict_image(net, image, spec, tta="none")).max() > 1e-4  # it does something


def test_dihedral_tta_output_of_a_rotated_image_is_the_rotated_output(valid_net):
    image = np.random.default_rng(4).random((84, 84)).astype(np.float32)
    spec = InferenceSpec(tile_size=92, batch_size=8, tta="dihedral", precision="fp32")  # exact to 1e-5
    straight = predict_image(valid_net, image, spec)
    for turns in (1, 2):
        turned = predict_image(valid_net, np.rot90(image, turns).copy(), spec)
        np.testing.assert_allclose(turned, np.rot90(straight, turns, axes=(1, 2)), atol=1e-5)
    mirrored = predict_image(valid_net, image[:, ::-1].copy(), spec)
    np.testing.assert_allclose(mirrored, straight[:, :, ::-1], atol=1e-5)
    # without averaging the network is not rotation-equivariant: the test above has teeth
    plain = InferenceSpec(tile_size=92, batch_size=8, precision="fp32")
    assert (
        np.abs(
            predict_image(valid_net, np.rot90(image).copy(), plain)
            - np.rot90(predict_image(valid_net, image, plain), axes=(1, 2))
        ).max()
        > 1e-3
    )
