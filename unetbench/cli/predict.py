"""``unetbench predict`` and ``export``: a trained network applied, and what leaves a run."""

from pathlib import Path
from typing import Annotated

import typer

from unetbench.cli.app import DataRoot, DeviceChoice, app, choice, export_app, value_of
from unetbench.spec import TTA_CHOICES

TtaChoice = choice("TtaChoice", TTA_CHOICES)


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
    tta: Annotated[TtaChoice | None, typer.Option(help="Default: the run's inference.tta.")] = None,
    instances: Annotated[
        bool,
        typer.Option(
            "--instances", help="Also write 16-bit cell instance masks (by the run's postprocess table)."
        ),
    ] = False,
    device: Annotated[DeviceChoice | None, typer.Option(help="Default: the run's.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Apply a trained network: float32 P(cell) TIFFs (1 = cell / non-membrane), one per input."""
    from unetbench.exports.loading import load_trained, predict_files
    from unetbench.run.progress import Reporter

    tta = value_of(tta)
    network = load_trained(trained, value_of(device))
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


@export_app.command("isbi2012")
def export_isbi2012_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run on isbi2012.")],
    out: Annotated[Path, typer.Option(help="The submission file, e.g. submission.tif.")],
) -> None:
    """The 30 test slices as the official evaluation reads them: one 32-bit TIFF stack, P(cell) in [0, 1]."""
    from unetbench.exports.submissions import export_isbi2012

    typer.echo(f"wrote {export_isbi2012(run_dir, out)}")


@export_app.command("ctc")
def export_ctc_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run on a Cell Tracking Challenge set.")],
    out: Annotated[Path, typer.Option(help="Folder for NN_RES/maskNNN.tif.")],
    data_root: DataRoot = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Segmentation results of every frame of the evaluated sequences, in the CTC layout (16-bit masks)."""
    from unetbench.exports.submissions import export_ctc
    from unetbench.run.progress import Reporter

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
    from unetbench.exports.model_files import export_torchscript

    typer.echo(f"wrote {export_torchscript(run_dir, out)}")


@export_app.command("onnx")
def export_onnx_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run.")],
    out: Annotated[Path, typer.Option(help="The ONNX file, e.g. model.onnx.")],
) -> None:
    """The run's scored network with its soft-max as ONNX (symbolic batch and size; checked against
    PyTorch with onnxruntime to 1e-4)."""
    from unetbench.exports.model_files import export_onnx

    typer.echo(f"wrote {export_onnx(run_dir, out)}")


@export_app.command("bioimageio")
def export_bioimageio_command(
    run_dir: Annotated[Path, typer.Argument(help="A finished run.")],
    out: Annotated[Path, typer.Option(help="The package, e.g. model.zip.")],
    author: Annotated[str, typer.Option(help="The package's author.")] = "unetbench",
) -> None:
    """A bioimage.io model package (format 0.5): PyTorch, TorchScript and ONNX weights, test tensors, the
    valid sizes, the run's report; tested with bioimageio.core before it is written."""
    from unetbench.exports.model_files import export_bioimageio

    typer.echo(f"wrote {export_bioimageio(run_dir, out, author=author)}")
