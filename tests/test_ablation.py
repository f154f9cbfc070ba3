"""`unetbench ablate` and `unetbench run --folds`: switches, folds, seeds and --vary are overrides, runs are
keyed and resumable, inference-only variants train nothing, the table counts trained networks."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from unetbench import ablation
from unetbench.ablation import AblationDir
from unetbench.ablation.plan import parse_vary, plan, spec_digest, variants
from unetbench.ablation.statistics import CORRECTED, PAIRED
from unetbench.ablation.summary import summarise
from unetbench.ablation.switches import no_tiling_tile, switch_overrides
from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.cli import main
from unetbench.errors import UserError
from unetbench.model.sizes import output_size
from unetbench.records.run_folder import RunDir
from unetbench.system import devices
from unetbench.training.trainer import Trainer

from .helpers import CHALLENGES, EM, EM_CPU, tiny_spec, write_spec


def _plan(spec, switches=(), vary=(), *, folds=None, seeds=1, grid="one", out=Path("/nowhere/abl")):
    return plan(spec, variants(spec, list(switches), list(vary), grid), folds=folds, seeds=seeds, out=out)


# --- the plan --------------------------------------------------------------------------------------


def test_switches_are_spec_overrides():
    spec = load_spec(EM)
    assert switch_overrides(spec, "weightmap") == [("weightmap.enabled", False)]
    assert switch_overrides(spec, "elastic") == [("augmentation.elastic", False)]
    assert switch_overrides(spec, "tta") == [("inference.tta", "none")]
    assert switch_overrides(spec, "mirror") == [("inference.border", "zeros")]
    # inference only: the same network on isolated tiles of the training tile (572 -> 388 px outputs)
    assert switch_overrides(spec, "tiling") == [
        ("inference.tiling", "isolated"),
        ("inference.tile_size", 572),
    ]
    tiling = dict(switch_overrides(spec, "tiling-same-padding"))
    assert tiling == {
        "model.padding": "same",
        "inference.tiling": "none",
        "training.tile_size": 384,  # the 388 px output of the 572 px training tile, down to the factor 16
        "inference.tile_size": 384,
    }
    assert output_size(384, depth=5, padding="same") == 384


def test_the_switch_table_says_which_switches_predict_with_the_baselines_weights():
    from unetbench.ablation.switches import SWITCHES
    from unetbench.spec import PREDICTION_SECTIONS

    spec = load_spec(EM)
    for name, switch in SWITCHES.items():
        sections = {key.split(".")[0] for key, _ in switch.changes(spec)}
        assert switch.inference_only == (sections <= set(PREDICTION_SECTIONS)), name


def test_docs_show_every_switch_and_what_it_compares():
    from unetbench.ablation.report_exploratory import switches_table

    docs = (Path(__file__).resolve().parents[1] / "docs" / "ablations.md").read_text(encoding="utf-8")
    assert "\n".join(switches_table()) in docs


def test_no_tiling_means_one_thing_whatever_the_baseline_predicts_with():
    """em-cpu predicts on one 604 px tile per slice; no-tiling still cuts isolated tiles of the 164 px
    output of its 252 px training tile, and the same-padded variant 160 px tiles (164 down to the pooling
    factor 8), not one 512 px tile."""
    spec = load_spec(EM_CPU)
    assert spec.inference.tile_size == 604 and no_tiling_tile(spec) == 160
    assert dict(switch_overrides(spec, "tiling"))["inference.tile_size"] == 252
    assert dict(switch_overrides(spec, "tiling-same-padding"))["inference.tile_size"] == 160
    wider = apply_overrides(spec, {"inference.tile_size": 700})
    assert no_tiling_tile(wider) == 160
    assert dict(switch_overrides(wider, "tiling"))["inference.tile_size"] == 252


def test_switches_that_need_overlap_tile_are_refused_without_it(tmp_path, capsys):
    """--no-mirror, --no-tiling and the same-padded variant compare against overlap-tile: a spec that
    predicts otherwise is one line, and nothing is written."""
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    same = ["--set", "model.padding=same", "--set", "inference.tiling=none", "--set", "training.tile_size=32"]
    same += ["--set", "inference.tile_size=32"]
    for flag in ("--no-mirror", "--no-tiling", "--no-tiling-same-padding"):
        status = main(["ablate", str(spec_file), flag, *same, "--out", str(tmp_path / "a")])
        err = capsys.readouterr().err
        assert status == 1 and err.count("\n") == 1, err
        assert f"{flag}: the spec predicts with inference.tiling = 'none', not overlap-tile" in err
    assert not (tmp_path / "a").exists()


def test_switches_that_cannot_be_combined_in_a_full_grid_are_one_line():
    spec = load_spec(EM)
    with pytest.raises(UserError, match="--no-tiling and --no-mirror cannot be combined"):
        variants(spec, ["tiling", "mirror"], [], "full")
    with pytest.raises(UserError, match="--no-tiling and --no-tiling-same-padding both set"):
        variants(spec, ["tiling", "tiling-same-padding"], [], "full")
    with pytest.raises(UserError, match="unknown switch 'bogus'; valid switches: --no-weightmap"):
        variants(spec, ["bogus"], [], "one")


def test_plan_grids_folds_seeds_and_the_baseline_is_the_spec_file(tmp_path):
    spec = load_spec(EM)
    runs = _plan(spec, ["weightmap", "elastic"], seeds=2, out=tmp_path)
    assert [(r.variant, r.fold, r.seed_index) for r in runs] == [
        (v, None, k) for v in ("baseline", "no-weightmap", "no-elastic") for k in (0, 1)
    ]
    assert runs[0].spec == spec and runs[0].name.startswith("baseline-seed0-")  # exactly the file
    assert runs[1].spec.overrides == ("training.seed=1",)
    assert runs[3].spec.overrides == ("weightmap.enabled=false", "training.seed=1")
    full = _plan(spec, ["weightmap", "elastic", "tiling"], grid="full", out=tmp_path)
    assert len(full) == 8 and full[-1].variant == "no-weightmap+no-elastic+no-tiling"
    assert _plan(spec, ["tiling-same-padding"], out=tmp_path)[-1].variant == "no-tiling-same-padding"
    folded = _plan(spec, ["weightmap"], folds=6, seeds=2, out=tmp_path)
    assert len(folded) == 24 and folded[2].name.startswith("baseline-fold1-seed0-")
    assert folded[2].spec.data.split.method == "kfold" and folded[2].spec.data.split.fold == 1
    assert folded[2].spec.overrides == (
        'data.split.method="kfold"',
        "data.split.folds=6",
        "data.split.fold=1",
    )
    again = _plan(spec, ["weightmap"], folds=6, seeds=2, out=tmp_path)
    assert [r.directory for r in again] == [r.directory for r in folded]  # keyed by the resolved spec
    assert len({r.directory for r in folded}) == 24


def test_the_folder_digest_is_of_what_the_spec_says_not_of_how_overrides_made_it():
    spec = load_spec(EM)
    one = apply_overrides(spec, [("training.seed", 3), ("weightmap.w0", 5.0)])
    other = apply_overrides(apply_overrides(spec, [("weightmap.w0", 5.0)]), [("training.seed", 3)])
    assert one.overrides != other.overrides and spec_digest(one) == spec_digest(other)
    assert spec_digest(one) != spec_digest(spec)


def test_inference_only_variants_predict_with_their_paired_trained_run(tmp_path):
    spec = load_spec(EM)
    runs = _plan(spec, ["weightmap", "tta"], folds=3, seeds=2, out=tmp_path)
    trained = {(r.variant, r.fold, r.seed_index): r for r in runs if r.trains}
    inference_only = [r for r in runs if not r.trains]
    assert {r.variant for r in inference_only} == {"no-tta"} and len(inference_only) == 6
    for run in inference_only:
        assert run.weights_from == trained["baseline", run.fold, run.seed_index].directory
    full = _plan(spec, ["weightmap", "tta"], grid="full", out=tmp_path)
    pairs = {r.variant: r.weights_from for r in full}
    assert pairs["no-weightmap+no-tta"] == next(r.directory for r in full if r.variant == "no-weightmap")
    tiling = _plan(spec, ["tiling", "mirror", "tiling-same-padding"], out=tmp_path)
    borrowed = {r.variant: r.weights_from for r in tiling if not r.trains}
    assert borrowed == {"no-tiling": tiling[0].directory, "no-mirror": tiling[0].directory}
    assert [r.variant for r in tiling if r.trains] == ["baseline", "no-tiling-same-padding"]  # a new network


def test_vary_makes_a_variant_per_value_other_than_the_specs_own(tmp_path):
    spec = load_spec(EM)
    assert parse_vary("data.split.train=[0, 1],[2, 3]") == ("data.split.train", [[0, 1], [2, 3]])
    found = variants(spec, [], ["training.learning_rate=0.0003,0.001,0.003"], "one")
    assert [v.name for v in found] == [
        "baseline",
        "training.learning_rate=0.0003",
        "training.learning_rate=0.003",
    ]
    runs = _plan(spec, [], ["training.learning_rate=0.0003,0.003", "inference.tile_size=508"], out=tmp_path)
    assert [r.variant for r in runs][-1] == "inference.tile_size=508" and not runs[-1].trains
    assert runs[1].spec.training.learning_rate == 0.0003


@pytest.mark.parametrize(
    ("vary", "grid", "expected"),
    [
        ("training.bogus=1,2", "one", "training.bogus"),
        ("training.learning_rate=-1,0.1", "one", "training.learning_rate: must be > 0, got -1"),
        (
            "training.learning_rate=0.001",
            "one",
            "every value is the spec's own (training.learning_rate = 0.001",
        ),
        ("training=1,2", "one", "training: is a table"),
        ("training.learning_rate", "one", "expected KEY=V1,V2,..."),
        ("training.learning_rate=0.1,,0.2", "one", "an empty value"),
        ("training.learning_rate=0.1", "full", "--vary goes with --grid one"),
    ],
)
def test_bad_vary_is_one_line(vary, grid, expected):
    with pytest.raises(UserError, match=None) as caught:
        variants(load_spec(EM), [], [vary], grid)
    assert expected in str(caught.value)


# --- running, resuming, the table -----------------------------------------------------------------


def _tiny(tmp_path, **extra):
    """A 9-slice generated set: 3 folds of 3 (evaluate, validate, train) or the spec's own split."""
    return tiny_spec(
        iterations=4,
        **{
            "report.directory": str(tmp_path / "reports"),
            "data.synthetic.samples": 9,
            "report.overlays": 0,
            **extra,
        },
    )


