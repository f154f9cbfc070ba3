"""The commands README and docs/ show are run, as written, by the suite (issue 30).

Every fenced shell block of README.md and docs/*.md that names ``unetbench`` carries a marker on the line
before it, and this test reads the markers:

- ``<!-- docs-test: run -->``: executed with bash, in order within its page, in a scratch folder of that
  page that holds the repository's ``challenges/`` (two pages run side by side, each command on one core:
  ``OMP_NUM_THREADS=1``) (a ``run-isbi`` block also needs the real ISBI 2012 data
  of ``../shared/datasets``, which ``$UNETBENCH_DATA`` names). One substitution shortens trainings, and it is
  the only one: ``unetbench run`` and ``unetbench ablate`` lines that give no ``--iterations`` get
  ``--iterations 20``, and every ``run``/``ablate`` line gets ``--no-progress``. A failing command fails
  the test with its output. The scratch folder holds a copy of the committed ``reports/`` too.
- ``<!-- docs-test: synopsis -->``: placeholders (``SPEC``, ``RUN_DIR``), not run.
- ``<!-- docs-test: skip REASON -->``: a command that cannot run here (a GPU, Slurm, a download, hours of
  CPU); pytest reports each with its reason, so the suite's summary counts them.

Every block, whatever its marker, has each ``--option`` it names checked against the ``--help`` of the
command it names: an option a page shows and the program lacks fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer

from unetbench.cli import app

from .helpers import REPO
from .helpers import SHARED_DATA as SHARED

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[\w-]*\n(.*?)^```", re.S | re.M)
MARKER = re.compile(r"<!-- docs-test: (run-isbi|run|synopsis|skip)(?: (.*?))? -->\s*$")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    kind: str  # run, run-isbi, synopsis, skip, or "" (no marker)
    reason: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    def script(self) -> str:
        """The block as bash runs it: continuation lines joined, the substitution applied to each
        ``unetbench run``/``ablate`` line (its comment dropped), every other line as written."""
        lines = []
        for line in self.text.replace("\\\n", " ").splitlines():
            command = line.split("  #", 1)[0].strip()
            lines.append(shortened(command) if re.match(r"^unetbench (run|ablate)\b", command) else line)
        return "set -euo pipefail\n" + "\n".join(lines)

    def commands(self) -> list[str]:
        """The block's command lines, continuation lines joined, comments dropped."""
        joined = self.text.replace("\\\n", " ")
        lines = [line.split("  #", 1)[0].strip() for line in joined.splitlines()]
        return [line for line in lines if line and not line.startswith("#")]


def blocks() -> list[Block]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if "unetbench " not in match.group(1):
                continue
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            marker = MARKER.search(before)
            kind, reason = (marker.group(1), marker.group(2) or "") if marker else ("", "")
            line = text[: match.start()].count("\n") + 1
            found.append(Block(page, line, kind, reason, match.group(1)))
    return found


BLOCKS = blocks()


def test_every_block_that_names_unetbench_is_marked():
    unmarked = [b.name for b in BLOCKS if not b.kind]
    assert unmarked == [], f"blocks without a <!-- docs-test: ... --> marker: {unmarked}"
    assert all(b.reason for b in BLOCKS if b.kind == "skip"), "a skipped block says why"


# --------------------------------------------------------------------------------------------------
# Every option a page names, against the program's --help


def _command(words: list[str]):
    """The click command ``unetbench words...`` names, and how many words named it."""
    command = typer.main.get_command(app)
    used = 0
    for word in words:
        sub = getattr(command, "commands", {}).get(word)
        if sub is None:
            break
        command, used = sub, used + 1
    return command, used


