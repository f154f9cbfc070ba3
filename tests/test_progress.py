"""What a run shows while it works, rendered into a string console: the status lines, the training bar's
loss and speed, lines printed while a bar is live, and the plain lines of --no-progress."""

from __future__ import annotations

import io

from rich.console import Console

from unetbench.run import progress
from unetbench.run.progress import Reporter


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


def test_stages_say_their_time_when_it_is_a_second_or_more(monkeypatch):
    clock = iter([10.0, 10.4, 20.0, 23.25])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    lines: list[str] = []
    reporter = Reporter(log=lines.append, bars=False)
    with reporter.stage("weight maps"):
        pass
    with reporter.stage("predicting"):
        pass
    assert lines == ["weight maps ...", "predicting ...", "predicting: 3.2 s"]


def test_the_training_bar_shows_iterations_loss_and_speed_and_lines_pass_above_it():
    console, out = _console()
    lines: list[str] = []
    reporter = Reporter(log=lines.append, console=console)
    with reporter.training(200, 50) as bar:
        bar.update(120, 0.4321, 3.5)
        with bar.validating():
            pass
        reporter.line("note: printed while the bar is live")
    drawn = out.getvalue()
    assert "120/200" in drawn and "loss 0.4321" in drawn and "3.50 it/s" in drawn
    assert "note: printed while the bar is live" in drawn and "  validation ..." in drawn
    assert lines == []  # everything went through the live console, nothing around it


def test_without_bars_the_training_reports_to_the_watch_and_prints_no_bar():
    console, out = _console()
    lines: list[str] = []
    seen: list[tuple[int, int]] = []
    reporter = Reporter(
        log=lines.append, bars=False, watch=lambda i, total: seen.append((i, total)), console=console
    )
    with reporter.training(10, 0) as bar:
        bar.update(3, 0.5, 1.0)
        bar.update(10, 0.4, 1.0)
        with bar.validating():
            pass
    assert seen == [(3, 10), (10, 10)] and lines == ["  validation ..."] and out.getvalue() == ""


def test_items_advance_a_transient_bar_that_leaves_only_the_stage_lines():
    console, out = _console()
    lines: list[str] = []
    reporter = Reporter(log=lines.append, console=console)
    with reporter.items("predicting", 3) as advance:
        for _ in range(3):
            advance()
    assert lines[0] == "predicting ..." and "3/3" in out.getvalue()
