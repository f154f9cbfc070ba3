"""The ``unetbench`` command line.

User errors (a bad spec, missing data, a wrong option value) print one line ``error: ...`` on stderr and
exit with status 1; a traceback means a bug in unetbench.
"""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from unetbench import __version__
from unetbench.ablation.plan import SWITCHES
from unetbench.datasets import DATASETS, dataset_location, get_adapter, resolve_data_root, synthetic
from unetbench.datasets.download import staged_directory
from unetbench.errors import PeerExit, RunInterrupted, UserError
from unetbench.model.sizes import format_bytes, output_size
from unetbench.spec import MAX_GENERATED_PIXELS, dump_spec, parse_override
from unetbench.spec_checks import apply_overrides, load_spec, memory_estimates

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


# ---------------------------------------------------------------------------------------------- spec


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
    from unetbench.report.paper import settings_table

    specs = {file.stem: load_spec(file) for file in files}
    if len(specs) < len(files):
        raise UserError("spec paper: two specs share a file name; give each a different name")
    typer.echo("\n".join(settings_table(specs)))


# ---------------------------------------------------------------------------------------------- data


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
        str, typer.Argument(help="synthetic-em (ISBI 2012 layout) or synthetic-cells (CTC layout).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder to create; it must not exist yet.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    samples: Annotated[int, typer.Option(min=1, help="Labelled samples (EM: and as many test slices).")] = 30,
    height: Annotated[int, typer.Option(min=32, max=8192)] = 512,
    width: Annotated[int, typer.Option(min=32, max=8192)] = 512,
    layout: Annotated[str, typer.Option(help="synthetic-em only: tiff, hdf5 or slices.")] = "tiff",
    look: Annotated[str, typer.Option(help="synthetic-cells only: phase or dic.")] = "phase",
) -> None:
    """Write a synthetic data set in the real layout, readable by the real adapters."""
    if name not in ("synthetic-em", "synthetic-cells"):
        raise UserError(f"unknown synthetic data set {name!r}; valid choices: synthetic-em, synthetic-cells")
    for option, value, choices in (
        ("--layout", layout, ("tiff", "hdf5", "slices")),
        ("--look", look, ("phase", "dic")),
    ):
        if value not in choices:
            raise UserError(f"{option}: unknown value {value!r}; valid choices: {', '.join(choices)}")
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


# ---------------------------------------------------------------------------------------------- run


def _with_command_line(spec, overrides: list[str], *, device=None, iterations=None):
    """The spec with ``--set KEY=VALUE``, ``--device`` and ``--iterations`` applied and recorded."""
    changes = [parse_override(o) for o in overrides]
    if device is not None:
        changes.append(("training.device", device))
    if iterations is not None:
        changes.append(("training.iterations", iterations))
    return apply_overrides(spec, changes, source="command line") if changes else spec


Track = Annotated[
    list[str],
    typer.Option(
        "--track",
        help="Also show the run in tensorboard (event files in the run folder) or mlflow "
        "(MLFLOW_TRACKING_URI, else a local store beside the run); repeatable.",
    ),
]