def _options(command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names |= {o for o in [*param.opts, *param.secondary_opts] if o.startswith("--")}
    return names


def _named_options(line: str) -> list[tuple[str, set[str]]]:
    """(option, the options of each command the line may mean) for every ``--option`` after
    ``unetbench``; a word with ``|`` (``export isbi2012|ctc|onnx``) means each of its choices."""
    words = line.split("unetbench ", 1)[1].split()
    first, second = words[0], words[1] if len(words) > 1 else ""
    commands = []
    for a in first.split("|"):
        for b in second.split("|") if "|" in second else [second]:
            command, _ = _command([a, b])
            commands.append(command)
    tail = line.split("unetbench ", 1)[1]
    return [(option, set.intersection(*(_options(c) for c in commands))) for option in OPTION.findall(tail)]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_every_option_a_page_names_is_one_the_command_takes(block):
    missing = []
    for line in block.commands():
        if "unetbench " not in line or line.startswith(("pip ", "torchrun")) and "-m unetbench" not in line:
            continue
        line = line.replace("-m unetbench ", "unetbench ")
        for option, known in _named_options(line):
            if option not in known:
                missing.append(f"{option} in `{line}`")
    assert missing == [], f"{block.name}: options the program does not take: {missing}"


# --------------------------------------------------------------------------------------------------
# The runnable blocks, run


def shortened(line: str) -> str:
    """The suite's one substitution (module docstring)."""
    if not re.match(r"^unetbench (run|ablate)\b", line):
        return line
    if "--iterations" not in line:
        line += " --iterations 20"
    return line + " --no-progress"


RUNNABLE = [b for b in BLOCKS if b.kind in ("run", "run-isbi", "skip")]
HAS_ISBI = (SHARED / "isbi2012" / "train-volume.tif").is_file()


def _to_run(block: Block) -> bool:
    return block.kind == "run" or (block.kind == "run-isbi" and HAS_ISBI)


def _run_page(blocks: list[Block], folder: Path, results: dict[str, Future]) -> None:
    """A page's runnable blocks, in order, in the page's scratch folder (which holds the repository's
    ``challenges/`` and a copy of the committed reports: a page's command may read one, a pilot, or
    render one again). One command line uses one core: two pages run side by side."""
    (folder / "challenges").symlink_to(REPO / "challenges")
    shutil.copytree(REPO / "reports", folder / "reports")
    env = {
        **os.environ,
        "UNETBENCH_DATA": str(SHARED),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "OMP_NUM_THREADS": "1",
    }
    for block in blocks:
        try:
            done = subprocess.run(
                ["bash", "-c", block.script()],
                cwd=folder,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            results[block.name].set_result(done)
        except BaseException as failed:  # a timeout: that block's test says so; the page goes on
            results[block.name].set_exception(failed)


@pytest.fixture(scope="module")
def page_runs(request, tmp_path_factory):
    """The pages whose blocks this session selected, every runnable block of each (a block may need the
    ones before it), started at the first test that asks, two pages at a time (the pages are
    independent: each has its own scratch folder); ``page_runs[name]`` is a block's Future."""
    selected = {
        item.callspec.params["block"].page
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_a_pages_commands_run_as_written"
    }
    pages: dict[Path, list[Block]] = {}
    for block in filter(_to_run, RUNNABLE):
        if block.page in selected:
            pages.setdefault(block.page, []).append(block)
    results = {block.name: Future() for blocks in pages.values() for block in blocks}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for page, blocks in pages.items():
            pool.submit(_run_page, blocks, tmp_path_factory.mktemp(page.stem), results)
        yield results
        pool.shutdown(cancel_futures=True)


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.name)
def test_a_pages_commands_run_as_written(block, request):
    if block.kind == "skip":
        pytest.skip(f"{block.name}: {block.reason}")
    if block.kind == "run-isbi" and not HAS_ISBI:
        pytest.skip(f"{block.name}: needs the real ISBI 2012 data in {SHARED}, absent here")
    done = request.getfixturevalue("page_runs")[block.name].result()
    assert done.returncode == 0, (
        f"{block.name} failed:\n{block.script()}\n--- output\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )


def _leaves(command, path=()):
    subs = getattr(command, "commands", None)
    if not subs:
        yield " ".join(path), command
        return
    for name, sub in subs.items():
        yield from _leaves(sub, (*path, name))


def test_every_option_the_program_takes_is_on_a_page():
    """The other direction: an option of some command that no page names is one nobody can find."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in PAGES)
    missing = []
    for path, command in _leaves(typer.main.get_command(app)):
        for param in command.params:
            names = [o for o in [*param.opts, *param.secondary_opts] if o.startswith("--") and o != "--help"]
            if names and not any(name in text for name in names):  # --progress/--no-progress: either
                missing.append(f"unetbench {path} {names[0]}")
    assert missing == [], f"options no page names: {missing}"
