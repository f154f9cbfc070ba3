"""The benchmarks write their own result files: the command, the commit and the machine above the figures,
so a table in the docs is copied from a file, not from a terminal."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import REPO


def _bench(script: str, *args: str, out: Path) -> str:
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {out}" in done.stdout
    return out.read_text(encoding="utf-8")


def _header_names_command_commit_and_machine(text: str, script: str) -> None:
    lines = text.splitlines()
    assert lines[2].startswith(f"- command: `python benchmarks/{script} ")
    assert re.match(r"- commit: `([0-9a-f]{12}(\+changes)?|unknown)`; Python 3\.\d+", lines[3])
    assert re.match(r"- machine: .+, \d+ cores \(", lines[4])


def test_synthetic_speed_writes_its_result(tmp_path):
    text = _bench("synthetic_speed.py", "--repeats", "1", out=tmp_path / "synthetic.md")
    _header_names_command_commit_and_machine(text, "synthetic_speed.py")
    assert text.splitlines()[0] == "# Synthetic data: speed"
    assert re.search(r"^EM-like slice +\d+\.\d ", text, flags=re.M)


def test_train_throughput_writes_its_table_as_markdown(tmp_path):
    """The table is Markdown already, so the file holds it as it is (no code block), under the header."""
    arguments = ["--device", "cpu", "--steps", "1", "--warm-up", "0"]  # a format check: no warm-up
    text = _bench("train_throughput.py", *arguments, out=tmp_path / "train.md")
    _header_names_command_commit_and_machine(text, "train_throughput.py")
    assert "```" not in text
    (row,) = [line for line in text.splitlines() if re.match(r"\| 1 \| (fp32|bf16) \| off \|", line)]
    assert float(row.split("|")[5]) > 0  # tiles/s


def test_fresh_machine_times_readmes_two_commands_in_fresh_clones(tmp_path):
    """The script reads both commands from README at HEAD (or at a commit it is given), runs each in its
    own clone and venv, splits it at its last ' && ', and exits non-zero when a command fails, saying so in
    the table."""
    repo = tmp_path / "repo"
    (repo / "benchmarks").mkdir(parents=True)
    (repo / "benchmarks" / "fresh_machine.sh").write_text(
        (REPO / "benchmarks" / "fresh_machine.sh").read_text()
    )
    (repo / "README.md").write_text(
        "# x\n\n## Fresh machine\n\n```bash\npython --version && echo ran > ran.txt\n```\n\n"
        "<!-- ci:test-command -->\n```bash\n"
        'python --version && python -c "print(\\"2 passed, 1 failed in 0.1s\\"); raise SystemExit(1)"\n```\n'
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run([*git, *command], cwd=repo, check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k != "KEEP"}  # KEEP=1 keeps the clones: not asked here
    done = subprocess.run(
        ["bash", "benchmarks/fresh_machine.sh", str(tmp_path / "out.md")],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    lines = (tmp_path / "out.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith(("| first", "| tests"))]
    assert [row.split("|")[2].strip() for row in rows] == [
        "`python --version`",
        "`echo ran > ran.txt`",
        "`python --version`",
        '`python -c "print(\\"2 passed, 1 failed in 0.1s\\"); raise SystemExit(1)"`'
        " (2 passed, 1 failed in 0.1s)",
    ]
    assert [row.split("|")[4].strip() for row in rows] == ["0", "0", "0", "1"]
    assert not list(tmp_path.glob("fresh-*"))  # the clones, beside the repository, are removed

    # an older commit, timed on the same machine: its README's commands, in clones checked out there
    first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True)
    readme = (repo / "README.md").read_text().replace("raise SystemExit(1)", "raise SystemExit(0)")
    (repo / "README.md").write_text(readme.replace("echo ran", "echo again"))
    subprocess.run([*git, "commit", "-qam", "y"], cwd=repo, check=True, capture_output=True)
    script = ["bash", "benchmarks/fresh_machine.sh", str(tmp_path / "old.md"), first.stdout.strip()[:7]]
    done = subprocess.run(script, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr  # the old commit's failing test command
    old = (tmp_path / "old.md").read_text()
    assert f"fresh clone of commit\n  `{first.stdout[:12]}`" in old and "`echo ran > ran.txt`" in old
    for bad in ("nosuchcommit", "a b"):
        done = subprocess.run([*script[:3], bad], cwd=repo, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "is not a commit" in done.stderr


BENCHMARKS_WITH_OUT = sorted(
    path.name for path in (REPO / "benchmarks").glob("*.py") if '"--out"' in path.read_text(encoding="utf-8")
)


@pytest.mark.parametrize("script", BENCHMARKS_WITH_OUT)
def test_a_result_file_in_a_missing_folder_is_refused_before_measuring(script, tmp_path):
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", "--out", str(tmp_path / "missing" / "result.md")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        f"{script}: error: argument --out: {tmp_path / 'missing' / 'result.md'}: folder "
        f"{tmp_path / 'missing'} does not exist; make it first"
    )
    assert "Traceback" not in done.stderr and not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    "script, arguments, says",
    [
        (
            "isbi_metrics_speed.py",
            ["--against", "no-such-commit"],
            "argument --against: no-such-commit: not a commit",
        ),
        (
            "isbi_metrics_speed.py",
            ["--against", "HEAD", "--rounds", "0"],
            "argument --rounds: 0: give a whole",
        ),
        ("train_throughput.py", ["--warm-up", "-1"], "argument --warm-up: -1: give a whole number >= 0"),
    ],
)
def test_bad_benchmark_arguments_are_one_line_before_measuring(script, arguments, says):
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert says in done.stderr.splitlines()[-1], done.stderr
