"""`unetbench predict` and `unetbench export`: a trained run applied to new images and written as a
challenge submission."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.cli import main
from unetbench.datasets import synthetic
from unetbench.exports.loading import load_trained
from unetbench.inference.postprocess import cell_instances
from unetbench.inference.tiling import predict_image

from .helpers import CHALLENGES, QUICKSTART, quiet


def _finished_run(tmp_path: Path, spec, data_root: Path | None = None) -> Path:
    from unetbench.run.runner import run

    out = tmp_path / "run"
    run(spec, out=out, data_root=data_root, **quiet(tmp_path))
    return out


def test_predict_writes_p_cell_as_the_network_gives_it_and_instances(tiny_run, tmp_path):
    rng = np.random.default_rng(0)
    image = (rng.random((70, 90)) * 255).astype(np.uint8)
    stack = (rng.random((3, 64, 64)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "one.tif", image)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    with h5py.File(tmp_path / "data.h5", "w") as f:
        f["raw/volume"] = stack
    out = tmp_path / "out"
    argv = ["predict", str(tiny_run), str(tmp_path / "one.tif"), str(tmp_path / "stack.tif")]
    argv += [f"{tmp_path / 'data.h5'}:raw/volume", "--out", str(out), "--instances", "--no-progress"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "data-raw-volume-instances.tif",
        "data-raw-volume.tif",
        "one-instances.tif",
        "one.tif",
        "stack-instances.tif",
        "stack.tif",
    ]
    network = load_trained(tiny_run)
    single = tifffile.imread(out / "one.tif")
    assert single.shape == (70, 90) and single.dtype == np.float32
    expected = predict_image(network.model, image / np.float32(255), network.spec.inference)[1]
    np.testing.assert_allclose(single, expected, atol=1e-6)
    maps = tifffile.imread(out / "stack.tif")
    assert maps.shape == (3, 64, 64) and maps.min() >= 0 and maps.max() <= 1
    np.testing.assert_array_equal(maps, tifffile.imread(out / "data-raw-volume.tif"))
    labels = tifffile.imread(out / "stack-instances.tif")
    assert labels.dtype == np.uint16
    np.testing.assert_array_equal(labels[1], cell_instances(maps[1], network.spec.postprocess))
    # a checkpoint inside the run names the same network
    assert load_trained(tiny_run / "checkpoints" / "last.pt").iteration == network.iteration


def test_predict_refuses_bad_input_with_one_line_and_writes_nothing(tiny_run, tmp_path, capsys):
    good = tmp_path / "good.tif"
    tifffile.imwrite(good, np.zeros((64, 64), np.uint8))
    (tmp_path / "notes.txt").write_text("x")
    float_image = tmp_path / "float.tif"
    tifffile.imwrite(float_image, np.full((64, 64), 3.0, np.float32))
    cases = [
        ([str(good), str(tmp_path / "missing.tif")], "missing.tif: no such file or folder"),
        ([str(good), str(tmp_path / "notes.txt")], "notes.txt: unsupported input"),
        ([str(good), str(float_image)], "float.tif: float image values span [3, 3], outside [0, 1]"),
        ([str(good), str(good)], "would both write good.tif"),
    ]
    for inputs, fragment in cases:
        out = tmp_path / "out"
        assert main(["predict", str(tiny_run), *inputs, "--out", str(out), "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err and err.count("\n") == 1
        assert not out.exists()
    assert main(["predict", str(tmp_path), str(good), "--out", str(tmp_path / "o")]) == 1
    assert "spec.toml is missing" in capsys.readouterr().err
    assert main(["predict", str(tiny_run), str(good), "--out", str(tmp_path / "o"), "--tta", "all"]) == 2
    assert "'--tta': 'all' is not one of 'none', 'flips', 'dihedral'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_export_refuses_the_wrong_run_or_file_with_one_line(tiny_run, tmp_path, capsys):
    cases = [
        # a generated data set is no challenge's: neither export sends the user to the other one
        (
            ["isbi2012", str(tiny_run), "--out", str(tmp_path / "s.tif")],
            "a run on synthetic-em, which is no challenge's data, so it has no ISBI 2012 submission; its "
            "predictions are in its predictions.h5",
        ),
        (
            ["ctc", str(tiny_run), "--out", str(tmp_path / "c")],
            "a run on synthetic-em, which is no challenge's data, so it has no Cell Tracking Challenge "
            "result",
        ),
        (["isbi2012", str(tmp_path / "nothing"), "--out", str(tmp_path / "s.tif")], "no record.json"),
        (["isbi2012", str(tiny_run), "--out", str(tmp_path / "s.png")], "give a file name ending in .tif"),
    ]
    for argv, fragment in cases:
        assert main(["export", *argv]) == 1
        err = capsys.readouterr().err
        assert fragment in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_predict_and_export_on_the_real_isbi_test_volume(tmp_path, real_isbi, capsys):
    """A quickstart-size network trained for a few steps on the real slices: `predict` on test-volume.tif
    writes 30 float32 slices in [0, 1], and `export isbi2012` writes the run's own test predictions."""
    data_root = tmp_path / "data"
    assert main(["data", "import", "isbi2012", str(real_isbi), "--data-root", str(data_root)]) == 0
    quick = load_spec(QUICKSTART)
    spec = apply_overrides(
        load_spec(CHALLENGES / "em-cpu.toml"),
        {
            "model.depth": quick.model.depth,
            "model.base_channels": quick.model.base_channels,
            "training.tile_size": quick.training.tile_size,
            "inference.tile_size": 252,
            "training.iterations": 2,
            "training.validate_every": 0,
            "inference.tta": "flips",
            "report.overlays": 0,
        },
    )
    run_dir = _finished_run(tmp_path, spec, data_root)
    out = tmp_path / "predicted"
    volume = real_isbi / "test-volume.tif"
    assert main(["predict", str(run_dir), str(volume), "--out", str(out), "--no-progress"]) == 0
    maps = tifffile.imread(out / "test-volume.tif")
    assert maps.shape == (30, 512, 512) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and maps.std() > 0
    submission = tmp_path / "submission.tif"
    assert main(["export", "isbi2012", str(run_dir), "--out", str(submission)]) == 0
    exported = tifffile.imread(submission)
    assert exported.shape == (30, 512, 512) and exported.dtype == np.float32
    # the run predicted the test slices with the same network, tiling and averaging as predict did
    np.testing.assert_allclose(exported, maps, atol=1e-5)
    with h5py.File(run_dir / "predictions.h5") as f:
        np.testing.assert_array_equal(exported[7], f["test/07"][()])
    capsys.readouterr()
    assert main(["export", "ctc", str(run_dir), "--out", str(tmp_path / "ctc")]) == 1
    assert "a run on isbi2012 has no Cell Tracking Challenge result; use `unetbench export isbi2012`" in (
        capsys.readouterr().err
    )


