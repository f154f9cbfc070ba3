import subprocess
import sys

import numpy as np
import pytest

from unetbench import __version__
from unetbench.cli import main
from unetbench.datasets import isbi2012, synthetic

from .helpers import REPO


def _run(*args, env=None):
    """The real console entry point in a subprocess: what a user sees."""
    return subprocess.run(
        [sys.executable, "-m", "unetbench", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def test_spec_check_passes_on_every_shipped_spec():
    result = _run("spec", "check", *sorted(str(p) for p in (REPO / "challenges").glob("*.toml")))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == len(list((REPO / "challenges").glob("*.toml"))) == 5


def test_bad_spec_exits_non_zero_with_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        (REPO / "challenges" / "em.toml").read_text().replace("momentum = 0.99", "momentun = 0.99")
    )
    good = REPO / "challenges" / "quickstart.toml"
    result = _run("spec", "check", str(good), str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}: training.momentun: unknown key (did you mean 'training.momentum'?); valid keys here: "
        "optimizer, learning_rate, momentum, weight_decay, lr_schedule, lr_step_every, lr_step_factor, "
        "iterations, tile_size, batch_size, seed, device, checkpoint_every, checkpoint_minutes, "
        "validate_every, precision, memory_format, compile"
    ]
    assert "ok " in result.stdout  # the good file is still checked


def test_spec_show_prints_the_resolved_spec_with_overrides(capsys):
    assert (
        main(["spec", "show", str(REPO / "challenges" / "em.toml"), "--set", "weightmap.enabled=false"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("# overrides applied: weightmap.enabled=false\n")
    assert "[weightmap]\nenabled = false\n" in out and 'lr_schedule = "constant"' in out  # defaults filled in
    assert main(["spec", "show", str(REPO / "challenges" / "em.toml"), "--set", "weightmap.sigma=-2"]) == 1
    assert capsys.readouterr().err == "error: --set: weightmap.sigma: must be > 0 px, got -2.0\n"


def test_version_and_usage_errors():
    assert _run("--version").stdout.strip() == f"unetbench {__version__}"
    result = _run("data", "fetch")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # the parser's errors are one line too, naming where the command's options are (issue 30)
    assert result.stderr.startswith("error: Missing argument") and result.stderr.count("\n") == 1
    assert "(see `unetbench data fetch --help`)" in result.stderr
    for argv, says in (
        (("run", "--bogus"), "No such option: --bogus"),
        (("ablate", "--seeds", "x"), "--seeds"),
    ):
        result = _run(*argv)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and says in result.stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["run", "x.toml", "--device", "gpu"], "'gpu' is not one of 'auto', 'cpu', 'cuda'"),
        (["run", "x.toml", "--track", "wandb"], "'wandb' is not one of 'tensorboard', 'mlflow'"),
        (["ablate", "--grid", "half"], "'half' is not one of 'one', 'full'"),
        (["ablate", "--executor", "slurm"], "'slurm' is not one of 'local', 'ray'"),
        (["evaluate", "--challenge", "sem", "--gt", "a", "--pred", "b"], "'sem' is not one of 'em', 'ctc'"),
        (["compare", "a", "--challenge", "sem"], "'sem' is not one of 'em', 'ctc'"),
        (["predict", "run", "x.tif", "--out", "o", "--tta", "all"], "'all' is not one of 'none', 'flips'"),
        (["data", "synth", "synthetic-x", "--out", "o"], "'synthetic-x' is not one of 'synthetic-em'"),
        (["data", "synth", "synthetic-cells", "--out", "o", "--look", "x"], "'x' is not one of 'phase'"),
        (["track", ".", "--to", "wandb"], "'wandb' is not one of 'tensorboard', 'mlflow'"),
    ],
)
def test_choices_are_the_parsers_one_line_listing_them(tmp_path, monkeypatch, capsys, argv, says):
    """Every option with choices is an enum read from the module that owns the choices (issue 32): the
    parser refuses another value in one line, status 2, before anything is read or written."""
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_import_checks_before_writing_anything(tmp_path, capsys):
    images, labels = synthetic.em_stacks(0, 2, 32, 32)
    isbi2012.write_tiff_layout(tmp_path / "mine", images, images, None)  # labels are not binary
    root = tmp_path / "data"
    assert main(["data", "import", "isbi2012", str(tmp_path / "mine"), "--data-root", str(root)]) == 1
    assert "labels must be binary" in capsys.readouterr().err
    assert not root.exists() or list(root.iterdir()) == []
    assert main(["data", "import", "isbi2012", str(tmp_path / "nothing"), "--data-root", str(root)]) == 1
    assert "nothing: no such file or folder" in capsys.readouterr().err
    assert main(["data", "import", "isbi3000", str(tmp_path), "--data-root", str(root)]) == 1
    assert "unknown data set 'isbi3000'; valid choices:" in capsys.readouterr().err


