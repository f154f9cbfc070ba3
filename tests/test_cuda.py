"""On a GPU: the CUDA path of training and prediction. Skipped, with the reason, where there is none."""

import numpy as np
import pytest
import torch

from unetbench.inference.tiling import predict_image
from unetbench.model.unet import UNet
from unetbench.spec import InferenceSpec
from unetbench.training.loss import weighted_cross_entropy

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False"
    ),
]


def test_training_steps_in_bf16_with_channels_last_are_finite_and_decrease():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8).cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99)
    image = torch.rand(2, 1, 124, 124, device="cuda").contiguous(memory_format=torch.channels_last)
    target = (image[:, 0, 20:104, 20:104] > 0.5).long()
    weights = torch.ones(2, 84, 84, device="cuda")
    losses = []
    for _ in range(30):
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            logits = net(image)
        loss = weighted_cross_entropy(logits.float(), target, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])


@pytest.mark.parametrize("tta", ["none", "dihedral"])
def test_prediction_on_cuda_matches_the_cpu_to_bf16_rounding(tta):
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8, dropout=0.0).eval()
    image = np.random.default_rng(0).random((150, 130)).astype(np.float32)
    spec = InferenceSpec(tile_size=92, batch_size=8, tta=tta)
    on_cpu = predict_image(net, image, spec, device="cpu")
    on_gpu = predict_image(net.cuda(), image, spec, device="cuda")
    assert on_gpu.shape == on_cpu.shape == (2, 150, 130)
    assert np.abs(on_gpu - on_cpu).max() < 0.05  # bf16 autocast on the GPU, float32 on the CPU


@pytest.mark.parametrize(("first", "second"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_from_one_device_resumes_on_the_other(tmp_path, first, second):
    from types import SimpleNamespace

    from unetbench.training.trainer import Trainer

    from .helpers import tiny_spec

    spec = tiny_spec(iterations=6)
    rng = np.random.default_rng(0)
    samples = [
        SimpleNamespace(
            key=str(i), image=rng.random((64, 64)).astype(np.float32), target=(rng.random((64, 64)) > 0.5)
        )
        for i in range(3)
    ]
    weights = {s.key: np.ones((64, 64), np.float32) for s in samples}

    def trainer(device):
        torch.manual_seed(0)
        model = UNet(depth=spec.model.depth, base_channels=spec.model.base_channels)
        return Trainer(spec, model, samples, weights, device=device, checkpoint=tmp_path / "last.pt")

    before = trainer(first)
    for _ in range(3):
        before.step()
    before.save()
    after = trainer(second)
    after.load()
    assert after.iteration == 3
    for name, value in before.model.state_dict().items():
        assert torch.equal(after.model.state_dict()[name].cpu(), value.cpu())
    assert np.isfinite(float(after.step()))  # and it trains on
