"""`unetbench run` end to end on tiny settings: what a run writes, exact resume after Ctrl-C, SIGTERM
and SIGKILL at any moment, safe checkpoints, the lock, and a record that keeps every session."""

import json
import signal

import h5py
import pytest

from unetbench.cli import main
from unetbench.errors import RunInterrupted, UserError
from unetbench.records.run_folder import RunDir
from unetbench.records.run_record import RunRecord
from unetbench.run.runner import run
from unetbench.training.checkpoint import load_checkpoint
from unetbench.training.trainer import Trainer

from .helpers import (
    QUICKSTART,
    finish,
    quiet,
    same_weights,
    start_run,
    tiny_spec,
    wait_for_line,
    wait_until,
    weights,
    write_spec,
)


def _record(run_dir) -> RunRecord:
    return RunDir(run_dir).read_record()


def test_a_run_writes_record_predictions_and_report(tmp_path):
    run_dir = run(tiny_spec(), out=tmp_path / "run", **quiet(tmp_path))
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints",
        "figures",
        "predictions.h5",
        "record.json",
        "run.lock",
        "sessions.json",
        "spec.toml",
        "untrained.json",
    ]
    record = _record(run_dir)
    assert record.training.iterations == 6 and [v.iteration for v in record.training.validation] == [2, 4, 6]
    assert set(record.trained.aggregate) == {"warping_error", "rand_error", "pixel_error", "v_rand", "v_info"}
    assert list(record.trained.per_image) == ["evaluation/04", "evaluation/05"]
    assert (
        record.data.split["evaluation"] == ["evaluation/04", "evaluation/05"]
        and record.data.scored == "evaluation"
    )
    assert record.untrained.aggregate and record.timings_seconds["untrained_evaluation"] > 0
    assert record.spec["training"]["iterations"] == 6 and "training.iterations=6" in record.overrides
    assert record.provenance.versions["torch"] and record.provenance.hardware.cpu_cores >= 1
    assert record.figures == ["overlay-evaluation-04.png"]
    assert [s.outcome for s in record.sessions] == ["finished"]
    assert (record.sessions[0].first_iteration, record.sessions[0].last_iteration) == (0, 6)
    report = tmp_path / "reports" / "quickstart" / "run.md"
    text = report.read_text()
    assert "| Rand error (foreground-restricted) |" in text and "untrained network" in text
    assert (
        "- scored on: the evaluation split, 2 images (evaluation/04, evaluation/05) of `synthetic-em`" in text
    )
    assert "![overlay-evaluation-04.png](run/overlay-evaluation-04.png)" in text
    assert (report.parent / "run" / "training-curve.png").is_file()
    with h5py.File(run_dir / "predictions.h5") as f:
        names = []
        f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
        assert sorted(names) == ["evaluation/04", "evaluation/05"]


def test_the_scores_are_of_the_weights_the_record_names(tmp_path):
    run_dir = run(tiny_spec(iterations=8), out=tmp_path / "run", **quiet(tmp_path))
    record = _record(run_dir)
    best = record.training.best
    assert best is not None and record.training.scored_iteration == best.iteration
    values = [v.metrics["rand_error"] for v in record.training.validation]
    assert (
        best.value == min(values)
        and best.iteration == record.training.validation[values.index(min(values))].iteration
    )
    # the best weights are kept inside last.pt, beside the log that names them
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["log"]["best"]["iteration"] == best.iteration
    assert list(state["best_model"]) == list(state["model"])


def test_untrained_scores_are_reused_only_for_the_same_weights_images_and_inference(tmp_path, monkeypatch):
    """The runs of an ablation that vary the training alone score one untrained network once per process;
    another seed (other initial weights) or another inference scores again, and what is taken equals
    what scoring again gives."""
    from unetbench.run import preparation

    monkeypatch.setattr(preparation, "_UNTRAINED_SCORES", {})  # what this worker's earlier tests scored
    lines = []
    said = dict(quiet(tmp_path), log=lines.append)
    first = run(tiny_spec(iterations=2), out=tmp_path / "a", **said)
    run(tiny_spec(iterations=2, **{"training.learning_rate": 0.01}), out=tmp_path / "b", **said)
    run(tiny_spec(iterations=2, **{"training.seed": 1}), out=tmp_path / "c", **said)
    run(tiny_spec(iterations=2, **{"inference.tta": "flips"}), out=tmp_path / "d", **said)

    def taken() -> int:
        return sum("untrained network: scored already in this process" in line for line in lines)

    assert taken() == 1  # by b alone: c has other initial weights, d another inference
    assert _record(tmp_path / "b").untrained == _record(first).untrained
    monkeypatch.setattr(preparation, "_UNTRAINED_SCORES", {})
    again = run(tiny_spec(iterations=2, **{"training.learning_rate": 0.01}), out=tmp_path / "e", **said)
    assert taken() == 1 and _record(again).untrained == _record(first).untrained