def test_synth_then_import_then_info(tmp_path, capsys, monkeypatch):
    out = tmp_path / "em"
    assert (
        main(
            [
                "data",
                "synth",
                "synthetic-em",
                "--out",
                str(out),
                "--samples",
                "3",
                "--height",
                "64",
                "--width",
                "64",
                "--layout",
                "slices",
            ]
        )
        == 0
    )
    assert main(["data", "synth", "synthetic-em", "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["data", "synth", "synthetic-em", "--out", str(tmp_path / "x"), "--layout", "zarr"]) == 2
    assert "'zarr' is not one of 'tiff', 'hdf5', 'slices'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    monkeypatch.setenv("UNETBENCH_DATA", str(tmp_path / "data"))  # the data root from the environment
    assert main(["data", "import", "isbi2012", str(out)]) == 0
    assert (
        tmp_path / "data" / "isbi2012" / "train-volume.tif"
    ).is_file()  # converted to the canonical layout
    assert main(["data", "import", "isbi2012", str(out)]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert main(["data", "import", "isbi2012", str(out), "--force"]) == 0
    cells = tmp_path / "cells"
    assert (
        main(
            [
                "data",
                "synth",
                "synthetic-cells",
                "--out",
                str(cells),
                "--samples",
                "4",
                "--height",
                "64",
                "--width",
                "64",
            ]
        )
        == 0
    )
    assert main(["data", "import", "dic-hela", str(cells)]) == 0
    capsys.readouterr()
    assert main(["data", "info"]) == 0
    table = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 3}
    assert "present" in rows["isbi2012"] and "│ 3 " in rows["isbi2012"]
    assert "present" in rows["dic-hela"] and "4" in rows["dic-hela"]
    assert "absent" in rows["phc-u373"]
    np.testing.assert_array_equal(
        isbi2012.load(tmp_path / "data" / "isbi2012").labelled[0].image,
        isbi2012.load(out).labelled[0].image,
    )


def test_info_reports_invalid_data_without_failing(tmp_path, capsys):
    (tmp_path / "isbi2012").mkdir()
    (tmp_path / "isbi2012" / "train-volume.tif").write_bytes(b"junk")
    assert main(["data", "info", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "invalid" in out and "train-labels.tif is missing" in out


@pytest.mark.slow
def test_import_real_isbi_then_info_shows_30_and_30(tmp_path, real_isbi):
    root = tmp_path / "data"
    result = _run("data", "import", "isbi2012", str(real_isbi), "--data-root", str(root))
    assert result.returncode == 0, result.stderr
    assert "imported 30 labelled and 30 unlabelled samples" in result.stdout
    info = _run("data", "info", "--data-root", str(root))
    row = next(line for line in info.stdout.splitlines() if "isbi2012" in line and "│" in line)
    cells = [c.strip() for c in row.split("│")[1:-1]]
    assert cells[:4] == ["isbi2012", "present", "30", "30"]
    assert "official files (sha256 verified)" in cells[5]