def _records(directory: Path):
    return sorted(directory.glob("*/record.json"))


def test_the_issues_command_in_miniature_trains_12_networks_writes_18_records_and_skips_them_again(
    tmp_path, capsys
):
    """`ablate --folds 3 --seeds 2 --no-weightmap --no-tta --set inference.tta=flips`: 3 folds x 2 seeds x
    (baseline, no-weightmap) networks; no-tta predicts with the baseline's."""
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    out = tmp_path / "abl"
    command = ["ablate", str(spec_file), "--folds", "3", "--seeds", "2", "--no-weightmap", "--no-tta"]
    command += ["--set", "inference.tta=flips", "--out", str(out), "--no-progress"]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "18 runs: 12 to train a network, 6 to predict with a paired network, 0 finished already" in printed
    assert printed.count("  ran") == 18
    assert len(_records(out)) == 18
    manifest, runs = AblationDir(out).read_runs()
    for entry, record in runs:
        folder = out / entry.directory
        if entry.variant == "no-tta":
            paired = out / f"baseline-fold{entry.fold}-seed{entry.seed_index}-"
            assert record.weights_from.startswith(str(paired)) and not (folder / "checkpoints").exists()
            assert record.training == RunDir(Path(record.weights_from)).read_record().training
            assert record.resolved_spec().inference.tta == "none"
        else:
            assert record.weights_from is None and (folder / "checkpoints" / "last.pt").is_file()
    report = (tmp_path / "reports" / "quickstart" / "abl.md").read_text()
    assert "runs: 18 (12 trained networks)" in report
    assert f"by the {CORRECTED}" in report and "t with 5 degrees of freedom" in report
    assert "6 paired differences x (1/6 + n_test/n_train = 0.167 + 1 = 1.17)" in report  # the whole factor
    assert (
        "## Cross-validated scores (out of fold)" in report and "Every one of the 9 labelled images" in report
    )
    assert "none (weights of the paired run)" in report and "pooled" not in report
    assert '- no-tta: `inference.tta="none"`: one prediction per image' in report
    assert "; predicted with the scored weights of the baseline run of the same fold and seed" in report
    assert report.index("## The answer: rand_error") < report.index("## Exploratory")
    assert "no-tiling" not in report  # not run, not described
    differences = report.split("## What differs from the paper")[1]
    assert "- Folds: each of the 3 networks" in differences and "data.split" not in differences
    for name in ("records", "ablation.json", "crossval.json", "runs.csv", "forest-rand_error.png"):
        assert (tmp_path / "reports" / "quickstart" / "abl" / name).exists()

    assert main(command) == 0  # again: nothing to do
    printed = capsys.readouterr().out
    assert printed.count("done before, skipped") == 18 and "  ran" not in printed