def test_the_untrained_key_tells_the_same_bytes_in_another_shape_apart():
    import numpy as np
    import torch

    from unetbench.datasets.base import Sample
    from unetbench.datasets.splits import Split
    from unetbench.model.unet import unet_from_spec
    from unetbench.run.preparation import _untrained_key

    spec = tiny_spec()
    torch.manual_seed(0)
    model = unet_from_spec(spec.model)
    image = np.random.default_rng(0).random((64, 64), dtype=np.float32)

    def key(array) -> str:
        sample = Sample("0", array, (array > 0.5).astype(np.uint8), None)
        return _untrained_key(spec, model, Split((), (), (sample,), ()), "cpu")

    assert key(image) == key(image.copy())
    assert key(image) != key(image.reshape(32, 128))  # the same bytes, another image


def test_checkpoints_come_every_n_iterations_or_every_m_minutes(tmp_path, monkeypatch):
    saved = []
    original = Trainer.save

    def counting(self):
        saved.append(self.iteration)
        return original(self)

    monkeypatch.setattr(Trainer, "save", counting)
    every = {"training.checkpoint_every": 4, "training.validate_every": 0}
    run(tiny_spec(iterations=9, **every), out=tmp_path / "a", **quiet(tmp_path))
    assert saved == [0, 4, 8, 9]  # before the first step, every 4 iterations, at the end
    saved.clear()
    often = {**every, "training.checkpoint_minutes": 1e-9}  # the clock says every step is due
    run(tiny_spec(iterations=5, **often), out=tmp_path / "b", **quiet(tmp_path))
    assert saved == [0, 1, 2, 3, 4, 5, 5]


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {
            "training.precision": "bf16",
            "training.memory_format": "channels_last",
            "inference.precision": "bf16",
            "inference.memory_format": "channels_last",
        },
    ],
    ids=["fp32", "bf16-channels_last"],
)
def test_resume_gives_the_same_weights_and_scores_as_a_straight_run(tmp_path, settings):
    straight = run(tiny_spec(iterations=8, **settings), out=tmp_path / "straight", **quiet(tmp_path))
    half = run(tiny_spec(iterations=4, **settings), out=tmp_path / "halves", **quiet(tmp_path))
    resumed = run(tiny_spec(iterations=8, **settings), resume=half, **quiet(tmp_path))
    assert resumed == half
    assert same_weights(weights(straight), weights(resumed))
    a, b = _record(straight), _record(resumed)
    assert (
        a.trained == b.trained and a.training.curve == b.training.curve and a.training.best == b.training.best
    )
    assert [(s.first_iteration, s.last_iteration, s.outcome) for s in b.sessions] == [
        (0, 4, "finished"),
        (4, 8, "finished"),
    ]


def test_an_interrupt_between_steps_resumes_exactly(tmp_path, monkeypatch):
    """In-process: the stop request lands mid-step; the step completes and its state is what is saved."""
    straight = run(tiny_spec(iterations=8), out=tmp_path / "straight", **quiet(tmp_path))
    original = Trainer.step

    def interrupted(self):
        loss = original(self)
        if self.iteration == 5:  # SIGINT arrives while step 5 runs: handled after it
            signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(Trainer, "step", interrupted)
    with pytest.raises(
        RunInterrupted, match=r"stopped after iteration 5; checkpoint saved. Resume with: unetbench run"
    ) as err:
        run(tiny_spec(iterations=8), out=tmp_path / "cut", **quiet(tmp_path))
    assert err.value.signal_name == "SIGINT"
    assert load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["iteration"] == 5
    monkeypatch.setattr(Trainer, "step", original)
    run(tiny_spec(iterations=8), resume=tmp_path / "cut", **quiet(tmp_path))
    assert same_weights(weights(straight), weights(tmp_path / "cut"))
    assert _record(straight).training.curve == _record(tmp_path / "cut").training.curve


