"""``unetbench run``: from a challenge spec to a record and a report, in one command.

Order of work, so that a problem in the spec or the data shows before training starts, not after an
hour: resolve the spec and the device, read and split the data, make the run directory, compute the
weight maps, score the untrained network, train (checkpoints, validation), predict the evaluation and
test splits with the spec's tiling, score them, write ``record.json``, render the report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from skimage.measure import label as connected_components

from unetbench.datasets import load_dataset
from unetbench.datasets.splits import split_collection
from unetbench.errors import UserError
from unetbench.inference.tiling import predict_image
from unetbench.metrics import METRICS, instance_scores, isbi2012_scores
from unetbench.model.unet import unet_from_spec
from unetbench.results import (
    atomic_write_bytes,
    command_line,
    git_revision,
    hardware,
    run_id,
    versions,
    write_record,
)
from unetbench.spec import ChallengeSpec, dump_spec, load_spec, spec_to_dict
from unetbench.training.trainer import BEST, LAST, Trainer
from unetbench.training.weightmap import training_weight_maps

SPEC_FILE = "spec.toml"


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' was asked for, but torch sees no GPU; use --device cpu or auto")
    return requested


def _kind(spec: ChallengeSpec) -> str:
    return METRICS[spec.evaluation.metrics[0]].kind


def probabilities(model, samples, spec, device) -> list[np.ndarray]:
    """P(cell / foreground) of each sample (DESIGN.md: the second class), by the spec's tiling."""
    model.eval()
    return [predict_image(model, s.image, spec.inference, device=device)[1] for s in samples]


def score(spec: ChallengeSpec, samples, maps: list[np.ndarray]) -> dict[str, Any]:
    """Aggregate and per-image scores of probability maps with the spec's metrics.

    EM: the ISBI 2012 metrics of the map against the target (cell = 1). Cells: instances are the
    4-connected components of P > 0.5, scored against the reference instances.
    """
    metrics = list(spec.evaluation.metrics)
    if _kind(spec) == "em":
        truth = np.stack([s.target for s in samples])
        aggregate = isbi2012_scores(truth, np.stack(maps), metrics)
        per_image = {s.key: isbi2012_scores(s.target, m, metrics) for s, m in zip(samples, maps, strict=True)}
    else:
        results = [connected_components(m > 0.5, connectivity=1) for m in maps]
        refs = [s.instances for s in samples]
        aggregate = instance_scores(refs, results, metrics)
        per_image = {
            s.key: instance_scores([s.instances], [r], metrics) for s, r in zip(samples, results, strict=True)
        }
    return {"aggregate": aggregate, "per_image": per_image}


