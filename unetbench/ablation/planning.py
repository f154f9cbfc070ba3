"""``unetbench ablate ... --plan``: the design, what it costs and, given a pilot, what it can resolve, before
any hours are spent. Nothing is written.

- **The design**: runs, trained networks, inference-only runs, runs reused from finished ones beside it.
- **The cost** on this machine: from the records of finished runs of the same network, training settings
  and data set on this processor and device (under ``runs/<name>/`` and the committed reports), else from
  a measured training step and a measured forward pass of the spec's inference batch, times the steps,
  validations and predictions a run makes (scoring is not counted).
- **The power**, with ``--pilot ABLATION_DIR`` (an earlier ablation of the same challenge): for each planned
  variant, the spread of the pilot's paired differences on the primary metric (the variant's own, else
  the median over the pilot's variants), the minimum detectable effect of the planned design at its
  family's level, and the networks that would resolve the pilot's Δ
  (:mod:`unetbench.ablation.statistics`).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import BASELINE, PlannedRun
from unetbench.ablation.switches import SWITCHES, switch_of
from unetbench.errors import UserError
from unetbench.records.run_folder import RunDir

# What decides a network's training time: the spec's sections beside the data set (the split and the
# seed do not).
_TIMED = ("model", "training", "augmentation", "weightmap")


@dataclass(frozen=True)
class Cost:
    network_seconds: float  # one trained network: training, validations, predictions
    prediction_seconds: dict[str, float]  # one inference-only run, per variant
    source: str  # where the figures come from


def describe(
    runs: list[PlannedRun], directory: AblationDir, *, data_root: Path | None, pilot: Path | None, log
) -> None:
    """Print the plan (module docstring); write nothing."""
    from unetbench.datasets import load_dataset
    from unetbench.datasets.splits import split_collection

    first = runs[0].spec
    collection = load_dataset(first.data, data_root)
    split = split_collection(collection, first.data.split)
    variants = list(dict.fromkeys(r.variant for r in runs))
    trained = [r for r in runs if r.trains]
    reused = [r for r in runs if r.directory.parent != directory.path]
    finished = [r for r in runs if RunDir.state(r.directory) == "finished"]
    log(f"plan of {directory.path} (nothing is written):")
    log(f"- {len(runs)} runs: {len(variants)} variants x {len({r.fold for r in runs})} fold(s) x seeds")
    for variant in variants:
        mine = [r for r in runs if r.variant == variant]
        how = "train a network" if mine[0].trains else "predict with the paired network (inference only)"
        log(f"  - {variant}: {len(mine)} runs, {how}")
    log(f"- trained networks: {len(trained)}; inference-only runs: {len(runs) - len(trained)}")
    log(f"- finished already: {len(finished)} ({len(reused)} of them reused from folders beside it)")
    cost = estimate_cost(runs, split)
    todo = [r for r in runs if RunDir.state(r.directory) != "finished"]
    seconds = sum(
        cost.network_seconds if r.trains else cost.prediction_seconds.get(r.variant, 0.0) for r in todo
    )
    log(
        f"- estimated time of what is left: {_duration(seconds)} ({_duration(cost.network_seconds)} per "
        f"trained network; {cost.source})"
    )
    if pilot is not None:
        for line in pilot_power(runs, first, split, pilot):
            log(line)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# --------------------------------------------------------------------------------------------------
# The cost


def estimate_cost(runs: list[PlannedRun], split) -> Cost:
    """:class:`Cost` from records on this machine where there are some, else measured (module docstring)."""
    from unetbench.records.provenance import hardware
    from unetbench.system.devices import resolve_device

    spec = runs[0].spec
    device = resolve_device(spec.training.device)
    here = hardware(device)
    found = _records_like(spec, here)
    predictions: dict[str, float] = {}
    for planned in runs:  # measured once per variant: its folds and seeds predict alike
        if not planned.trains and planned.variant not in predictions:
            predictions[planned.variant] = _prediction_seconds(planned.spec, split, device)
    if found:
        seconds = statistics.median(sum(r.timings_seconds.values()) for r in found)
        where = here.gpu or here.processor
        return Cost(seconds, predictions, f"the median of {len(found)} finished runs' records on {where}")
    from unetbench.system import cpu_share

    start = cpu_share.read_clock()
    step = _step_seconds(spec, device)
    training = spec.training
    validations = training.iterations // training.validate_every if training.validate_every else 0
    per_image = _prediction_seconds(spec, split, device, per_image=True)
    busy = cpu_share.shared_note(cpu_share.others_busy(start, cpu_share.read_clock()), here.cpu_cores)
    images = validations * len(split.validation) + len(split.evaluation) + len(split.test)
    images += len(split.validation) + len(split.evaluation)  # the untrained network is scored too
    seconds = spec.training.iterations * step + images * per_image
    source = (
        f"measured here: {step:.3g} s per training step x {spec.training.iterations}, {per_image:.3g} s per "
        f"image predicted x {images} (validations and predictions); scoring not counted"
        + (f"; {busy.replace('it trained', 'it measured')}" if busy else "")
    )
    return Cost(seconds, predictions, source)


def _timed_part(table: dict) -> dict:
    timed = {key: table.get(key) for key in _TIMED}
    training = dict(timed["training"] or {})
    training.pop("seed", None)
    return {**timed, "training": training, "dataset": table["data"]["dataset"]}


def _records_like(spec, here) -> list:
    """Finished runs that trained the same network with the same settings on this processor and device."""
    from unetbench.records.run_record import RunRecord
    from unetbench.spec import spec_to_table

    wanted = _timed_part(spec_to_table(spec))
    folders = list(Path("runs", spec.name).glob("**/record.json"))
    folders += list(Path(spec.report.directory, spec.name).glob("**/records/*/record.json"))
    found: list[RunRecord] = []
    for path in folders:
        try:
            record = RunDir(path.parent).read_record()
        except UserError:
            continue
        hw = record.provenance.hardware
        same_machine = (hw.processor, hw.device, hw.gpu) == (here.processor, here.device, here.gpu)
        table = spec_to_table(record.resolved_spec())
        if record.weights_from is None and same_machine and _timed_part(table) == wanted:
            found.append(record)
    return found


def _step_seconds(spec, device: str, steps: int = 3) -> float:
    """A training step of the spec's network on random tiles, under its precision and layout."""
    import torch

    from unetbench.model.unet import unet_from_spec
    from unetbench.system import devices

    training = spec.training
    model = unet_from_spec(spec.model).to(device)
    layout = devices.memory_format(training.memory_format, device)
    model = model.to(memory_format=layout)
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-9)
    shape = (training.batch_size, spec.model.in_channels, training.tile_size, training.tile_size)
    batch = torch.rand(shape, device=device).contiguous(memory_format=layout)
    times = []
    for _ in range(steps + 2):  # the first two warm up
        start = time.perf_counter()
        with devices.autocast(training.precision, device):
            loss = model(batch).float().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def _prediction_seconds(spec, split, device: str, *, per_image: bool = False) -> float:
    """One image predicted as the spec's inference section says (per_image), or a whole inference-only
    run: its evaluation and test images."""
    import torch

    from unetbench.inference.tiling import TTA_VERSIONS, tile_plan
    from unetbench.model.unet import unet_from_spec
    from unetbench.system import devices

    inference = spec.inference
    layout = devices.memory_format(inference.memory_format, device, inference=True)
    model = unet_from_spec(spec.model).to(device, memory_format=layout).eval()
    image = split.evaluation[0].image
    tiles = len(tile_plan(model, image, inference, device).tiles) * len(TTA_VERSIONS[inference.tta])
    shape = (
        min(inference.batch_size, tiles),
        spec.model.in_channels,
        inference.tile_size,
        inference.tile_size,
    )
    batch = torch.rand(shape, device=device).contiguous(memory_format=layout)
    times = []
    with torch.no_grad(), devices.autocast(inference.precision, device):
        for _ in range(4):  # the first warms up
            start = time.perf_counter()
            model(batch)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    seconds = min(times[1:]) * math.ceil(tiles / shape[0])
    return seconds if per_image else seconds * (len(split.evaluation) + len(split.test))


