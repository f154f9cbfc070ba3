"""A finished run's trained network for other tools: TorchScript, ONNX and a bioimage.io model package.

Every format holds the weights the run scored (the best validation's, else the last) and gives what the
run's network gives after its soft-max: P(class) per pixel, (B, classes, H', W') for a (B, 1, H, W) image
in [0, 1]. A valid-padding network takes the sizes ``minimum + k * step`` (:func:`valid_sizes`; 572, 588,
... for the paper's, whose output is 184 px smaller: the overlap-tile halo of 92 px per side); a
same-padding one takes multiples of ``step``. TorchScript is traced, ONNX exported with ``torch.export``
with both spatial sizes symbolic (``step * k + minimum``), so one file takes every valid size;
:func:`verify` compares both with PyTorch on two sizes.

The bioimage.io package (format 0.5) carries the three weight formats (``pytorch_state_dict`` with the
architecture imported from :class:`unetbench.model.unet.ProbabilityUNet` and its keyword arguments,
``torchscript`` and ``onnx`` derived from it), a test input (one evaluation image of the run as 8-bit,
cropped to a valid size) with the package's output for it, the input's valid sizes and the output's offset
(its halo cropped by the network), the preprocessing (8-bit to [0, 1], the run's scaling rule), a cover
(the test image beside its P(cell)), the paper and the challenge as citations, the run's report as
documentation, and the run's scores in the description.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetbench.errors import UserError
from unetbench.exports.loading import SPEC_ENTRY, load_trained
from unetbench.system.atomic_writes import atomic_path, check_folder

SUFFIXES = {"torchscript": (".pt",), "onnx": (".onnx",), "bioimageio": (".zip",)}
PAPER_DOI = "10.1007/978-3-319-24574-4_28"
_ISBI2012 = (
    "Arganda-Carreras et al. (2015), Crowdsourcing the creation of image segmentation algorithms for "
    "connectomics (ISBI 2012)",
    "10.3389/fnana.2015.00142",
)
_CTC = (
    "Ulman et al. (2017), An objective comparison of cell-tracking algorithms (Cell Tracking Challenge)",
    "10.1038/nmeth.4473",
)
# What a package cites beside the paper, by the data set its network was trained on: the challenge whose
# data it is. A generated data set (synthetic-em, synthetic-cells) is no challenge's: the paper alone.
CHALLENGES = {"isbi2012": _ISBI2012, "phc-u373": _CTC, "dic-hela": _CTC}


@dataclass(frozen=True)
class Sizes:
    minimum: int
    step: int
    margin: int  # pixels the network crops at each border (0 for same padding)


def valid_sizes(model_spec) -> Sizes:
    """The input edges the network takes: ``minimum + k * step``."""
    from unetbench.model.sizes import context_margin, nearest_valid_input_sizes

    kwargs = dict(depth=model_spec.depth, padding=model_spec.padding)
    step = 2 ** (model_spec.depth - 1)
    minimum = nearest_valid_input_sizes(1, **kwargs)[-1]
    return Sizes(minimum, step, context_margin(**kwargs))


def probability_network(run: Path):
    """The run's record, its spec, and its scored weights in a :class:`ProbabilityUNet` on the CPU, in eval
    mode; a run without a record (unfinished) is refused."""
    from unetbench.model.sizes import unet_kwargs
    from unetbench.model.unet import ProbabilityUNet
    from unetbench.records.run_folder import RunDir

    record = RunDir(run).read_record()  # a finished run: its record says what it scored
    trained = load_trained(run, "cpu")
    network = ProbabilityUNet(**unet_kwargs(trained.spec.model))
    network.load_state_dict(trained.model.state_dict())
    return record, trained.spec, network.eval()


def _example(spec, sizes: Sizes) -> torch.Tensor:
    size = sizes.minimum + 2 * sizes.step
    return torch.rand(1, spec.model.in_channels, size, size, generator=torch.Generator().manual_seed(0))


def torchscript_module(network: torch.nn.Module, example: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic, which it records
        return torch.jit.trace(network, example)


def onnx_bytes(network: torch.nn.Module, example: torch.Tensor, sizes: Sizes, spec_text: str = "") -> bytes:
    """The ONNX model with symbolic batch, height and width (``step * k + minimum % step``); the run's
    spec in its metadata (``unetbench predict`` reads it)."""
    import logging

    from torch.export import Dim

    offset = sizes.minimum % sizes.step
    height = sizes.step * Dim("ky", min=sizes.minimum // sizes.step, max=4096) + offset
    width = sizes.step * Dim("kx", min=sizes.minimum // sizes.step, max=4096) + offset
    buffer = io.BytesIO()
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo")]
    levels = [logger.level for logger in quiet]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for logger in quiet:
            logger.setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(
                network,
                (example,),
                dynamo=True,
                dynamic_shapes={"x": {0: Dim("batch", min=1, max=1024), 2: height, 3: width}},
                verbose=False,
            )
        finally:
            for logger, level in zip(quiet, levels, strict=True):
                logger.setLevel(level)
    program.save(buffer)
    if not spec_text:
        return buffer.getvalue()
    import onnx

    model = onnx.load_from_string(buffer.getvalue())
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_ENTRY, spec_text
    return model.SerializeToString()


def verify(network, *, torchscript=None, onnx: bytes | None = None, sizes: Sizes, tolerance: float = 1e-4):
    """The largest difference to PyTorch of each given format, on two input sizes; a UserError over
    ``tolerance``."""
    worst = {}
    generator = torch.Generator().manual_seed(1)
    for k in (1, 3):
        size = sizes.minimum + k * sizes.step
        x = torch.rand(1, network.in_channels, size, size, generator=generator)
        with torch.no_grad():
            expected = network(x).numpy()
            if torchscript is not None:
                found = torchscript(x).numpy()
                worst["torchscript"] = max(
                    worst.get("torchscript", 0.0), float(np.abs(found - expected).max())
                )
            if onnx is not None:
                import onnxruntime

                session = onnxruntime.InferenceSession(onnx, providers=["CPUExecutionProvider"])
                found = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
                worst["onnx"] = max(worst.get("onnx", 0.0), float(np.abs(found - expected).max()))
    for name, difference in worst.items():
        if difference > tolerance:
            raise UserError(f"the {name} export differs from PyTorch by {difference:.2g} (> {tolerance})")
    return worst


def _target(out: Path, kind: str) -> Path:
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES[kind]:
        raise UserError(f"--out {out}: a {kind} file ends in {' or '.join(SUFFIXES[kind])}")
    if out.exists():
        raise UserError(f"--out {out}: exists already; choose another name or remove it")
    check_folder(out.parent, what="--out")
    return out


def export_torchscript(run: Path, out: Path) -> Path:
    out = _target(out, "torchscript")
    _, spec, network = probability_network(run)
    sizes = valid_sizes(spec.model)
    module = torchscript_module(network, _example(spec, sizes))
    verify(network, torchscript=module, sizes=sizes)
    with atomic_path(out) as temporary:
        save_torchscript(module, temporary, spec)
    return out


def save_torchscript(module, path: Path, spec) -> None:
    """The traced module, with the run's spec as an extra file (``unetbench predict`` reads it)."""
    from unetbench.spec import dump_spec

    torch.jit.save(module, str(path), _extra_files={SPEC_ENTRY: dump_spec(spec)})


