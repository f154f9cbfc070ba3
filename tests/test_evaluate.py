"""`unetbench evaluate`: readers, the EM and CTC paths, and one clear message per bad input."""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unetbench.cli import main
from unetbench.datasets import ctc, synthetic
from unetbench.datasets.images import write_png
from unetbench.evaluation.files import read_array


def _em_pair(tmp_path, slices=2, size=48):
    _, labels = synthetic.em_stacks(4, slices, size, size)
    gt = tmp_path / "gt.tif"
    tifffile.imwrite(gt, labels)
    return gt, labels


def _evaluate(*args):
    return main(["evaluate", *map(str, args)])


def test_readers_agree_on_every_layout(tmp_path):
    stack = np.arange(2 * 5 * 6, dtype=np.uint8).reshape(2, 5, 6)
    tifffile.imwrite(tmp_path / "a.tif", stack)
    np.save(tmp_path / "a.npy", stack)
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["group/labels"] = stack
    (tmp_path / "slices").mkdir()
    for i, s in enumerate(stack):
        write_png(tmp_path / "slices" / f"{i}.png", s)
    for source in ("a.tif", "a.npy", "a.h5:group/labels", "slices"):
        np.testing.assert_array_equal(
            read_array(tmp_path / source if ":" not in source else f"{tmp_path}/{source}"), stack
        )


def test_perfect_em_prediction_scores_zero_errors_and_writes_json(tmp_path, capsys):
    gt, labels = _em_pair(tmp_path)
    pred = tmp_path / "pred.npy"
    np.save(pred, (labels / 255).astype(np.float32))
    out = tmp_path / "scores" / "em.json"
    assert _evaluate("--challenge", "em", "--gt", gt, "--pred", pred, "--json", out) == 0
    printed = capsys.readouterr().out
    assert "Rand error" in printed and "warping error" in printed
    payload = json.loads(out.read_text())
    metrics = payload["metrics"]
    for name in ("pixel_error", "rand_error", "warping_error", "classic_warping_error"):
        assert metrics[name]["value"] == 0.0 and metrics[name]["higher_is_better"] is False
    assert metrics["v_rand"]["value"] == pytest.approx(1.0, abs=1e-12)
    assert [p.name for p in out.parent.iterdir()] == ["em.json"]  # no temporary file left


def test_scale_turns_8_bit_maps_into_probabilities(tmp_path, capsys):
    gt, labels = _em_pair(tmp_path)
    assert (
        _evaluate("--challenge", "em", "--gt", gt, "--pred", gt, "--scale", 255, "--metrics", "pixel_error")
        == 0
    )
    assert "pixel error" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "extra", "fragment"),
    [
        (
            lambda labels: labels,
            (),
            "holds uint8 values, not probabilities in [0, 1]; for 8-bit maps pass --scale 255",
        ),
        (
            lambda labels: labels.astype(np.float32),
            (),
            "outside [0, 1]; it must be P(cell) (for 0-255 maps use --scale 255)",
        ),
        (lambda labels: np.full(labels.shape, np.nan, np.float32), (), "holds NaN"),
        (lambda labels: (labels[:1] / 255).astype(np.float32), (), "differ in shape"),
        (
            lambda labels: (labels / 255).astype(np.float32),
            ("--metrics", "seg"),
            "'seg' does not apply to em data",
        ),
        (
            lambda labels: (labels / 255).astype(np.float32),
            ("--metrics", "iou"),
            "'iou' is now 'foreground_iou'",
        ),
        (
            lambda labels: (labels / 255).astype(np.float32),
            ("--scale", "0"),
            "--scale must be a finite number > 0",
        ),
    ],
)
def test_bad_em_inputs_get_one_clear_line(tmp_path, capsys, make, extra, fragment):
    gt, labels = _em_pair(tmp_path)
    pred = tmp_path / "pred.npy"
    np.save(pred, make(labels))
    assert _evaluate("--challenge", "em", "--gt", gt, "--pred", pred, *extra) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and fragment in err


def test_empty_ground_truth_missing_inputs_and_unknown_challenge(tmp_path, capsys):
    gt = tmp_path / "gt.npy"
    np.save(gt, np.zeros((1, 8, 8), np.uint8))
    pred = tmp_path / "pred.npy"
    np.save(pred, np.zeros((1, 8, 8), np.float32))
    assert _evaluate("--challenge", "em", "--gt", gt, "--pred", pred) == 1
    assert "slice 0 has no cell pixel" in capsys.readouterr().err
    assert _evaluate("--challenge", "em", "--gt", tmp_path / "nope.tif", "--pred", pred) == 1
    assert "nope.tif: no such file or folder" in capsys.readouterr().err
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["raw"] = np.zeros((2, 2))
    assert _evaluate("--challenge", "em", "--gt", f"{tmp_path}/x.h5:labels", "--pred", pred) == 1
    assert "no dataset 'labels'; datasets in the file: raw" in capsys.readouterr().err
    assert _evaluate("--challenge", "em", "--gt", tmp_path / "x.h5", "--pred", pred) == 1
    assert "name the dataset inside the HDF5 file" in capsys.readouterr().err
    assert _evaluate("--challenge", "sem", "--gt", gt, "--pred", pred) == 2
    assert "'sem' is not one of 'em', 'ctc'" in capsys.readouterr().err


def _ctc_set(tmp_path):
    synthetic.write_cells(tmp_path / "gt", seed=5, samples=4, height=160, width=160)
    results = {}
    for seq in ("01", "02"):
        segs = ctc.scan(tmp_path / "gt")
        frames = next(s for s in segs if s.name == seq).segmentations
        results[seq] = {f: tifffile.imread(p) for f, p in frames.items()}
    return results


