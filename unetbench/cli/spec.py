"""``unetbench spec list | copy | show | check | paper``."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from unetbench.challenges.builtin import builtin_folder, builtin_specs
from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.cli.app import spec_app
from unetbench.errors import UserError
from unetbench.model.sizes import format_bytes, output_size
from unetbench.spec import dump_spec, parse_override, read_spec
from unetbench.system.atomic_writes import atomic_write_bytes
from unetbench.system.memory import memory_estimates


@spec_app.command("list")
def spec_list() -> None:
    """Name the built-in challenges, one line each: `unetbench run NAME` runs one, `spec copy NAME` writes
    a copy to edit."""
    specs = builtin_specs()
    if not specs:
        raise UserError(f"{builtin_folder()}: no built-in challenges here; give a spec file's path instead")
    width = max(map(len, specs))
    for name, path in specs.items():
        spec = read_spec(path)
        typer.echo(f"{name:<{width}}  {spec.data.dataset:<14}  {spec.description}")


@spec_app.command("copy")
def spec_copy(
    name: Annotated[str, typer.Argument(help="A built-in challenge (`unetbench spec list`).")],
    dest: Annotated[
        Path | None, typer.Argument(help="The file to write, or a folder for NAME.toml (default: NAME.toml).")
    ] = None,
) -> None:
    """Write a built-in challenge's spec, comments and all, to a file to edit and run."""
    specs = builtin_specs()
    if name not in specs:
        raise UserError(f"{name!r} is not a built-in challenge; built-in: {', '.join(specs) or 'none'}")
    target = dest if dest is not None else Path(f"{name}.toml")
    if target.is_dir():
        target = target / f"{name}.toml"
    if target.exists():
        raise UserError(f"{target}: exists already; give another destination or remove it")
    if not target.parent.is_dir():
        raise UserError(f"{target.parent}: no such folder; make it first or give another destination")
    atomic_write_bytes(target, specs[name].read_bytes())
    typer.echo(f"wrote {target} (built-in {name}); run it with `unetbench run {target}`")


@spec_app.command("show")
def spec_show(
    file: Annotated[Path, typer.Argument(help="A challenge spec: a file or a built-in name.")],
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
def spec_check(
    files: Annotated[list[Path], typer.Argument(help="Specs to validate: files or built-in names.")],
) -> None:
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
def spec_paper(
    files: Annotated[list[Path], typer.Argument(help="Specs to compare: files or built-in names.")],
) -> None:
    """Print, as a Markdown table, each of the paper's settings and how each spec departs from it (the
    settings a run's report lists under "What differs from the paper"; the lines that depend on a run's
    record, such as the data it scored and the weights it chose, are not in this table)."""
    from unetbench.report.departures import settings_table

    specs = {file.stem: load_spec(file) for file in files}
    if len(specs) < len(files):
        raise UserError("spec paper: two specs share a file name; give each a different name")
    typer.echo("\n".join(settings_table(specs)))
