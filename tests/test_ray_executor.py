"""``unetbench ablate --executor ray`` on a local Ray instance bound to 127.0.0.1 (no dashboard): the runs
finish as Ray tasks, a task whose process dies is retried and resumes its checkpoint, the table equals
the local executor's, and user errors are one line that leaves no folder behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from unetbench import ablation
from unetbench.ablation import ray as ray_executor
from unetbench.ablation.plan import PlannedRun
from unetbench.ablation.report import render_ablation_report
from unetbench.ablation.report_exploratory import variant_table
from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.cli import main
from unetbench.errors import UserError
from unetbench.records.run_folder import RunDir
from unetbench.system.processes import free_loopback_port

from . import _ray_tasks
from .conftest import REAL_HOME, REAL_RAY_BEFORE, TEST_HOME, ray_files
from .helpers import QUICKSTART, write_spec

try:  # before anything imports Ray: a local instance stays on the loopback
    ray = ray_executor.import_ray(local=True)
except UserError:
    pytest.skip("the Ray extra is not installed: pip install 'unetbench[ray]'", allow_module_level=True)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address=ray_executor.LOOPBACK,
        log_to_driver=False,
        # the workers import tests._ray_tasks from the repository, like the driver
        runtime_env={"env_vars": {"PYTHONPATH": str(QUICKSTART.parents[1])}},
    )
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    yield
    ray.shutdown()


def _spec(tmp_path):
    return apply_overrides(
        load_spec(QUICKSTART),
        {
            "training.iterations": 60,
            "training.checkpoint_every": 20,
            "training.validate_every": 20,
            "report.directory": str(tmp_path / "reports"),
            "report.overlays": 0,
        },
        source="test",
    )


def _without_times(directory, tmp_path):
    _, summary = render_ablation_report(directory, tmp_path / "reports")
    header, rows = variant_table(summary)
    keep = [i for i, name in enumerate(header) if name != "training time (median)"]
    return [header[i] for i in keep], [[row[i] for i in keep] for row in rows]


def _two_variants(spec, spec_file, out, log, **settings):
    """The baseline and no-weightmap, one seed each."""
    request = ablation.AblationRequest(spec, spec_file, ("weightmap",), out=out, progress=False, **settings)
    return ablation.ablate(request, log=log)


def test_a_ray_ablation_retries_a_dead_task_and_its_table_equals_the_local_one(
    tmp_path, monkeypatch, local_ray
):
    spec = _spec(tmp_path)
    spec_file = write_spec(tmp_path / "quick.toml", spec)
    monkeypatch.setattr(ray_executor, "run_planned", _ray_tasks.fail_once)
    lines = []
    on_ray = _two_variants(spec, spec_file, tmp_path / "ray", log=lines.append, executor="ray")
    runs = {p.name.split("-seed")[0]: p for p in (tmp_path / "ray").glob("*-seed0-*") if p.is_dir()}
    assert sorted(runs) == ["baseline", "no-weightmap"]
    retried = RunDir(runs["no-weightmap"]).read_record()
    assert [s.outcome for s in retried.sessions] == ["killed", "finished"]
    assert all(s.command.endswith(" [Ray task on " + s.host + "]") for s in retried.sessions)
    assert retried.sessions[1].first_iteration == 20  # resumed from the checkpoint before the failure
    assert [s.outcome for s in RunDir(runs["baseline"]).read_record().sessions] == ["finished"]
    assert any("running (attempt 2" in line for line in lines)  # the table shows the retry
    assert (tmp_path / "ray" / "logs" / f"{runs['no-weightmap'].name}.log").read_text().count("---") == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the Ray tasks (1 CPU each): the same arithmetic, the same scores
    try:
        # not beside the Ray runs, which it would reuse (finished runs of the same spec in a sibling folder)
        local = _two_variants(spec, spec_file, tmp_path / "apart" / "local", log=lambda *_: None)
    finally:
        torch.set_num_threads(threads)
    assert _without_times(on_ray, tmp_path) == _without_times(local, tmp_path)


def _ablate(tmp_path, *extra):
    spec_file = write_spec(tmp_path / "quick.toml", _spec(tmp_path))
    return main(["ablate", str(spec_file), "--no-weightmap", "--no-progress", "--executor", "ray", *extra])


def test_ray_with_a_relative_out_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = _ablate(tmp_path, "--out", "relative/abl")
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("error: --out: with --executor ray give an absolute folder that every node")
    assert not (tmp_path / "relative").exists() and not (tmp_path / "runs").exists()


def test_an_unreachable_ray_address_is_one_line(tmp_path, capsys):
    port = free_loopback_port()  # nothing listens there
    status = _ablate(tmp_path, "--out", str(tmp_path / "abl"), "--ray-address", f"127.0.0.1:{port}")
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert err.startswith(f"error: --ray-address 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port}")
    assert not (tmp_path / "abl").exists()


def test_ray_missing_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    status = _ablate(tmp_path, "--out", str(tmp_path / "abl"))
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert "pip install 'unetbench[ray]'" in err and not (tmp_path / "abl").exists()


def test_a_run_asks_for_a_gpu_on_a_cluster_with_gpus_and_cpus_otherwise(tmp_path):
    spec = _spec(tmp_path)
    on_cpu, on_any = (
        PlannedRun("baseline", None, 0, apply_overrides(spec, {"training.device": d}), tmp_path / d)
        for d in ("cpu", "auto")
    )
    executor = object.__new__(ray_executor.RayExecutor)  # no cluster needed to read its rule
    executor.gpus, executor.cpus_per_run, executor.runs_per_device = 4, 3, 1
    assert executor.resources(on_any) == {"num_gpus": 1, "num_cpus": 1}
    assert executor.resources(on_cpu) == {"num_cpus": 3}
    executor.runs_per_device = 4  # --runs-per-device 4: four runs share a GPU
    assert executor.resources(on_any) == {"num_gpus": 0.25, "num_cpus": 1}
    assert executor.resources(on_cpu) == {"num_cpus": 3}
    executor.gpus = 0
    assert executor.resources(on_any) == {"num_cpus": 3}


def test_cuda_runs_on_a_cluster_without_gpus_are_one_line(tmp_path, capsys, local_ray):
    status = _ablate(tmp_path, "--out", str(tmp_path / "abl"), "--set", "training.device=cuda")
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("error: training.device: the runs ask for 'cuda', but the Ray cluster has no GPUs")
    assert not (tmp_path / "abl").exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--executor", "local", "--ray-address", "127.0.0.1:6379"], "--ray-address goes with --executor"),
        (["--ray-address", "headnode"], "--ray-address headnode: not an address; give the head's host:port"),
        (["--retries", "-1"], "--retries must be >= 0, got -1"),
    ],
)
def test_bad_executor_options_are_one_line(tmp_path, capsys, extra, expected):
    status = _ablate(tmp_path, "--out", str(tmp_path / "abl"), *extra)
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and err.startswith(f"error: {expected}")
    assert not (tmp_path / "abl").exists()


def test_ray_writes_under_the_suites_home_not_the_users(local_ray):
    """Ray's files of the local instance (its auth token) land in the suite's temporary home, and the
    user's ``~/.ray`` is as it was: no file added or rewritten. Only what Ray writes is looked at, so a
    browser or an editor writing elsewhere in the home during the suite does not matter (issue 32)."""
    assert Path.home() == TEST_HOME
    assert ray_files(TEST_HOME), "Ray wrote nothing under the suite's home: is it reading another?"
    assert ray_files(REAL_HOME) == REAL_RAY_BEFORE


def test_a_cluster_that_wants_a_token_is_one_line_naming_rays_reason():
    logged = (
        "[2026-12-03 14:26:26,230 W 31056 31056] gcs_client.cc:210: Failed to get cluster ID from GCS "
        "server: Unauthenticated: RPC error: InvalidAuthToken: Authentication token is missing or incorrect\n"
    )
    reason = ray_executor._ray_reason(logged)
    assert reason.startswith("; Ray says: InvalidAuthToken") and "RAY_AUTH_MODE=token" in reason
    other = "[2026 W 1 1] rpc_client.h:153: Failed to connect to GCS at address 127.0.0.1:6391 within 5 s\n"
    assert (
        ray_executor._ray_reason(other)
        == "; Ray says: Failed to connect to GCS at address 127.0.0.1:6391 within 5 s"
    )
    assert ray_executor._ray_reason("") == ""


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:6391", True),
        ("ray://localhost:10001", True),
        ("[::1]:6379", True),
        ("10.0.0.5:6379", False),
        ("auto", False),
    ],
)
def test_a_loopback_address_keeps_ray_on_the_loopback(address, loopback):
    assert ray_executor.on_loopback(address) is loopback


def test_a_stale_recorded_cluster_does_not_hang_the_local_instance(tmp_path):
    """Without --ray-address a new local instance starts, whatever the last cluster Ray recorded in its
    temporary folder (a head killed since leaves its address in ``ray_current_cluster``). In a fresh
    process: Ray is started there with that folder as its own."""
    import shutil
    import subprocess
    import tempfile
    import time

    from .helpers import tiny_spec

    ray_tmp = Path(tempfile.mkdtemp(prefix="r", dir="/tmp"))  # short: Ray's socket paths have a limit
    try:
        (ray_tmp / "ray").mkdir()
        stale = f"127.0.0.1:{free_loopback_port()}"  # nothing listens there
        (ray_tmp / "ray" / "ray_current_cluster").write_text(stale)
        spec_file = write_spec(tmp_path / "tiny.toml", tiny_spec(iterations=2, **{"report.overlays": 0}))
        env = {**__import__("os").environ, "RAY_TMPDIR": str(ray_tmp), "OMP_NUM_THREADS": "1"}
        env.pop("RAY_ADDRESS", None)
        command = [sys.executable, "-m", "unetbench", "ablate", str(spec_file), "--no-weightmap"]
        command += ["--executor", "ray", "--out", str(tmp_path / "abl"), "--no-progress"]
        command += ["--set", f"report.directory={tmp_path / 'reports'}"]
        start = time.monotonic()
        done = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        seconds = time.monotonic() - start
        assert done.returncode == 0, done.stderr[-2000:]
        assert seconds < 60, seconds
        assert (tmp_path / "reports" / "quickstart" / "abl.md").is_file()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