def test_ctc_results_round_trip_and_score(tmp_path, capsys):
    results = _ctc_set(tmp_path)
    for seq, masks in results.items():
        ctc.write_results(tmp_path / "res", seq, masks)
    found = ctc.read_results(tmp_path / "res")
    assert sorted(found) == ["01", "02"] and sorted(found["01"]) == [0, 2]
    assert (
        _evaluate(
            "--challenge",
            "ctc",
            "--gt",
            tmp_path / "gt",
            "--pred",
            tmp_path / "res",
            "--json",
            tmp_path / "c.json",
        )
        == 0
    )
    metrics = json.loads((tmp_path / "c.json").read_text())["metrics"]
    assert metrics["seg"]["value"] == 1.0 and metrics["foreground_iou"]["value"] == 1.0
    # a worse result: every mask shifted by 2 px
    for seq, masks in results.items():
        ctc.write_results(tmp_path / "shifted", seq, {f: np.roll(m, 2, axis=1) for f, m in masks.items()})
    assert (
        _evaluate(
            "--challenge",
            "ctc",
            "--gt",
            tmp_path / "gt",
            "--pred",
            tmp_path / "shifted",
            "--json",
            tmp_path / "s.json",
        )
        == 0
    )
    shifted = json.loads((tmp_path / "s.json").read_text())["metrics"]
    assert 0.5 < shifted["seg"]["value"] < 1.0


def test_ctc_missing_frames_and_sequences_are_named(tmp_path, capsys):
    results = _ctc_set(tmp_path)
    ctc.write_results(tmp_path / "res", "01", {0: results["01"][0]})
    assert _evaluate("--challenge", "ctc", "--gt", tmp_path / "gt", "--pred", tmp_path / "res") == 1
    assert "01_RES/mask002.tif is missing (the ground truth has man_seg002.tif)" in capsys.readouterr().err
    ctc.write_results(tmp_path / "res", "01", results["01"])
    # a run's export has the one sequence it evaluated: scored against that sequence's ground truth alone
    assert _evaluate("--challenge", "ctc", "--gt", tmp_path / "gt", "--pred", tmp_path / "res") == 0
    assert "scored sequence(s) 01: " in capsys.readouterr().out
    ctc.write_results(tmp_path / "other", "05", results["01"])
    assert _evaluate("--challenge", "ctc", "--gt", tmp_path / "gt", "--pred", tmp_path / "other") == 1
    assert "no results for any sequence with SEG ground truth" in capsys.readouterr().err
    assert (
        _evaluate(
            "--challenge", "ctc", "--gt", tmp_path / "gt" / "01_GT", "--pred", tmp_path / "res" / "01_RES"
        )
        == 0
    )
    assert _evaluate("--challenge", "ctc", "--gt", tmp_path / "gt", "--pred", tmp_path / "gt") == 1
    assert "no CTC results" in capsys.readouterr().err


@pytest.mark.slow
def test_real_labels_scaled_score_zero_and_blurred_labels_do_not(tmp_path, real_isbi, capsys):
    labels = tifffile.imread(real_isbi / "train-labels.tif")
    perfect, blurred = tmp_path / "perfect.tif", tmp_path / "blurred.tif"
    tifffile.imwrite(perfect, (labels / 255).astype(np.float32))
    tifffile.imwrite(
        blurred, np.stack([ndimage.gaussian_filter(s / 255.0, 2) for s in labels]).astype(np.float32)
    )
    gt = real_isbi / "train-labels.tif"
    assert _evaluate("--challenge", "em", "--gt", gt, "--pred", perfect, "--json", tmp_path / "p.json") == 0
    assert _evaluate("--challenge", "em", "--gt", gt, "--pred", blurred, "--json", tmp_path / "b.json") == 0
    p = {k: v["value"] for k, v in json.loads((tmp_path / "p.json").read_text())["metrics"].items()}
    b = {k: v["value"] for k, v in json.loads((tmp_path / "b.json").read_text())["metrics"].items()}
    for name in ("pixel_error", "rand_error", "warping_error", "classic_warping_error"):
        assert p[name] == 0.0 and 0.0 < b[name] < 0.05
    for name in ("v_rand", "v_info"):
        assert p[name] == pytest.approx(1.0, abs=1e-12) and 0.95 < b[name] < 1.0


_NO_TORCH = """
import sys
from unetbench.cli import main
status = main(sys.argv[1:])
print("torch imported" if "torch" in sys.modules else "no torch", file=sys.stderr)
raise SystemExit(status)
"""


def test_evaluate_and_compare_never_import_torch(tmp_path):
    """Scoring a submission needs no network (issue 32): ``unetbench evaluate`` and ``compare`` run the
    command to the end, in a process of their own, and torch was never imported."""
    _, labels = _em_pair(tmp_path, slices=3)
    np.save(tmp_path / "a.npy", (labels / 255).astype(np.float32))
    np.save(tmp_path / "b.npy", np.full(labels.shape, 0.5, np.float32))
    for argv in (
        ["evaluate", "--challenge", "em", "--gt", "gt.tif", "--pred", "a.npy"],
        ["compare", "--challenge", "em", "--gt", "gt.tif", "a=a.npy", "b=b.npy", "--replicates", "100"],
    ):
        result = subprocess.run(
            [sys.executable, "-c", _NO_TORCH, *argv],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip().endswith("no torch"), result.stderr