def test_a_report_renders_again_from_its_committed_bundle(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    assert (
        main(
            [
                "ablate",
                str(spec_file),
                "--folds",
                "3",
                "--no-weightmap",
                "--out",
                str(tmp_path / "a"),
                "--no-progress",
            ]
        )
        == 0
    )
    report = tmp_path / "reports" / "quickstart" / "a.md"
    first = report.read_text()
    moved = tmp_path / "elsewhere" / "quickstart"
    moved.parent.mkdir()
    (tmp_path / "reports" / "quickstart").rename(moved)
    shutil.rmtree(tmp_path / "a")  # the runs are gone; the bundle is enough
    capsys.readouterr()
    assert main(["report", str(moved / "a")]) == 0
    again = (moved / "a.md").read_text()
    assert again.replace(str(moved), "X") == first.replace(str(tmp_path / "reports" / "quickstart"), "X")


def test_an_ablation_reuses_the_finished_runs_of_a_cross_validation_beside_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    assert main(["run", str(spec_file), "--folds", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "out of fold, baseline, 9 images" in printed
    (cv,) = (tmp_path / "runs" / "quickstart").glob("cv-*")
    cv_report = (tmp_path / "reports" / "quickstart" / f"{cv.name}.md").read_text()
    header = cv_report.split("## What")[0].splitlines()
    header = [line for line in header if not line.startswith("- command:")]  # pytest's own argv
    assert "# quickstart: cross-validation" in header[0] and "paper" not in "\n".join(header)
    assert main(["ablate", str(spec_file), "--folds", "3", "--no-elastic", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(f"reused, finished in {cv}") == 3 and printed.count("  ran") == 3
    (abl,) = (tmp_path / "runs" / "quickstart").glob("ablation-*")
    manifest = AblationDir(abl).read_manifest()
    assert [e.directory.startswith(f"../{cv.name}/") for e in manifest.runs] == [True] * 3 + [False] * 3


def test_an_interrupted_ablation_resumes_where_it_stopped(tmp_path, monkeypatch, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path, **{"training.iterations": 4}))
    command = [
        "ablate",
        str(spec_file),
        "--no-weightmap",
        "--seeds",
        "2",
        "--out",
        str(tmp_path / "a"),
        "--no-progress",
    ]
    original = Trainer.step
    calls = {"n": 0}

    def interrupted(self, batch=None):
        calls["n"] += 1
        if calls["n"] == 6:  # during the second run: the step completes, then the run stops
            import signal

            signal.raise_signal(signal.SIGINT)
        return original(self, batch)

    monkeypatch.setattr(Trainer, "step", interrupted)
    assert main(command) == 130
    err = capsys.readouterr().err
    assert "stopped after iteration 2" in err and "run the same command again" in err
    monkeypatch.setattr(Trainer, "step", original)
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "done before, skipped" in printed and "  resumed" in printed and printed.count("  ran") == 2


def test_the_summary_pairs_run_level_scores_by_fold_and_seed(tmp_path):
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path, **{"data.split.evaluation": [4, 5]}))
    assert (
        main(
            [
                "ablate",
                str(spec_file),
                "--no-weightmap",
                "--seeds",
                "3",
                "--out",
                str(tmp_path / "a"),
                "--no-progress",
            ]
        )
        == 0
    )
    directory = AblationDir(tmp_path / "a")
    manifest, runs = directory.read_runs()
    summary = summarise(manifest, runs)
    assert summary.test == PAIRED and summary.networks == 3 and summary.df == 2
    by = {(e.variant, e.seed_index): r for e, r in runs}
    for metric in summary.metrics:
        differences = [
            by["no-weightmap", k].trained.aggregate[metric] - by["baseline", k].trained.aggregate[metric]
            for k in range(3)
        ]
        effect = summary.rows[1].effects[metric].run_level
        assert effect.mean == pytest.approx(np.mean(differences), abs=1e-12) and effect.n == 3
        per_image = summary.rows[1].effects[metric].per_image
        means = [
            np.mean([s[metric] for s in by[v, k].trained.per_image.values()])
            for v in ("no-weightmap", "baseline")
            for k in range(3)
        ]
        assert per_image.mean == pytest.approx(np.mean(means[:3]) - np.mean(means[3:]), abs=1e-12)
        baseline = summary.rows[0].scores[metric]
        values = [by["baseline", k].trained.aggregate[metric] for k in range(3)]
        assert (baseline.mean, baseline.sd) == pytest.approx((np.mean(values), np.std(values, ddof=1)))


def test_out_of_fold_scores_are_the_stack_of_every_folds_predictions(tmp_path):
    import h5py

    from unetbench.datasets import load_dataset
    from unetbench.metrics import isbi2012_scores

    spec = _tiny(tmp_path)
    request = ablation.AblationRequest(
        spec, tmp_path / "x.toml", folds=3, out=tmp_path / "cv", progress=False, kind="cross-validation"
    )
    directory = ablation.ablate(request, log=lambda *_: None)
    (entry,) = directory.read_crossval().entries
    labelled = load_dataset(spec.data).labelled
    maps = {}
    for run in (tmp_path / "cv").glob("baseline-fold*"):
        with h5py.File(run / "predictions.h5") as f:
            maps.update({key: f["evaluation"][key][()] for key in f["evaluation"]})
    assert sorted(maps) == sorted(s.key for s in labelled)  # every image once
    expected = isbi2012_scores(
        np.stack([s.target for s in labelled]),
        np.stack([maps[s.key] for s in labelled]),
        spec.evaluation.metrics,
    )
    assert entry.images == 9 and entry.scores == pytest.approx(expected)


def test_runs_per_device_2_runs_in_two_processes_and_gives_the_same_table(tmp_path, capsys):
    import torch

    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    common = ["ablate", str(spec_file), "--no-weightmap", "--seeds", "2", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "p" / "a"), "--runs-per-device", "2"]) == 0
    printed = capsys.readouterr().out
    assert "2 at a time in processes of their own, 1 torch thread(s) each" in printed
    assert len(list((tmp_path / "p" / "a" / "logs").glob("*.log"))) == 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each of the two processes: the same arithmetic, the same scores
    try:
        assert main([*common, "--out", str(tmp_path / "q" / "a")]) == 0
    finally:
        torch.set_num_threads(threads)
    tables = []
    for parent in ("p", "q"):
        manifest, runs = AblationDir(tmp_path / parent / "a").read_runs()
        tables.append([(e.variant, e.seed_index, r.trained.aggregate) for e, r in runs])
    assert tables[0] == tables[1]
    pids = {s.pid for _, r in AblationDir(tmp_path / "p" / "a").read_runs()[1] for s in r.sessions}
    assert len(pids) == 4 and __import__("os").getpid() not in pids


