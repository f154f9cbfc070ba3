"""The table of the paper's settings (spec/paper.py): a row is silent exactly where a run keeps the
paper's setting, speaks where the paper gives none, and never shows a value the run did not use."""

from unetbench.cli import main
from unetbench.spec import read_spec, with_overrides
from unetbench.spec.paper import PAPER_SETTINGS

from .helpers import REPO

PAPER = read_spec(REPO / "challenges" / "em.toml")


def _line(topic: str, spec, kind: str = "em") -> str | None:
    row = next(row for row in PAPER_SETTINGS if row.topic == topic and row.kind in ("", kind))
    return row.difference(spec, kind)


def test_the_papers_own_settings_are_not_departures():
    for topic in ("Network depth", "Network width", "Convolutions", "Optimiser", "Weight map border term"):
        assert _line(topic, PAPER) is None, topic
    assert _line("Elastic deformation", PAPER) is None  # 285.5 px apart on a 572 px tile: the 3x3 grid
    assert _line("Prediction", PAPER) is None  # a 572 px tile does not cover a 512 px slice


def test_what_the_values_alone_do_not_show_is_said():
    """The interpretations and the settings that mean something else at another tile size."""
    em_cpu = read_spec(REPO / "challenges" / "em-cpu.toml")
    tta = _line("Test-time averaging", PAPER)
    assert tta.startswith("Test-time averaging: tta dihedral (") and "an interpretation" in tta
    assert "splits-and-mergers" in _line("Warping error", PAPER)
    elastic = _line("Elastic deformation", em_cpu)
    assert "285.5 px apart on a 252 px tile, which spans 0.88 grid spacings" in elastic
    other = _line("Other augmentation", em_cpu)
    assert "shifts off, which the paper names" in other and "flips added" in other
    assert "one 604 px input tile (516 px output) covers a whole 512x512 image" in _line("Prediction", em_cpu)
    zeros = with_overrides(PAPER, {"inference.border": "zeros"})
    assert _line("Prediction", zeros).startswith("Prediction: tiling overlap-tile, border zeros (")


def test_a_row_the_paper_leaves_open_is_always_listed_with_the_runs_value():
    assert _line("Weight decay", PAPER) == "Weight decay: weight_decay 0.0 (the paper gives none)."


def test_a_changed_setting_is_listed_with_the_value_that_ran():
    sgd = with_overrides(PAPER, {"training.momentum": 0.9})
    assert _line("Optimiser", sgd) == "Optimiser: optimizer sgd, momentum 0.9 (paper: SGD, momentum 0.99)."


def test_adam_is_not_said_to_use_a_momentum():
    adam = with_overrides(PAPER, {"training.optimizer": "adam", "training.momentum": 0.9})
    line = _line("Optimiser", adam)
    assert line.startswith("Optimiser: optimizer adam, momentum unused by Adam") and "0.9," not in line


def test_docs_show_the_table_that_spec_paper_prints_for_the_committed_specs(capsys):
    """docs/paper.md holds the output of the command it names, at every commit."""
    names = ("em", "em-cpu", "phc-u373", "dic-hela")
    assert main(["spec", "paper", *(str(REPO / "challenges" / f"{name}.toml") for name in names)]) == 0
    table = capsys.readouterr().out.strip()
    assert table.splitlines()[0] == "| setting | the paper | " + " | ".join(names) + " |"
    assert len(table.splitlines()) == 2 + len(PAPER_SETTINGS)  # every row applies to one of them
    assert table in (REPO / "docs" / "paper.md").read_text(encoding="utf-8")


def test_spec_paper_refuses_two_specs_of_one_name(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    copy = tmp_path / "a" / "em.toml"
    copy.write_text((REPO / "challenges" / "em.toml").read_text())
    assert main(["spec", "paper", str(REPO / "challenges" / "em.toml"), str(copy)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (
        "error: spec paper: two specs share a file name; give each a different name"
    )


def test_spec_paper_names_a_spec_it_cannot_read(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    text = (REPO / "challenges" / "em.toml").read_text()
    bad.write_text(text.replace("momentum = 0.99", "momentun = 0.99"))
    for path, says in ((tmp_path / "none.toml", "no such file"), (bad, "training.momentun: unknown key")):
        assert main(["spec", "paper", str(REPO / "challenges" / "em.toml"), str(path)]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        (line,) = captured.err.strip().splitlines()
        assert line.startswith(f"error: {path}") and says in line