def export_onnx(run: Path, out: Path) -> Path:
    out = _target(out, "onnx")
    _require("onnx", "onnxscript", "onnxruntime")
    _, spec, network = probability_network(run)
    sizes = valid_sizes(spec.model)
    model = onnx_bytes(network, _example(spec, sizes), sizes, _spec_text(spec))
    verify(network, onnx=model, sizes=sizes)
    with atomic_path(out) as temporary:
        temporary.write_bytes(model)
    return out


def _spec_text(spec) -> str:
    from unetbench.spec import dump_spec

    return dump_spec(spec)


def _require(*modules: str, extra: str = "bioimageio") -> None:
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"the {module} package is not installed; install the extra with "
                f"pip install 'unetbench[{extra}]'"
            )


# --------------------------------------------------------------------------------------------------
# bioimage.io


def export_bioimageio(run: Path, out: Path, *, author: str = "unetbench") -> Path:
    """The bioimage.io model package of a finished run (module docstring); tested with bioimageio.core
    before it is written."""
    out = _target(out, "bioimageio")
    _require("bioimageio.spec", "bioimageio.core", "onnx", "onnxscript", "onnxruntime")

    record, spec, network = probability_network(run)
    sizes = valid_sizes(spec.model)
    with tempfile.TemporaryDirectory(prefix="unetbench-bioimageio-") as folder:
        work = Path(folder)
        image = _test_image(record, spec, sizes)
        _files(network, spec, sizes, image, work)
        description = _description(record, spec, sizes, work, author, run)
        from bioimageio.spec import save_bioimageio_package

        packed = work / "package.zip"
        save_bioimageio_package(description, output_path=packed)
        _check_package(packed)
        with atomic_path(out) as temporary:
            shutil.copyfile(packed, temporary)
    return out


