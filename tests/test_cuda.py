"""On a GPU: the CUDA path of training and prediction. Skipped, with the reason, where there is none."""

import numpy as np
import pytest
import torch

from unetbench.inference.tiling import predict_image
from unetbench.model.unet import UNet
from unetbench.spec import InferenceSpec

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(), reason="no CUDA device: torch.cuda.is_available() is False"
    ),
]


def test_the_paper_network_trains_in_bf16_compiled_with_finite_decreasing_loss(tmp_path):
    """The trainer's own step on the GPU: tiles cut on the device, bf16 autocast, channels_last and
    torch.compile from the spec, the paper's full network at its 572 px tile."""
    from types import SimpleNamespace

    from unetbench.challenges.loading import apply_overrides, load_spec

    from .helpers import REPO, spec_trainer

    spec = apply_overrides(
        load_spec(REPO / "challenges" / "em.toml"),
        {"training.precision": "bf16", "training.compile": True, "training.batch_size": 2},
    )
    rng = np.random.default_rng(0)
    image = rng.random((512, 512), dtype=np.float32)
    samples = [SimpleNamespace(key="0", image=image, target=image > 0.5)]  # a learnable target
    torch.manual_seed(0)
    model = UNet()
    trainer = spec_trainer(
        spec,
        model,
        samples,
        {"0": np.ones((512, 512), np.float32)},
        device="cuda",
        checkpoint=tmp_path / "c.pt",
    )
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    losses = [float(trainer.step()) for _ in range(30)]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < np.mean(losses[:5])


def test_a_training_step_never_waits_for_the_host(tmp_path):
    """torch's sync debug mode turns every host synchronisation into an error: drawing and cutting the
    tiles, the forward and backward pass, the loss and the SGD update of a step must not cause one."""
    from types import SimpleNamespace

    from .helpers import spec_trainer, tiny_spec

    spec = tiny_spec(**{"augmentation.rotation": 20.0, "augmentation.grey_values": 0.1})
    rng = np.random.default_rng(0)
    shapes = [(64, 64), (64, 64), (70, 66)]  # two shapes: the per-shape stacks are merged on the device
    samples = [
        SimpleNamespace(key=str(i), image=rng.random(shape, dtype=np.float32), target=rng.random(shape) > 0.5)
        for i, shape in enumerate(shapes)
    ]
    weights = {s.key: np.ones(s.image.shape, np.float32) for s in samples}
    model = UNet(depth=spec.model.depth, base_channels=spec.model.base_channels)
    trainer = spec_trainer(spec, model, samples, weights, device="cuda", checkpoint=tmp_path / "c.pt")
    total = trainer.step()  # the first step initialises lazily (cuDNN, the optimiser state)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            total = total + trainer.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert np.isfinite(float(total))


def test_overlap_tile_on_cuda_equals_one_pass_over_the_mirrored_image(monkeypatch):
    from .test_tiling import _whole_image_pass

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 convolutions, both sides
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8, dropout=0.0).eval()
    image = np.random.default_rng(0).random((173, 251)).astype(np.float32)
    spec = InferenceSpec(tile_size=92, batch_size=4, precision="fp32", memory_format="channels_last")
    on_gpu = predict_image(net.cuda(), image, spec, device="cuda")
    whole = _whole_image_pass(net.cpu(), image)
    assert on_gpu.shape == whole.shape == (2, 173, 251)
    np.testing.assert_allclose(on_gpu, whole, atol=1e-4)  # other convolution kernels, float32 rounding


@pytest.mark.parametrize("tta", ["none", "dihedral"])
def test_prediction_on_cuda_matches_the_cpu_to_bf16_rounding(tta):
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8, dropout=0.0).eval()
    image = np.random.default_rng(0).random((150, 130)).astype(np.float32)
    spec = InferenceSpec(tile_size=92, batch_size=8, tta=tta)
    on_cpu = predict_image(net, image, spec, device="cpu")
    on_gpu = predict_image(net.cuda(), image, spec, device="cuda")
    assert on_gpu.shape == on_cpu.shape == (2, 150, 130)
    assert np.abs(on_gpu - on_cpu).max() < 0.05  # bf16 autocast on the GPU; the CPU as `auto` picks there


@pytest.mark.parametrize(("first", "second"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_a_checkpoint_from_one_device_resumes_on_the_other(tmp_path, first, second):
    from types import SimpleNamespace

    from .helpers import spec_trainer, tiny_spec

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
        return spec_trainer(
            spec,
            model,
            samples,
            weights,
            device=device,
            checkpoint=tmp_path / "last.pt",
        )

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
