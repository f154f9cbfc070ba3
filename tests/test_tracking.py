"""Following runs in TensorBoard and MLflow: what a run writes there, a resumed run's steps exactly once,
the MLflow run a resume continues, the replay of finished records, and bad input in one line."""

import importlib.util
import os
import socket

import pytest

from unetbench.cli import main
from unetbench.errors import UserError
from unetbench.records.run_folder import RunDir
from unetbench.run.runner import run
from unetbench.tracking.trackers import MLFLOW_FILE, Tracking, check_kinds, replay
from unetbench.training.trainer import Trainer

from .helpers import quiet, tiny_spec


def _record(run_dir):
    return RunDir(run_dir).read_record()


def _scalars(folder):
    """{tag: [(step, value)]} as TensorBoard shows them (orphaned events of a killed session purged)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}, events


def _same(found, expected) -> bool:
    """The same steps, and the same values to float32 precision (TensorBoard stores float32)."""
    steps, values = [s for s, _ in found], [v for _, v in found]
    return steps == [s for s, _ in expected] and values == pytest.approx([v for _, v in expected], rel=1e-6)


def _killed_at(monkeypatch, iteration):
    """Trainer.step dies after ``iteration`` as a killed process would, writing no checkpoint of its own."""
    original = Trainer.step

    def step(self):
        loss = original(self)
        if self.iteration == iteration:
            raise SystemExit("killed")
        return loss

    monkeypatch.setattr(Trainer, "step", step)
    return original


def test_tensorboard_holds_every_log_point_validation_scores_spec_and_overlays(tmp_path):
    pytest.importorskip("tensorboard")
    spec = tiny_spec(iterations=8)
    run_dir = run(spec, out=tmp_path / "run", tracking=Tracking(("tensorboard",)), **quiet(tmp_path))
    record = _record(run_dir)
    scalars, events = _scalars(run_dir)
    assert _same(scalars["train/loss"], [(p.iteration, p.loss) for p in record.training.curve])
    assert [s for s, _ in scalars["train/learning_rate"]] == [p.iteration for p in record.training.curve]
    assert len(scalars["train/tiles_per_second"]) == len(record.training.curve)
    primary = record.primary
    assert _same(
        scalars[f"validation/{primary}"],
        [(v.iteration, v.metrics[primary]) for v in record.training.validation],
    )
    for metric, value in record.trained.aggregate.items():
        assert _same(scalars[f"trained/{metric}"], [(8, value)])
    assert [f"overlays/{name}" for name in record.figures] == events.Tags()["images"]
    assert "_hparams_/experiment" in events.summary_metadata


def test_a_killed_and_resumed_run_holds_each_step_once_in_tensorboard(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    spec = tiny_spec(iterations=10, **{"training.checkpoint_every": 4})
    tracking = Tracking(("tensorboard",))
    original = _killed_at(monkeypatch, 7)  # the checkpoint of step 4 on disk, events written to 6
    with pytest.raises(SystemExit):
        run(spec, out=tmp_path / "run", tracking=tracking, **quiet(tmp_path))
    before, _ = _scalars(tmp_path / "run")
    assert [s for s, _ in before["train/loss"]] == list(range(1, 7))  # step 7 died before its point
    monkeypatch.setattr(Trainer, "step", original)
    run(spec, resume=tmp_path / "run", tracking=tracking, **quiet(tmp_path))
    record = _record(tmp_path / "run")
    after, _ = _scalars(tmp_path / "run")
    assert _same(after["train/loss"], [(p.iteration, p.loss) for p in record.training.curve])
    assert [s for s, _ in after["train/loss"]] == list(range(1, 11))
    steps = [s for s, _ in after[f"validation/{record.primary}"]]
    assert steps == sorted(set(steps)) == [v.iteration for v in record.training.validation]


@pytest.fixture
def local_mlflow(monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_mlflow_holds_params_metrics_and_artifacts_and_a_resume_keeps_its_run(
    tmp_path, monkeypatch, local_mlflow
):
    from mlflow.tracking import MlflowClient

    spec = tiny_spec(iterations=10, **{"training.checkpoint_every": 4})
    tracking = Tracking(("mlflow",))
    original = _killed_at(monkeypatch, 7)
    with pytest.raises(SystemExit):
        run(spec, out=tmp_path / "runs" / "run", tracking=tracking, **quiet(tmp_path))
    first_id = (tmp_path / "runs" / "run" / MLFLOW_FILE).read_text()
    monkeypatch.setattr(Trainer, "step", original)
    run(spec, resume=tmp_path / "runs" / "run", tracking=tracking, **quiet(tmp_path))
    assert (tmp_path / "runs" / "run" / MLFLOW_FILE).read_text() == first_id
    record = _record(tmp_path / "runs" / "run")

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("quickstart").experiment_id])
    assert found.info.run_id in first_id and found.info.status == "FINISHED"
    assert found.data.params["training.iterations"] == "10"
    assert found.data.params["model.base_channels"] == "2"
    history = client.get_metric_history(found.info.run_id, "train/loss")
    expected = [(p.iteration, p.loss) for p in record.training.curve]
    assert _same(
        sorted((m.step, m.value) for m in history), expected
    )  # each step once, though the killed session logged 5, 6 and 7 before the resume did again
    assert found.data.metrics[f"trained/{record.primary}"] == pytest.approx(
        record.trained.aggregate[record.primary]
    )
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert {"record.json", f"{record.run_id}.md", "figures"} <= artifacts


def test_track_writes_finished_runs_once(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    run_dir = run(tiny_spec(iterations=4), out=tmp_path / "run", **quiet(tmp_path))
    assert main(["track", str(run_dir), "--to", "tensorboard"]) == 0
    record = _record(run_dir)
    scalars, _ = _scalars(run_dir)
    assert _same(scalars["train/loss"], [(p.iteration, p.loss) for p in record.training.curve])
    assert main(["track", str(run_dir), "--to", "tensorboard"]) == 0
    assert "in tensorboard already, skipped" in capsys.readouterr().out


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "environment", "says"),
    [
        (
            ["--track", "mlflow"],
            {"MLFLOW_TRACKING_URI": "http://127.0.0.1:{port}"},
            "cannot reach the MLflow",
        ),
    ],
)
def test_bad_tracking_is_one_line_before_anything_starts(
    tmp_path, capsys, monkeypatch, args, environment, says
):
    if "mlflow" in args:
        pytest.importorskip("mlflow")
    for key, value in environment.items():
        monkeypatch.setenv(key, value.format(port=_closed_port()))
    out = tmp_path / "run"
    status = main(["run", "challenges/quickstart.toml", "--out", str(out), "--iterations", "2", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and says in err[0], err
    assert not out.exists()


def test_tracking_without_its_extra_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a)
    )
    with pytest.raises(
        UserError, match=r"--track mlflow: the mlflow package is not installed; .*unetbench\[mlflow\]"
    ):
        check_kinds(["mlflow"])


def test_an_ablation_tracks_each_run_named_by_variant_fold_and_seed(tmp_path, local_mlflow):
    from mlflow.tracking import MlflowClient

    from unetbench import ablation

    spec = tiny_spec(iterations=2)
    request = ablation.AblationRequest(
        spec, tmp_path / "spec.toml", ("weightmap",), out=tmp_path / "abl", progress=False, track=("mlflow",)
    )
    directory = ablation.ablate(request, log=lambda *_: None)
    client = MlflowClient(tracking_uri=f"sqlite:///{directory.path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(f"quickstart/{directory.name}")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.data.tags["unetbench.variant"] for r in runs) == ["baseline", "no-weightmap"]
    assert {(r.data.tags["unetbench.fold"], r.data.tags["unetbench.seed"]) for r in runs} == {("none", "0")}
    assert os.path.isdir(directory.path / "mlartifacts")
    if importlib.util.find_spec("tensorboard") is not None:  # the records kept as artifacts are no runs
        assert replay(directory.path, "tensorboard", log=lambda *_: None) == 2


def test_bad_track_commands_are_one_line(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    (tmp_path / "empty").mkdir()
    cases = [
        (["track", str(tmp_path / "absent"), "--to", "tensorboard"], "absent: no such folder"),
        (["track", str(tmp_path / "empty"), "--to", "tensorboard"], "holds no finished run"),
    ]
    for args, says in cases:
        assert main(args) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and says in err[0], err


def test_the_issues_command_leaves_events_with_every_log_point_and_a_validation(tmp_path, monkeypatch):
    """`unetbench run challenges/quickstart.toml --iterations 40 --track tensorboard`: 40 log points, and
    the validation of a run shorter than validate_every (250), at its last iteration."""
    pytest.importorskip("tensorboard")
    from .helpers import QUICKSTART

    monkeypatch.chdir(tmp_path)
    args = ["run", str(QUICKSTART), "--iterations", "40", "--track", "tensorboard", "--out", "run"]
    assert main([*args, "--no-progress"]) == 0
    record = _record(tmp_path / "run")
    scalars, _ = _scalars(tmp_path / "run")
    assert [s for s, _ in scalars["train/loss"]] == list(range(1, 41))
    assert [s for s, _ in scalars[f"validation/{record.primary}"]] == [40]
    assert record.training.scored_iteration == 40  # the last weights, as without the validation