def _test_image(record, spec, sizes: Sizes) -> np.ndarray:
    """One evaluation image of the run as 8-bit (1, 1, S, S), S the largest valid size it holds."""
    from unetbench.datasets import DATASETS, load_dataset
    from unetbench.datasets.splits import split_collection

    data = spec.data
    generated = not DATASETS[data.dataset].folder
    collection = load_dataset(data, None if generated else Path(record.data.location).parent)
    image = split_collection(collection, data.split).evaluation[0].image
    edge = min(image.shape)
    size = sizes.minimum + (edge - sizes.minimum) // sizes.step * sizes.step if edge >= sizes.minimum else 0
    if size <= 0:
        raise UserError(f"the run's images ({image.shape}) are smaller than the network's smallest input")
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    crop = image[top : top + size, left : left + size]
    return np.round(np.clip(crop, 0, 1) * 255).astype(np.uint8)[None, None]


def _files(network, spec, sizes: Sizes, image: np.ndarray, work: Path) -> None:
    """weights.pt, model.torchscript.pt, model.onnx, the test tensors and the cover in ``work``."""
    from PIL import Image

    torch.save(network.state_dict(), work / "weights.pt")
    example = _example(spec, sizes)
    module = torchscript_module(network, example)
    model = onnx_bytes(network, example, sizes, _spec_text(spec))
    verify(network, torchscript=module, onnx=model, sizes=sizes)
    save_torchscript(module, work / "model.torchscript.pt", spec)
    (work / "model.onnx").write_bytes(model)
    with torch.no_grad():
        output = network(torch.from_numpy(image.astype(np.float32) / 255.0)).numpy()
    np.save(work / "test_input.npy", image.astype(np.float32))
    np.save(work / "test_output.npy", output.astype(np.float32))
    m = sizes.margin
    raw = image[0, 0, m : image.shape[2] - m, m : image.shape[3] - m] if m else image[0, 0]
    cell = np.round(output[0, -1] * 255).astype(np.uint8)
    Image.fromarray(np.concatenate([raw, cell], axis=1)).save(work / "cover.png")


RAW, PROBABILITIES = "raw", "probabilities"  # the package's tensor ids


def _description(record, spec, sizes: Sizes, work: Path, author: str, run: Path):
    """The package's ModelDescr: tensors, weights and what a reader needs to cite and trust it."""
    import bioimageio.spec.model.v0_5 as v

    scores = ", ".join(
        f"{m} {value:.4g}" for m, value in record.trained.aggregate.items() if value is not None
    )
    challenge = CHALLENGES.get(record.data.dataset)
    return v.ModelDescr(
        name=f"U-Net {record.challenge} {record.run_id}"[:128],
        description=(
            f"U-Net (Ronneberger, Fischer & Brox 2015) trained by unetbench on {record.data.dataset}; "
            f"scores on its held-out {record.data.scored} images: {scores}."
        )[:1024],
        authors=[v.Author(name=author)],
        cite=[
            v.CiteEntry(text="Ronneberger, Fischer & Brox (2015), U-Net", doi=v.Doi(PAPER_DOI)),
            *([v.CiteEntry(text=challenge[0], doi=v.Doi(challenge[1]))] if challenge else []),
        ],
        license=v.LicenseId("MIT"),
        documentation=v.FileDescr(source=_documentation(record, run, work)),
        covers=[v.FileDescr(source=work / "cover.png")],
        tags=["unet", "segmentation", record.data.dataset, "unetbench"],
        inputs=[_input(sizes, work)],
        outputs=[_output(spec, sizes, work)],
        weights=_weights(spec, work),
    )


