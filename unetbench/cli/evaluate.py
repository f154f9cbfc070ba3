"""``unetbench evaluate`` and ``compare``: scoring with the official metrics, no network (no torch)."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from unetbench.cli.app import DataRoot, _console, app, choice
from unetbench.errors import UserError
from unetbench.leaderboard.scores import CHALLENGES

ChallengeChoice = choice("ChallengeChoice", CHALLENGES)


@app.command("evaluate")
def evaluate(
    challenge: Annotated[
        ChallengeChoice, typer.Option(help="em (ISBI 2012 metrics) or ctc (SEG and instance metrics).")
    ],
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
    from unetbench.evaluation.files import evaluate_ctc, evaluate_em
    from unetbench.metrics import METRICS
    from unetbench.system.atomic_writes import atomic_write_json, check_writable

    if json_out is not None:
        check_writable(json_out, what="--json file")
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    challenge = challenge.value
    if challenge == "em":
        result = evaluate_em(gt, pred, scale=scale, metrics=wanted)
    else:
        if scale is not None:
            raise UserError("--scale applies to EM probability maps, not to CTC instance masks")
        result = evaluate_ctc(gt, pred, metrics=wanted)
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
        ChallengeChoice | None, typer.Option(help="With --gt (runs and ablations say it themselves).")
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
    from unetbench.leaderboard import inputs, scores
    from unetbench.leaderboard.report import render_compare_report
    from unetbench.system.atomic_writes import check_folder

    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    check_folder(reports.absolute(), what="--reports")
    if gt is not None:
        if challenge is None:
            raise UserError("--gt goes with --challenge em or ctc: which metrics score the files")
        truth, candidates = inputs.from_files(challenge.value, gt, methods, scale=scale, data_root=data_root)
    else:
        if challenge is not None or scale is not None:
            raise UserError("--challenge and --scale go with --gt; runs and ablations say what they are")
        truth, candidates = inputs.from_folders([Path(m) for m in methods], data_root)
    comparison = scores.compare(
        truth,
        candidates,
        metrics=wanted,
        primary=primary,
        replicates=replicates,
        seed=seed,
        cache=scores.cache_folder(cache),
        log=typer.echo,
    )
    typer.echo(f"report: {render_compare_report(comparison, reports)}")