@app.command("run")
def run_command(
    spec_file: Annotated[Path, typer.Argument(help="A challenge spec, e.g. challenges/quickstart.toml.")],
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: the spec's).")] = None,
    iterations: Annotated[int | None, typer.Option(help="Training iterations (default: the spec's).")] = None,
    out: Annotated[Path | None, typer.Option(help="Run directory (default: runs/<name>/<run-id>).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory.")] = None,
    reports: Annotated[
        Path | None, typer.Option(help="Reports folder (default: the spec's report.directory).")
    ] = None,
    overrides: Annotated[
        list[str], typer.Option("--set", help="Override a spec key, e.g. --set training.learning_rate=0.001.")
    ] = [],  # noqa: B006 - typer reads the default, it is never mutated
    data_root: DataRoot = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    gpus: Annotated[
        int | None,
        typer.Option(
            help="Train on N GPUs of this machine: N processes through torchrun, data-parallel "
            "(effective batch N x training.batch_size; the learning rate is not scaled).",
            show_default=False,
        ),
    ] = None,
    folds: Annotated[
        int | None,
        typer.Option(
            help="Cross-validate: one run per fold of K contiguous folds of the labelled images (fold k "
            "evaluates, k+1 validates, the rest trains; whole sequences for the cell data), and a report "
            "of every image scored out of fold. --out names its folder; the same command resumes it.",
            show_default=False,
        ),
    ] = None,
    runs_per_device: Annotated[
        int, typer.Option(help="With --folds: runs at once on the device, each in a process of its own.")
    ] = 1,
    track: Track = [],  # noqa: B006 - typer reads the default, it is never mutated
) -> None:
    """Train U-Net as the spec says, predict with overlap-tile, evaluate, and write the report."""
    from unetbench.atomic import check_folder
    from unetbench.runner import run
    from unetbench.tracking import Tracking, check_kinds

    spec = load_spec(spec_file)
    kinds = check_kinds(track)
    if folds is not None:
        for option, value in (("--resume", resume), ("--gpus", gpus), ("--reports", reports)):
            if value is not None:
                raise UserError(
                    f"{option} does not go with --folds (a cross-validation resumes when the same command "
                    "runs again, on one device, reporting to report.directory)"
                )
        spec = _with_command_line(spec, overrides, device=device, iterations=iterations)
        _finish_ablation(
            spec,
            spec_file,
            [],
            kind="cross-validation",
            folds=folds,
            given=overrides,
            out=out,
            data_root=data_root,
            progress=progress,
            runs_per_device=runs_per_device,
            track=kinds,
        )
        return
    if runs_per_device != 1:
        raise UserError("--runs-per-device goes with --folds (one run uses one device)")
    if reports is not None:
        check_folder(reports, what="--reports folder")
    if out is not None and resume is not None:
        raise UserError("give --out for a new run or --resume for an existing one, not both")
    spec = _with_command_line(spec, overrides, device=device, iterations=iterations)
    if gpus is not None:
        _check_gpus(gpus, spec)
    if gpus is not None and gpus > 1:
        from unetbench import distributed

        given = {"--device": device, "--iterations": iterations, "--out": out, "--resume": resume}
        given.update({"--reports": reports, "--data-root": data_root})
        argv = ["run", str(spec_file), *(f"--set={o}" for o in overrides)]
        argv += [f"{option}={value}" for option, value in given.items() if value is not None]
        argv += [] if progress else ["--no-progress"]
        argv += [f"--track={kind}" for kind in kinds]
        raise typer.Exit(distributed.launch(gpus, argv))
    run(
        spec,
        data_root=data_root,
        out=out,
        resume=resume,
        reports=reports,
        progress=progress,
        log=typer.echo,
        tracking=Tracking(kinds) if kinds else None,
    )


def _check_gpus(gpus: int, spec) -> None:
    """``--gpus N``: refused, in one line and before anything starts, unless this machine has N GPUs."""
    import torch

    from unetbench import distributed

    if gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {gpus}")
    if distributed.launched():
        raise UserError("--gpus: this process was started by torchrun already; give one or the other")
    if spec.training.device == "cpu":
        raise UserError(
            "--gpus: the spec trains on the CPU (training.device = 'cpu'); add --device cuda, or start "
            "processes on the CPU with torchrun --nproc-per-node N -m unetbench run ..."
        )
    if not torch.cuda.is_available():
        raise UserError(
            f"--gpus {gpus}: torch sees no GPU on this machine; run without --gpus (or on the CPU with "
            f"torchrun --nproc-per-node {gpus} -m unetbench run ... --device cpu)"
        )
    count = torch.cuda.device_count()
    if gpus > count:
        raise UserError(
            f"--gpus {gpus}: this machine has {count} GPU(s) that torch sees; give at most {count}"
        )