def _input(sizes: Sizes, work: Path):
    """One 8-bit image of any valid size (``ParameterizedSize``), scaled by 1/255 as the run scaled it."""
    import bioimageio.spec.model.v0_5 as v

    size = v.ParameterizedSize(min=sizes.minimum, step=sizes.step)
    return v.InputTensorDescr(
        id=v.TensorId(RAW),
        description="one image with 8-bit values (0-255), scaled to [0, 1] by 1/255 as the run scaled it",
        axes=[
            v.BatchAxis(),
            v.ChannelAxis(channel_names=[v.Identifier("image")]),
            *[v.SpaceInputAxis(id=v.AxisId(a), size=size) for a in ("y", "x")],
        ],
        test_tensor=v.FileDescr(source=work / "test_input.npy"),
        data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 255.0)),
        preprocessing=[v.ScaleLinearDescr(kwargs=v.ScaleLinearKwargs(gain=1 / 255, offset=0.0))],
    )


def _output(spec, sizes: Sizes, work: Path):
    """P(class) per pixel; the input's size less the halo the network crops (the format's ``offset``)."""
    import bioimageio.spec.model.v0_5 as v

    classes = spec.model.classes
    names = ["background", "cell"] if classes == 2 else [f"class{i}" for i in range(classes)]
    axes = [
        v.SpaceOutputAxis(
            id=v.AxisId(a),
            size=v.SizeReference(tensor_id=v.TensorId(RAW), axis_id=v.AxisId(a), offset=-2 * sizes.margin),
        )
        for a in ("y", "x")
    ]
    return v.OutputTensorDescr(
        id=v.TensorId(PROBABILITIES),
        description=f"P(class) per pixel (soft-max); the network crops a halo of {sizes.margin} px per side",
        axes=[v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(n) for n in names]), *axes],
        test_tensor=v.FileDescr(source=work / "test_output.npy"),
        data=v.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )


def _weights(spec, work: Path):
    """The state dict with its architecture (``unetbench.model.unet.ProbabilityUNet``), and the TorchScript
    and ONNX files derived from it."""
    import bioimageio.spec.model.v0_5 as v

    from unetbench.model.sizes import unet_kwargs

    version = v.Version(torch.__version__.split("+")[0])
    return v.WeightsDescr(
        pytorch_state_dict=v.PytorchStateDictWeightsDescr(
            source=work / "weights.pt",
            architecture=v.ArchitectureFromLibraryDescr(
                callable=v.Identifier("ProbabilityUNet"),
                import_from="unetbench.model.unet",
                kwargs=unet_kwargs(spec.model),
            ),
            pytorch_version=version,
        ),
        torchscript=v.TorchscriptWeightsDescr(
            source=work / "model.torchscript.pt", parent="pytorch_state_dict", pytorch_version=version
        ),
        onnx=v.OnnxWeightsDescr(
            source=work / "model.onnx", parent="pytorch_state_dict", opset_version=_opset(work / "model.onnx")
        ),
    )


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path))
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _documentation(record, run: Path, work: Path) -> Path:
    """The run's report, when it is where the run wrote it; else a short page naming the run."""
    from unetbench.report.owners import run_report_of

    report = run_report_of(record)
    target = work / "README.md"
    if report is not None:
        shutil.copyfile(report, target)
    else:
        target.write_text(
            f"# U-Net {record.challenge} {record.run_id}\n\nTrained by unetbench; render the run's report "
            f"with `unetbench report {run}`.\n",
            encoding="utf-8",
        )
    return target


def _check_package(path: Path) -> None:
    """bioimageio.core's own test of the package (every weight format against the test tensors)."""
    from bioimageio.core import test_model

    summary = test_model(str(path))
    if summary.status != "passed":
        failed = [d for d in summary.details if d.status == "failed"]
        first = failed[0] if failed else None
        why = (
            f"{first.name}: {first.errors[0].msg if first and first.errors else ''}"
            if first
            else summary.status
        )
        raise UserError(f"the bioimage.io package failed bioimageio.core's test ({why[:300]})")
