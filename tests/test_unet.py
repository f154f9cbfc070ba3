"""The U-Net: the paper's architecture, sizes, a backward pass, He initialisation, the loss."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from unetbench.challenges.loading import load_spec
from unetbench.model.unet import UNet, unet_from_spec
from unetbench.training.loss import weighted_cross_entropy


@pytest.fixture(scope="module")
def paper_unet():
    torch.manual_seed(0)
    return UNet(in_channels=1, classes=2)


def test_paper_network_parameters_depth_widths_and_dropout(paper_unet):
    assert sum(p.numel() for p in paper_unet.parameters()) == 31_030_658
    encoder_widths = [block[0].out_channels for block in paper_unet.encoders]
    assert encoder_widths == [64, 128, 256, 512, 1024]
    assert [up.out_channels for up in paper_unet.upconvs] == [512, 256, 128, 64]  # halving up-convolutions
    assert all(up.kernel_size == (2, 2) and up.stride == (2, 2) for up in paper_unet.upconvs)
    convs = [
        m for m in paper_unet.modules() if isinstance(m, nn.Conv2d) and not isinstance(m, nn.ConvTranspose2d)
    ]
    assert len(convs) == 2 * 9 + 1 and all(c.padding == (0, 0) for c in convs)  # 18 unpadded 3x3 + the 1x1
    assert convs[-1].kernel_size == (1, 1) and convs[-1].out_channels == 2
    assert paper_unet.margin == 92
    # drop-out as released: element-wise p = 0.5 on the 512- and the 1024-channel levels
    assert isinstance(paper_unet.dropout, nn.Dropout) and not isinstance(paper_unet.dropout, nn.Dropout2d)
    assert paper_unet.dropout.p == 0.5
    assert [paper_unet.encoders[level][0].out_channels for level in paper_unet.dropout_levels] == [512, 1024]


@pytest.mark.slow
def test_paper_network_maps_572_to_388(paper_unet):
    paper_unet.eval()
    with torch.no_grad():
        assert paper_unet(torch.zeros(1, 1, 572, 572)).shape == (1, 2, 388, 388)


def test_dropout_is_element_wise_where_the_release_puts_it():
    """Two element-wise drop-outs: after the two deepest levels' convolutions, before the pooling and the
    skip connection read the level's output; none when dropout = 0."""
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=2, dropout=0.5)
    seen = []
    net.dropout.register_forward_hook(lambda module, args, output: seen.append((args[0], output)))
    skipped = []
    net.pool.register_forward_hook(lambda module, args, output: skipped.append(args[0]))
    net.train()
    net(torch.rand(1, 1, 44, 44) + 1.0)
    assert [inputs.shape[1] for inputs, _ in seen] == [4, 8]  # the middle and the bottom level
    middle_in, middle_out = seen[0]
    assert torch.equal(skipped[-1], middle_out)  # the pooling reads the dropped features
    kept = middle_out != 0
    # element-wise: within one channel some elements are dropped and others kept (scaled by 1 / (1 - p))
    positive = middle_in > 0
    for channel in range(middle_in.shape[1]):
        mask = kept[0, channel][positive[0, channel]]
        if positive[0, channel].sum() > 20:
            assert 0 < mask.float().mean() < 1
    assert torch.allclose(middle_out[kept], 2 * middle_in[kept])
    net.eval()
    seen.clear()
    net(torch.rand(1, 1, 44, 44))
    assert all(torch.equal(i, o) for i, o in seen)  # identity at inference
    assert UNet(depth=3, base_channels=2, dropout=0.0).dropout_levels == ()


def test_tiny_network_shapes_backward_and_invalid_size():
    net = UNet(depth=3, base_channels=4, classes=3)
    x = torch.randn(2, 1, 124, 124, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 3, 84, 84) and net.output_size(124) == 84
    target = torch.randint(0, 3, (2, 84, 84), generator=torch.Generator().manual_seed(0))
    weighted_cross_entropy(y, target, torch.rand(2, 84, 84) + 0.5).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    silent = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert silent == []  # every parameter of every level gets a non-zero gradient
    with pytest.raises(ValueError, match="nearest valid sizes: 120 or 124"):
        net(torch.zeros(1, 1, 122, 122))
    assert net.valid_input_sizes_near(122) == [120, 124]


def test_same_padding_and_batch_norm_variant():
    net = UNet(depth=3, base_channels=4, padding="same", batch_norm=True)
    assert net(torch.zeros(1, 1, 64, 48)).shape == (1, 2, 64, 48)
    assert net.margin == 0
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    with pytest.raises(ValueError, match="multiple of 4"):
        net(torch.zeros(1, 1, 66, 64))


def test_he_initialisation_std():
    torch.manual_seed(1)
    net = UNet(depth=4, base_channels=32)
    conv = net.encoders[2][2]  # 128 -> 128, 3x3: N = 1152
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (128 * 9)), rel=0.02)
    up = net.upconvs[0]  # 256 -> 128, 2x2 stride 2: each output pixel sees N = 256 inputs
    assert up.weight.std().item() == pytest.approx(math.sqrt(2 / 256), rel=0.02)
    assert all((m.bias == 0).all() for m in net.modules() if isinstance(m, nn.Conv2d) and m.bias is not None)


def test_network_from_spec():
    spec = load_spec(Path(__file__).resolve().parents[1] / "challenges" / "quickstart.toml")
    net = unet_from_spec(spec.model)
    assert (net.depth, net.padding, net.encoders[0][0].out_channels) == (3, "valid", 8)
    assert net.output_size(spec.training.tile_size) == 84


def test_weighted_cross_entropy_hand_case_and_plain_case():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]]])  # (B=1, K=2, H=1, W=2)
    target = torch.tensor([[[0, 1]]])
    weights = torch.tensor([[[3.0, 0.5]]])
    p0 = math.exp(2) / (math.exp(2) + 1)  # soft-max of the true class at pixel 0
    p1 = math.exp(1) / (math.exp(1) + 1)
    expected = (3.0 * -math.log(p0) + 0.5 * -math.log(p1)) / 2
    assert weighted_cross_entropy(logits, target, weights).item() == pytest.approx(expected, rel=1e-6)
    plain = nn.functional.cross_entropy(logits, target)
    assert weighted_cross_entropy(logits, target).item() == pytest.approx(plain.item())
    assert weighted_cross_entropy(logits, target, torch.ones_like(weights)).item() == pytest.approx(
        plain.item()
    )
    with pytest.raises(ValueError, match="do not match"):
        weighted_cross_entropy(logits, target, torch.ones(1, 2, 2))
    # the gradient with respect to the logits is w * (softmax - onehot) / pixels, pixel by pixel
    gradient = torch.autograd.grad(weighted_cross_entropy(logits.requires_grad_(), target, weights), logits)[
        0
    ]
    expected_gradient = np.array(
        [[[[3.0 * (p0 - 1) / 2, 0.5 * (1 - p1) / 2]], [[3.0 * (1 - p0) / 2, 0.5 * (p1 - 1) / 2]]]]
    )
    np.testing.assert_allclose(gradient.numpy(), expected_gradient, rtol=1e-6)
