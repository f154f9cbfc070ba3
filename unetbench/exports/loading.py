"""Trained networks back from disk and applied: a run folder (or its checkpoint) or an exported file
(TorchScript, ONNX, a bioimage.io package), and ``unetbench predict``'s inputs, probability maps and cell
instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetbench.errors import DataError, UserError
from unetbench.inference.postprocess import cell_instances
from unetbench.inference.tiling import predict_image
from unetbench.spec import TTA_CHOICES, ChallengeSpec
from unetbench.system.atomic_writes import atomic_path, check_folder

SPEC_ENTRY = "unetbench-spec.toml"  # the run's spec inside an exported TorchScript or ONNX file


PACKAGE_MODELS = ("model.torchscript.pt", "model.onnx")  # what `predict` takes from a bioimage.io package


@dataclass
class TrainedNetwork:
    spec: ChallengeSpec
    model: object  # the UNet, in eval mode, on ``device``
    iteration: int  # the iteration whose weights these are; -1 for an exported network (which does not say)
    source: Path  # the checkpoint
    device: str


def load_trained(path: Path, device: str | None = None) -> TrainedNetwork:
    """The network of a run folder or of a checkpoint inside one (``<run>/checkpoints/last.pt``)."""
    from unetbench.challenges.loading import load_spec
    from unetbench.model.unet import unet_from_spec
    from unetbench.records.run_folder import RunDir
    from unetbench.system.devices import resolve_device
    from unetbench.training.checkpoint import read_checkpoint

    path = Path(path)
    if path.is_file() and (path.suffix.lower() in (".onnx", ".zip") or _is_torchscript(path)):
        return load_exported(path, device)
    if path.is_dir():
        run, checkpoint = path, RunDir(path).checkpoint
    elif path.is_file():
        run, checkpoint = path.parent.parent, path
    else:
        raise UserError(f"{path}: no such run folder or checkpoint")
    spec_file = RunDir(run).spec_file
    if not spec_file.is_file():
        raise UserError(
            f"{path}: not a run folder or a checkpoint inside one ({spec_file} is missing); give the folder "
            "`unetbench run` wrote"
        )
    if not checkpoint.is_file():
        raise UserError(f"{run}: has no checkpoint ({checkpoint} is missing); the run never started training")
    spec = load_spec(spec_file)
    device = resolve_device(device or spec.training.device)
    weights, iteration = read_checkpoint(checkpoint).scored_weights()
    model = unet_from_spec(spec.model)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise UserError(
            f"{checkpoint}: does not fit the network of {spec_file} ({str(err).splitlines()[0]})"
        ) from None
    return TrainedNetwork(spec, model.to(device).eval(), iteration, checkpoint, device)


def _is_torchscript(path: Path) -> bool:
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith(f"extra/{SPEC_ENTRY}") for name in archive.namelist())


class ExportedNetwork(torch.nn.Module):
    """An exported network (TorchScript or ONNX, which give P(class)) in the tiler's place: its output as
    log-probabilities, whose soft-max (the tiler's) gives the probabilities back."""

    def __init__(self, run, model_spec):
        super().__init__()
        self.run, self.depth, self.padding = run, model_spec.depth, model_spec.padding

    def forward(self, x):
        return torch.log(self.run(x.float()).clamp_min(1e-38))


def load_exported(path: Path, device: str | None = None) -> TrainedNetwork:
    """A network exported by ``unetbench export torchscript|onnx|bioimageio``, with the spec it carries."""
    import zipfile

    what = "not a network exported by unetbench export (torchscript, onnx or bioimageio)"
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in PACKAGE_MODELS if n in archive.namelist()), None)
                if name is None:
                    raise UserError(f"{path}: a zip without {' or '.join(PACKAGE_MODELS)}; {what}")
                data, onnx = archive.read(name), name.endswith(".onnx")
        else:
            data, onnx = path.read_bytes(), path.suffix.lower() == ".onnx"
        run, text, device = _onnx_runner(data) if onnx else _torchscript_runner(data, device)
    except UserError:
        raise
    except Exception as err:  # torch, onnx and zipfile raise many kinds for foreign files
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: {what} ({first})") from None
    if not text:
        raise UserError(f"{path}: carries no unetbench spec; {what}")
    spec = _carried_spec(text, path)
    # an exported graph computes in float32, whatever precision the run predicted in (its record says)
    fp32 = dataclasses.replace(spec.inference, precision="fp32", memory_format="contiguous")
    spec = dataclasses.replace(spec, inference=fp32)
    return TrainedNetwork(spec, ExportedNetwork(run, spec.model).eval(), -1, path, device)


def _carried_spec(text: str, path: Path):
    from unetbench.challenges.loading import check_spec
    from unetbench.spec import spec_from_text

    source = f"{path} (the spec it carries)"
    return check_spec(spec_from_text(text, source=source), source=source)


def _torchscript_runner(data: bytes, device: str | None):
    import io

    from unetbench.system.devices import resolve_device

    device = resolve_device(device or "cpu")
    files = {SPEC_ENTRY: ""}
    module = torch.jit.load(io.BytesIO(data), map_location=device, _extra_files=files)
    text = files[SPEC_ENTRY]
    return module.eval(), text.decode() if isinstance(text, bytes) else text, device


