"""The run layer's parts on their own: the atomic writer, the run folder and its lock, checkpoints,
typed records, provenance and interrupts."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from unetbench.errors import UserError
from unetbench.records.json_io import read_json_record, to_json
from unetbench.records.provenance import git_revision
from unetbench.records.run_folder import RunDir
from unetbench.records.run_record import RunRecord
from unetbench.run.runner import run
from unetbench.system.atomic_writes import (
    atomic_file,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    json_ready,
    remove_temporaries,
)
from unetbench.system.interrupts import Interrupts, exit_status
from unetbench.training.checkpoint import load_checkpoint, save_checkpoint

from .helpers import quiet, tiny_spec

# --- the atomic writer --------------------------------------------------------------------------------


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "deep" / "result.json"
    atomic_write_json(path, {"b": 1.5, "a": float("nan")})
    assert path.read_text() == '{\n  "a": null,\n  "b": 1.5\n}\n'  # sorted; NaN becomes null
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # not mkstemp's private 0600
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_write_keeps_the_old_file_and_no_temporary(tmp_path, failure):
    path = tmp_path / "last.pt"
    atomic_write_bytes(path, b"good")
    with pytest.raises(type(failure)), atomic_file(path) as f:
        f.write(b"half")
        raise failure
    assert path.read_bytes() == b"good" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_kill_leaves_a_marked_temporary_that_the_sweep_removes(tmp_path):
    """A writer killed mid-write (SIGKILL: no cleanup) leaves its temporary, named so it can be found."""
    path = tmp_path / "run" / "predictions.h5"
    code = (
        "import os, signal, sys; from pathlib import Path\n"
        "from unetbench.system.atomic_writes import atomic_path\n"
        f"with atomic_path(Path({str(path)!r})) as t:\n"
        "    t.write_bytes(b'half'); os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    (leftover,) = path.parent.iterdir()
    assert leftover.name.startswith(".predictions.h5.unetbench-tmp-") and not path.exists()
    assert remove_temporaries(tmp_path) == [leftover] and list(path.parent.iterdir()) == []


def test_destinations_that_cannot_be_written_are_refused_before_writing(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="folder: is a folder"), atomic_path(tmp_path / "folder"):
        pass
    with pytest.raises(UserError, match="file is a file, not a folder"), atomic_path(tmp_path / "file" / "x"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


# --- the run folder and its lock ----------------------------------------------------------------------


def test_a_run_folder_is_created_exclusively_and_locked(tmp_path):
    first = RunDir.create(tmp_path / "run", "name = 'x'\n")
    assert (first.path / "spec.toml").read_text() == "name = 'x'\n"
    with pytest.raises(
        UserError, match="already exists; choose a new --out, or continue that run with --resume"
    ):
        RunDir.create(tmp_path / "run", "")
    with pytest.raises(UserError, match=f"in use by process {os.getpid()} on "):
        RunDir.open(tmp_path / "run", "")
    first.release()
    with RunDir.open(tmp_path / "run", "name = 'y'\n") as again:  # free again; the spec is not replaced
        assert (again.path / "spec.toml").read_text() == "name = 'x'\n"
    second = RunDir.create_unique(tmp_path, "run", "")
    assert second.path == tmp_path / "run-2"
    second.release()


def test_the_lock_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from unetbench.records.run_folder import RunDir; "
            f"RunDir.create(__import__('pathlib').Path({str(tmp_path / 'run')!r}), ''); "
            "print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match=f"in use by process {holder.pid} on "):
        RunDir.open(tmp_path / "run", "")
    holder.kill()
    holder.wait()
    RunDir.open(tmp_path / "run", "").release()  # the kernel dropped the killed holder's lock


def test_states_of_a_folder(tmp_path):
    assert RunDir.state(tmp_path / "none") == "absent"
    run_dir = run(tiny_spec(iterations=1), out=tmp_path / "run", **quiet(tmp_path))
    assert RunDir.state(run_dir) == "finished"
    (run_dir / "record.json").unlink()
    assert RunDir.state(run_dir) == "started"


# --- checkpoints ----------------------------------------------------------------------------------------


def test_a_checkpoint_round_trips_plain_values(tmp_path):
    state = {
        "iteration": 3,
        "model": {"w": torch.arange(4.0)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "extra": {"bit_generator": "PCG64", "state": {"state": 2**100 + 1, "inc": 7}},
        "torch_rng": torch.get_rng_state(),
        "log": {"curve": [], "best": None},
        "pending_loss": torch.tensor(1.5),
        "pending_steps": 2,
    }
    save_checkpoint(tmp_path / "last.pt", state)
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["iteration"] == 3 and torch.equal(loaded["model"]["w"], torch.arange(4.0))
    assert loaded["extra"]["state"]["state"] == 2**100 + 1


def test_foreign_files_are_not_checkpoints(tmp_path):
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(UserError, match="foreign.pt: not a unetbench checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(UserError, match="junk.pt: damaged or not a checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


# --- typed records --------------------------------------------------------------------------------------


def test_a_record_reads_back_equal_and_names_a_bad_field(tmp_path, tiny_run):
    record = RunDir(tiny_run).read_record()
    assert record.run_id == tiny_run.name and record.training.iterations == 4
    assert record.training.scored_iteration in (4, *(p.iteration for p in record.training.validation))
    assert json.loads((tiny_run / "record.json").read_text()) == to_json(record)
    assert record.resolved_spec() == dataclasses.replace(
        tiny_spec(iterations=4), overrides=tuple(record.overrides)
    )
    payload = to_json(record)
    payload["sessions"][0]["pid"] = "many"
    (tmp_path / "bad.json").write_text(json.dumps(payload))
    with pytest.raises(UserError, match=r"bad.json: sessions\[0\].pid: must be a number, got a string"):
        read_json_record(tmp_path / "bad.json", RunRecord, what="a record", schema=2)


def test_git_revision_of_a_repository_and_outside_one(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.txt").write_text("1")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert git_revision(repo) == (head, False)
    (repo / "a.txt").write_text("2")
    assert git_revision(repo) == (head, True)
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_revision(outside) == (None, None)


# --- interrupts -----------------------------------------------------------------------------------------


def test_a_deferred_signal_waits_and_a_second_one_does_not():
    # what was there before: Python's default, or SIG_IGN in a background job without job control
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    with Interrupts() as interrupts:
        with interrupts.deferred():
            signal.raise_signal(signal.SIGTERM)
            assert interrupts.requested == "SIGTERM" and interrupts.stop_requested()
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):  # outside the deferred part: at once
            signal.raise_signal(signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # restored
    assert (exit_status("SIGINT"), exit_status("SIGTERM"), exit_status(None)) == (130, 143, 130)


def test_a_patient_deferral_lets_every_signal_wait():
    """The ranks of a torchrun run: a signal that arrives twice still waits for the agreed stop."""
    with Interrupts(patient=True) as interrupts:
        with interrupts.deferred():
            signal.raise_signal(signal.SIGTERM)
            signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt
            assert interrupts.stop_requested()
        with pytest.raises(KeyboardInterrupt):  # outside the deferred part: at once, as always
            signal.raise_signal(signal.SIGINT)


def test_json_ready_is_the_one_walker_every_json_writer_uses(tmp_path):
    """String keys, lists for tuples, Python numbers for NumPy scalars, null for NaN and infinities."""
    value = {1: (np.float32(1.5), float("nan"), [np.int64(2), float("-inf")]), "ok": "text"}
    assert json_ready(value) == {"1": [1.5, None, [2, None]], "ok": "text"}
    path = atomic_write_json(tmp_path / "x.json", value)
    assert json.loads(path.read_text()) == json_ready(value)
