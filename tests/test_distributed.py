"""One run over several processes (torchrun + DistributedDataParallel), tested on the CPU with gloo and
2 processes on the loopback: a step equals one process's step on all the ranks' tiles, a resume restores
every rank, and ``torchrun -m unetbench run`` survives a SIGKILL with exactly one record."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing

from unetbench.cli import main
from unetbench.records.run_folder import RunDir
from unetbench.system import processes
from unetbench.training.checkpoint import load_checkpoint
from unetbench.training.sampler import step_seed

from . import _ddp_worker
from .helpers import QUICKSTART, WRAPPER, tiny_spec, wait_for_line, write_spec

LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1"}


def _spawn(function, *args, world: int = 2) -> None:
    port = processes.free_loopback_port()
    torch.multiprocessing.spawn(function, args=(world, port, *args), nprocs=world, join=True)


def test_two_ranks_with_one_tile_each_step_like_one_process_with_both_tiles(tmp_path):
    """DDP averages the gradients of the ranks' tiles: the weights after one step equal (to 1e-6) those
    of one process's step on rank 0's and rank 1's tiles as one batch. Each rank draws its own tiles."""
    spec = tiny_spec(**{"training.batch_size": 1, "model.dropout": 0.0, "training.optimizer": "sgd"})
    _spawn(_ddp_worker.one_step, spec, tmp_path)
    ranks = [torch.load(tmp_path / f"batch-{r}.pt") for r in (0, 1)]
    assert not torch.equal(ranks[0][0], ranks[1][0])  # two streams, two different tiles
    single = _ddp_worker.trainer(spec, processes.SINGLE, tmp_path / "single.pt")
    # rank 0's stream is the single-process stream
    generator = torch.Generator().manual_seed(step_seed(spec.training.seed, 0, stream=0))
    mine = single.tiles.cut(single.tiles.draw(generator, 1))
    assert all(torch.equal(a, b) for a, b in zip(mine, ranks[0], strict=True))
    both = tuple(torch.cat([ranks[0][k], ranks[1][k]]) for k in range(3))
    single.step(both)
    distributed_weights = torch.load(tmp_path / "weights.pt")
    before = _ddp_worker.trainer(spec, processes.SINGLE, None).model.state_dict()
    moved = 0.0
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(distributed_weights[name], value, rtol=0, atol=1e-6)
        moved = max(moved, float((value - before[name]).abs().max()))
    assert moved > 1e-4  # the step changed the weights by far more than the tolerance