@app.command("track")
def track_command(
    directory: Annotated[
        Path,
        typer.Argument(
            help="A finished run folder, an ablation or cross-validation folder, or a report's bundle."
        ),
    ],
    to: Annotated[str, typer.Option(help="tensorboard or mlflow.")],
) -> None:
    """Write finished runs to TensorBoard or MLflow from their records, as --track would have."""
    from unetbench.ablation import AblationDir
    from unetbench.tracking import check_kinds, replay, run_labels

    check_kinds([to], option="--to")
    if not directory.is_dir():
        raise UserError(f"{directory}: no such folder")
    labels, group = {}, None
    if (directory / AblationDir.MANIFEST).is_file():  # its runs named by variant, fold and seed
        ablation = AblationDir(directory)
        group = ablation.name
        for entry in ablation.read_manifest().runs:
            labels[ablation.run_folder(entry.directory).resolve()] = run_labels(
                entry.variant, entry.fold, entry.seed_index
            )
    count = replay(directory, to, labels=labels, group=group, log=typer.echo)
    typer.echo(f"{count} run(s) written to {to}")


@app.command("report")
def report_command(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder with record.json, or an ablation or cross-validation folder.")
    ],
    reports: Annotated[
        Path | None,
        typer.Option(help="Reports folder (default: the one the run wrote its report to)."),
    ] = None,
    superseded_by: Annotated[
        str | None,
        typer.Option(
            help="An ablation's report that a later one replaces: the later report (a link from the "
            "report's folder, e.g. ablation-1234abcd.md); its report opens with a banner saying so.",
            show_default=False,
        ),
    ] = None,
    why: Annotated[str | None, typer.Option(help="With --superseded-by: why, in a sentence.")] = None,
) -> None:
    """Render a run's Markdown report again from its record.json (or an ablation's, from its folder)."""
    from unetbench.ablation import AblationDir
    from unetbench.report.markdown import render_run_report
    from unetbench.rundir import RunDir

    if (superseded_by is None) != (why is None):
        raise UserError("--superseded-by and --why go together: name the later report and say why")
    from unetbench.report.compare import RECORD as COMPARISON

    if (run_dir / COMPARISON).is_file():  # a comparison's folder
        from unetbench.report.compare import render_compare_folder

        typer.echo(f"report: {render_compare_folder(run_dir, reports)}")
        return
    if (run_dir / AblationDir.MANIFEST).is_file():
        from unetbench.report.ablation import render_ablation_report
        from unetbench.results import Superseded

        directory = AblationDir(run_dir)
        directory.read_runs()  # a damaged folder is one line before anything is written
        if superseded_by is not None:
            directory.write_superseded(Superseded(by=superseded_by, why=why))
        root = reports if reports is not None else _reports_of(directory)
        typer.echo(f"report: {render_ablation_report(directory, root)[0]}")
        return
    if superseded_by is not None:
        raise UserError(f"--superseded-by: {run_dir} is a run folder; it marks an ablation's report")
    record = RunDir(run_dir).read_record()
    root = reports if reports is not None else Path(record.reports_directory)
    typer.echo(f"report: {render_run_report(run_dir, root)}")


def _reports_of(directory) -> Path:
    """Where an ablation's report goes unless told: beside its bundle when ``directory`` is one
    (``<reports>/<challenge>/<name>``), else to its spec's report.directory."""
    manifest, runs = directory.read_runs()
    if directory.path.parent.name == manifest.challenge and (directory.path / directory.RECORDS).is_dir():
        return directory.path.parent.parent
    return Path(runs[0][1].resolved_spec().report.directory)


# The ablation switches' help, from their table (unetbench.ablation.plan.SWITCHES): one flag each below.
SWITCH_HELP = {name: switch.help for name, switch in SWITCHES.items()}


