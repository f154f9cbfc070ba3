"""``unetbench ablate``: the switches' flags from their table (:data:`unetbench.ablation.plan.SWITCHES`)."""

from pathlib import Path
from typing import Annotated

import typer

from unetbench.ablation import EXECUTORS
from unetbench.ablation.plan import GRIDS
from unetbench.ablation.switches import SWITCHES
from unetbench.challenges.loading import load_spec
from unetbench.cli.app import DataRoot, Track, _print_table, _with_command_line, app, choice
from unetbench.errors import UserError

GridChoice = choice("GridChoice", GRIDS)
ExecutorChoice = choice("ExecutorChoice", EXECUTORS)

# The ablation switches' help, from their table (unetbench.ablation.plan.SWITCHES): one flag each below.
SWITCH_HELP = {name: switch.help for name, switch in SWITCHES.items()}


@app.command("ablate")
def ablate_command(
    spec_file: Annotated[
        Path, typer.Argument(help="A challenge spec: a file, or a built-in name (`unetbench spec list`).")
    ] = Path("em"),
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
        GridChoice, typer.Option(help="one: baseline + each switch alone; full: every combination.")
    ] = GridChoice["one"],
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
        ExecutorChoice,
        typer.Option(help="local: one run after another here; ray: each run a Ray task (see README)."),
    ] = ExecutorChoice["local"],
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
    from unetbench.tracking.trackers import check_kinds

    kinds = check_kinds([kind.value for kind in track])
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
    switches = tuple(name for name in ablation.SWITCHES if chosen[name])
    request = ablation.AblationRequest(
        spec,
        spec_file,
        switches,
        vary=tuple(vary),
        folds=folds,
        seeds=seeds,
        grid=grid.value,
        select=select,
        given=tuple(overrides),
        out=out,
        data_root=data_root,
        progress=progress,
        executor=executor.value,
        ray_address=ray_address,
        retries=retries,
        cpus_per_run=cpus_per_run,
        runs_per_device=runs_per_device,
        track=tuple(kinds),
    )
    if pilot is not None and not plan:
        raise UserError("--pilot goes with --plan: it tells the power of the planned design")
    if plan:
        ablation.plan_ablation(request, pilot=pilot, log=typer.echo)
        return
    _finish_ablation(request)


def _finish_ablation(request) -> None:
    """Run an ablation or a cross-validation to the end, render its report and print its table."""
    from unetbench import ablation
    from unetbench.ablation.report import render_ablation_report
    from unetbench.ablation.report_answer import family_table
    from unetbench.ablation.report_exploratory import variant_table

    spec = request.spec
    directory = ablation.ablate(request, log=typer.echo)
    path, summary = render_ablation_report(directory, Path(spec.report.directory))
    if summary.family is not None:  # the answer first; every metric after it, exploratory
        _print_table(
            f"{spec.name}: the answer ({summary.family.metric}, primary family, Holm-adjusted)",
            *family_table(summary),
        )
    _print_table(f"{spec.name} {request.kind}: every metric", *variant_table(summary), summary.caption())
    for row in summary.rows:
        if row.out_of_fold:
            scores = ", ".join(f"{m} {row.out_of_fold[m].mean:.4g}" for m in summary.metrics)
            typer.echo(f"out of fold, {row.variant}, {summary.out_of_fold_images} images: {scores}")
    typer.echo(f"report: {path}")