@pytest.mark.parametrize(("name", "status_expected"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_real_signal_mid_training_then_resume_equals_a_straight_run(tmp_path, name, status_expected):
    """The subprocess proof for Ctrl-C and SIGTERM: the signal after step 17 stops the run at a step
    boundary with a checkpoint; the resume gives the weights and scores of a straight run."""
    spec = tiny_spec(iterations=60, **{"training.checkpoint_every": 25, "training.validate_every": 10})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    straight = run(spec, out=tmp_path / "straight", **quiet(tmp_path))
    run_dir = tmp_path / "cut"
    args = ["run", spec_file, "--out", run_dir, "--reports", tmp_path / "reports", "--no-progress"]
    status, _, err = finish(start_run(args, cwd=tmp_path, signal_at=f"{name}:17"))
    assert status == status_expected, err
    stopped = int(err.split("stopped after iteration ")[1].split(";")[0])
    assert stopped == 17 and "Traceback" not in err  # the step in flight completes, no other
    assert f"Resume with: unetbench run {run_dir / 'spec.toml'} --resume {run_dir}" in err
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == stopped
    assert not (run_dir / "record.json").exists()
    status, _, err = finish(start_run(["run", spec_file, "--resume", run_dir, "--no-progress"], cwd=tmp_path))
    assert status == 0, err
    assert same_weights(weights(straight), weights(run_dir))
    assert same_weights(weights(straight, best=True), weights(run_dir, best=True))
    record = _record(run_dir)
    assert record.trained == _record(straight).trained
    first, second = record.sessions
    assert (first.outcome, first.first_iteration, first.last_iteration) == ("interrupted", 0, stopped)
    assert (second.outcome, second.first_iteration, second.last_iteration) == ("finished", stopped, 60)
    assert first.command.startswith("unetbench run") and "--out" in first.command
    assert "--resume" in second.command


@pytest.mark.parametrize("moment", ["folder", "first checkpoint", 4, 11])
def test_sigkill_at_any_moment_then_resume_continues_and_equals_a_straight_run(tmp_path, moment):
    """checkpoint_every = 5: a kill at step 11 resumes from 10, at step 4 from 0. The kill mid-training
    (step 11) is the subprocess proof that a resume after SIGKILL equals a straight run; the other moments
    show that the resume finishes from the right checkpoint."""
    spec = tiny_spec(iterations=14, **{"training.checkpoint_every": 5, "training.validate_every": 7})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    run_dir = tmp_path / "killed"
    args = ["run", spec_file, "--out", run_dir, "--reports", tmp_path / "reports", "--no-progress"]
    if isinstance(moment, int):
        status, _, _ = finish(start_run(args, cwd=tmp_path, kill_at=moment))
        assert status == -signal.SIGKILL
    else:
        process = start_run(args, cwd=tmp_path, step_seconds=0.05)
        if moment == "folder":
            wait_until(run_dir.exists, process=process, what="the run folder")
        else:
            wait_for_line(process, lambda line: line == "iteration 1")
        process.kill()
        finish(process)
    assert run_dir.is_dir() and not (run_dir / "record.json").exists()
    resumed = start_run(["run", spec_file, "--resume", run_dir, "--no-progress"], cwd=tmp_path)
    status, out, err = finish(resumed)
    assert status == 0, err
    if isinstance(moment, int):  # at most one checkpoint interval is lost
        assert f"resuming at iteration {moment // 5 * 5}" in out
    record = _record(run_dir)
    assert record.training.iterations == 14
    if moment == 11:
        straight = run(spec, out=tmp_path / "straight", **quiet(tmp_path))
        assert same_weights(weights(straight), weights(run_dir))
        assert record.trained == _record(straight).trained
    if record.sessions[0].outcome == "killed":
        assert record.sessions[0].last_iteration == record.sessions[1].first_iteration


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one_and_leaves_no_temporary(tmp_path):
    spec = tiny_spec(iterations=12, **{"training.checkpoint_every": 4})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    run_dir = tmp_path / "killed"
    process = start_run(
        ["run", spec_file, "--out", run_dir, "--no-progress"], cwd=tmp_path, hang_in_checkpoint=8
    )
    wait_for_line(process, lambda line: line == "mid-write")
    process.kill()
    finish(process)
    checkpoints = run_dir / "checkpoints"
    assert load_checkpoint(checkpoints / "last.pt")["iteration"] == 4  # the previous checkpoint survived
    leftovers = [p.name for p in checkpoints.iterdir() if p.name != "last.pt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.pt.unetbench-tmp-")  # the kill's leftover
    status, out, err = finish(
        start_run(["run", spec_file, "--resume", run_dir, "--no-progress"], cwd=tmp_path)
    )
    assert status == 0, err
    assert "resuming at iteration 4" in out
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last.pt"]
    assert not [p for p in run_dir.rglob("*unetbench-tmp*")]
    assert _record(run_dir).training.iterations == 12


def test_a_kill_after_a_better_validation_cannot_make_the_run_score_other_weights(tmp_path):
    """The defect: 10 iterations, killed at 7 (last.pt at 4; a better validation at 6), resumed with 6
    iterations; the report named the log's best but scored the killed session's best.pt. Now the best
    weights live in last.pt beside the log: the resumed run equals a straight 6-iteration run."""
    spec = tiny_spec(iterations=10, **{"training.checkpoint_every": 4, "training.validate_every": 2})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    run_dir = tmp_path / "killed"
    status, _, _ = finish(
        start_run(["run", spec_file, "--out", run_dir, "--no-progress"], cwd=tmp_path, kill_at=7)
    )
    assert status == -signal.SIGKILL
    status, _, err = finish(
        start_run(["run", spec_file, "--resume", run_dir, "--iterations", "6", "--no-progress"], cwd=tmp_path)
    )
    assert status == 0, err
    straight = run(
        tiny_spec(iterations=6, **{"training.checkpoint_every": 4}), out=tmp_path / "six", **quiet(tmp_path)
    )
    resumed, six = _record(run_dir), _record(straight)
    assert resumed.training.best == six.training.best and resumed.training.scored_iteration <= 6
    assert resumed.trained == six.trained
    assert same_weights(weights(run_dir, best=True), weights(straight, best=True))
    assert resumed.overrides[-1] == "training.iterations=6"


def test_a_second_process_on_the_same_run_is_refused(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", tiny_spec(iterations=400))
    run_dir = tmp_path / "run"
    holder = start_run(["run", spec_file, "--out", run_dir, "--no-progress"], cwd=tmp_path, step_seconds=0.05)
    try:
        wait_for_line(holder, lambda line: line == "iteration 1")
        assert main(["run", str(spec_file), "--resume", str(run_dir), "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert (
            err.startswith(f"error: {run_dir}: in use by process {holder.pid} on ") and err.count("\n") == 1
        )
        assert not (run_dir / "record.json").exists()
        assert [s.pid for s in RunDir(run_dir).read_sessions()] == [
            holder.pid
        ]  # the refused one wrote nothing
    finally:
        holder.kill()
        finish(holder)


def test_a_kill_before_the_first_checkpoint_leaves_a_resumable_folder(tmp_path, capsys):
    """The first process made the folder and died before writing anything else (as a SIGKILL right
    after mkdir would): --resume starts it, a new run with the same --out is refused with a hint."""
    spec = tiny_spec(iterations=4)
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert main(["run", str(spec_file), "--out", str(run_dir), "--no-progress"]) == 1
    assert f"--resume {run_dir}" in capsys.readouterr().err
    assert (
        main(
            [
                "run",
                str(spec_file),
                "--resume",
                str(run_dir),
                "--no-progress",
                "--reports",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    straight = run(spec, out=tmp_path / "straight", **quiet(tmp_path))
    assert same_weights(weights(straight), weights(run_dir))


def test_resume_refuses_a_changed_spec_and_more_iterations_than_asked(tmp_path):
    run_dir = run(tiny_spec(iterations=4), out=tmp_path / "run", **quiet(tmp_path))
    changed = tiny_spec(iterations=8, **{"training.learning_rate": 0.5})
    with pytest.raises(UserError, match=r"the spec differs .*training.learning_rate was 0.001, now 0.5"):
        run(changed, resume=run_dir, **quiet(tmp_path))
    with pytest.raises(UserError, match="the run has trained 4 iterations already; give at least that many"):
        run(tiny_spec(iterations=3), resume=run_dir, **quiet(tmp_path))
    with pytest.raises(UserError, match="not a run folder"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "notes.txt").write_text("mine")
        run(tiny_spec(), resume=tmp_path / "other", **quiet(tmp_path))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_report_renders_again_from_the_record_alone_and_prints_an_absolute_path(
    tmp_path, capsys, monkeypatch
):
    run_dir = run(tiny_spec(iterations=2), out=tmp_path / "run", **quiet(tmp_path))
    report = tmp_path / "reports" / "quickstart" / "run.md"
    first = report.read_text()
    report.unlink()
    (run_dir / "predictions.h5").unlink()  # not needed: the record is enough
    (run_dir / "checkpoints" / "last.pt").unlink()
    monkeypatch.chdir(tmp_path / "reports")  # not where the run wrote: the record knows the folder
    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out == f"report: {report}\n"
    assert report.read_text() == first


def test_a_report_whose_figures_were_deleted_names_them_instead_of_linking(tmp_path, capsys):
    run_dir = run(tiny_spec(iterations=2), out=tmp_path / "run", **quiet(tmp_path))
    (run_dir / "figures" / "overlay-evaluation-04.png").unlink()
    assert main(["report", str(run_dir), "--reports", str(tmp_path / "elsewhere")]) == 0
    text = (tmp_path / "elsewhere" / "quickstart" / "run.md").read_text()
    assert "](run/overlay-evaluation-04.png)" not in text
    assert "overlay-evaluation-04.png is missing from the run folder" in text
    assert "![training curve](run/training-curve.png)" in text


def test_the_record_keeps_the_overrides_given_at_the_start(tmp_path):
    """Resumed from the run folder's spec.toml (which cannot hold overrides), the record still names them."""
    run_dir = run(tiny_spec(iterations=2), out=tmp_path / "run", **quiet(tmp_path))
    from unetbench.challenges.loading import apply_overrides, load_spec

    again = apply_overrides(
        load_spec(run_dir / "spec.toml"), {"training.iterations": 4}, source="command line"
    )
    run(again, resume=run_dir, **quiet(tmp_path))
    record = _record(run_dir)
    assert "data.synthetic.samples=6" in record.overrides and record.overrides[-1] == "training.iterations=4"
    assert record.sessions[0].overrides[0] == "data.synthetic.samples=6"
    assert record.sessions[1].overrides == ["training.iterations=4"]
    assert (
        record.timings_seconds["untrained_evaluation"]
        == json.loads((run_dir / "untrained.json").read_text())["seconds"]
    )


def test_problems_show_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    em = QUICKSTART.parent / "em.toml"
    assert main(["run", str(em), "--data-root", str(tmp_path / "empty"), "--no-progress"]) == 1
    assert "no data at" in capsys.readouterr().err
    assert main(["run", str(QUICKSTART), "--set", "training.tile_size=125", "--no-progress"]) == 1
    assert "training.tile_size" in capsys.readouterr().err
    assert main(["run", str(QUICKSTART), "--set", "training.device=gpu", "--no-progress"]) == 1
    assert "valid choices: 'auto', 'cpu', 'cuda'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_quickstart_beats_the_untrained_network(tmp_path):
    """README's first command: the shipped quickstart spec as it is (about a minute on 2 cores)."""
    assert (
        main(
            [
                "run",
                str(QUICKSTART),
                "--out",
                str(tmp_path / "run"),
                "--reports",
                str(tmp_path / "r"),
                "--no-progress",
            ]
        )
        == 0
    )
    record = _record(tmp_path / "run")
    trained, untrained = record.trained.aggregate, record.untrained.aggregate
    assert trained["rand_error"] < untrained["rand_error"] / 5
    assert trained["pixel_error"] < untrained["pixel_error"] / 2
    assert trained["v_rand"] > untrained["v_rand"] + 0.5 and trained["v_info"] > untrained["v_info"] + 0.2
    assert (tmp_path / "r" / "quickstart" / "run.md").is_file()
