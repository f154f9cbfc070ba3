"""``unetbench data fetch | import | synth | info``."""

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from unetbench.cli.app import DataRoot, _console, choice, data_app
from unetbench.datasets import DATASETS, dataset_location, get_adapter, resolve_data_root, synthetic
from unetbench.datasets.download import staged_directory
from unetbench.errors import UserError
from unetbench.spec import MAX_GENERATED_PIXELS

# the data sets generated in memory, and how they are written
GeneratedChoice = choice(
    "GeneratedChoice", [name for name, adapter in DATASETS.items() if not adapter.folder]
)
LayoutChoice = choice("LayoutChoice", synthetic.LAYOUTS)
LookChoice = choice("LookChoice", synthetic.LOOKS)


def _on_disk(name: str):
    adapter = get_adapter(name)
    if not adapter.folder:
        raise UserError(
            f"{name} is generated in memory from a spec; write it to disk with `unetbench data synth {name}`"
        )
    return adapter


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="isbi2012, phc-u373 or dic-hela.")],
    data_root: DataRoot = None,
    mirror: Annotated[
        str | None,
        typer.Option(help="Base URL of a mirror holding the same files (same names, same sha256)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace data that is already present.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Download a data set's official files, verify their sha256, and put them in the data root."""
    adapter = _on_disk(name)
    assert adapter.fetch is not None  # every on-disk adapter can fetch
    final = dataset_location(adapter, data_root)
    with staged_directory(final, force=force) as stage:
        adapter.fetch(stage, mirror=mirror, progress=progress)
    typer.echo(f"{name}: fetched and verified into {final}")
    typer.echo(f"Please cite: {adapter.citation}")


@data_app.command("import")
def data_import(
    name: Annotated[str, typer.Argument(help="isbi2012, phc-u373 or dic-hela.")],
    path: Annotated[
        Path, typer.Argument(help="Your copy: a folder in any layout the adapter reads (or a file).")
    ],
    data_root: DataRoot = None,
    force: Annotated[bool, typer.Option("--force", help="Replace data that is already present.")] = False,
) -> None:
    """Bring files you already have into the data root, after checking them."""
    adapter = _on_disk(name)
    assert adapter.import_files is not None
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    final = dataset_location(adapter, data_root)
    with staged_directory(final, force=force) as stage:
        adapter.import_files(path, stage)
        found = adapter.describe(stage)
        if found.status != "present":
            raise UserError(f"{path}: {found.detail}")
    typer.echo(
        f"{name}: imported {found.labelled} labelled and {found.unlabelled} unlabelled samples into {final}"
    )


@data_app.command("synth")
def data_synth(
    name: Annotated[
        GeneratedChoice,
        typer.Argument(help="synthetic-em (ISBI 2012 layout) or synthetic-cells (CTC layout)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to create; it must not exist yet.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    samples: Annotated[int, typer.Option(min=1, help="Labelled samples (EM: and as many test slices).")] = 30,
    height: Annotated[int, typer.Option(min=32, max=8192)] = 512,
    width: Annotated[int, typer.Option(min=32, max=8192)] = 512,
    layout: Annotated[LayoutChoice, typer.Option(help="synthetic-em only.")] = LayoutChoice["tiff"],
    look: Annotated[LookChoice, typer.Option(help="synthetic-cells only.")] = LookChoice["phase"],
) -> None:
    """Write a synthetic data set in the real layout, readable by the real adapters."""
    name, layout, look = name.value, layout.value, look.value
    if out.exists():
        raise UserError(f"{out} already exists; choose a new folder for --out")
    if samples * height * width > MAX_GENERATED_PIXELS:
        raise UserError(
            f"--samples: {samples} samples of {height}x{width} px are {samples * height * width:,} "
            f"pixels, more than {MAX_GENERATED_PIXELS:,} (about "
            f"{MAX_GENERATED_PIXELS // (height * width):,} samples of this size); write fewer"
        )
    with staged_directory(out) as stage:
        if name == "synthetic-em":
            written = synthetic.write_em(
                stage, seed=seed, samples=samples, height=height, width=width, layout=layout
            )
            reader = "isbi2012"
        else:
            written = synthetic.write_cells(
                stage, seed=seed, samples=samples, height=height, width=width, look=look
            )
            reader = "dic-hela" if look == "dic" else "phc-u373"
    shown = out / written.relative_to(stage) if written != stage else out
    typer.echo(
        f"{name}: wrote {samples} labelled samples to {shown} "
        f"(readable as {reader}: data.root = {str(shown)!r})"
    )


@data_app.command("info")
def data_info(data_root: DataRoot = None) -> None:
    """List the data sets and what is present in the data root."""
    root = resolve_data_root(data_root)
    table = Table(title=f"Data root: {root}", title_justify="left")
    for column in ("data set", "status", "labelled", "unlabelled", "location", "details"):
        table.add_column(column, overflow="fold")
    for adapter in DATASETS.values():
        location = dataset_location(adapter, data_root) if adapter.folder else None
        found = adapter.describe(location) if location else adapter.describe(Path())
        style = {"present": "green", "invalid": "red", "absent": "dim"}.get(found.status, "")
        count = found.status == "present"
        detail = found.detail
        if found.status == "absent":  # only sets read from disk can be absent, and each can be fetched
            detail = (
                f"get it with `unetbench data fetch {adapter.name}` (or `unetbench data import "
                f"{adapter.name} PATH` for a copy you have)"
            )
        table.add_row(
            adapter.name,
            f"[{style}]{found.status}[/]" if style else found.status,
            str(found.labelled) if count else "",
            str(found.unlabelled) if count else "",
            escape(str(location)) if location else "",
            escape(detail),
        )
    _console().print(table)
