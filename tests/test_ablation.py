"""`unetbench ablate`: switches are overrides, runs are keyed and resumable, the table is right."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from unetbench import ablation
from unetbench.cli import main
from unetbench.model.sizes import output_size
from unetbench.spec import dump_spec, load_spec
from unetbench.training.trainer import Trainer

from .test_runner import tiny_spec

EM = Path(__file__).resolve().parents[1] / "challenges" / "em.toml"


def test_switches_are_spec_overrides():
    spec = load_spec(EM)
    assert ablation.switch_overrides(spec, "weightmap") == [("weightmap.enabled", False)]
    assert ablation.switch_overrides(spec, "elastic") == [("augmentation.elastic", False)]
    tiling = dict(ablation.switch_overrides(spec, "tiling"))
    assert tiling == {
        "model.padding": "same",
        "inference.tiling": "none",
        "training.tile_size": 384,  # the 388 px output rounded down to the pooling factor 16
        "inference.tile_size": 384,
    }
    assert output_size(384, depth=5, padding="same") == 384


def test_plan_one_and_full_grids_and_the_baseline_is_the_spec_file(tmp_path):
    spec = load_spec(EM)
    runs = ablation.plan(spec, ["weightmap", "elastic", "tiling"], seeds=2, grid="one", out=tmp_path)
    assert [(r.variant, r.seed_index) for r in runs] == [
        (v, k) for v in ("baseline", "no-weightmap", "no-elastic", "no-tiling") for k in (0, 1)
    ]
    assert runs[0].spec == spec  # seed 0 of the baseline: exactly the file
    assert runs[1].spec.overrides == ("training.seed=1",)
    assert runs[2].spec.overrides == ("weightmap.enabled=false",)
    assert runs[5].spec.overrides == ("augmentation.elastic=false", "training.seed=1")
    assert len({r.directory for r in runs}) == 8
    full = ablation.plan(spec, ["weightmap", "elastic", "tiling"], seeds=1, grid="full", out=tmp_path)
    assert len(full) == 8 and full[-1].variant == "no-weightmap+no-elastic+no-tiling"
    again = ablation.plan(spec, ["weightmap", "elastic", "tiling"], seeds=2, grid="one", out=tmp_path)
    assert [r.directory for r in again] == [r.directory for r in runs]  # keyed by the resolved spec


def test_paired_interval_hand_case():
    mean, low, high = ablation._paired_interval(np.array([1.0, 2.0, 3.0]))
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert math.isnan(ablation._paired_interval(np.array([1.0]))[1])


def test_ablate_runs_resumes_after_an_interruption_and_writes_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    spec_file = tmp_path / "tiny.toml"
    spec_file.write_text(dump_spec(tiny_spec(iterations=4)))
    command = ["ablate", str(spec_file), "--no-weightmap", "--no-tiling", "--out", "abl", "--no-progress"]
    original = Trainer.step
    calls = {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 7:  # during the second run, after its checkpoint at iteration 3
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(Trainer, "step", interrupted)
    assert main(command) != 0  # Ctrl-C: the command stops with a non-zero status
    monkeypatch.setattr(Trainer, "step", original)
    capsys.readouterr()
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "done before, skipped" in out and "resumed" in out and out.count("  ran") == 1
    manifest = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert [r["variant"] for r in manifest["runs"]] == ["baseline", "no-weightmap", "no-tiling"]
    for entry in manifest["runs"]:
        record = json.loads((tmp_path / "abl" / entry["directory"] / "record.json").read_text())
        expected = {"baseline": [], "no-weightmap": ["weightmap.enabled=false"]}.get(entry["variant"])
        if expected is not None:
            assert record["overrides"] == expected
        else:
            assert 'inference.tiling="none"' in record["overrides"]
    report = (tmp_path / "reports" / "quickstart" / "abl.md").read_text()
    assert "| baseline |" in report and "| no-tiling |" in report and "95% CI" in report
    rows = (tmp_path / "reports" / "quickstart" / "abl.csv").read_text().splitlines()
    assert rows[0].startswith("variant,seeds,warping_error_mean") and len(rows) == 4
    assert (tmp_path / "reports" / "quickstart" / "abl" / "rand_error.png").is_file()
    assert sorted(p.name for p in (tmp_path / "reports" / "quickstart").iterdir()) == [
        "abl",
        "abl.csv",
        "abl.md",
    ]
    assert len(list((tmp_path / "abl" / "reports" / "quickstart").glob("*.md"))) == 3  # each run's own report


def test_ablate_needs_a_switch(capsys):
    assert main(["ablate", str(EM)]) == 1
    assert "name at least one switch" in capsys.readouterr().err
    assert main(["ablate", str(EM), "--no-elastic", "--grid", "half"]) == 1
    assert "--grid: unknown value 'half'" in capsys.readouterr().err
    assert main(["ablate", str(EM), "--no-elastic", "--seeds", "0"]) == 1
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err
