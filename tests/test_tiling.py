"""Overlap-tile prediction is seamless; the ablated strategy is what its docstring says."""

import numpy as np
import pytest
import torch

from unetbench.inference.tiling import independent_tile_predict, overlap_tile_predict, predict_image
from unetbench.model.sizes import nearest_valid_input_sizes
from unetbench.model.unet import UNet
from unetbench.spec import InferenceSpec


@pytest.fixture(scope="module")
def valid_net():
    torch.manual_seed(0)
    return UNet(depth=3, base_channels=4, dropout=0.0).eval()


def _whole_image_pass(net, image):
    """One forward pass over the mirror-extended image (a valid input size covering it)."""
    margin = net.margin
    h, w = image.shape
    size_y = next(
        s for s in nearest_valid_input_sizes(h + 2 * margin, depth=net.depth) if s >= h + 2 * margin
    )
    size_x = next(
        s for s in nearest_valid_input_sizes(w + 2 * margin, depth=net.depth) if s >= w + 2 * margin
    )
    padded = np.pad(image, ((margin, size_y - h - margin), (margin, size_x - w - margin)), mode="reflect")
    with torch.no_grad():
        return torch.softmax(net(torch.from_numpy(padded)[None, None]), dim=1)[0, :, :h, :w].numpy()


@pytest.mark.parametrize(("height", "width"), [(100, 130), (37, 45), (200, 90), (173, 251)])
def test_overlap_tile_equals_one_pass_over_the_mirrored_image(valid_net, height, width):
    image = np.random.default_rng(height).random((height, width)).astype(np.float32)
    tiled = overlap_tile_predict(valid_net, image, tile_size=92, batch_size=3)
    assert tiled.shape == (2, height, width)
    np.testing.assert_allclose(tiled, _whole_image_pass(valid_net, image), atol=1e-5)
    np.testing.assert_allclose(tiled.sum(axis=0), 1.0, atol=1e-5)


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
