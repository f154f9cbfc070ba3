"""Every committed report under reports/ renders again from its own records to the text committed, so each
carries the complete, current list of departures from the paper (``spec.paper.PAPER_SETTINGS``).

A run report ``reports/<challenge>/.../<run-id>.md`` has its ``record.json`` in the folder of the same name
beside it; an ablation or cross-validation report ``.../<name>.md`` has its bundle there (``ablation.json``,
``records/``). Each is rendered into a temporary reports folder from a copy of its records and compared line
for line, and its CSV too where it has one. Result files of benchmarks (reports/benchmarks/, and the GPU
calls' tables beside their logs in reports/em/device-logs/) are written by the benchmarks themselves, not
rendered from records, and are not walked here.
"""

import shutil
from pathlib import Path

import pytest

from unetbench.ablation import AblationDir
from unetbench.ablation.report import render_ablation_report
from unetbench.leaderboard.report import RECORD as COMPARISON
from unetbench.leaderboard.report import render_compare_folder
from unetbench.records.run_folder import RunDir
from unetbench.report.markdown import render_run_report
from unetbench.spec.paper import PAPER_SETTINGS

from .helpers import REPORTS

WRITTEN_BY_BENCHMARKS = {REPORTS / "benchmarks", REPORTS / "em" / "device-logs"}
RENDERED = sorted(
    path
    for path in REPORTS.rglob("*.md")
    if path.name != "README.md" and not WRITTEN_BY_BENCHMARKS & set(path.parents)
)
DEPARTURES = "What differs from the paper"


def _render(report: Path, root: Path) -> Path:
    """Render ``report`` again from a copy of its records under ``root``; return the new report."""
    source = report.with_suffix("")
    if (source / COMPARISON).is_file():  # a comparison: its record is compare.json
        copy = root / source.parent.name / source.name
        shutil.copytree(source, copy)
        return render_compare_folder(copy, root)
    if (source / AblationDir.MANIFEST).is_file():
        manifest, _ = AblationDir(source).read_runs()
        copy = root / manifest.challenge / source.name
        shutil.copytree(source, copy)
        return render_ablation_report(AblationDir(copy), root)[0]
    record = RunDir(source).read_record()
    copy = root / record.challenge / record.run_id
    shutil.copytree(source, copy)
    return render_run_report(copy, root)


def test_the_committed_reports_are_found():
    assert len(RENDERED) >= 8  # four ablation bundles, the cross-validation, four runs at the time of writing


@pytest.mark.parametrize("report", RENDERED, ids=lambda p: p.relative_to(REPORTS).as_posix())
def test_a_committed_report_renders_again_from_its_records(report, tmp_path, monkeypatch):
    source = report.with_suffix("")
    assert any((source / name).is_file() for name in (AblationDir.MANIFEST, "record.json", COMPARISON)), (
        f"{report.relative_to(REPORTS)} has no records beside it: it cannot be rendered again"
    )
    monkeypatch.chdir(tmp_path)  # the report names its records' folder relative to where it was rendered
    rendered = _render(report, Path("reports"))
    text = rendered.read_text(encoding="utf-8")
    assert text.splitlines() == report.read_text(encoding="utf-8").splitlines()
    if report.with_suffix(".csv").is_file():
        assert rendered.with_suffix(".csv").read_text() == report.with_suffix(".csv").read_text()
    if not (source / COMPARISON).is_file():  # a comparison ranks submissions; it runs no paper setting
        assert DEPARTURES in report.read_text(encoding="utf-8")


def test_a_report_lists_each_paper_setting_the_run_departs_from():
    """The departures section names a setting's topic exactly when the run departs from it (or the paper
    leaves it open): checked on the H100 run, which keeps most of the paper's settings, and on em-cpu."""
    for name in ("em/em-cuda-20261126-0915.md", "em-cpu/20261126-132557-19526d8c.md"):
        text = (REPORTS / name).read_text(encoding="utf-8")
        section = text[text.index(DEPARTURES) :].split("\n## ")[0]
        record = RunDir((REPORTS / name).with_suffix("")).read_record()
        spec = record.resolved_spec()
        for topic in {setting.topic for setting in PAPER_SETTINGS}:  # one topic may have a row per kind
            rows = [setting for setting in PAPER_SETTINGS if setting.topic == topic]
            departs = any(setting.difference(spec, spec.kind) is not None for setting in rows)
            assert departs == (f"- {topic}:" in section), (name, topic)
