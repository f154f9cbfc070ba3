"""README and docs: every link points at a file that exists, and every table of figures names the command
and the commit that made it and links the committed file it comes from (a command in backticks, a commit
hash and a link into reports/, or to the committed specs in challenges/ a table is computed from, in the
text that leads to the table)."""

import re

import pytest

from .helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINKED = [*PAGES, REPO / "reports" / "README.md"]  # the index of reports: its links are checked too
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# a commit: 7 to 40 hex digits, not part of a run's or an ablation's id (cv-9e3c3cf8, ablation-c0f59a7e/)
COMMIT = re.compile(r"(?<![\w/.-])(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}(?![\w/-]|\.\w)")
SOURCE = re.compile(r"(?:^|/)(?:reports|challenges)/")
COMMAND = re.compile(r"`(?:unetbench|python|bash|torchrun) [^`]+`")
FIGURE = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])|\d+(?:\.\d+)?\s?(?:%|s\b|ms\b|GiB\b|px\b)")


def _tables(lines: list[str]):
    """(first line, last line) of each Markdown table, 0-based."""
    start = None
    for number, line in enumerate([*lines, ""]):
        if line.startswith("|") and start is None:
            start = number
        elif not line.startswith("|") and start is not None:
            yield start, number - 1
            start = None


@pytest.mark.parametrize("page", LINKED, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_link_points_at_a_file_that_exists(page):
    missing = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_table_of_figures_names_its_command_commit_and_source(page):
    lines = page.read_text(encoding="utf-8").splitlines()
    unsourced = []
    previous_end = -1
    for start, end in _tables(lines):
        body = lines[start + 2 : end + 1]
        cells = [re.sub(r"`[^`]*`", "", cell) for row in body for cell in row.split("|")[2:]]  # not code
        if any(FIGURE.search(cell) for cell in cells):
            lead = lines[previous_end + 1 : start]
            heading = max((i for i, line in enumerate(lead) if line.startswith("#")), default=-1)
            text = "\n".join(lead[heading + 1 :])
            missing = [
                what
                for what, present in (
                    ("a link to its source", any(SOURCE.search(target) for target in LINK.findall(text))),
                    ("a commit", COMMIT.search(text)),
                    ("a command", COMMAND.search(text)),
                )
                if not present
            ]
            if missing:
                unsourced.append(f"line {start + 1} ({', '.join(missing)}): {lines[start][:60]}")
        previous_end = end
    assert unsourced == []


ANSWER_HEADER = "| variant | what it is | Δ "  # the first cells of headline_table's header
CSV_LINK = re.compile(r"\]\(((?:\.\./)?reports/[\w/-]+\.csv)\)")


@pytest.mark.parametrize("page", [REPO / "README.md", REPO / "docs" / "ablations.md"], ids=lambda p: p.name)
def test_every_ablation_answer_is_the_table_its_csv_makes(page):
    """Each primary-family table README and docs/ablations.md show is `headline_table` of the ablation CSV
    linked last before it, so it changes with the committed report and with nothing else."""
    from unetbench.ablation.report_answer import headline_table

    text = page.read_text(encoding="utf-8")
    lines = text.splitlines()
    answers = [(start, end) for start, end in _tables(lines) if lines[start].startswith(ANSWER_HEADER)]
    assert answers, f"{page.name}: no ablation answer table"
    for start, end in answers:
        before = "\n".join(lines[:start])
        links = CSV_LINK.findall(before)
        assert links, f"{page.name}, line {start + 1}: no ablation CSV linked before the table"
        made = headline_table(page.parent / links[-1])
        assert lines[start : end + 1] == made, (
            f"{page.name}, line {start + 1}: not headline_table({links[-1]})"
        )