# --- bad input: one line, nothing written ----------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--folds", "1"], "--folds must be at least 2"),
        (["--folds", "10"], "--folds 10: synthetic-em has 9 labelled images; give at most --folds 9"),
        (
            ["--folds", "3", "--set", "data.split.method=kfold", "--set", "data.split.folds=4"],
            "--folds 3 with --set data.split.folds=4",
        ),
        (
            ["--folds", "3", "--set", "data.split.evaluation=[8]"],
            "--folds 3 with --set data.split.evaluation=[8]",
        ),
        (["--runs-per-device", "0"], "--runs-per-device must be at least 1, got 0"),
        (["--vary", "training.bogus=1,2"], "training.bogus"),
        (["--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["--select"], "--select chooses a value of --vary KEY=V1,V2,...; give the values to choose from"),
        (["--select", "--vary", "training.learning_rate=0.002"], "--select chooses the value of one key"),
        (["--pilot", "elsewhere"], "--pilot goes with --plan"),
        (["--set", "evaluation.rope.rand_error=-0.01"], "evaluation.rope.rand_error: must be >= 0"),
        (["--set", "evaluation.rope.seg=0.01"], "evaluation.rope.seg: 'seg' is not one of the metrics"),
    ],
)
def test_bad_ablation_options_are_one_line_and_write_nothing(tmp_path, capsys, extra, expected):
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    status = main(["ablate", str(spec_file), "--no-weightmap", "--out", str(tmp_path / "a"), *extra])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and expected in err and "Traceback" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "reports").exists()


