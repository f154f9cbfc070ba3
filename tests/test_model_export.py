"""Model files of a finished run: TorchScript and ONNX equal PyTorch to 1e-4 on two input sizes, for a
valid- and a same-padding network; the bioimage.io package passes bioimageio.core's test; `predict` takes
every exported file with the run's predictions; bad input is one line and writes nothing."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from unetbench.cli import main
from unetbench.errors import UserError
from unetbench.model.sizes import unet_kwargs
from unetbench.model.unet import ProbabilityUNet
from unetbench.run.runner import run

from .helpers import REPO, quiet, tiny_spec

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_run):
    """A finished valid-padding run (the suite's tiny run) and a finished same-padding one (no tiling)."""
    folder = tmp_path_factory.mktemp("exports")
    same = {"model.padding": "same", "inference.tiling": "none", "training.tile_size": 64}
    same["inference.tile_size"] = 64
    return {
        "valid": tiny_run,
        "same": run(tiny_spec(iterations=2, **same), out=folder / "same", **quiet(folder)),
    }


def _network(run_dir: Path) -> ProbabilityUNet:
    from unetbench.exports.loading import load_trained

    trained = load_trained(run_dir, "cpu")
    network = ProbabilityUNet(**unet_kwargs(trained.spec.model))
    network.load_state_dict(trained.model.state_dict())
    return network.eval()


def _two_sizes(run_dir: Path) -> list[torch.Tensor]:
    from unetbench.exports.loading import load_trained
    from unetbench.exports.model_files import valid_sizes

    sizes = valid_sizes(load_trained(run_dir, "cpu").spec.model)
    generator = torch.Generator().manual_seed(5)
    return [
        torch.rand(2, 1, sizes.minimum + 2 * sizes.step, sizes.minimum + 5 * sizes.step, generator=generator),
        torch.rand(1, 1, sizes.minimum + 7 * sizes.step, sizes.minimum + 3 * sizes.step, generator=generator),
    ]


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_torchscript_and_onnx_give_pytorchs_output_on_two_sizes(runs, tmp_path, padding):
    import onnxruntime

    run_dir = runs[padding]
    assert main(["export", "torchscript", str(run_dir), "--out", str(tmp_path / "m.pt")]) == 0
    assert main(["export", "onnx", str(run_dir), "--out", str(tmp_path / "m.onnx")]) == 0
    network = _network(run_dir)
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for x in _two_sizes(run_dir):
        with torch.no_grad():
            expected = network(x).numpy()
            assert np.abs(scripted(x).numpy() - expected).max() < 1e-4
        found = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        assert found.shape == expected.shape and np.abs(found - expected).max() < 1e-4
        assert np.allclose(expected.sum(axis=1), 1, atol=1e-5)  # probabilities after the soft-max


def test_a_bioimageio_package_passes_bioimageio_cores_test_and_predict_takes_every_export(runs, tmp_path):
    pytest.importorskip("bioimageio.core")
    import zipfile

    from bioimageio.core import test_model

    from unetbench.exports.loading import load_trained, probability_maps

    run_dir = runs["valid"]
    package = tmp_path / "model.zip"
    assert main(["export", "bioimageio", str(run_dir), "--out", str(package)]) == 0
    assert test_model(str(package)).status == "passed"  # the export ran it too; this is the package on disk
    names = set(zipfile.ZipFile(package).namelist())
    assert {"rdf.yaml", "weights.pt", "model.torchscript.pt", "model.onnx", "cover.png", "README.md"} <= names
    rdf = zipfile.ZipFile(package).read("rdf.yaml").decode()
    # citations follow the data set: a synthetic-em network cites the paper, and no challenge
    assert "Ronneberger" in rdf and "Cell Tracking" not in rdf and "ISBI 2012" not in rdf
    assert main(["export", "onnx", str(run_dir), "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["export", "torchscript", str(run_dir), "--out", str(tmp_path / "m.pt")]) == 0

    image = np.random.default_rng(0).random((1, 64, 64)).astype(np.float32)
    reference = load_trained(run_dir, "cpu")
    # exported graphs compute in float32: the run's network in float32 is what they must equal
    spec = reference.spec
    float32 = dataclasses.replace(spec.inference, precision="fp32", memory_format="contiguous")
    reference = dataclasses.replace(reference, spec=dataclasses.replace(spec, inference=float32))
    expected = probability_maps(reference, image)
    for exported in ("model.zip", "m.onnx", "m.pt"):
        found = probability_maps(load_trained(tmp_path / exported), image)
        assert np.abs(found - expected).max() < 1e-5, exported


@pytest.mark.slow
def test_an_em_cpu_network_on_the_real_slices_exports_a_package_that_passes(tmp_path, real_isbi):
    pytest.importorskip("bioimageio.core")
    import zipfile

    from unetbench.challenges.loading import apply_overrides, load_spec

    data_root = tmp_path / "data"
    assert main(["data", "import", "isbi2012", str(real_isbi), "--data-root", str(data_root)]) == 0
    spec = apply_overrides(
        load_spec(REPO / "challenges" / "em-cpu.toml"),
        {
            "training.iterations": 2,
            "training.validate_every": 0,
            "inference.tta": "none",
            "report.overlays": 0,
        },
    )
    run_dir = run(spec, out=tmp_path / "em", data_root=data_root, **quiet(tmp_path))
    assert main(["export", "bioimageio", str(run_dir), "--out", str(tmp_path / "em.zip")]) == 0
    rdf = zipfile.ZipFile(tmp_path / "em.zip").read("rdf.yaml").decode()
    assert "ISBI 2012" in rdf and "10.3389/fnana.2015.00142" in rdf and "Cell Tracking" not in rdf


def test_bad_exports_are_one_line_and_write_nothing(runs, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    (unfinished / "checkpoints").mkdir(parents=True)
    (unfinished / "spec.toml").write_text((runs["valid"] / "spec.toml").read_text())
    cases = [
        (["export", "onnx", str(unfinished), "--out", str(tmp_path / "a.onnx")], "no record.json"),
        (["export", "onnx", str(runs["valid"]), "--out", str(tmp_path / "a.txt")], "ends in .onnx"),
        (
            ["export", "torchscript", str(runs["valid"]), "--out", str(runs["valid"] / "spec.toml")],
            "ends in .pt",
        ),
    ]
    existing = tmp_path / "there.pt"
    existing.write_text("mine")
    cases.append((["export", "torchscript", str(runs["valid"]), "--out", str(existing)], "exists already"))
    for args, says in cases:
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err
    assert existing.read_text() == "mine" and not (tmp_path / "a.onnx").exists()


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("model.zip", None, "a zip without model.torchscript.pt or model.onnx"),
        ("model.onnx", b"not onnx", "not a network exported by unetbench export"),
    ],
)
def test_predict_refuses_files_that_are_not_exported_networks(tmp_path, name, content, says):
    import zipfile

    from unetbench.exports.loading import load_trained

    path = tmp_path / name
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("rdf.yaml", "type: model\n")
    else:
        path.write_bytes(content)
    with pytest.raises(UserError, match=says):
        load_trained(path)


def test_an_exported_file_whose_spec_is_damaged_is_one_line(runs, tmp_path):
    import onnx

    from unetbench.exports.loading import SPEC_ENTRY, load_trained

    assert main(["export", "onnx", str(runs["same"]), "--out", str(tmp_path / "m.onnx")]) == 0
    model = onnx.load(str(tmp_path / "m.onnx"))
    (entry,) = [p for p in model.metadata_props if p.key == SPEC_ENTRY]
    entry.value = "name = [unclosed"
    onnx.save(model, str(tmp_path / "damaged.onnx"))
    with pytest.raises(UserError, match=r"damaged.onnx \(the spec it carries\).*not valid TOML"):
        load_trained(tmp_path / "damaged.onnx")
