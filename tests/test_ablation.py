"""`unetbench ablate`: switches are overrides, runs are keyed and resumable, the table is right."""

import math
from pathlib import Path

import numpy as np
import pytest

from unetbench import ablation
from unetbench.cli import main
from unetbench.loader import load_spec
from unetbench.model.sizes import output_size
from unetbench.report.ablation import _interval, collect, per_image_table, summarise
from unetbench.training.trainer import Trainer

from .helpers import tiny_spec, write_spec

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
    assert ablation.switch_overrides(spec, "tta") == [("inference.tta", "none")]


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
    mean, low, high = _interval(np.array([1.0, 2.0, 3.0]))
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) * sd 1 / sqrt(3)
    assert (mean, low, high) == pytest.approx((2.0, 2.0 - half, 2.0 + half))
    assert math.isnan(_interval(np.array([1.0]))[1])


def test_ablate_runs_resumes_after_an_interruption_and_writes_the_table(tmp_path, monkeypatch, capsys):
    spec = tiny_spec(iterations=4, **{"report.directory": str(tmp_path / "reports")})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    out = tmp_path / "abl"
    command = [
        "ablate",
        str(spec_file),
        "--no-weightmap",
        "--no-tiling",
        "--seeds",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    original = Trainer.step
    calls = {"n": 0}

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 7:  # during the second run: the step completes, then the run stops
            import signal

            signal.raise_signal(signal.SIGINT)
        return original(self)

    monkeypatch.setattr(Trainer, "step", interrupted)
    assert main(command) == 130
    err = capsys.readouterr().err
    assert "stopped after iteration 3" in err and "run the same command again" in err
    monkeypatch.setattr(Trainer, "step", original)
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "done before, skipped" in printed and "  resumed" in printed and printed.count("  ran") == 4
    manifest, runs = collect(out)
    assert [(e.variant, e.seed_index) for e in manifest.runs] == [
        (v, k) for v in ("baseline", "no-weightmap", "no-tiling") for k in (0, 1)
    ]
    for variant, seed, record in runs:
        expected = {"baseline": [], "no-weightmap": ["weightmap.enabled=false"]}.get(variant)
        seeded = [o for o in record.overrides if o.startswith("training.seed=")]
        assert seeded == ([] if seed == 0 else [f"training.seed={spec.training.seed + 1}"])
        if expected is not None:
            assert [o for o in record.overrides if o not in spec.overrides and o not in seeded] == expected
        else:
            assert 'inference.tiling="none"' in record.overrides
    report = (tmp_path / "reports" / "quickstart" / "abl.md").read_text()
    assert "| baseline |" in report and "| no-tiling |" in report and "95% CI" in report
    assert "Each cell is on the per-image basis" in report
    assert (
        "- scored on: the evaluation split of `synthetic-em`, 2 images per run (evaluation/04, evaluation/05)"
        in report
    )
    rows = (tmp_path / "reports" / "quickstart" / "abl.csv").read_text().splitlines()
    assert rows[0].startswith("variant,seeds,training_seconds,warping_error_mean") and len(rows) == 4
    assert (tmp_path / "reports" / "quickstart" / "abl" / "rand_error.png").is_file()
    assert sorted(p.name for p in (tmp_path / "reports" / "quickstart").iterdir()) == [
        "abl",
        "abl.csv",
        "abl.md",
    ]
    assert len(list((out / "reports" / "quickstart").glob("*.md"))) == 6  # each run's own report


def test_the_table_means_and_their_difference_are_on_one_basis(tmp_path):
    """Δ equals the difference of the means shown, because both are per-image (seed, image) means."""
    spec = tiny_spec(iterations=2)
    out = tmp_path / "abl"
    runs = ablation.plan(spec, ["weightmap"], seeds=2, grid="one", out=out)
    out.mkdir()
    ablation.write_manifest(
        out, spec, runs, spec_file=tmp_path / "x.toml", switches=["weightmap"], seeds=2, grid="one"
    )
    ablation.run_all(runs, data_root=None, progress=False, log=lambda *_: None)
    _, collected = collect(out)
    summary = summarise(collected)
    # overrides are listed whole, even those holding ", " (a list value), and without the seed
    assert (
        summary.overrides["baseline"] == list(spec.overrides)
        and "data.split.train=[0, 1, 2]" in spec.overrides
    )
    assert summary.overrides["no-weightmap"] == [*spec.overrides, "weightmap.enabled=false"]
    long = per_image_table(collected)
    for metric in summary.metrics:
        rows = summary.rows
        base = rows.loc["baseline", f"{metric}_mean"]
        variant = rows.loc["no-weightmap", f"{metric}_mean"]
        assert rows.loc["no-weightmap", f"{metric}_diff"] == pytest.approx(variant - base, abs=1e-12)
        expected = long[(long.variant == "baseline") & (long.metric == metric)]["value"].mean()
        assert base == pytest.approx(expected, abs=1e-12)  # two seeds x two images, equal weights
        seed_means = (
            long[(long.variant == "baseline") & (long.metric == metric)].groupby("seed")["value"].mean()
        )
        assert rows.loc["baseline", f"{metric}_std"] == pytest.approx(seed_means.std(ddof=1), abs=1e-12)
        assert rows.loc["no-weightmap", f"{metric}_pairs"] == 4


def test_ablate_needs_a_switch(capsys):
    assert main(["ablate", str(EM)]) == 1
    assert "name at least one switch" in capsys.readouterr().err
    assert main(["ablate", str(EM), "--no-elastic", "--grid", "half"]) == 1
    assert "--grid: unknown value 'half'" in capsys.readouterr().err
    assert main(["ablate", str(EM), "--no-elastic", "--seeds", "0"]) == 1
    assert "--seeds must be >= 1, got 0" in capsys.readouterr().err


def test_a_switch_that_changes_nothing_is_refused(tmp_path, capsys):
    """--no-tta on a spec without test-time averaging would run the baseline twice under another name."""
    quickstart = EM.parent / "quickstart.toml"
    assert load_spec(quickstart).inference.tta == "none"
    assert main(["ablate", str(quickstart), "--no-tta", "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "--no-tta: the spec already has inference.tta = 'none'" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()
    runs = ablation.plan(load_spec(EM), ["tta"], seeds=1, grid="one", out=tmp_path)
    assert [r.spec.inference.tta for r in runs] == ["dihedral", "none"]


def test_ablate_overrides_apply_to_every_run_and_are_checked(capsys):
    assert main(["ablate", str(EM), "--no-elastic", "--set", "training.bogus=1"]) == 1
    assert "training.bogus" in capsys.readouterr().err
    assert main(["ablate", str(EM), "--no-elastic", "--iterations", "0"]) == 1
    assert "training.iterations" in capsys.readouterr().err