def test_a_data_parallel_resume_restores_every_rank(tmp_path):
    """With drop-out on (each rank's own random numbers), training 2 processes to iteration 6 equals
    stopping at 3, checkpointing and resuming, bit for bit: every rank's random state and pending loss
    travel through rank 0's checkpoint."""
    spec = tiny_spec(6, **{"model.dropout": 0.5, "training.checkpoint_every": 100})
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    straight.mkdir(), resumed.mkdir()
    _spawn(_ddp_worker.train, spec, straight, None, False)
    _spawn(_ddp_worker.train, spec, resumed, 3, False)
    halfway = load_checkpoint(resumed / "c.pt")
    assert halfway["iteration"] == 3 and halfway["world_size"] == 2 and len(halfway["ranks"]) == 1
    assert not torch.equal(halfway["torch_rng"], halfway["ranks"][0]["torch_rng"])  # per-rank drop-out
    _spawn(_ddp_worker.train, spec, resumed, None, True)
    a, b = load_checkpoint(straight / "c.pt"), load_checkpoint(resumed / "c.pt")
    assert a["iteration"] == b["iteration"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [p["loss"] for p in a["log"]["curve"]] == [p["loss"] for p in b["log"]["curve"]]


def _torchrun(args: list[str], cwd: Path, **settings) -> subprocess.Popen:
    """``torchrun --nproc-per-node 2 -m unetbench run ARGS``; with ``settings`` (see
    tests/_wrapped_run.py) every rank runs through the test wrapper instead."""
    program = ["-m", "unetbench"] if not settings else [str(WRAPPER)]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={processes.free_loopback_port()}",
        "--local-addr=127.0.0.1",
        *program,
        "run",
        *map(str, args),
    ]
    temporary = cwd / "tmp"  # torchrun's torchelastic_* log folder goes there, not into /tmp
    temporary.mkdir(exist_ok=True)
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={
            **os.environ,
            **LOOPBACK,
            "TMPDIR": str(temporary),
            **{f"UNETBENCH_TEST_{k.upper()}": str(v) for k, v in settings.items()},
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _kill_all(pid: int) -> None:
    """SIGKILL a process and all its descendants at once, as a node failure would (torchrun starts
    each worker in a session of its own, so a process group does not reach them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    family, queue = [], [pid]
    while queue:
        family.append(queue.pop())
        queue += children.get(family[-1], [])
    for member in family:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def test_a_two_process_run_is_killed_resumes_and_writes_one_record(tmp_path):
    """``torchrun --nproc-per-node 2 -m unetbench run``: SIGKILL to torchrun and both ranks after step 41
    (the checkpoint of step 40 on disk), then the same command with --resume: one record, two sessions
    (killed, finished), the effective batch of 2 processes, and the weights of an uninterrupted run. The
    quickstart's sections on tiny slices (:func:`tests.helpers.tiny_spec`), 4 tiles per process and step."""
    spec = write_spec(
        tmp_path / "quickstart.toml",
        tiny_spec(200, **{"training.batch_size": 4, "training.validate_every": 50}),
    )
    common = ["--iterations", "200", "--set", "training.checkpoint_every=40", "--no-progress"]
    common += ["--reports", tmp_path / "reports"]
    run, straight = tmp_path / "run", tmp_path / "straight"
    first = _torchrun([spec, "--out", run, *common], tmp_path, pause_at=41)
    checkpoint = run / "checkpoints" / "last.pt"
    wait_for_line(first, lambda line: line.endswith("paused at 41"), timeout=240)
    _kill_all(first.pid)
    first.wait()
    assert RunDir.state(run) == "started"
    killed_at = load_checkpoint(checkpoint)["iteration"]
    assert killed_at == 40

    second = _torchrun([spec, "--resume", run, *common], tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert f"resuming at iteration {killed_at}" in out
    record = RunDir(run).read_record()
    assert [s.outcome for s in record.sessions] == ["killed", "finished"]
    assert [s.processes for s in record.sessions] == [2, 2]
    assert record.training.processes == 2 and record.training.effective_batch == 8
    assert record.training.iterations == 200
    assert len(list(run.glob("record.json"))) == 1 and not list(run.glob("*.tmp*"))
    (report,) = (tmp_path / "reports" / "quickstart").glob("*.md")
    assert "data-parallel over 2 processes" in report.read_text()
    assert "an effective batch of 8 tiles per step" in report.read_text()

    third = _torchrun([spec, "--out", straight, *common], tmp_path)
    _, err = third.communicate(timeout=300)
    assert third.returncode == 0, err
    a, b = load_checkpoint(checkpoint), load_checkpoint(straight / "checkpoints" / "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_resuming_on_another_number_of_processes_is_one_line(tmp_path, capsys):
    """A run trained on 2 processes resumed in one: refused, naming the processes and how to resume."""
    spec = tiny_spec(6)
    folder = tmp_path / "two"
    folder.mkdir()
    _spawn(_ddp_worker.train, spec, folder, 3, False)
    trainer = _ddp_worker.trainer(spec, processes.SINGLE, folder / "c.pt")
    with pytest.raises(Exception) as refused:
        trainer.load()
    assert "trained on 2 process(es) (effective batch 4); resume it on 2" in str(refused.value)


def test_gpus_without_a_gpu_is_one_line_and_no_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = main(["run", str(QUICKSTART), "--gpus", "2", "--device", "auto", "--out", "run"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("error: --gpus 2: torch sees no GPU on this machine")
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("gpus", "device", "expected"),
    [
        (4, "auto", "--gpus 4: this machine has 1 GPU(s) that torch sees; give at most 1"),
        (2, None, "--gpus: the spec trains on the CPU (training.device = 'cpu'); add --device cuda"),
        (0, "cuda", "--gpus must be at least 1, got 0"),
    ],
)
def test_gpus_beyond_the_devices_is_one_line(tmp_path, capsys, monkeypatch, gpus, device, expected):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    args = ["run", str(QUICKSTART), "--gpus", str(gpus), "--out", "run"]
    status = main(args + (["--device", device] if device else []))
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and err.startswith(f"error: {expected}")
    assert not (tmp_path / "run").exists()


def test_a_device_problem_under_torchrun_is_one_line_from_rank_0(tmp_path):
    """Under torchrun, a problem on any rank before training (here: the device) is said once, by rank 0;
    what follows is torchrun's own summary of the failed processes, with no traceback of ours."""
    process = _torchrun([QUICKSTART, "--device", "cuda", "--out", tmp_path / "run"], tmp_path)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("error:")]
    assert ours == ["error: device 'cuda' was asked for, but torch sees no GPU; use --device cpu or auto"]
    assert "unetbench/" not in err  # no frame of unetbench's code in any traceback
    assert not (tmp_path / "run").exists()


def test_the_gpus_launcher_runs_the_processes_through_torchrun(tmp_path, capfd, monkeypatch):
    """What ``--gpus N`` starts, here on the CPU: N ranks through torch.distributed.run's launcher on
    the loopback; a failure is the ranks' one line and an exit status, without torchrun's report."""
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    temporary = tmp_path / "tmp"  # the system's temporary folder for this test: torchrun leaves none there
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    args = ["run", str(QUICKSTART), "--device=cpu", "--iterations=20", "--no-progress"]
    args += [f"--reports={tmp_path / 'reports'}"]
    assert processes.launch(2, [*args, f"--out={tmp_path / 'run'}"]) == 0
    record = RunDir(tmp_path / "run").read_record()
    assert record.training.processes == 2 and record.sessions[0].processes == 2
    capfd.readouterr()
    assert processes.launch(2, [*args, f"--out={tmp_path / 'run'}"]) == 1  # the folder exists
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"error: {tmp_path / 'run'} already exists; choose a new --out, or continue that run with --resume "
        f"{tmp_path / 'run'}"
    ]
    assert list(temporary.iterdir()) == []
