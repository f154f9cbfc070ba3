"""What a newcomer's walk through the docs found (issue 30), each with a test that fails without its fix:
a finished run trains on only when told, messages that send the user nowhere or to the wrong place, and
counts that call reused runs trained."""

import pandas as pd

from unetbench.ablation import AblationDir
from unetbench.cli import main

from .helpers import tiny_spec, write_spec


def _finished(tmp_path, capsys, iterations=2):
    spec_file = write_spec(tmp_path / "tiny.toml", tiny_spec(iterations=iterations, **{"report.overlays": 0}))
    run_dir = tmp_path / "run"
    reports = ["--reports", str(tmp_path / "reports"), "--no-progress"]
    assert main(["run", str(spec_file), "--out", str(run_dir), *reports]) == 0
    capsys.readouterr()
    return spec_file, run_dir, reports


def test_a_finished_run_trains_on_only_when_told_how_far(tmp_path, capsys):
    spec_file, run_dir, reports = _finished(tmp_path, capsys)
    longer = write_spec(tmp_path / "longer.toml", tiny_spec(iterations=4, **{"report.overlays": 0}))
    record = (run_dir / "record.json").read_text()
    assert main(["run", str(longer), "--resume", str(run_dir), *reports]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the run finished at 2 iterations, and this spec says" in err
    assert "give --iterations 4 to train it on" in err
    assert (run_dir / "record.json").read_text() == record  # nothing trained, nothing written
    # its own spec: nothing to train, and it says so before predicting again
    assert main(["run", str(run_dir / "spec.toml"), "--resume", str(run_dir), *reports]) == 0
    assert "all 2 iterations are trained; predicting and scoring again" in capsys.readouterr().out
    assert main(["run", str(longer), "--resume", str(run_dir), "--iterations", "4", *reports]) == 0
    assert "resuming at iteration 2, training on to 4" in capsys.readouterr().out


def test_predict_refuses_a_bad_tta_before_it_says_anything(tmp_path, capsys):
    _, run_dir, _ = _finished(tmp_path, capsys)
    image = tmp_path / "x.npy"
    __import__("numpy").save(image, __import__("numpy").zeros((64, 64), "float32"))
    assert main(["predict", str(run_dir), str(image), "--out", str(tmp_path / "o"), "--tta", "rot"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(
        "error: Invalid value for '--tta': 'rot' is not one of"
    )


def test_a_run_without_test_images_does_not_say_it_predicts_them(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", tiny_spec(iterations=2, **{"report.overlays": 0}))
    assert (
        main(["run", str(spec_file), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "rep")]) == 0
    )
    out = capsys.readouterr().out
    assert "predicting the evaluation images" in out and "predicting the test images" not in out


def test_synthetic_dic_cells_are_said_to_read_as_dic_hela(tmp_path, capsys):
    command = ["data", "synth", "synthetic-cells", "--samples", "2", "--height", "64", "--width", "64"]
    assert main([*command, "--look", "dic", "--out", str(tmp_path / "dic")]) == 0
    assert "readable as dic-hela" in capsys.readouterr().out
    assert main([*command, "--out", str(tmp_path / "phase")]) == 0
    assert "readable as phc-u373" in capsys.readouterr().out


def test_a_cross_validation_reusing_an_ablations_runs_names_them_its_own_way(tmp_path, capsys):
    """`run --folds` whose runs an ablation's no-tta variant made: the header counts them as finished,
    the report speaks of no switch, and its bundle and runs.csv call them baseline runs."""
    spec = tiny_spec(iterations=2, **{"report.overlays": 0, "report.directory": str(tmp_path / "reports")})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    ablate = ["ablate", str(spec_file), "--folds", "3", "--no-tta", "--set", "inference.tta=flips"]
    assert main([*ablate, "--out", str(tmp_path / "runs" / "abl"), "--no-progress"]) == 0
    capsys.readouterr()
    cv = ["run", str(spec_file), "--folds", "3", "--out", str(tmp_path / "runs" / "cv"), "--no-progress"]
    assert main(cv) == 0
    out = capsys.readouterr().out
    assert "3 runs: 0 to train a network, 0 to predict with a paired network, 3 finished already" in out
    report = (tmp_path / "reports" / "quickstart" / "cv.md").read_text()
    assert "switch" not in report and "For a variant" not in report
    bundle = AblationDir(tmp_path / "reports" / "quickstart" / "cv")
    names = sorted(p.name for p in (bundle.path / "records").iterdir())
    assert len(names) == 3 and all(name.startswith("baseline-fold") for name in names), names
    runs = pd.read_csv(bundle.path / "runs.csv")
    assert all(name.startswith("baseline-fold") for name in runs["run"])
    assert main(["report", str(bundle.path)]) == 0  # the bundle renders again under those names
