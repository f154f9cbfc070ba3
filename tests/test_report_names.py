"""A report never replaces another run's or another ablation's: two of one last name keep two reports, and
rendering one again finds its own (issue 30, bug 1)."""

from pathlib import Path

from unetbench.cli import main
from unetbench.run.runner import run

from .helpers import quiet, tiny_spec, write_spec


def test_two_runs_whose_folders_share_a_last_name_keep_two_reports(tmp_path, capsys):
    spec = tiny_spec(iterations=2, **{"report.overlays": 0})
    for parent in ("p1", "p2"):
        run(spec, out=tmp_path / parent / "same", **quiet(tmp_path))
    reports = tmp_path / "reports" / "quickstart"
    assert sorted(p.name for p in reports.glob("*.md")) == ["same-2.md", "same.md"]
    first, second = (reports / "same.md").read_text(), (reports / "same-2.md").read_text()
    assert "--out" not in first  # written by runner.run: the sessions' commands are pytest's
    assert "](same-2/training-curve.png)" in second and "](same/" not in second
    # rendering each again writes its own report, not the other's
    for parent, name in (("p2", "same-2.md"), ("p1", "same.md")):
        assert main(["report", str(tmp_path / parent / "same"), "--reports", str(tmp_path / "reports")]) == 0
        assert capsys.readouterr().out.strip().endswith(name)
    assert sorted(p.name for p in reports.glob("*.md")) == ["same-2.md", "same.md"]
    assert (reports / "same.md").read_text() == first and (reports / "same-2.md").read_text() == second


def test_two_ablations_of_one_last_name_keep_two_reports(tmp_path, capsys):
    spec_file = write_spec(tmp_path / "tiny.toml", tiny_spec(iterations=2, **{"report.overlays": 0}))
    reports = ["--set", f"report.directory={tmp_path / 'reports'}"]
    for parent, seeds in (("p1", "1"), ("p2", "2")):
        command = ["ablate", str(spec_file), "--no-weightmap", "--seeds", seeds, *reports]
        assert main([*command, "--out", str(tmp_path / parent / "abl"), "--no-progress"]) == 0
    capsys.readouterr()
    folder = tmp_path / "reports" / "quickstart"
    assert sorted(p.name for p in folder.glob("*.md")) == ["abl-2.md", "abl.md"]
    assert "2 seed(s)" in (folder / "abl-2.md").read_text() and "1 seed(s)" in (folder / "abl.md").read_text()
    before = (folder / "abl.md").read_text()
    assert main(["report", str(tmp_path / "p1" / "abl"), "--reports", str(tmp_path / "reports")]) == 0
    assert capsys.readouterr().out.strip().endswith("abl.md")
    assert (folder / "abl.md").read_text() == before and len(list(folder.glob("*.md"))) == 2


def test_a_report_whose_records_cannot_be_read_is_never_taken_for_ones_own(tmp_path):
    from unetbench.report.owners import run_report_path

    folder = tmp_path / "reports"
    (folder / "same").mkdir(parents=True)
    (folder / "same.md").write_text("# an older report, without its record\n")
    assert run_report_path(folder, "same", ("2026-12-07T10:00:00+0000", "host", 1)) == folder / "same-2.md"
    assert run_report_path(Path(tmp_path / "empty"), "same", None).name == "same.md"
