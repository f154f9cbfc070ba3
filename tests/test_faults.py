"""Faults on disk: a write the machine refuses stops the command with one line naming the file and the
system's reason; the previous checkpoint, record and report stay as they were, no temporary remains, and
``--resume`` finishes once the fault is gone with the scores of a run that never met it.

The refusals are real: tests/_wrapped_run.py lowers the subprocess's file-size limit (RLIMIT_FSIZE) when a
stage begins, and the kernel answers the stage's write with EFBIG.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import resource
except ImportError:  # Windows, skipped below
    resource = None

from unetbench.records.run_folder import RunDir
from unetbench.run.runner import run
from unetbench.system.atomic_writes import TEMPORARY_MARK, WriteFailed, atomic_write_text, refused_write
from unetbench.training.checkpoint import load_checkpoint

from .helpers import finish, quiet, start_run, tiny_spec, write_spec

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="file-size limits are POSIX")


LIMIT = 4096  # bytes: below a checkpoint, the predictions and the record of these runs; above the rest


def _temporaries(folder: Path) -> list[Path]:
    return list(folder.rglob(f"*{TEMPORARY_MARK}*"))


def _record(path: Path):
    return RunDir(path).read_record()


def _refused(args: list, cwd: Path, stage: str) -> str:
    status, _, err = finish(start_run(args, cwd=cwd, file_limit_at=f"{stage}:{LIMIT}"))
    lines = [line for line in err.splitlines() if not line.startswith("iteration ")]
    assert status == 1 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert f"File too large: the file-size limit (ulimit -f) is {LIMIT} bytes" in lines[0], lines[0]
    return lines[0]


def test_a_run_the_disk_refuses_at_each_stage_keeps_its_state_and_resumes_to_the_same_scores(tmp_path):
    spec = tiny_spec(iterations=6, **{"report.overlays": 0})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    straight = _record(run(spec, out=tmp_path / "straight", **quiet(tmp_path)))
    run_dir = tmp_path / "faulty"
    reports = tmp_path / "faulty-reports"
    first = ["run", spec_file, "--out", run_dir, "--reports", reports, "--no-progress"]
    again = ["run", spec_file, "--resume", run_dir, "--reports", reports, "--no-progress"]

    line = _refused(first, tmp_path, "checkpoint")
    assert f"{run_dir / 'checkpoints' / 'last.pt'}: cannot be written" in line
    assert (
        "nothing was written there" in line
        and f"resume with: unetbench run {run_dir / 'spec.toml'} --resume {run_dir}" in line
    )
    assert not (run_dir / "checkpoints" / "last.pt").exists() and not _temporaries(run_dir)

    line = _refused(again, tmp_path, "predictions")
    assert f"{run_dir / 'predictions.h5'}: cannot be written" in line and "resume with" in line
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == 6  # trained and kept
    assert not (run_dir / "predictions.h5").exists() and not _temporaries(run_dir)

    line = _refused(again, tmp_path, "record")
    assert f"{run_dir / 'record.json'}: cannot be written" in line
    assert not (run_dir / "record.json").exists() and not _temporaries(run_dir)

    status, _, err = finish(start_run(again, cwd=tmp_path))
    assert status == 0, err
    resumed = _record(run_dir)
    assert resumed.trained == straight.trained
    # every process that worked on the run, how it ended: the first failed writing its first checkpoint
    # (before the first step), the next two at predictions and record, the last finished
    assert [s.outcome for s in resumed.sessions] == ["failed", "failed", "failed", "finished"]
    assert [(s.first_iteration, s.last_iteration) for s in resumed.sessions] == [
        (0, 0),
        (0, 6),
        (6, 6),
        (6, 6),
    ]
    assert (reports / "quickstart" / f"{run_dir.name}.md").is_file() and not _temporaries(reports)


def test_a_refused_write_keeps_the_previous_file_and_names_the_reason(tmp_path, monkeypatch):
    target = atomic_write_text(tmp_path / "record.json", "old\n")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteFailed, match=r"record.json: cannot be written \(No space left on device on "):
        atomic_write_text(target, "new\n")
    assert target.read_text() == "old\n" and not _temporaries(tmp_path)


def test_errors_without_an_errno_are_put_down_to_the_machine_only_when_it_explains_them(tmp_path):
    torch_says = RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    assert refused_write(torch_says, tmp_path / "last.pt") is None  # no limit, space left, writable
    assert refused_write(ValueError("a bug"), tmp_path / "last.pt") is None
    assert refused_write(OSError(errno.EROFS, "Read-only file system"), tmp_path / "x").startswith(
        "Read-only"
    )


@pytest.mark.skipif(os.name == "posix" and os.geteuid() == 0, reason="root writes in read-only folders")
def test_a_read_only_run_folder_is_one_line_and_resumes_once_writable(tmp_path):
    spec = tiny_spec(iterations=6, **{"report.overlays": 0})
    spec_file = write_spec(tmp_path / "tiny.toml", spec)
    run_dir = tmp_path / "run"
    args = ["run", spec_file, "--out", run_dir, "--reports", tmp_path / "reports", "--no-progress"]
    status, _, err = finish(start_run(args, cwd=tmp_path, kill_at=4))
    (run_dir / "checkpoints").chmod(0o555)
    try:
        again = ["run", spec_file, "--resume", run_dir, "--reports", tmp_path / "reports", "--no-progress"]
        status, _, err = finish(start_run(again, cwd=tmp_path))
        lines = [line for line in err.splitlines() if not line.startswith("iteration ")]
        assert status == 1 and len(lines) == 1 and "permission denied" in lines[0].lower(), err
    finally:
        (run_dir / "checkpoints").chmod(0o755)
    status, _, err = finish(start_run(again, cwd=tmp_path))
    assert status == 0, err


def test_a_report_the_disk_refuses_keeps_the_previous_report(tmp_path):
    spec = tiny_spec(iterations=3, **{"report.overlays": 0})
    run_dir = run(spec, out=tmp_path / "run", **quiet(tmp_path))
    report = tmp_path / "reports" / "quickstart" / "run.md"
    before = report.read_bytes()
    limited = subprocess.run(
        [sys.executable, "-m", "unetbench", "report", str(run_dir), "--reports", str(tmp_path / "reports")],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY)),
        timeout=120,
    )
    assert limited.returncode == 1 and limited.stderr.count("\n") == 1, limited.stderr
    assert "cannot be written (File too large" in limited.stderr and "is kept" in limited.stderr
    assert report.read_bytes() == before and not _temporaries(tmp_path / "reports")


def test_a_report_write_killed_midway_leaves_a_temporary_that_the_next_write_sweeps(tmp_path):
    report = tmp_path / "reports" / "quickstart" / "run.md"
    killed = (
        "import os, signal, sys\nfrom pathlib import Path\n"
        "from unetbench.system.atomic_writes import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as temporary:\n"
        "    temporary.write_text('half a report')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    status = subprocess.run([sys.executable, "-c", killed, str(report)], timeout=60).returncode
    assert status == -9 and len(_temporaries(report.parent)) == 1
    alive = report.parent / f".run.md{TEMPORARY_MARK}{os.getpid()}-writing"  # a writer still at work
    alive.write_text("")
    spec = tiny_spec(iterations=3, **{"report.overlays": 0})
    run(spec, out=tmp_path / "run", **quiet(tmp_path))
    assert report.is_file() and _temporaries(report.parent) == [alive]
