"""README and docs: every link points at a file that exists, and every table of figures names the
committed file it comes from (a link into reports/ in the text that leads to the table)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
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


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_link_points_at_a_file_that_exists(page):
    missing = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://|#|mailto:", target):
            continue
        if not (page.parent / target.split("#")[0]).exists():
            missing.append(target)
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_table_of_figures_links_its_source(page):
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
            if not any("reports/" in target for target in LINK.findall(text)):
                unsourced.append(f"line {start + 1}: {lines[start][:60]}")
        previous_end = end
    assert unsourced == []