@app.command("ablate")
def ablate_command(
    spec_file: Annotated[Path, typer.Argument(help="The challenge spec.")] = Path("challenges/em.toml"),
    no_weightmap: Annotated[bool, typer.Option("--no-weightmap", help=SWITCH_HELP["weightmap"])] = False,
    no_elastic: Annotated[bool, typer.Option("--no-elastic", help=SWITCH_HELP["elastic"])] = False,
    no_tiling: Annotated[bool, typer.Option("--no-tiling", help=SWITCH_HELP["tiling"])] = False,
    no_mirror: Annotated[bool, typer.Option("--no-mirror", help=SWITCH_HELP["mirror"])] = False,
    no_tta: Annotated[bool, typer.Option("--no-tta", help=SWITCH_HELP["tta"])] = False,
    no_tiling_same_padding: Annotated[
        bool, typer.Option("--no-tiling-same-padding", help=SWITCH_HELP["tiling-same-padding"])
    ] = False,
    seeds: Annotated[int, typer.Option(help="Runs per variant, with seeds spec seed + 0, 1, ...")] = 1,
    iterations: Annotated[
        int | None, typer.Option(help="Training iterations of every run (default: the spec's).")
    ] = None,
    overrides: Annotated[
        list[str],
        typer.Option("--set", help="Override a spec key for every run, e.g. --set training.batch_size=2."),
    ] = [],  # noqa: B006 - typer reads the default, it is never mutated
    grid: Annotated[
        str, typer.Option(help="one: baseline + each switch alone; full: every combination.")
    ] = "one",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Ablation directory (default: runs/<name>/ablation-<id>; with --executor ray: required, "
            "absolute, on a file system every node sees)."
        ),
    ] = None,
    data_root: DataRoot = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    executor: Annotated[
        str, typer.Option(help="local: one run after another here; ray: each run a Ray task (see README).")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="With --executor ray: the cluster's head, host:port (default: a local Ray instance on "
            "127.0.0.1).",
            show_default=False,
        ),
    ] = None,
    retries: Annotated[
        int, typer.Option(help="With --executor ray: retries of a failed run (it resumes its checkpoint).")
    ] = 2,
    cpus_per_run: Annotated[
        int, typer.Option(min=1, help="With --executor ray, runs on the CPU: CPUs (and threads) per run.")
    ] = 1,
    folds: Annotated[
        int | None,
        typer.Option(
            help="Cross-validate every variant over K contiguous folds of the labelled images (see run "
            "--folds); finished runs of a cross-validation of the same spec beside it are reused.",
            show_default=False,
        ),
    ] = None,
    vary: Annotated[
        list[str],
        typer.Option(
            help="A variant per value of a spec key against the spec's own value, e.g. --vary "
            "training.learning_rate=0.0003,0.001,0.003 (repeatable).",
        ),
    ] = [],  # noqa: B006 - typer reads the default, it is never mutated
    runs_per_device: Annotated[
        int,
        typer.Option(
            help="Runs at once on one device: local: in processes of their own (on the CPU, cores split "
            "between them); ray: 1/N of a GPU per run.",
        ),
    ] = 1,
    track: Track = [],  # noqa: B006 - typer reads the default, it is never mutated
    plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Print the design (runs, trained networks, inference-only runs, estimated time on this "
            "machine) and write nothing.",
        ),
    ] = False,
    pilot: Annotated[
        Path | None,
        typer.Option(
            help="With --plan: an earlier ablation of the same challenge, whose spread of paired differences "
            "gives each variant's minimum detectable effect and the networks it would need.",
            show_default=False,
        ),
    ] = None,
    select: Annotated[
        bool,
        typer.Option(
            "--select",
            help="Nested selection of the --vary key: each fold chooses the value with the best validation "
            "score; the report gives each fold's choice and the out-of-fold score of choosing.",
        ),
    ] = False,
) -> None:
    """Measure what each trick is worth: the same run over spec overrides, folds and seeds, as a table."""
    from unetbench import ablation
    from unetbench.tracking import check_kinds

    kinds = check_kinds(track)
    spec = load_spec(spec_file)
    spec = _with_command_line(spec, overrides, iterations=iterations)  # the baseline; switches go on top
    chosen = {
        "weightmap": no_weightmap,
        "elastic": no_elastic,
        "tiling": no_tiling,
        "mirror": no_mirror,
        "tta": no_tta,
        "tiling-same-padding": no_tiling_same_padding,
    }
    switches = [name for name in ablation.SWITCHES if chosen[name]]
    _finish_ablation(
        spec,
        spec_file,
        switches,
        kind="ablation",
        vary=vary,
        given=overrides,
        folds=folds,
        seeds=seeds,
        grid=grid,
        out=out,
        data_root=data_root,
        progress=progress,
        executor=executor,
        ray_address=ray_address,
        retries=retries,
        cpus_per_run=cpus_per_run,
        runs_per_device=runs_per_device,
        track=kinds,
        plan_only=plan,
        pilot=pilot,
        select=select,
    )