def _write_predictions(path: Path, groups: dict[str, dict[str, np.ndarray]]) -> None:
    """HDF5 with one dataset per image, ``<split>/<key>``, P(cell) as float32; written atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["content"] = "P(cell / foreground) in [0, 1] per pixel"
        for split, maps in groups.items():
            for key, value in maps.items():
                f.create_dataset(f"{split}/{key}", data=value.astype(np.float32), compression="gzip")
    tmp.replace(path)


def prepare_run_dir(spec: ChallengeSpec, out: Path | None, resume: Path | None) -> tuple[Path, bool]:
    """The run directory: a new one (never an existing one silently), or the one to resume."""
    text = dump_spec(spec)
    if resume is not None:
        saved = resume / SPEC_FILE
        if not (resume / "checkpoints" / LAST).is_file() or not saved.is_file():
            raise UserError(f"{resume}: nothing to resume (no checkpoints/{LAST} or {SPEC_FILE})")
        if _comparable(load_spec(saved)) != _comparable(spec):
            raise UserError(
                f"{resume}: the spec differs from the one this run started with ({saved}); resume with the "
                "same spec (only training.iterations may change)"
            )
        return resume, True
    run_dir = out if out is not None else Path("runs") / spec.name / run_id(text)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} already exists and is not empty; choose a new --out, or --resume it")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / SPEC_FILE, text.encode())
    return run_dir, False


def _comparable(spec: ChallengeSpec) -> dict[str, Any]:
    """The spec without what a resume may change: the iteration count and the recorded overrides."""
    table = spec_to_dict(spec)
    table.pop("overrides")
    table["training"] = {k: v for k, v in table["training"].items() if k != "iterations"}
    return table


def run(
    spec: ChallengeSpec,
    *,
    data_root: Path | None = None,
    out: Path | None = None,
    resume: Path | None = None,
    reports: Path | None = None,
    progress: bool = True,
    log=print,
) -> Path:
    """Train, predict, evaluate and report; returns the run directory.

    ``reports``: where the report goes (default: the spec's ``report.directory``).
    """
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    device = resolve_device(spec.training.device)
    # --- data first: problems show before any training ------------------------------------------
    collection = load_dataset(spec.data, data_root)
    split = split_collection(collection, spec.data.split)
    if not split.train:
        raise UserError("the training split is empty; check data.split")
    run_dir, resuming = prepare_run_dir(spec, out, resume)
    log(
        f"run directory: {run_dir}  (device {device}, {len(split.train)} training / "
        f"{len(split.validation)} validation / {len(split.evaluation)} evaluation images)"
    )
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    maps = training_weight_maps(split.train, spec.weightmap)
    timings["weight_maps"] = time.perf_counter() - tick

    torch.manual_seed(spec.training.seed)
    model = unet_from_spec(spec.model)
    untrained_path = run_dir / "untrained.json"
    if resuming and untrained_path.is_file():
        untrained = json.loads(untrained_path.read_text())
    else:
        tick = time.perf_counter()
        untrained = score(
            spec, split.evaluation, probabilities(model.to(device), split.evaluation, spec, device)
        )
        timings["untrained_evaluation"] = time.perf_counter() - tick
        atomic_write_bytes(untrained_path, json.dumps(untrained, default=float).encode())

    def validate(net):
        return score(spec, split.validation, probabilities(net, split.validation, spec, device))["aggregate"]

    trainer = Trainer(
        spec,
        model,
        split.train,
        maps,
        device=device,
        checkpoints=run_dir / "checkpoints",
        validate=validate if split.validation and spec.training.validate_every else None,
        progress=progress,
    )
    if resuming:
        trainer.load(run_dir / "checkpoints" / LAST)
        log(f"resuming at iteration {trainer.iteration}")
    try:
        training_log = trainer.fit(spec.training.iterations)
    except KeyboardInterrupt:
        log(
            f"interrupted at iteration {trainer.iteration}; checkpoint saved. Resume with: "
            f"unetbench run {run_dir / SPEC_FILE} --resume {run_dir}"
        )
        raise
    timings["training"] = training_log.seconds
    trained_iterations = trainer.iteration
    chosen = BEST if training_log.best is not None else LAST
    trainer.load(run_dir / "checkpoints" / chosen)
    model = trainer.model

    tick = time.perf_counter()
    evaluation_maps = probabilities(model, split.evaluation, spec, device)
    test_maps = probabilities(model, split.test, spec, device)
    timings["prediction"] = time.perf_counter() - tick
    _write_predictions(
        run_dir / "predictions.h5",
        {
            "evaluation": {s.key: m for s, m in zip(split.evaluation, evaluation_maps, strict=True)},
            "test": {s.key: m for s, m in zip(split.test, test_maps, strict=True)},
        },
    )
    tick = time.perf_counter()
    trained = score(spec, split.evaluation, evaluation_maps)
    timings["evaluation"] = time.perf_counter() - tick

    record = {
        "run_id": run_dir.name,
        "challenge": spec.name,
        "kind": _kind(spec),
        "command": command_line(),
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "spec": spec_to_dict(spec),
        "spec_toml": dump_spec(spec),
        "overrides": list(spec.overrides),
        "seeds": {"training": spec.training.seed, "data": spec.data.synthetic.seed},
        "versions": versions(),
        "git": git_revision(),
        "hardware": hardware(device),
        "data": {
            "dataset": spec.data.dataset,
            "location": collection.location,
            "split": split.keys(),
        },
        "model": {
            "parameters": sum(p.numel() for p in model.parameters()),
            "output_size": model.output_size(spec.training.tile_size),
        },
        "timings_seconds": timings,
        "training": {
            "iterations": trained_iterations,
            "curve": training_log.curve,  # of the whole run, not of the checkpoint scored
            "validation": training_log.validation,
            "best": training_log.best,
            "checkpoint_used": chosen,
        },
        "metrics": {
            "trained": trained,
            "untrained": untrained,
            "directions": {m: METRICS[m].higher_is_better for m in spec.evaluation.metrics},
        },
    }
    record["figures"] = _figures(run_dir, split.evaluation, evaluation_maps, spec.report.overlays)
    write_record(run_dir, record)
    from unetbench.report.markdown import render_run_report

    report = render_run_report(run_dir, reports if reports is not None else Path(spec.report.directory))
    log(f"report: {report}")
    return run_dir


def _figures(run_dir: Path, samples, maps, count: int) -> list[str]:
    """Overlays of the first ``count`` evaluation images (the training curve is drawn from the record)."""
    from unetbench.report.figures import overlay_figure

    figures = run_dir / "figures"
    figures.mkdir(exist_ok=True)
    names = []
    for sample, probability in list(zip(samples, maps, strict=True))[:count]:
        names.append("overlay-" + sample.key.replace("/", "-") + ".png")
        overlay_figure(sample, probability, figures / names[-1])
    return names
