"""``unetbench run``, ``report`` and ``track``: one run, its report again, its curves elsewhere."""

from pathlib import Path
from typing import Annotated

import typer

from unetbench.challenges.loading import load_spec
from unetbench.cli.ablate import _finish_ablation
from unetbench.cli.app import DataRoot, DeviceChoice, Track, TrackChoice, _with_command_line, app, value_of
from unetbench.errors import UserError


@app.command("run")
def run_command(
    spec_file: Annotated[
        Path,
        typer.Argument(
            help="A challenge spec: a file (challenges/quickstart.toml) or a built-in name (quickstart; "
            "`unetbench spec list`)."
        ),
    ],
    device: Annotated[DeviceChoice | None, typer.Option(help="Default: the spec's.")] = None,
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
    from unetbench.tracking.trackers import Tracking, check_kinds

    kinds = check_kinds([kind.value for kind in track])
    device = value_of(device)
    spec = load_spec(spec_file)
    if folds is not None:
        for option, value in (("--resume", resume), ("--gpus", gpus), ("--reports", reports)):
            if value is not None:
                raise UserError(
                    f"{option} does not go with --folds (a cross-validation resumes when the same command "
                    "runs again, on one device, reporting to report.directory)"
                )
        spec = _with_command_line(spec, overrides, device=device, iterations=iterations)
        _cross_validate(spec, spec_file, folds, overrides, out, data_root, progress, runs_per_device, kinds)
        return
    _check_run_options(runs_per_device, reports, out, resume)
    spec = _with_command_line(spec, overrides, device=device, iterations=iterations)
    if gpus is not None:
        _check_gpus(gpus, spec)
    if gpus is not None and gpus > 1:
        from unetbench.run.commands import run_arguments
        from unetbench.system import processes

        argv = run_arguments(
            spec_file,
            resume=resume,
            out=out,
            data_root=data_root,
            reports=reports,
            overrides=overrides,
            device=device,
            iterations=iterations,
            progress=progress,
            track=kinds,
        )
        raise typer.Exit(processes.launch(gpus, argv))
    from unetbench.run.runner import run

    tracking = Tracking(kinds) if kinds else None
    run(
        spec,
        data_root=data_root,
        out=out,
        resume=resume,
        reports=reports,
        progress=progress,
        log=typer.echo,
        tracking=tracking,
    )


def _check_run_options(runs_per_device: int, reports: Path | None, out: Path | None, resume: Path | None):
    """The options of one run that need no spec: one line each."""
    from unetbench.system.atomic_writes import check_folder

    if runs_per_device != 1:
        raise UserError("--runs-per-device goes with --folds (one run uses one device)")
    if reports is not None:
        check_folder(reports, what="--reports folder")
    if out is not None and resume is not None:
        raise UserError("give --out for a new run or --resume for an existing one, not both")


def _cross_validate(spec, spec_file, folds, overrides, out, data_root, progress, runs_per_device, kinds):
    """``run --folds K``: the baseline alone over the folds, an ablation of kind cross-validation."""
    from unetbench.ablation import AblationRequest

    request = AblationRequest(
        spec,
        spec_file,
        kind="cross-validation",
        folds=folds,
        given=tuple(overrides),
        out=out,
        data_root=data_root,
        progress=progress,
        runs_per_device=runs_per_device,
        track=tuple(kinds),
    )
    _finish_ablation(request)


def _check_gpus(gpus: int, spec) -> None:
    """``--gpus N``: refused, in one line and before anything starts, unless this machine has N GPUs."""
    import torch

    from unetbench.system import processes

    if gpus < 1:
        raise UserError(f"--gpus must be at least 1, got {gpus}")
    if processes.launched():
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
    to: Annotated[TrackChoice, typer.Option(help="Where to write them.")],
) -> None:
    """Write finished runs to TensorBoard or MLflow from their records, as --track would have."""
    from unetbench.ablation import AblationDir
    from unetbench.tracking.trackers import check_kinds, replay, run_labels

    to = check_kinds([to.value], option="--to")[0]
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
    from unetbench.records.run_folder import RunDir
    from unetbench.report.markdown import render_run_report

    if (superseded_by is None) != (why is None):
        raise UserError("--superseded-by and --why go together: name the later report and say why")
    from unetbench.leaderboard.report import RECORD as COMPARISON

    if (run_dir / COMPARISON).is_file():  # a comparison's folder
        from unetbench.leaderboard.report import render_compare_folder

        typer.echo(f"report: {render_compare_folder(run_dir, reports)}")
        return
    if (run_dir / AblationDir.MANIFEST).is_file():
        from unetbench.ablation.records import Superseded
        from unetbench.ablation.report import render_ablation_report

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