def _finish_ablation(spec, spec_file: Path, switches: list[str], **settings) -> None:
    """Run an ablation or a cross-validation to the end, render its report and print its table."""
    from unetbench import ablation
    from unetbench.report.ablation import family_table, render_ablation_report, variant_table

    directory = ablation.ablate(spec, spec_file, switches, log=typer.echo, **settings)
    if directory is None:  # --plan: printed, nothing run
        return
    path, summary = render_ablation_report(directory, Path(spec.report.directory))
    if summary.family is not None:  # the answer first; every metric after it, exploratory
        _print_table(
            f"{spec.name}: the answer ({summary.family.metric}, primary family, Holm-adjusted)",
            *family_table(summary),
        )
    _print_table(f"{spec.name} {settings['kind']}: every metric", *variant_table(summary), summary.caption())
    for row in summary.rows:
        if row.out_of_fold:
            scores = ", ".join(f"{m} {row.out_of_fold[m].mean:.4g}" for m in summary.metrics)
            typer.echo(f"out of fold, {row.variant}, {summary.out_of_fold_images} images: {scores}")
    typer.echo(f"report: {path}")


def _print_table(title: str, header: list[str], rows: list[list[str]], caption: str | None = None) -> None:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in header:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    _console().print(table)


# ---------------------------------------------------------------------------------------------- evaluate


@app.command("evaluate")
def evaluate(
    challenge: Annotated[str, typer.Option(help="em (ISBI 2012 metrics) or ctc (SEG and instance metrics).")],
    gt: Annotated[
        str,
        typer.Option(
            help="EM labels (TIFF, file.h5:dataset, .npy, folder of slices) or a CTC data set folder."
        ),
    ],
    pred: Annotated[
        str, typer.Option(help="EM: P(cell) maps in [0, 1]; CTC: a result folder with NN_RES/maskNNN.tif.")
    ],
    scale: Annotated[
        float | None, typer.Option(help="Divide the EM prediction by this first (255 for 8-bit maps).")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated metric names (default: all that apply).")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the scores as JSON here.")
    ] = None,
) -> None:
    """Score a segmentation with the challenge's official metrics."""
    from unetbench.atomic import atomic_write_json, check_writable
    from unetbench.evaluation import evaluate_ctc, evaluate_em
    from unetbench.metrics import METRICS

    if json_out is not None:
        check_writable(json_out, what="--json file")
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    if challenge == "em":
        result = evaluate_em(gt, pred, scale=scale, metrics=wanted)
    elif challenge == "ctc":
        if scale is not None:
            raise UserError("--scale applies to EM probability maps, not to CTC instance masks")
        result = evaluate_ctc(gt, pred, metrics=wanted)
    else:
        raise UserError(f"--challenge: unknown value {challenge!r}; valid choices: em, ctc")
    table = Table(title=f"{challenge} scores ({result.seconds:.2f} s)", title_justify="left")
    for column in ("metric", "value", "better"):
        table.add_column(column)
    for name, value in result.scores.items():
        table.add_row(
            METRICS[name].title, f"{value:.6g}", "higher" if METRICS[name].higher_is_better else "lower"
        )
    _console().print(table)
    if "sequences" in result.details:  # CTC: the sequences the result folder has are the ones scored
        frames = len(result.details["frames"])
        typer.echo(f"scored sequence(s) {', '.join(result.details['sequences'])}: {frames} SEG frames")
    if json_out is not None:
        atomic_write_json(json_out, result.to_json())
        typer.echo(f"wrote {json_out.absolute()}")


