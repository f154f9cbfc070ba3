"""Every bad input a hostile tester fed the run layer: one clear line, a non-zero exit, no traceback, and
nothing left behind (each test compares the folder before and after)."""

from __future__ import annotations

import os
import pickletools
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch

from unetbench.cli import main
from unetbench.datasets import isbi2012, synthetic
from unetbench.records.run_folder import RunDir
from unetbench.run.runner import run
from unetbench.system import devices

from .helpers import EM, QUICKSTART, quiet, tiny_spec, write_spec


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path below ``root`` and its bytes (None for a folder; a run's lock file counts by its name:
    whoever takes the lock writes its own pid there)."""
    return {
        str(p.relative_to(root)): (None if p.is_dir() or p.name == "run.lock" else p.read_bytes())
        for p in sorted(root.rglob("*"))
    }


def _refused(capsys, argv: list[str], fragment: str, *, root: Path) -> str:
    """Run the command line; it must fail with one line containing ``fragment`` and change nothing."""
    before = _tree(root)
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert fragment in err, err
    assert _tree(root) == before, "the command left files behind"
    return err


@pytest.fixture
def stacks(tmp_path):
    labels = (synthetic.em_stacks(0, 2, 48, 48)[1] > 0).astype(np.uint8) * 255
    gt, pred = tmp_path / "gt.npy", tmp_path / "pred.npy"
    np.save(gt, labels)
    np.save(pred, (labels / 255).astype(np.float32))
    return gt, pred


def test_json_output_that_is_a_folder_or_below_a_file(tmp_path, capsys, stacks):
    gt, pred = stacks
    (tmp_path / "out").mkdir()
    (tmp_path / "file").write_text("x")
    base = ["evaluate", "--challenge", "em", "--gt", gt, "--pred", pred, "--json"]
    _refused(
        capsys, [*base, tmp_path / "out"], "is a folder; give a file name for the --json file", root=tmp_path
    )
    _refused(capsys, [*base, tmp_path / "file" / "s.json"], "file is a file, not a folder", root=tmp_path)


@pytest.mark.parametrize("scale", ["inf", "nan", "0", "-255"])
def test_scale_must_be_finite_and_positive(tmp_path, capsys, stacks, scale):
    gt, pred = stacks
    argv = ["evaluate", "--challenge", "em", "--gt", gt, "--pred", pred, "--scale", scale]
    _refused(capsys, argv, "--scale must be a finite number > 0", root=tmp_path)


def test_stacks_without_slices(tmp_path, capsys):
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, 32, 32), dtype=np.float32))
    argv = ["evaluate", "--challenge", "em", "--gt", empty, "--pred", empty]
    _refused(capsys, argv, "hold no pixel (shape (0, 32, 32)); give at least one slice", root=tmp_path)
    with h5py.File(tmp_path / "isbi.h5", "w") as f:
        f["raw"] = np.zeros((0, 32, 32), dtype=np.uint8)
        f["labels/membranes"] = np.zeros((0, 32, 32), dtype=np.uint8)
    argv = ["data", "import", "isbi2012", tmp_path / "isbi.h5", "--data-root", tmp_path / "data"]
    _refused(capsys, argv, "the training stack holds no image (shape (0, 32, 32))", root=tmp_path)


def test_binary_man_track(tmp_path, capsys):
    synthetic.write_cells(tmp_path / "cells", seed=1, samples=4, height=48, width=48)
    (tmp_path / "cells" / "01_GT" / "TRA" / "man_track.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    argv = ["data", "import", "phc-u373", tmp_path / "cells", "--data-root", tmp_path / "data"]
    _refused(capsys, argv, "man_track.txt: not a text file (byte 0 is 0x89)", root=tmp_path)


def test_out_that_is_a_file_and_out_with_resume(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", tiny_spec())
    (tmp_path / "taken").write_text("mine")
    _refused(capsys, ["run", spec_file, "--out", tmp_path / "taken"], "taken: is a file", root=tmp_path)
    argv = ["run", spec_file, "--out", tmp_path / "a", "--resume", tmp_path / "b"]
    _refused(capsys, argv, "not both", root=tmp_path)
    _refused(
        capsys, ["run", spec_file, "--resume", tmp_path / "nothing"], "no such run folder", root=tmp_path
    )
    _refused(
        capsys,
        ["run", spec_file, "--resume", tmp_path / "taken"],
        "is a file, not a run folder",
        root=tmp_path,
    )


def test_reports_that_is_a_file(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", tiny_spec())
    (tmp_path / "reports").write_text("not a folder")
    argv = ["run", spec_file, "--out", tmp_path / "run", "--reports", tmp_path / "reports"]
    _refused(capsys, argv, "reports: is a file, not a folder; choose another --reports folder", root=tmp_path)
    run_dir = run(tiny_spec(iterations=1), out=tmp_path / "done", **quiet(tmp_path / "elsewhere"))
    _refused(
        capsys, ["report", run_dir, "--reports", tmp_path / "reports"], "reports is a file", root=tmp_path
    )


def test_a_damaged_checkpoint_on_resume(tmp_path, capsys):
    spec = tiny_spec(iterations=2)
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    run_dir = run(spec, out=tmp_path / "run", **quiet(tmp_path))
    (run_dir / "record.json").unlink()  # unfinished again
    last = run_dir / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    argv = ["run", spec_file, "--resume", run_dir, "--iterations", "4", "--no-progress"]
    err = _refused(capsys, argv, "last.pt: damaged or not a checkpoint", root=tmp_path)
    assert "start the run again" in err


def test_a_crafted_pickle_in_last_pt_is_refused_and_runs_nothing(tmp_path, capsys):
    spec = tiny_spec(iterations=2)
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    run_dir = run(spec, out=tmp_path / "run", **quiet(tmp_path))
    (run_dir / "record.json").unlink()
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save(
        {"format": "unetbench-checkpoint", "version": 1, "iteration": Payload()},
        run_dir / "checkpoints" / "last.pt",
    )
    argv = ["run", spec_file, "--resume", run_dir, "--no-progress"]
    err = _refused(capsys, argv, "refused; it holds objects other than tensors and numbers", root=tmp_path)
    assert "nothing in it was run" in err and "system" in err
    assert not marker.exists()
    # the file really carries the call: unpickled without weights_only, it would run os.system
    with zipfile.ZipFile(run_dir / "checkpoints" / "last.pt") as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    calls = [arg for op, arg, _ in pickletools.genops(pickled) if op.name in ("GLOBAL", "STACK_GLOBAL")]
    strings = [arg for op, arg, _ in pickletools.genops(pickled) if isinstance(arg, str)]
    assert "posix system" in calls or {"posix", "system"} <= set(strings)


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("[1, 2, 3]", "holds a list, not a unetbench run record"),
        ('{"schema": 2, "run_id": "x"}', "record.json: challenge: missing"),
        ('{"schema": 1}', "schema 1, but this unetbench"),
        ("{not json", "not valid JSON"),
    ],
)
def test_damaged_records(tmp_path, capsys, content, fragment):
    run_dir = run(tiny_spec(iterations=1), out=tmp_path / "run", **quiet(tmp_path / "r"))
    (run_dir / "record.json").write_text(content)
    _refused(capsys, ["report", run_dir], fragment, root=tmp_path)


def test_a_record_without_scores_names_the_field(tmp_path, capsys):
    run_dir = run(tiny_spec(iterations=1), out=tmp_path / "run", **quiet(tmp_path / "r"))
    import json

    record = json.loads((run_dir / "record.json").read_text())
    del record["trained"]
    (run_dir / "record.json").write_text(json.dumps(record))
    _refused(capsys, ["report", run_dir], "record.json: trained: missing", root=tmp_path)
    record["trained"] = {"aggregate": {"rand_error": "low"}, "per_image": {}}
    (run_dir / "record.json").write_text(json.dumps(record))
    _refused(
        capsys,
        ["report", run_dir],
        "trained.aggregate.rand_error: must be a number, got a string",
        root=tmp_path,
    )


def test_report_of_an_unfinished_run_says_how_to_finish_it(tmp_path, capsys):
    run_dir = RunDir.create(tmp_path / "run", "")
    run_dir.release()
    _refused(
        capsys,
        ["report", run_dir.path],
        "no record.json; the run has not finished; continue it with",
        root=tmp_path,
    )


def test_tiles_no_machine_can_hold_are_refused_by_spec_check(tmp_path, capsys):
    text = EM.read_text().replace("tile_size = 572\nbatch_size = 1", "tile_size = 20012\nbatch_size = 1")
    (tmp_path / "huge.toml").write_text(text)
    err = _refused(
        capsys, ["spec", "check", tmp_path / "huge.toml"], "training.tile_size: 20012 px tiles", root=tmp_path
    )
    assert "TiB per training step (estimated from the layer sizes), more than any machine holds" in err


def test_tiles_this_device_cannot_hold_are_refused_before_anything_is_allocated(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(devices, "device_memory", lambda device: (8 * 2**30, "this machine's memory"))
    monkeypatch.chdir(tmp_path)
    argv = ["run", EM, "--set", "training.batch_size=8", "--device", "cpu", "--data-root", tmp_path / "none"]
    err = _refused(
        capsys, argv, "training.tile_size: 572 px tiles in batches of 8 with 64 base channels", root=tmp_path
    )
    assert (
        "more than this machine's memory (8.0 GiB); use a smaller training.tile_size or training.batch_size"
        in err
    )


def test_generated_sets_beyond_a_sane_size(tmp_path, capsys):
    text = QUICKSTART.read_text().replace("samples = 12", "samples = 1000000000")
    (tmp_path / "many.toml").write_text(text)
    err = _refused(
        capsys,
        ["spec", "check", tmp_path / "many.toml"],
        "data.synthetic.samples: 1000000000 samples",
        root=tmp_path,
    )
    assert "more than the 268,435,456 a generated set may have" in err
    argv = ["data", "synth", "synthetic-em", "--out", tmp_path / "x", "--samples", "1000000000"]
    _refused(capsys, argv, "--samples: 1000000000 samples of 512x512 px", root=tmp_path)


def test_spec_tables_that_do_not_apply_are_refused_and_not_shown(tmp_path, capsys):
    text = EM.read_text() + "\n[data.synthetic]\nsamples = 4\n"
    (tmp_path / "em.toml").write_text(text)
    _refused(
        capsys,
        ["spec", "check", tmp_path / "em.toml"],
        "data.synthetic: only the generated data sets",
        root=tmp_path,
    )
    text = EM.read_text().replace('method = "indices"', 'method = "indices"\nfolds = 3')
    (tmp_path / "em.toml").write_text(text)
    _refused(
        capsys,
        ["spec", "check", tmp_path / "em.toml"],
        "data.split.folds: only used with method = 'kfold'",
        root=tmp_path,
    )
    assert main(["spec", "show", str(EM)]) == 0
    shown = capsys.readouterr().out
    assert "[data.synthetic]" not in shown and "folds" not in shown and "shuffle_seed" not in shown
    assert main(["spec", "show", str(QUICKSTART)]) == 0
    assert "[data.synthetic]\nsamples = 12" in capsys.readouterr().out


def test_data_info_names_the_command_for_an_absent_set(tmp_path, capsys):
    assert main(["data", "info", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "isbi2012" in line)
    assert "absent" in row and "unetbench data fetch isbi2012" in out


def test_an_isbi_hdf5_file_with_slices_still_imports(tmp_path, capsys):
    """The guard against empty stacks does not refuse a good file."""
    images, labels = synthetic.em_stacks(0, 2, 32, 32)
    isbi2012.write_hdf5_layout(tmp_path / "good.h5", images, (labels > 0).astype(np.uint8) * 255, None)
    assert (
        main(["data", "import", "isbi2012", str(tmp_path / "good.h5"), "--data-root", str(tmp_path / "d")])
        == 0
    )


def test_a_diverging_run_stops_with_one_line_and_keeps_its_finite_checkpoint(tmp_path, capsys):
    """A learning rate far too high drives the loss to NaN or infinity: the run says so at the next log
    point, names the learning rate and the checkpoint it keeps, and the session ends as failed."""
    spec = tiny_spec(iterations=40, **{"training.learning_rate": 1e8, "training.checkpoint_every": 100})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    out = tmp_path / "run"
    code = main(
        ["run", str(spec_file), "--out", str(out), "--reports", str(tmp_path / "reports"), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "training diverged: the mean loss of iterations" in err and "learning rate 100000000.0" in err
    assert "the checkpoint of iteration 0 is kept" in err and "Lower training.learning_rate" in err
    assert RunDir(out).read_sessions()[-1].outcome == "failed"
    weights = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in weights.values())
    assert not (tmp_path / "reports").exists()


def _truncated_stack(path: Path, keep: int) -> Path:
    """A five-page TIFF cut after ``keep`` bytes (tifffile logs "invalid page offset" for a cut at 10700)."""
    tifffile.imwrite(path, np.zeros((5, 64, 64), dtype=np.uint8), photometric="minisblack")
    path.write_bytes(path.read_bytes()[:keep])
    return path


@pytest.mark.parametrize("keep", [100, 10700])
def test_a_truncated_tiff_is_one_line_in_evaluate_and_data_import(tmp_path, capsys, caplog, stacks, keep):
    """Without our hold on its logger, tifffile's "invalid page offset" reaches the terminal (pytest's
    log capture stands in for it here) before our one line."""
    gt, _ = stacks
    cut = _truncated_stack(tmp_path / "cut.tif", keep)
    argv = ["evaluate", "--challenge", "em", "--gt", gt, "--pred", cut]
    _refused(capsys, argv, "cut.tif: cannot be read as TIFF", root=tmp_path)
    folder = tmp_path / "isbi"
    folder.mkdir()
    _truncated_stack(folder / "train-volume.tif", keep)
    tifffile.imwrite(folder / "train-labels.tif", np.zeros((5, 64, 64), dtype=np.uint8))
    argv = ["data", "import", "isbi2012", folder, "--data-root", tmp_path / "data"]
    _refused(capsys, argv, "train-volume.tif: cannot be read as a TIFF stack", root=tmp_path)
    assert not [r.getMessage() for r in caplog.records if r.name == "tifffile"]
