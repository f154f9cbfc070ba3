"""The ``unetbench`` command line's apps and what its command groups share: the options every command
reads the same way (``--data-root``, ``--track``), the console, and the spec a command line makes.

Each command module (:mod:`unetbench.cli.run`, ...) is a thin layer over functions the tests call.
Commands import their heavy libraries (torch, matplotlib, Ray, MLflow, onnx) when they run, so that
``unetbench evaluate`` and ``unetbench spec check`` start without torch; the imports inside commands are
those, and nothing else.
"""

import enum
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from unetbench import __version__
from unetbench.challenges.loading import apply_overrides
from unetbench.spec import DEVICES, parse_override
from unetbench.tracking.trackers import KINDS as TRACKERS

app = typer.Typer(
    name="unetbench",
    help="Reproduce and measure U-Net on ISBI 2012 and the Cell Tracking Challenge.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


spec_app = typer.Typer(help="Check and show challenge specs.", no_args_is_help=True)


data_app = typer.Typer(help="Fetch, import, generate and list data sets.", no_args_is_help=True)


app.add_typer(spec_app, name="spec")


app.add_typer(data_app, name="data")


export_app = typer.Typer(
    help="Write challenge submissions or model files (TorchScript, ONNX, bioimage.io) from a finished run.",
    no_args_is_help=True,
)


app.add_typer(export_app, name="export")


def choice(name: str, values: Iterable[str]) -> type[enum.Enum]:
    """An option's choices as typer wants them, an :class:`enum.Enum` whose members are ``values`` (read
    from the module that owns them): ``--help`` lists them and the parser refuses any other in one line.
    A command takes ``option.value``."""
    return enum.Enum(name, {value: value for value in values}, type=str)


def value_of(option: enum.Enum | None) -> str | None:
    return option.value if option is not None else None


DeviceChoice = choice("DeviceChoice", DEVICES)
TrackChoice = choice("TrackChoice", TRACKERS)


DataRoot = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help="Where data sets live. Default: $UNETBENCH_DATA, else the per-user cache directory.",
        show_default=False,
    ),
]


def _console() -> Console:
    # A log file or CI gets wide tables instead of cells wrapped at 80 columns.
    return Console(width=None if sys.stdout.isatty() else 400)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unetbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Reproduce and measure U-Net on ISBI 2012 and the Cell Tracking Challenge."""


def _with_command_line(spec, overrides: list[str], *, device=None, iterations=None):
    """The spec with ``--set KEY=VALUE``, ``--device`` and ``--iterations`` applied and recorded."""
    changes = [parse_override(o) for o in overrides]
    if device is not None:
        changes.append(("training.device", device))
    if iterations is not None:
        changes.append(("training.iterations", iterations))
    return apply_overrides(spec, changes, source="command line") if changes else spec


Track = Annotated[
    list[TrackChoice],
    typer.Option(
        "--track",
        help="Also show the run in tensorboard (event files in the run folder) or mlflow "
        "(MLFLOW_TRACKING_URI, else a local store beside the run); repeatable.",
    ),
]


def _print_table(title: str, header: list[str], rows: list[list[str]], caption: str | None = None) -> None:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    _console().print(table)
