"""The GPU's code path, run on the CPU: batched tile sampling on the device, bf16 autocast, channels_last
and torch.compile from the spec, and exact resume in every precision."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unetbench.errors import UserError
from unetbench.inference.tiling import overlap_tile_predict, predict_image
from unetbench.model.unet import UNet
from unetbench.records.run_folder import RunDir
from unetbench.spec import AugmentationSpec, InferenceSpec
from unetbench.system import devices
from unetbench.training.checkpoint import load_checkpoint, save_checkpoint
from unetbench.training.sampler import TileBatcher, sample_tile, step_seed

from .helpers import spec_trainer, tiny_spec


def _samples(shapes, seed=0):
    rng = np.random.default_rng(seed)
    samples = [
        SimpleNamespace(
            key=str(i), image=rng.random(shape).astype(np.float32), target=rng.random(shape) > 0.5
        )
        for i, shape in enumerate(shapes)
    ]
    return samples, {s.key: (1 + 9 * rng.random(s.image.shape)).astype(np.float32) for s in samples}


# --- tiles: a batch at once, on the device ---------------------------------------------------------------


@pytest.mark.parametrize("interpolation", ["cubic", "linear"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_a_batch_of_tiles_equals_the_numpy_reference_tile_by_tile(interpolation, dtype):
    """Images of two shapes, every augmentation on: each tile of the batched torch sampler is the numpy
    sampler's tile for the same draws; in float64 to rounding (the same arithmetic), in float32 (as in
    training) to float32 rounding."""
    samples, weight_maps = _samples([(90, 100), (90, 100), (70, 80)])
    augmentation = AugmentationSpec(
        rotation=20.0, grey_values=0.1, shift=5.0, elastic_spacing=50, interpolation=interpolation
    )
    batcher = TileBatcher(
        samples, weight_maps, tile=124, out=84, augmentation=augmentation, device="cpu", dtype=dtype
    )
    draws = batcher.draw(torch.Generator().manual_seed(1), 12)
    images, targets, weights = batcher.cut(draws)
    assert images.shape == (12, 1, 124, 124) and targets.shape == weights.shape == (12, 84, 84)
    assert targets.dtype == torch.int64 and set(draws.image.tolist()) == {0, 1, 2}  # both shapes used
    exact = dtype == torch.float64
    for i in range(12):
        sample = samples[int(draws.image[i])]
        reference = sample_tile(
            sample.image,
            sample.target,
            weight_maps[sample.key],
            tile=124,
            out=84,
            origin=tuple(int(v) for v in draws.origin[i]),
            deformation=draws.deformation(i, augmentation.elastic_spacing),
            interpolation=interpolation,
        )
        # the numpy reference returns float32: its rounding is the bound in float64
        np.testing.assert_allclose(images[i, 0].numpy(), reference.image, atol=1e-6 if exact else 1e-4)
        if exact:
            np.testing.assert_array_equal(targets[i].numpy(), reference.target)
        else:
            assert (targets[i].numpy() != reference.target).mean() < 1e-3  # ties at .5 px only
        np.testing.assert_allclose(
            weights[i].numpy(), reference.weights, rtol=1e-6 if exact else 1e-4, atol=1e-6 if exact else 1e-4
        )


def test_tile_draws_follow_the_spec():
    samples, weight_maps = _samples([(64, 64)] * 3)
    off = AugmentationSpec(elastic=False, flip=False)
    batcher = TileBatcher(samples, weight_maps, tile=60, out=20, augmentation=off, device="cpu")
    draws = batcher.draw(torch.Generator().manual_seed(0), 400)
    assert not draws.coarse.any() and not draws.flip.any() and not draws.angle.any()
    assert torch.equal(draws.contrast, torch.ones(400)) and not draws.brightness.any()
    # the origins cover exactly random_output_origin's window [0, 64 - 20]
    assert draws.origin.min() == 0 and draws.origin.max() == 44
    images, targets, _ = batcher.cut(draws)
    for i in range(3):  # without augmentation a tile is a plain crop
        y, x = (int(v) for v in draws.origin[i])
        sample = samples[int(draws.image[i])]
        np.testing.assert_array_equal(targets[i].numpy(), sample.target[y : y + 20, x : x + 20])
    on = AugmentationSpec(elastic_sigma=10.0, rotation=30.0)
    draws = TileBatcher(samples, weight_maps, tile=60, out=20, augmentation=on, device="cpu").draw(
        torch.Generator().manual_seed(0), 4000
    )
    assert abs(float(draws.coarse.std()) - 10.0) < 0.2
    assert abs(float(draws.angle.abs().max()) - np.radians(30)) < 0.01
    assert 0.45 < float(draws.flip.float().mean()) < 0.55


def test_the_tiles_of_a_step_depend_on_the_seed_and_the_iteration_only(tmp_path):
    spec = tiny_spec()
    samples, weight_maps = _samples([(64, 64)] * 3)

    def trainer():
        model = UNet(depth=spec.model.depth, base_channels=spec.model.base_channels)
        return spec_trainer(
            spec,
            model,
            samples,
            weight_maps,
            device="cpu",
            checkpoint=tmp_path / "c.pt",
        )

    first, second = trainer(), trainer()
    for _ in range(3):
        first.step()
    for a, b in zip(first.batch(5), second.batch(5), strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.batch(5)[0], first.batch(6)[0])
    assert step_seed(0, 5) != step_seed(0, 6) != step_seed(1, 6) != step_seed(0, 6, stream=1)


# --- precision, layout and compilation from the spec -------------------------------------------------------


@pytest.mark.parametrize("native", [False, True])
def test_precision_and_layout_resolve_per_device(monkeypatch, native):
    """auto: bf16 and channels_last on CUDA and on a CPU with bf16 in hardware, float32 contiguous on
    other CPUs for training; prediction in channels_last everywhere."""
    monkeypatch.setattr(devices, "native_bf16", lambda: native)
    cpu = "bf16" if native else "fp32"
    assert devices.precision("auto", "cpu") == cpu and devices.precision("auto", "cuda") == "bf16"
    assert devices.precision("bf16", "cpu") == "bf16" and devices.precision("fp32", "cuda") == "fp32"
    layout = torch.channels_last if native else torch.contiguous_format
    assert devices.memory_format("auto", "cpu") == layout
    assert devices.memory_format("auto", "cuda") == torch.channels_last
    assert devices.memory_format("auto", "cpu", inference=True) == torch.channels_last
    assert devices.memory_format("contiguous", "cpu", inference=True) == torch.contiguous_format
    used = devices.resolve(tiny_spec(), "cpu")
    assert (used.training_precision, used.training_memory_format, used.native_bf16) == (
        cpu,
        "channels_last" if native else "contiguous",
        native,
    )
    assert (used.inference_precision, used.inference_memory_format) == (cpu, "channels_last")
    assert devices.describe("bf16", "channels_last", "cpu", compiled=True) == (
        "bf16 autocast, channels_last, torch.compile"
    )
    with devices.autocast("bf16", "cpu"):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16
    with devices.autocast("fp32", "cpu"):
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.float32


@pytest.mark.parametrize(
    ("precision", "layout"), [("fp32", "contiguous"), ("bf16", "contiguous"), ("bf16", "channels_last")]
)
def test_a_resumed_trainer_is_bit_identical_to_a_straight_one(tmp_path, precision, layout):
    spec = tiny_spec(iterations=6, **{"training.precision": precision, "training.memory_format": layout})
    samples, weight_maps = _samples([(64, 64)] * 3)

    def trainer(name):
        torch.manual_seed(0)
        model = UNet(depth=spec.model.depth, base_channels=spec.model.base_channels)
        return spec_trainer(
            spec,
            model,
            samples,
            weight_maps,
            device="cpu",
            checkpoint=tmp_path / name,
        )

    straight = trainer("straight.pt")
    losses = [float(straight.step()) for _ in range(6)]
    first = trainer("cut.pt")
    for _ in range(3):
        first.step()
    first.save()
    del first
    resumed = trainer("cut.pt")
    resumed.load()
    resumed_losses = [float(resumed.step()) for _ in range(3)]
    assert resumed_losses == losses[3:]
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    if layout == "channels_last":
        conv = next(m for m in resumed.model.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_bf16_training_differs_from_fp32_but_stays_close(tmp_path):
    """The precision key reaches the network: bf16 changes the numbers, by bf16 rounding only."""
    samples, weight_maps = _samples([(64, 64)] * 3)
    losses = {}
    for precision in ("fp32", "bf16"):
        spec = tiny_spec(**{"training.precision": precision})
        torch.manual_seed(0)
        model = UNet(depth=spec.model.depth, base_channels=spec.model.base_channels)
        trainer = spec_trainer(
            spec,
            model,
            samples,
            weight_maps,
            device="cpu",
            checkpoint=tmp_path / "c.pt",
        )
        losses[precision] = float(trainer.step())
    assert losses["fp32"] != losses["bf16"]
    assert abs(losses["fp32"] - losses["bf16"]) < 0.02 * losses["fp32"]


def test_compiled_bf16_channels_last_training_is_finite_decreases_and_resumes_exactly(tmp_path):
    """torch.compile on the CPU (inductor's C++ backend), with bf16 autocast, channels_last and the
    release's drop-out (whose random numbers the compiled graph draws from torch's generator, restored by
    the checkpoint): the same lines a GPU run takes."""
    spec = tiny_spec(
        iterations=40,
        **{
            "training.precision": "bf16",
            "training.memory_format": "channels_last",
            "training.compile": True,
            "training.learning_rate": 0.05,
            "model.dropout": 0.5,
            "augmentation.elastic": False,
        },
    )
    samples, weight_maps = _samples([(64, 64)] * 3)

    def trainer(name):
        torch.manual_seed(0)
        model = UNet(depth=spec.model.depth, base_channels=spec.model.base_channels, dropout=0.5)
        return spec_trainer(
            spec,
            model,
            samples,
            weight_maps,
            device="cpu",
            checkpoint=tmp_path / name,
        )

    straight = trainer("straight.pt")
    assert straight.forward is not straight.model  # the compiled module
    losses = [float(straight.step()) for _ in range(24)]
    assert np.all(np.isfinite(losses)) and np.mean(losses[-4:]) < np.mean(losses[:4])
    assert all(not k.startswith("_orig_mod") for k in straight.state()["model"])  # plain weights saved
    first = trainer("cut.pt")
    for _ in range(12):
        first.step()
    first.save()
    resumed = trainer("cut.pt")
    resumed.load()
    assert [float(resumed.step()) for _ in range(12)] == losses[12:]
    for name, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name


def test_a_checkpoint_of_the_earlier_format_is_applied_but_not_resumed(tmp_path):
    spec = tiny_spec()
    samples, weight_maps = _samples([(64, 64)] * 3)
    model = UNet(depth=spec.model.depth, base_channels=spec.model.base_channels)
    trainer = spec_trainer(
        spec,
        model,
        samples,
        weight_maps,
        device="cpu",
        checkpoint=tmp_path / "last.pt",
    )
    old = {k: v for k, v in trainer.state().items()}
    old["numpy_rng"] = np.random.default_rng(0).bit_generator.state
    path = save_checkpoint(tmp_path / "last.pt", old)
    state = torch.load(path, weights_only=True)
    state["version"] = 1
    torch.save(state, path)
    assert load_checkpoint(path)["model"].keys() == model.state_dict().keys()  # readable for its weights
    with pytest.raises(UserError, match="checkpoint version 1.*can be applied.*start a new run"):
        trainer.load()


# --- inference -------------------------------------------------------------------------------------------


def test_inference_precision_and_layout_come_from_the_spec():
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8, dropout=0.0).eval()
    image = np.random.default_rng(0).random((150, 130)).astype(np.float32)
    plain = predict_image(net, image, InferenceSpec(tile_size=92, batch_size=3, precision="fp32"))
    np.testing.assert_allclose(plain, overlap_tile_predict(net, image, tile_size=92, batch_size=3), atol=1e-6)
    layout = predict_image(
        net, image, InferenceSpec(tile_size=92, batch_size=3, precision="fp32", memory_format="channels_last")
    )
    np.testing.assert_allclose(layout, plain, atol=1e-5)
    bf16 = predict_image(net, image, InferenceSpec(tile_size=92, batch_size=3, precision="bf16"))
    assert bf16.dtype == np.float32
    assert 0 < np.abs(bf16 - plain).max() < 0.05  # bf16 rounding, and only that
    np.testing.assert_allclose(bf16.sum(axis=0), 1.0, atol=1e-5)  # the soft-max is float32


@pytest.mark.parametrize("own", [torch.contiguous_format, torch.channels_last])
def test_prediction_runs_in_its_layout_and_leaves_the_weights_as_they_were(own):
    """``auto`` predicts in channels_last (the weights too, where the time goes), and the network comes
    back in its own layout with its own values: validation in the middle of training changes nothing."""
    torch.manual_seed(0)
    net = UNet(depth=3, base_channels=8, dropout=0.0).eval().to(memory_format=own)
    before = {name: (w.clone(), w.stride()) for name, w in net.state_dict().items()}
    seen = []
    second = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][1]
    hook = second.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    image = np.random.default_rng(0).random((150, 130)).astype(np.float32)
    auto = predict_image(net, image, InferenceSpec(tile_size=92, batch_size=3, precision="fp32"))
    hook.remove()
    assert seen and all(
        x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() for x in seen
    )
    for name, w in net.state_dict().items():
        assert torch.equal(w, before[name][0]) and w.stride() == before[name][1], name
    contiguous = predict_image(
        net, image, InferenceSpec(tile_size=92, batch_size=3, precision="fp32", memory_format="contiguous")
    )
    np.testing.assert_allclose(auto, contiguous, atol=1e-5)


def test_the_report_lists_the_precision_a_run_used():
    from unetbench.report.departures import _precision_difference

    # a record from before `execution` was recorded: `auto` on a CPU depended on the processor
    assert "`auto`, not recorded" in _precision_difference(tiny_spec(), "cpu")
    fp32 = tiny_spec(**{"training.precision": "fp32", "inference.precision": "fp32"})
    assert _precision_difference(fp32, "cpu") == "Precision: float32 throughout, as in the paper."
    on_gpu = _precision_difference(tiny_spec(), "cuda")
    assert "training bf16 autocast, channels_last; prediction bf16 autocast, channels_last" in on_gpu
    compiled = tiny_spec(**{"training.precision": "bf16", "training.compile": True})
    assert "training bf16 autocast, contiguous, torch.compile; prediction float32" in _precision_difference(
        compiled, "cpu"
    )
    # what the record says ran wins over the rule: a CPU with bf16 in hardware chose bf16 for `auto`
    from unetbench.system.execution import ExecutionUsed

    used = ExecutionUsed("bf16", "channels_last", False, "bf16", "channels_last", native_bf16=True)
    assert "training bf16 autocast, channels_last; prediction bf16 autocast, channels_last" in (
        _precision_difference(tiny_spec(), "cpu", used)
    )


def test_a_run_records_what_auto_became(tmp_path, monkeypatch):
    from unetbench.run.runner import run

    monkeypatch.setattr(devices, "native_bf16", lambda: True)
    spec = tiny_spec(iterations=2, **{"report.directory": str(tmp_path / "reports")})
    record = RunDir(run(spec, out=tmp_path / "r", progress=False, log=lambda *_: None)).read_record()
    assert record.execution.training_precision == "bf16" and record.execution.native_bf16
    assert record.execution.inference_memory_format == "channels_last"
