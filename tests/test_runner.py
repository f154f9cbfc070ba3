"""`unetbench run` end to end on tiny settings: resume is exact, interruptions and writes are safe,
the report renders from the record alone, and problems show before training."""

import json
import os
from pathlib import Path

import pytest
import torch

from unetbench.cli import main
from unetbench.errors import UserError
from unetbench.results import atomic_write_bytes
from unetbench.runner import run
from unetbench.spec import apply_overrides, load_spec
from unetbench.training.trainer import Trainer

QUICKSTART = Path(__file__).resolve().parents[1] / "challenges" / "quickstart.toml"


def tiny_spec(iterations=6, **extra):
    spec = load_spec(QUICKSTART)
    return apply_overrides(
        spec,
        {
            "data.synthetic.samples": 6,
            "data.synthetic.height": 64,
            "data.synthetic.width": 64,
            "data.split.train": [0, 1, 2],
            "data.split.validation": [3],
            "data.split.evaluation": [4, 5],
            "model.base_channels": 2,
            "training.tile_size": 60,
            "training.batch_size": 2,
            "training.iterations": iterations,
            "training.checkpoint_every": 3,
            "training.validate_every": 2,
            "inference.tile_size": 60,
            "report.overlays": 1,
            **extra,
        },
    )


def _weights(run_dir: Path, name="last.pt"):
    return torch.load(run_dir / "checkpoints" / name, weights_only=False)["model"]


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_run_writes_record_predictions_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = run(tiny_spec(), out=tmp_path / "run", progress=False, log=lambda *_: None)
    record = json.loads((run_dir / "record.json").read_text())
    assert record["training"]["iterations"] == 6 and len(record["training"]["validation"]) == 3
    trained, untrained = record["metrics"]["trained"], record["metrics"]["untrained"]
    assert set(trained["aggregate"]) == {"warping_error", "rand_error", "pixel_error", "v_rand", "v_info"}
    assert set(trained["per_image"]) == {"train/04", "train/05"} and untrained["aggregate"]
    assert record["spec"]["training"]["iterations"] == 6 and "training.iterations=6" in record["overrides"]
    assert record["git"]["commit"] and record["versions"]["torch"] and record["hardware"]["cpu_cores"]
    report = tmp_path / "reports" / "quickstart" / f"{run_dir.name}.md"
    text = report.read_text()
    assert "| Rand error (foreground-restricted) |" in text and "untrained network" in text
    assert (report.parent / run_dir.name / "training-curve.png").is_file()
    import h5py

    with h5py.File(run_dir / "predictions.h5") as f:
        assert sorted(f["evaluation"]) == ["train/04", "train/05"] or sorted(f["evaluation/train"]) == [
            "04",
            "05",
        ]


def test_resume_gives_the_same_weights_as_a_straight_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quiet = dict(progress=False, log=lambda *_: None)
    straight = run(tiny_spec(iterations=8), out=tmp_path / "straight", **quiet)
    half = run(tiny_spec(iterations=4), out=tmp_path / "halves", **quiet)
    resumed = run(tiny_spec(iterations=8), resume=half, **quiet)
    assert resumed == half
    assert _same(_weights(straight), _weights(resumed))
    a = json.loads((straight / "record.json").read_text())["metrics"]["trained"]["aggregate"]
    b = json.loads((resumed / "record.json").read_text())["metrics"]["trained"]["aggregate"]
    assert a == b


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quiet = dict(progress=False, log=lambda *_: None)
    straight = run(tiny_spec(iterations=8), out=tmp_path / "straight", **quiet)
    original = Trainer.step

    def interrupted(self):
        if self.iteration == 5:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_spec(iterations=8), out=tmp_path / "cut", **quiet)
    assert torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)["iteration"] == 5
    monkeypatch.setattr(Trainer, "step", original)
    run(tiny_spec(iterations=8), resume=tmp_path / "cut", **quiet)
    assert _same(_weights(straight), _weights(tmp_path / "cut"))


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_write_bytes(path, b"good")

    def broken_replace(src, dst):
        raise OSError("killed during the write")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_bytes(path, b"half")
    assert path.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_report_renders_again_from_the_record_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_dir = run(tiny_spec(iterations=2), out=tmp_path / "run", progress=False, log=lambda *_: None)
    report = tmp_path / "reports" / "quickstart" / "run.md"
    first = report.read_text()
    report.unlink()
    (run_dir / "predictions.h5").unlink()  # not needed: the record is enough
    (run_dir / "checkpoints" / "last.pt").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert report.read_text() == first
    assert main(["report", str(tmp_path)]) == 1
    assert "no record.json" in capsys.readouterr().err


def test_existing_run_dirs_and_bad_resumes_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quiet = dict(progress=False, log=lambda *_: None)
    run_dir = run(tiny_spec(iterations=2), out=tmp_path / "run", **quiet)
    with pytest.raises(UserError, match="already exists and is not empty"):
        run(tiny_spec(iterations=2), out=run_dir, **quiet)
    with pytest.raises(UserError, match="the spec differs from the one this run started with"):
        run(tiny_spec(iterations=4, **{"training.learning_rate": 0.5}), resume=run_dir, **quiet)
    with pytest.raises(UserError, match="nothing to resume"):
        run(tiny_spec(), resume=tmp_path, **quiet)


def test_problems_show_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    em = Path(__file__).resolve().parents[1] / "challenges" / "em.toml"
    assert main(["run", str(em), "--data-root", str(tmp_path / "empty"), "--no-progress"]) == 1
    assert "no data at" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    assert main(["run", str(QUICKSTART), "--set", "training.tile_size=125", "--no-progress"]) == 1
    assert "training.tile_size" in capsys.readouterr().err
    assert main(["run", str(QUICKSTART), "--device", "gpu", "--no-progress"]) == 1
    assert "valid choices: 'auto', 'cpu', 'cuda'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_quickstart_beats_the_untrained_network(tmp_path, monkeypatch):
    """README's first command: the shipped quickstart spec as it is (about a minute on 2 cores)."""
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(QUICKSTART), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    record = json.loads((tmp_path / "run" / "record.json").read_text())
    trained, untrained = (
        record["metrics"]["trained"]["aggregate"],
        record["metrics"]["untrained"]["aggregate"],
    )
    assert trained["rand_error"] < untrained["rand_error"] / 5
    assert trained["pixel_error"] < untrained["pixel_error"] / 2
    assert trained["v_rand"] > untrained["v_rand"] + 0.5 and trained["v_info"] > untrained["v_info"] + 0.2
    assert (tmp_path / "reports" / "quickstart" / "run.md").is_file()