def test_runs_the_device_cannot_hold_are_one_line(tmp_path, capsys, monkeypatch):

    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    monkeypatch.setattr(devices, "device_memory", lambda device: (400 * 2**20, "this machine's memory"))
    status = main(
        [
            "ablate",
            str(spec_file),
            "--no-weightmap",
            "--out",
            str(tmp_path / "a"),
            "--runs-per-device",
            "1000",
        ]
    )
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("error: --runs-per-device: 1000 runs at once need about") and "give at most" in err
    assert not (tmp_path / "a").exists()


def test_folds_and_sets_that_agree_with_them_are_accepted(tmp_path):
    spec = apply_overrides(
        _tiny(tmp_path), {"data.split.method": "kfold", "data.split.folds": 3, "data.split.shuffle_seed": 4}
    )
    given = ['data.split.method="kfold"', "data.split.folds=3", "data.split.shuffle_seed=4"]
    ablation.plan.check_folds(spec, 3, labelled=9, sequences=[], given=given)
    with pytest.raises(UserError, match="at most --folds 2"):
        ablation.plan.check_folds(spec, 3, labelled=9, sequences=["01", "02"], given=given)


def test_run_folds_refuses_what_does_not_go_with_it(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    assert main(["run", str(spec_file), "--folds", "3", "--resume", str(tmp_path)]) == 1
    assert "--resume does not go with --folds" in capsys.readouterr().err
    assert main(["run", str(spec_file), "--runs-per-device", "2"]) == 1
    assert "--runs-per-device goes with --folds" in capsys.readouterr().err


def test_ablate_needs_a_switch_or_a_vary(capsys):
    assert main(["ablate", str(EM)]) == 1
    assert "name at least one switch" in capsys.readouterr().err


def test_a_switch_that_changes_nothing_is_refused(tmp_path, capsys):
    """--no-tta on a spec without test-time averaging would run the baseline twice under another name."""
    quickstart = CHALLENGES / "quickstart.toml"
    without = ["--set", "inference.tta=none"]
    assert main(["ablate", str(quickstart), "--no-tta", *without, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "--no-tta: the spec already has inference.tta = 'none'" in err and "Traceback" not in err
    assert not (tmp_path / "a").exists()


def test_ablate_overrides_apply_to_every_run_and_are_checked(capsys):
    assert main(["ablate", str(EM), "--no-elastic", "--set", "training.bogus=1"]) == 1
    assert "training.bogus" in capsys.readouterr().err
    assert main(["ablate", str(EM), "--no-elastic", "--iterations", "0"]) == 1
    assert "training.iterations" in capsys.readouterr().err


def test_a_run_that_predicts_with_another_runs_network_checks_it_fits(tmp_path):
    from unetbench.run.runner import run

    spec = _tiny(tmp_path, **{"data.split.evaluation": [4, 5]})
    trained = run(spec, out=tmp_path / "t", progress=False, log=lambda *_: None)
    other = apply_overrides(spec, {"weightmap.enabled": False})
    with pytest.raises(UserError, match="trained another network than this run's spec describes"):
        run(other, out=tmp_path / "x", weights_from=trained, progress=False, log=lambda *_: None)
    assert not (tmp_path / "x").exists()
    flips = apply_overrides(spec, {"inference.tta": "flips"})
    done = run(flips, out=tmp_path / "f", weights_from=trained, progress=False, log=lambda *_: None)
    record = RunDir(done).read_record()
    source = RunDir(trained).read_record()
    assert record.weights_from == str(trained)
    assert record.training == source.training  # the same network, its training told once, by that run
    assert record.trained.per_image != source.trained.per_image  # predicted with flips


def test_runs_reused_from_records_alone_take_their_out_of_fold_scores_from_their_folder(tmp_path, capsys):
    """A committed bundle keeps records, not predictions: copied beside an ablation, its runs are reused,
    and their out-of-fold scores are the ones its crossval.json gave them; without that file the variant
    has none, and the log says why (no traceback)."""
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    command = ["ablate", str(spec_file), "--folds", "3", "--no-weightmap", "--no-progress"]
    assert main([*command, "--out", str(tmp_path / "first")]) == 0
    scored = AblationDir(tmp_path / "first").read_crossval()
    kept = tmp_path / "kept"  # what a bundle holds: the manifest, crossval.json and each run's record
    kept.mkdir()
    for name in ("ablation.json", "crossval.json"):
        (kept / name).write_bytes((tmp_path / "first" / name).read_bytes())
    for record in _records(tmp_path / "first"):
        (kept / record.parent.name).mkdir()
        (kept / record.parent.name / "record.json").write_bytes(record.read_bytes())
    shutil.rmtree(tmp_path / "first")
    capsys.readouterr()
    assert main([*command, "--out", str(tmp_path / "second")]) == 0
    assert capsys.readouterr().out.count("reused, finished in") == 6
    assert AblationDir(tmp_path / "second").read_crossval() == scored

    (kept / "crossval.json").unlink()
    assert main([*command, "--out", str(tmp_path / "third")]) == 0
    out = capsys.readouterr().out
    assert "baseline, seed 0: no out-of-fold scores;" in out and "kept no predictions" in out
    assert AblationDir(tmp_path / "third").read_crossval().entries == []


def test_a_run_trained_with_another_precision_is_not_reused(tiny_run, tmp_path):
    """The same resolved spec trains another network where ``auto`` resolves otherwise (bf16 on a CPU with
    bf16 in hardware, float32 elsewhere): a finished run beside the ablation is reused only where it ran
    as this machine would run it (issue 29, item 8: the Xeon's em-cpu baselines are not the EPYC's)."""
    import json

    from unetbench.ablation.plan import _reusable

    spec = RunDir(tiny_run).read_record().resolved_spec()
    digest = spec_digest(spec)
    beside = tmp_path / "cv" / f"baseline-fold0-seed0-{digest}"
    shutil.copytree(tiny_run, beside)
    wanted = tmp_path / "ablation" / f"baseline-seed0-{digest}"
    assert _reusable(wanted, spec) == beside
    record_file = beside / "record.json"
    record = json.loads(record_file.read_text())
    here = record["execution"]
    other = "bf16" if here["training_precision"] == "fp32" else "fp32"
    record["execution"] = {**here, "training_precision": other, "inference_precision": other}
    record_file.write_text(json.dumps(record))
    assert _reusable(wanted, spec) == wanted  # trained with another precision: trained again here
    layout = "contiguous" if here["inference_memory_format"] == "channels_last" else "channels_last"
    record["execution"] = {**here, "inference_memory_format": layout}
    record_file.write_text(json.dumps(record))
    assert _reusable(wanted, spec) == beside  # predicted in another layout: the same network, reused
    record["execution"] = None  # before records kept it: the rule of that time (float32 on the CPU)
    record_file.write_text(json.dumps(record))
    assert (_reusable(wanted, spec) == beside) == (here["training_precision"] == "fp32")


# --- planning, pilots and nested selection ---------------------------------------------------------


def test_plan_prints_the_design_and_writes_nothing_and_a_pilot_gives_each_variants_power(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    pilot = tmp_path / "pilot"
    command = ["ablate", str(spec_file), "--folds", "3", "--no-weightmap", "--no-progress"]
    assert main([*command, "--out", str(pilot)]) == 0
    capsys.readouterr()
    planned = tmp_path / "planned"
    plan = [*command, "--no-tiling", "--no-mirror", "--out", str(planned), "--plan"]
    assert main(plan) == 0
    printed = capsys.readouterr().out
    assert "- trained networks: 6; inference-only runs: 6" in printed
    assert "  - no-mirror: 3 runs, predict with the paired network (inference only)" in printed
    assert "- estimated time of what is left: " in printed and "per trained network" in printed
    assert not planned.exists()
    assert main([*plan, "--pilot", str(pilot)]) == 0
    printed = capsys.readouterr().out
    assert "- power, from the pilot" in printed and "the family's level 0.05/3" in printed
    line = next(x for x in printed.splitlines() if x.startswith("  - no-weightmap: MDE "))
    assert "from its own pilot runs" in line and "the pilot's Δ" in line
    assert "  - no-tiling: MDE " in printed and "the median spread of the pilot's variants" in printed
    assert not planned.exists()


def test_a_pilot_of_another_challenge_is_one_line(tmp_path, capsys):
    from .test_ablation_report import known_answers

    known_answers(tmp_path / "emcpu")  # an ablation of em-cpu
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    command = ["ablate", str(spec_file), "--no-weightmap", "--plan", "--pilot", str(tmp_path / "emcpu")]
    assert main([*command, "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an ablation of em-cpu, not of quickstart" in err
    assert main([*command[:-1], str(tmp_path), "--out", str(tmp_path / "a")]) == 1
    assert "no ablation.json" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_select_needs_folds_and_a_spec_that_validates(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path))
    vary = ["--vary", "training.learning_rate=0.002", "--select", "--out", str(tmp_path / "a")]
    assert main(["ablate", str(spec_file), *vary]) == 1
    assert "--select needs --folds K" in capsys.readouterr().err
    assert main(["ablate", str(spec_file), *vary, "--folds", "3", "--set", "training.validate_every=0"]) == 1
    assert "training.validate_every = 0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()


def test_nested_selection_chooses_on_validation_and_scores_the_choice_out_of_fold(tmp_path, capsys):
    """Each fold's choice is its best validation score; the out-of-fold score of choosing is the stack of
    the chosen runs' predictions (the same function that scores each fixed value's stack)."""
    spec_file = write_spec(tmp_path / "tiny.toml", _tiny(tmp_path, **{"training.validate_every": 2}))
    out = tmp_path / "sel"
    command = ["ablate", str(spec_file), "--folds", "3", "--vary", "training.learning_rate=0.01,0.1"]
    assert main([*command, "--select", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "choosing training.learning_rate on each fold's validation images" in printed
    selection = AblationDir(out).read_selection()
    manifest, runs = AblationDir(out).read_runs()
    by = {(e.variant, e.fold): r for e, r in runs}
    for choice in selection.choices:
        scores = {v: by[v, choice.fold].training.best.value for v in selection.values}
        assert choice.validation == pytest.approx(scores)
        assert choice.chosen == min(scores, key=scores.get)  # Rand error: lower is better
        assert choice.evaluation == by[choice.chosen, choice.fold].trained.aggregate["rand_error"]
    assert selection.values == {
        "baseline": "0.001",
        "training.learning_rate=0.01": "0.01",
        "training.learning_rate=0.1": "0.1",
    }
    (entry,) = selection.out_of_fold
    assert entry.variant == "selected" and entry.images == 9
    if len({c.chosen for c in selection.choices}) == 1:  # one value chosen everywhere: its own stack
        fixed = AblationDir(out).read_crossval().entries
        same = next(e for e in fixed if e.variant == selection.choices[0].chosen)
        assert entry.scores == pytest.approx(same.scores)
    report = (tmp_path / "reports" / "quickstart" / "sel.md").read_text()
    assert "## Nested selection: training.learning_rate chosen on validation images" in report
    assert report.index("## Nested selection") < report.index("## Exploratory")
    assert "Out of fold, choosing `training.learning_rate` on validation images (seed 0, 9 images" in report
    again = tmp_path / "bundle"
    assert main(["report", str(tmp_path / "reports" / "quickstart" / "sel"), "--reports", str(again)]) == 0
    section = report.split("## Nested selection")[1].split("## ")[0]
    assert section in (again / "quickstart" / "sel.md").read_text()  # from the bundle's selection.json