# --------------------------------------------------------------------------------------------------
# The power, from a pilot


def pilot_power(runs: list[PlannedRun], spec, split, pilot: Path) -> list[str]:
    """Lines: per planned variant, the MDE of the planned design and the networks that resolve the
    pilot's Δ (module docstring)."""
    from unetbench.ablation.statistics import (
        ALPHA,
        CORRECTED,
        PAIRED,
        Interval,
        minimum_detectable_effect,
        networks_needed,
    )
    from unetbench.ablation.summary import summarise

    manifest, pilot_runs = read_pilot(pilot, spec.name)
    summary = summarise(manifest, pilot_runs, None)
    metric = spec.evaluation.primary
    pilot_spec = next(r for e, r in pilot_runs if e.variant == BASELINE).resolved_spec()
    spreads = {  # by what each pilot variant is (its switch), not by what the pilot named it
        SWITCHES[name].variant
        if (name := switch_of(summary.own_overrides(row.variant), pilot_spec))
        else row.variant: (row.effects[metric].run_level)
        for row in summary.rows
        if metric in row.effects
    }
    if not spreads:
        raise UserError(f"--pilot {pilot}: it has no variant besides the baseline to learn a spread from")
    typical = statistics.median(e.sd for e in spreads.values() if not math.isnan(e.sd))
    variants = [v for v in dict.fromkeys(r.variant for r in runs) if v != BASELINE]
    folds = len({r.fold for r in runs if r.fold is not None}) or 1
    n = len([r for r in runs if r.variant == BASELINE])
    ratio = len(split.evaluation) / len(split.train) if folds > 1 else 0.0
    alpha = ALPHA / max(1, len(variants))
    lines = [
        f"- power, from the pilot {pilot} ({summary.networks} networks per variant): the planned design has "
        f"{n} networks per variant, n_test/n_train = {ratio:.3g}, the family's level 0.05/{len(variants)}"
    ]
    for variant in variants:
        pilot_effect = spreads.get(variant)
        sd = pilot_effect.sd if pilot_effect else typical
        planned = Interval(0.0, -math.inf, math.inf, n, n - 1, CORRECTED if folds > 1 else PAIRED, sd, ratio)
        mde = minimum_detectable_effect(planned, alpha)
        where = "its own pilot runs" if pilot_effect else "the median spread of the pilot's variants"
        text = f"  - {variant}: MDE {mde:.3g} {metric} (80% power; spread {sd:.3g} from {where})"
        if pilot_effect is not None:
            needed = networks_needed(planned, pilot_effect.mean, folds, alpha)
            reach = (
                f"{needed.networks} networks ({needed.folds} folds x {needed.seeds} seeds)"
                if needed.networks
                else f"not reachable with {folds} folds (floor {needed.floor:.3g})"
            )
            text += f"; the pilot's Δ {pilot_effect.mean:+.3g} needs {reach}"
        lines.append(text)
    return lines


def read_pilot(pilot: Path, challenge: str):
    """The pilot's manifest and records; one :class:`UserError` for a folder that is not an ablation of
    ``challenge``."""
    directory = AblationDir(pilot)
    manifest = directory.read_manifest()
    if manifest.challenge != challenge:
        raise UserError(
            f"--pilot {pilot}: an ablation of {manifest.challenge}, not of {challenge}; give a pilot of the "
            "same challenge"
        )
    return directory.read_runs()
