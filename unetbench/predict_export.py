"""Applying a trained network outside ``unetbench run``: ``unetbench predict`` and ``unetbench export``.

A trained network is a run folder (or its ``checkpoints/last.pt``): the run's ``spec.toml`` decides the
network, the tiling, the test-time averaging and the cell post-processing; the checkpoint gives the
weights the run scored (the best validation's, else the last). Everything is checked before anything is
written, and every file is written atomically, so a bad input leaves no output behind.

Inputs (:func:`read_inputs`): a 2D image (TIFF or PNG), a multi-page TIFF stack, a folder of slices (a
CTC sequence folder ``01/`` with ``tNNN.tif`` is one), an HDF5 dataset ``file.h5:dataset`` or a ``.npy``
array; integer images are scaled by the maximum of their type, float images must lie in [0, 1] (the
project's one scaling rule, :func:`unetbench.datasets.images.to_unit_float`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetbench.atomic import atomic_path, check_folder
from unetbench.errors import DataError, UserError
from unetbench.inference.postprocess import cell_instances
from unetbench.inference.tiling import TTA_VERSIONS, predict_image
from unetbench.spec import ChallengeSpec

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
    from unetbench.devices import resolve_device
    from unetbench.model.unet import unet_from_spec
    from unetbench.rundir import RunDir
    from unetbench.spec_checks import load_spec
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
    from unetbench.spec import spec_from_text
    from unetbench.spec_checks import check_spec

    source = f"{path} (the spec it carries)"
    return check_spec(spec_from_text(text, source=source), source=source)


def _torchscript_runner(data: bytes, device: str | None):
    import io

    from unetbench.devices import resolve_device

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
    from unetbench.evaluation import HDF5_SOURCE

    match = HDF5_SOURCE.match(source)
    if match:
        return f"{Path(match['file']).stem}-{match['key'].strip('/').replace('/', '-')}"
    path = Path(source.rstrip("/"))
    return path.name if path.is_dir() else path.stem


def read_inputs(sources: list[str]) -> list[PredictionInput]:
    """Read and check every input before anything is predicted (module docstring)."""
    from unetbench.datasets.images import to_unit_float
    from unetbench.evaluation import read_array

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
    from unetbench.progress import Reporter

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


# --------------------------------------------------------------------------------------------------
# Challenge submissions


def _no_submission(record, asked: str) -> str:
    """Why a run has no submission of the kind ``asked``, and what it does have: the other challenge's
    export where its data is that challenge's, else its predictions (a generated data set is no
    challenge's)."""
    dataset = record.data.dataset
    if dataset == "isbi2012":
        return f"a run on isbi2012 has no {asked.split(' ', 1)[1]}; use `unetbench export isbi2012`"
    if record.kind == "cells" and dataset in ("phc-u373", "dic-hela"):
        return f"a run on {dataset} has no {asked.split(' ', 1)[1]}; use `unetbench export ctc`"
    return (
        f"a run on {dataset}, which is no challenge's data, so it has no {asked.split(' ', 1)[1]}; its "
        "predictions are in its predictions.h5, and `unetbench predict RUN IMAGES --out DIR` writes them as "
        "TIFFs"
    )


def check_tta(tta: str | None) -> None:
    """``--tta``: one of the averaging settings, or None (the run's); one :class:`UserError` otherwise."""
    if tta is not None and tta not in TTA_VERSIONS:
        raise UserError(f"--tta: unknown value {tta!r}; valid choices: {', '.join(TTA_VERSIONS)}")


