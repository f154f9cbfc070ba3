"""What a run shows while it works: a status line per stage and progress bars for long loops.

Plumbing only (STYLE.md, principle 14): the run's stages call a :class:`Reporter`; it decides nothing.
With ``bars=False`` (``--no-progress``, logs, CI) it prints the status lines alone.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from unetbench.training.trainer import TrainingProgress


class Reporter:
    """``watch(iteration, total)``, when given, hears of every training step (an ablation executor's
    table of runs); it should return at once. ``console``: where the bars are drawn (rich's own console,
    the terminal, unless given)."""

    def __init__(
        self,
        *,
        log: Callable[[str], None] = print,
        bars: bool = True,
        watch: Callable[[int, int], None] | None = None,
        console: Console | None = None,
    ):
        self._log = log
        self.bars = bars
        self.watch = watch
        self._console = console
        self._live: Progress | None = None

    def line(self, text: str) -> None:
        if self._live is not None:
            self._live.console.print(text, markup=False, highlight=False)
        else:
            self._log(text)

    @contextlib.contextmanager
    def stage(self, title: str) -> Iterator[None]:
        """``title ...`` when the stage starts; ``title: 3.2 s`` when it ends, if it took a second or more."""
        self.line(f"{title} ...")
        start = time.perf_counter()
        yield
        seconds = time.perf_counter() - start
        if seconds >= 1:
            self.line(f"{title}: {seconds:.1f} s")

    @contextlib.contextmanager
    def items(self, title: str, total: int) -> Iterator[Callable[[], None]]:
        """A stage over ``total`` items (images); yields ``advance()``."""
        with self.stage(title):
            if not self.bars or total < 2:
                yield lambda: None
                return
            columns = (TextColumn(f"  {title}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(*columns, transient=True, console=self._console) as bar:
                task = bar.add_task(title, total=total)
                self._live = bar
                try:
                    yield lambda: bar.advance(task)
                finally:
                    self._live = None

    @contextlib.contextmanager
    def training(self, total: int, completed: int) -> Iterator[TrainingProgress]:
        """A training bar with loss, iterations per second and time left; validation shows a status line."""

        @contextlib.contextmanager
        def validating() -> Iterator[None]:
            with self.stage("  validation"):
                yield

        if not self.bars:
            watch = self.watch
            if watch is None:
                yield TrainingProgress(validating=validating)
            else:
                yield TrainingProgress(update=lambda i, loss, speed: watch(i, total), validating=validating)
            return
        columns = (
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  {task.fields[speed]:.2f} it/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self._console) as bar:
            task = bar.add_task("train", total=total, completed=completed, loss=float("nan"), speed=0.0)
            self._live = bar
            try:
                yield TrainingProgress(
                    update=lambda iteration, loss, speed: bar.update(
                        task, completed=iteration, loss=loss, speed=speed
                    ),
                    validating=validating,
                )
            finally:
                self._live = None