def test_ctc_export_round_trips_through_py_ctcmetrics(tmp_path, capsys):
    """Every frame of the evaluated sequence as NN_RES/maskNNN.tif; the organisers' SEG of those masks is
    the SEG `unetbench evaluate` gives, and that of the run's own scoring of the same frames."""
    from ctc_metrics.metrics import seg as ctc_seg
    from ctc_metrics.utils.representations import match

    synthetic.write_cells(tmp_path / "set", seed=3, samples=5, height=96, width=128)
    spec = apply_overrides(
        load_spec(CHALLENGES / "phc-u373.toml"),  # sequence split: train on 01, evaluate on 02
        {
            "data.root": str(tmp_path / "set"),
            "model.depth": 3,
            "model.base_channels": 8,
            "training.optimizer": "adam",
            "training.iterations": 150,
            "training.tile_size": 60,
            "training.batch_size": 4,
            "training.device": "cpu",
            "inference.tile_size": 60,
            "postprocess.remove_small": 5,
            "report.overlays": 0,
        },
    )
    run_dir = _finished_run(tmp_path, spec)
    out = tmp_path / "results"
    assert main(["export", "ctc", str(run_dir), "--out", str(out), "--no-progress"]) == 0
    masks = sorted(p.name for p in (out / "02_RES").iterdir())
    assert masks == [f"mask{t:03d}.tif" for t in range(4)]  # every frame, not only the 2 with SEG
    assert not (out / "01_RES").exists()
    labels_ref, ious = [], []
    for t in (0, 2):
        ref_labels, _, _, _, iou = match(
            str(tmp_path / "set" / "02_GT" / "SEG" / f"man_seg{t:03d}.tif"),
            str(out / "02_RES" / f"mask{t:03d}.tif"),
        )
        labels_ref.append(ref_labels)
        ious.append(iou)
    organisers = ctc_seg(labels_ref, ious)
    json_out = tmp_path / "scores.json"
    argv = ["evaluate", "--challenge", "ctc", "--gt", str(tmp_path / "set" / "02_GT"), "--pred", str(out)]
    assert main([*argv, "--metrics", "seg", "--json", str(json_out)]) == 0
    import json

    ours = json.loads(json_out.read_text())["metrics"]["seg"]["value"]
    recorded = json.loads((run_dir / "record.json").read_text())["trained"]["aggregate"]["seg"]
    assert organisers > 0.3  # a trained network, so the comparison has something to compare
    assert ours == pytest.approx(organisers, abs=1e-9) and recorded == pytest.approx(organisers, abs=1e-6)
    # a second export into the same folder is refused rather than mixed with the first
    capsys.readouterr()
    assert main(["export", "ctc", str(run_dir), "--out", str(out), "--no-progress"]) == 1
    assert "02_RES: exists already" in capsys.readouterr().err