def export_isbi2012(run: Path, out: Path) -> Path:
    """The ISBI 2012 submission of a finished run: its predictions of the 30 test slices as one 32-bit
    float TIFF stack (30 x 512 x 512), values in [0, 1], 1 = cell (non-membrane), 0 = membrane.

    The convention is the one the challenge's official evaluation reads: its Fiji script (Trainable Weka
    Segmentation's metrics, which the organisers published with the challenge) thresholds the proposal's
    32-bit values at thresholds in [0, 1] and compares the result with the labels (255 = cell, 0 =
    membrane), so a proposal is P(non-membrane), the convention :mod:`unetbench.metrics` reproduces from
    running that implementation. The challenge's submission page
    (brainiac2.mit.edu/isbi_challenge) could not be read from the machines this was written on, so the
    citation is the evaluation code, not the page. The slices are the run's own predictions
    (``predictions.h5``, ``test/00`` .. ``test/29``), made with the run's tiling and test-time averaging.
    """
    import h5py

    from unetbench.datasets.images import write_tiff
    from unetbench.rundir import RunDir

    if out.suffix.lower() not in (".tif", ".tiff"):
        raise UserError(f"--out {out}: the submission is one TIFF stack; give a file name ending in .tif")
    record = RunDir(run).read_record()
    if record.data.dataset != "isbi2012":
        raise UserError(f"{run}: {_no_submission(record, 'an ISBI 2012 submission')}")
    names = record.data.split.get("test", [])
    path = RunDir(run).predictions
    if len(names) != 30 or not path.is_file():
        raise UserError(
            f"{run}: the run predicted {len(names)} test slices (the challenge has 30)"
            + ("" if path.is_file() else f" and {path} is missing")
            + "; run it on the imported isbi2012 data with its test-volume.tif"
        )
    with h5py.File(path, "r") as f:
        missing = [n for n in names if n not in f]
        if missing:
            raise UserError(f"{path}: has no prediction {missing[0]}; the run folder is damaged")
        stack = np.stack([np.asarray(f[n], dtype=np.float32) for n in names])
    if stack.shape != (30, 512, 512) or not (
        np.isfinite(stack).all() and stack.min() >= 0 and stack.max() <= 1
    ):
        raise UserError(f"{path}: the test predictions are not 30 slices of P(cell) in [0, 1] of 512 x 512")
    with atomic_path(out) as temporary:
        write_tiff(temporary, stack)
    return out


def export_ctc(run: Path, out: Path, *, data_root: Path | None = None, reporter=None) -> list[Path]:
    """A Cell Tracking Challenge segmentation result of a finished run: every frame of the sequences the
    run evaluated on, predicted with the run's network, tiling and test-time averaging, turned into
    instances by its ``[postprocess]``, as ``<out>/<NN>_RES/mask<T>.tif`` (16-bit, T with as many digits
    as the data set's frame names: 3, or 4 for sequences of 1000 frames or more), the layout the
    organisers' evaluation tools read. The frames are read from where the run read its data (or from
    ``data_root``, if the data set has moved)."""
    from unetbench.datasets import ctc
    from unetbench.datasets.images import read_image, to_unit_float, write_tiff
    from unetbench.progress import Reporter
    from unetbench.rundir import RunDir

    record = RunDir(run).read_record()
    if record.kind != "cells":
        raise UserError(f"{run}: {_no_submission(record, 'a Cell Tracking Challenge result')}")
    location = Path(data_root) / record.data.dataset if data_root else Path(record.data.location)
    if not location.is_dir():
        raise UserError(
            f"{location}: no such folder; the run read its data there. Give --data-root where the data set "
            "lives now (or write a generated one with `unetbench data synth`)"
        )
    wanted = sorted({name.split("/")[1] for name in record.data.split[record.data.scored]})
    sequences = {s.name: s for s in ctc.scan(location)}
    missing = [w for w in wanted if w not in sequences]
    if missing:
        raise UserError(f"{location}: has no sequence {missing[0]}, which the run evaluated on")
    taken = [ctc.result_folder(out, w) for w in wanted if ctc.result_folder(out, w).exists()]
    if taken:
        raise UserError(f"{taken[0]}: exists already; choose another --out folder or remove it")
    check_folder(out, what="--out")
    trained = load_trained(run)
    reporter = reporter or Reporter(bars=False)
    total = sum(len(sequences[w].frames) for w in wanted)
    written: list[Path] = []
    try:
        with reporter.items(f"segmenting {total} frames", total) as advance:
            for name in wanted:
                frames = sequences[name].frames
                digits = max(len(re.sub(r"\D", "", p.stem)) for p in frames.values())
                folder = ctc.result_folder(out, name)
                folder.mkdir(parents=True, exist_ok=True)
                written.append(folder)
                for index, frame in sorted(frames.items()):
                    image = to_unit_float(read_image(frame), source=str(frame))
                    maps = probability_maps(trained, image[None])
                    mask = instance_masks(trained, maps, str(frame))[0]
                    path = folder / ctc.mask_name(index, digits)
                    with atomic_path(path) as temporary:
                        write_tiff(temporary, mask)
                    advance()
    except BaseException:
        import shutil

        for folder in written:  # all or nothing
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return written
