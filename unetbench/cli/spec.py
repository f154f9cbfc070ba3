"""``unetbench spec show | check | paper``."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.cli.app import spec_app
from unetbench.errors import UserError
from unetbench.model.sizes import format_bytes, output_size
from unetbench.spec import dump_spec, parse_override
from unetbench.system.memory import memory_estimates


@spec_app.command("show")
def spec_show(
    file: Annotated[Path, typer.Argument(help="A challenge spec (TOML).")],
    overrides: Annotated[
        list[str], typer.Option("--set", help="Override a key, e.g. --set training.iterations=200.")
    ] = [],  # noqa: B006 - typer reads the default, it is never mutated
) -> None:
    """Print the resolved spec (every default filled in) as TOML."""
    spec = load_spec(file)
    if overrides:
        spec = apply_overrides(spec, [parse_override(o) for o in overrides], source="--set")
    typer.echo(dump_spec(spec), nl=False)


@spec_app.command("check")
def spec_check(files: Annotated[list[Path], typer.Argument(help="Challenge specs to validate.")]) -> None:
    """Validate specs; print one line per file and exit non-zero if any is invalid."""
    failed = 0
    for file in files:
        try:
            spec = load_spec(file)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            failed += 1
            continue
        m = spec.model
        out = output_size(spec.training.tile_size, depth=m.depth, padding=m.padding)
        memory = memory_estimates(spec)
        typer.echo(
            f"ok     {file}  ({spec.data.dataset}; U-Net depth {m.depth}, {m.base_channels} channels, "
            f"{m.padding} padding; training tile {spec.training.tile_size} -> {out} px; about "
            f"{format_bytes(memory['training'])} per training step, {format_bytes(memory['inference'])} per "
            "inference batch)"
        )
    if failed:
        raise typer.Exit(1)


@spec_app.command("paper")
def spec_paper(files: Annotated[list[Path], typer.Argument(help="Challenge specs to compare.")]) -> None:
    """Print, as a Markdown table, each of the paper's settings and how each spec departs from it (the
    settings a run's report lists under "What differs from the paper"; the lines that depend on a run's
    record, such as the data it scored and the weights it chose, are not in this table)."""
    from unetbench.report.departures import settings_table

    specs = {file.stem: load_spec(file) for file in files}
    if len(specs) < len(files):
        raise UserError("spec paper: two specs share a file name; give each a different name")
    typer.echo("\n".join(settings_table(specs)))