@app.command("compare")
def compare_command(
    methods: Annotated[
        list[str],
        typer.Argument(
            help="Finished run folders and ablation folders (each variant's out-of-fold stack is a "
            "method); with --gt also [NAME=]PREDICTION files (an EM probability stack, or a CTC result "
            "folder), as evaluate takes them."
        ),
    ],
    challenge: Annotated[
        str | None, typer.Option(help="em or ctc, with --gt (runs and ablations say it themselves).")
    ] = None,
    gt: Annotated[
        str | None,
        typer.Option(help="The ground truth: EM labels (as evaluate takes them) or a CTC data set folder."),
    ] = None,
    scale: Annotated[
        float | None, typer.Option(help="Divide EM predictions by this first (255 for 8-bit maps).")
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated metric names (default: all that apply).")
    ] = None,
    primary: Annotated[
        str | None, typer.Option(help="The metric that ranks (default: rand_error for em, seg for ctc).")
    ] = None,
    replicates: Annotated[int, typer.Option(help="Bootstrap replicates of the images.")] = 1000,
    seed: Annotated[int, typer.Option(help="The bootstrap's random seed (recorded).")] = 0,
    reports: Annotated[
        Path, typer.Option(help="Reports folder: the report goes to REPORTS/<title>/.")
    ] = Path("reports"),
    cache: Annotated[
        Path | None,
        typer.Option(help="Where scores are cached (default: $UNETBENCH_CACHE, else the per-user cache)."),
    ] = None,
    data_root: DataRoot = None,
) -> None:
    """Rank several methods on one ground truth with the official metrics, and say how sure the ranking is
    (bootstrap rank intervals, a significance map, the ranking's sensitivity to the protocol)."""
    from unetbench import compare
    from unetbench.atomic import check_folder
    from unetbench.report.compare import render_compare_report

    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    check_folder(reports.absolute(), what="--reports")
    if gt is not None:
        if challenge is None:
            raise UserError("--gt goes with --challenge em or ctc: which metrics score the files")
        truth, candidates = compare.from_files(challenge, gt, methods, scale=scale, data_root=data_root)
    else:
        if challenge is not None or scale is not None:
            raise UserError("--challenge and --scale go with --gt; runs and ablations say what they are")
        truth, candidates = compare.from_folders([Path(m) for m in methods], data_root)
    comparison = compare.compare(
        truth,
        candidates,
        metrics=wanted,
        primary=primary,
        replicates=replicates,
        seed=seed,
        cache=compare.cache_folder(cache),
        log=typer.echo,
    )
    typer.echo(f"report: {render_compare_report(comparison, reports)}")


# ---------------------------------------------------------------------------------------------- predict


@app.command("predict")
def predict_command(
    trained: Annotated[
        Path,
        typer.Argument(
            help="A run folder, the checkpoint inside one, or a file of unetbench export (TorchScript .pt, "
            ".onnx, bioimage.io .zip)."
        ),
    ],
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Images, TIFF stacks, folders of slices (a CTC sequence), file.h5:dataset, .npy."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Folder for the outputs (created; existing files are kept).")],
    tta: Annotated[
        str | None, typer.Option(help="none, flips or dihedral (default: the run's inference.tta).")
    ] = None,
    instances: Annotated[
        bool,
        typer.Option(
            "--instances", help="Also write 16-bit cell instance masks (by the run's postprocess table)."
        ),
    ] = False,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda (default: the run's).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Apply a trained network: float32 P(cell) TIFFs (1 = cell / non-membrane), one per input."""
    from unetbench.predict_export import check_tta, load_trained, predict_files
    from unetbench.progress import Reporter

    check_tta(tta)  # before the network's line, which names it
    network = load_trained(trained, device)
    typer.echo(
        f"network: {network.source} "
        f"({'exported, float32' if network.iteration < 0 else f'iteration {network.iteration}'}), "
        f"spec {network.spec.name}, "
        f"tiling {network.spec.inference.tiling}, test-time averaging {tta or network.spec.inference.tta}, "
        f"device {network.device}"
    )
    reporter = Reporter(log=typer.echo, bars=progress)
    for path in predict_files(network, inputs, out, tta=tta, instances=instances, reporter=reporter):
        typer.echo(f"wrote {path}")


# ---------------------------------------------------------------------------------------------- export


@export_app.command("isbi2012")
def export_isbi2012_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run on isbi2012.")],
    out: Annotated[Path, typer.Option(help="The submission file, e.g. submission.tif.")],
) -> None:
    """The 30 test slices as the official evaluation reads them: one 32-bit TIFF stack, P(cell) in [0, 1]."""
    from unetbench.predict_export import export_isbi2012

    typer.echo(f"wrote {export_isbi2012(run_dir, out)}")