def _onnx_runner(data: bytes):
    """An onnxruntime session on the CPU as a function of tensors (a run with it predicts on the CPU)."""
    import onnx
    import onnxruntime

    model = onnx.load_from_string(data)
    text = next((p.value for p in model.metadata_props if p.key == SPEC_ENTRY), "")
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.detach().cpu().numpy()})[0])

    return run, text, "cpu"


@dataclass
class PredictionInput:
    source: str  # as given
    name: str  # the output's file stem
    images: np.ndarray  # (N, H, W) float32 in [0, 1]
    stack: bool  # False: one 2D image, written as one


def _stem(source: str) -> str:
    from unetbench.evaluation.files import HDF5_SOURCE

    match = HDF5_SOURCE.match(source)
    if match:
        return f"{Path(match['file']).stem}-{match['key'].strip('/').replace('/', '-')}"
    path = Path(source.rstrip("/"))
    return path.name if path.is_dir() else path.stem


def read_inputs(sources: list[str]) -> list[PredictionInput]:
    """Read and check every input before anything is predicted (module docstring)."""
    from unetbench.datasets.images import to_unit_float
    from unetbench.evaluation.files import read_array

    if not sources:
        raise UserError("name at least one input image, stack, folder or file.h5:dataset")
    inputs, names = [], {}
    for source in sources:
        array = read_array(source)
        if array.ndim == 3 and array.shape[-1] in (3, 4) and array.shape[0] > 4:
            raise DataError(f"{source}: looks like a colour image ({array.shape}); give a single channel")
        if array.ndim not in (2, 3) or min(array.shape[-2:]) < 1:
            raise DataError(f"{source}: expected a 2D image or a stack of 2D slices, got shape {array.shape}")
        images = to_unit_float(array, source=source)
        name = _stem(source)
        if name in names:
            raise UserError(f"{source} and {names[name]} would both write {name}.tif; rename one of them")
        names[name] = source
        inputs.append(
            PredictionInput(source, name, images[None] if images.ndim == 2 else images, images.ndim == 2)
        )
    return inputs


def probability_maps(
    trained: TrainedNetwork,
    images: np.ndarray,
    *,
    tta: str | None = None,
    advance: Callable[[], None] = lambda: None,
) -> np.ndarray:
    """(N, H, W) float32 P(cell) of (N, H, W) images, by the run's tiling and ``tta`` (default: the run's)."""
    maps = np.empty(images.shape, dtype=np.float32)
    for index, image in enumerate(images):
        maps[index] = predict_image(
            trained.model, image, trained.spec.inference, device=trained.device, tta=tta
        )[1]
        advance()
    return maps


def instance_masks(trained: TrainedNetwork, maps: np.ndarray, source: str) -> np.ndarray:
    """(N, H, W) uint16 instance labels of P(cell) maps, by the run's ``[postprocess]``."""
    labels = np.stack([cell_instances(m, trained.spec.postprocess) for m in maps])
    if labels.max() > 65535:
        raise UserError(f"{source}: {labels.max()} cells in one slice do not fit a 16-bit mask")
    return labels.astype(np.uint16)


def predict_files(
    trained: TrainedNetwork,
    sources: list[str],
    out: Path,
    *,
    tta: str | None = None,
    instances: bool = False,
    reporter=None,
) -> list[Path]:
    """``unetbench predict``: ``<out>/<name>.tif`` (float32 P(cell), 1 = cell / non-membrane) per input, and
    with ``instances`` ``<out>/<name>-instances.tif`` (uint16 labels). Returns the files written."""
    from unetbench.datasets.images import write_tiff
    from unetbench.run.progress import Reporter

    check_tta(tta)
    check_folder(out, what="--out")
    inputs = read_inputs(sources)
    reporter = reporter or Reporter(bars=False)
    planned = [out / f"{i.name}.tif" for i in inputs]
    planned += [out / f"{i.name}-instances.tif" for i in inputs] if instances else []
    taken = [p for p in planned if p.exists()]
    if taken:
        raise UserError(f"{taken[0]}: exists already; choose another --out folder or remove it")
    total = sum(len(i.images) for i in inputs)
    written: list[Path] = []
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with reporter.items(f"predicting {total} image{'s' if total != 1 else ''}", total) as advance:
            for item in inputs:
                maps = probability_maps(trained, item.images, tta=tta, advance=advance)
                arrays = [(out / f"{item.name}.tif", maps)]
                if instances:
                    arrays.append(
                        (out / f"{item.name}-instances.tif", instance_masks(trained, maps, item.source))
                    )
                for path, array in arrays:
                    with atomic_path(path) as temporary:
                        write_tiff(temporary, array[0] if item.stack else array)
                    written.append(path)
    except BaseException:
        for path in written:  # all or nothing
            path.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    return written


def check_tta(tta: str | None) -> None:
    """``--tta``: one of the averaging settings, or None (the run's); one :class:`UserError` otherwise."""
    if tta is not None and tta not in TTA_CHOICES:
        raise UserError(f"--tta: unknown value {tta!r}; valid choices: {', '.join(TTA_CHOICES)}")