@export_app.command("ctc")
def export_ctc_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run on a Cell Tracking Challenge set.")],
    out: Annotated[Path, typer.Option(help="Folder for NN_RES/maskNNN.tif.")],
    data_root: DataRoot = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Segmentation results of every frame of the evaluated sequences, in the CTC layout (16-bit masks)."""
    from unetbench.predict_export import export_ctc
    from unetbench.progress import Reporter

    for folder in export_ctc(
        run_dir, out, data_root=data_root, reporter=Reporter(log=typer.echo, bars=progress)
    ):
        typer.echo(f"wrote {folder}")


@export_app.command("torchscript")
def export_torchscript_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run.")],
    out: Annotated[Path, typer.Option(help="The TorchScript file, e.g. model.pt.")],
) -> None:
    """The run's scored network with its soft-max as TorchScript (any valid input size; checked against
    PyTorch to 1e-4)."""
    from unetbench.model_export import export_torchscript

    typer.echo(f"wrote {export_torchscript(run_dir, out)}")


@export_app.command("onnx")
def export_onnx_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run.")],
    out: Annotated[Path, typer.Option(help="The ONNX file, e.g. model.onnx.")],
) -> None:
    """The run's scored network with its soft-max as ONNX (symbolic batch and size; checked against
    PyTorch with onnxruntime to 1e-4)."""
    from unetbench.model_export import export_onnx

    typer.echo(f"wrote {export_onnx(run_dir, out)}")


@export_app.command("bioimageio")
def export_bioimageio_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run.")],
    out: Annotated[Path, typer.Option(help="The package, e.g. model.zip.")],
    author: Annotated[str, typer.Option(help="The package's author.")] = "unetbench",
) -> None:
    """A bioimage.io model package (format 0.5): PyTorch, TorchScript and ONNX weights, test tensors, the
    valid sizes, the run's report; tested with bioimageio.core before it is written."""
    from unetbench.model_export import export_bioimageio

    typer.echo(f"wrote {export_bioimageio(run_dir, out, author=author)}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line and exit status 1, and the
    option parser's (an unknown option, a value of the wrong type) into one line and exit status 2."""
    from unetbench.interrupts import exit_status

    try:
        # not standalone: the parser's errors come here instead of a boxed message (typer's rich box)
        status = app(args=argv, prog_name="unetbench", standalone_mode=False)
        return status if isinstance(status, int) else 0
    except typer.TyperException as err:  # the parser's (an unknown option, a bad value): status 2
        context = getattr(err, "ctx", None)
        where = f" (see `{context.command_path} --help`)" if context is not None else ""
        print(f"error: {err.format_message()}{where}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except typer.Abort:  # end of input at a prompt
        print("aborted", file=sys.stderr)
        return 1
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except PeerExit as peer:  # another process of the same torchrun run has said why
        return peer.status
    except RunInterrupted as stopped:
        print(str(stopped), file=sys.stderr)
        return exit_status(stopped.signal_name)
    except KeyboardInterrupt as err:
        print("interrupted; no file was left half-written", file=sys.stderr)
        return exit_status(str(err) or None)
    except SystemExit as done:  # typer.Exit and --version
        return done.code if isinstance(done.code, int) else int(done.code is not None)
