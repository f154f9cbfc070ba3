"""``unetbench ablate``: what each of the paper's tricks is worth, as a table with error bars.

An ablation is the same run repeated over spec overrides and seeds (never subclasses). The switches:

- ``--no-weightmap``: ``weightmap.enabled = false``. The border term w0 exp(-(d1 + d2)^2 / (2 sigma^2))
  goes; the class balance w_c stays as the spec sets it, so the switch measures the border term alone
  (the trick the paper credits for separating touching cells), not class balancing.
- ``--no-elastic``: ``augmentation.elastic = false``; shifts, rotations, flips and grey values unchanged.
- ``--no-tta``: ``inference.tta = "none"``: one prediction of each image instead of the average over its
  rotated or mirrored versions; the trained network is the baseline's (same seed, same training).
- ``--no-tiling``: ``inference.tiling = "none"`` and ``model.padding = "same"``: a zero-padded network on
  non-overlapping tiles without context (see :mod:`unetbench.inference.tiling`). The tiles keep the
  output area of the baseline: training and inference tile = the valid network's output size for the
  spec's tile, rounded down to the pooling factor (388 -> 384 for the paper's 572 tile).

``--grid one`` runs the baseline and each switch alone; ``--grid full`` the full factorial of the
switches given. Seed k > 0 adds ``training.seed = <spec seed> + k``; seed 0 is the spec's own, so the
baseline's first run is exactly the spec file. Runs are keyed by their resolved spec: running the same
command again skips finished runs, resumes those with a checkpoint and restarts the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetbench.errors import RunInterrupted, UserError
from unetbench.loader import apply_overrides
from unetbench.model.sizes import output_size
from unetbench.results import AblationManifest, PlannedRunEntry, command_line, write_json_record
from unetbench.rundir import RunDir
from unetbench.spec import ChallengeSpec, dump_spec

MANIFEST = "ablation.json"
SWITCHES = ("weightmap", "elastic", "tiling", "tta")


def switch_overrides(spec: ChallengeSpec, switch: str) -> list[tuple[str, Any]]:
    """The spec overrides one switch stands for (module docstring)."""
    if switch == "weightmap":
        return [("weightmap.enabled", False)]
    if switch == "elastic":
        return [("augmentation.elastic", False)]
    if switch == "tta":
        return [("inference.tta", "none")]
    if switch == "tiling":
        factor = 2 ** (spec.model.depth - 1)
        m = spec.model
        train_out = output_size(spec.training.tile_size, depth=m.depth, padding=m.padding)
        infer_out = output_size(spec.inference.tile_size, depth=m.depth, padding=m.padding)
        return [
            ("model.padding", "same"),
            ("inference.tiling", "none"),
            ("training.tile_size", max(factor, train_out // factor * factor)),
            ("inference.tile_size", max(factor, infer_out // factor * factor)),
        ]
    raise ValueError(f"unknown switch {switch!r}")


@dataclass(frozen=True)
class PlannedRun:
    variant: str  # "baseline", "no-weightmap", "no-weightmap+no-elastic", ...
    seed_index: int
    spec: ChallengeSpec
    directory: Path


def variants(switches: list[str], grid: str) -> list[tuple[str, ...]]:
    """The switch combinations to run: () is the baseline."""
    if grid == "one":
        return [(), *((s,) for s in switches)]
    return [combo for r in range(len(switches) + 1) for combo in itertools.combinations(switches, r)]


def plan(spec: ChallengeSpec, switches: list[str], *, seeds: int, grid: str, out: Path) -> list[PlannedRun]:
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    if grid not in ("one", "full"):
        raise UserError(f"--grid: unknown value {grid!r}; valid choices: one, full")
    for switch in switches:
        unchanged = [
            f"{key} = {value!r}"
            for key, value in switch_overrides(spec, switch)
            if _value(spec, key) == value
        ]
        if len(unchanged) == len(switch_overrides(spec, switch)):
            raise UserError(
                f"--no-{switch}: the spec already has {', '.join(unchanged)}, so this variant would repeat "
                "the baseline; leave the switch out"
            )
    runs = []
    for combo in variants(switches, grid):
        name = "+".join(f"no-{s}" for s in combo) or "baseline"
        changes = [change for s in combo for change in switch_overrides(spec, s)]
        for k in range(seeds):
            seeded = changes + ([("training.seed", spec.training.seed + k)] if k else [])
            resolved = apply_overrides(spec, seeded, source=f"ablation {name}") if seeded else spec
            digest = hashlib.sha256(dump_spec(resolved).encode()).hexdigest()[:8]
            runs.append(PlannedRun(name, k, resolved, out / f"{name}-seed{k}-{digest}"))
    return runs


def _value(spec: ChallengeSpec, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(spec, section), name)


def ablation_dir(spec: ChallengeSpec, switches: list[str], seeds: int, grid: str) -> Path:
    key = json.dumps([dump_spec(spec), sorted(switches), seeds, grid])
    return Path("runs") / spec.name / f"ablation-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def ablate(
    spec: ChallengeSpec,
    spec_file: Path,
    switches: list[str],
    *,
    seeds: int,
    grid: str,
    out: Path | None,
    data_root: Path | None,
    progress: bool,
    log,
    executor: str = "local",
    ray_address: str | None = None,
    retries: int = 2,
    cpus_per_run: int = 1,
):
    """Plan the runs, write the manifest, finish every run (skip, resume or start), render the table.

    ``executor``: ``local`` runs one after another in this process; ``ray`` makes each run a Ray task
    (:mod:`unetbench.ray_executor`) on the cluster at ``ray_address`` (default: a local instance on
    this machine), retried up to ``retries`` times, each asking for a GPU (on a cluster with GPUs) or
    ``cpus_per_run`` CPUs. Returns the report's path and the summary table
    (:func:`unetbench.report.ablation.summarise`).
    """
    from unetbench.atomic import check_folder
    from unetbench.report.ablation import render_ablation_report

    if not switches:
        raise UserError("name at least one switch: " + ", ".join(f"--no-{switch}" for switch in SWITCHES))
    if executor not in EXECUTORS:
        raise UserError(f"--executor: unknown value {executor!r}; valid choices: {', '.join(EXECUTORS)}")
    if executor != "ray" and ray_address is not None:
        raise UserError("--ray-address goes with --executor ray")
    if executor == "ray" and (out is None or not out.is_absolute()):
        raise UserError(
            f"--out: with --executor ray give an absolute folder that every node of the cluster sees "
            f"(a shared file system), e.g. --out /shared/ablations/{spec.name}; got "
            f"{str(out) if out is not None else 'none'}"
        )
    directory = (out or ablation_dir(spec, switches, seeds, grid)).absolute()
    runs = plan(spec, switches, seeds=seeds, grid=grid, out=directory)
    reports = Path(spec.report.directory).absolute()
    check_folder(directory, what="--out")
    check_folder(reports, what="report.directory")
    with contextlib.ExitStack() as stack:
        finish_all = run_all
        if executor == "ray":
            from unetbench.ray_executor import RayExecutor

            # connects and checks first: an unreachable cluster leaves nothing behind
            pool = stack.enter_context(
                RayExecutor(address=ray_address, retries=retries, cpus_per_run=cpus_per_run)
            )
            pool.check(runs)
            finish_all = pool.run_all
        write_manifest(directory, spec, runs, spec_file=spec_file, switches=switches, seeds=seeds, grid=grid)
        log(f"ablation: {len(runs)} runs in {directory}")
        try:
            finish_all(runs, data_root=data_root, progress=progress, log=log)
        except RunInterrupted as stopped:
            raise RunInterrupted(
                f"{stopped}\nThe ablation continues where it stopped when you run the same command again: "
                f"{command_line()}",
                stopped.signal_name,
            ) from None
    return render_ablation_report(directory, reports)


EXECUTORS = ("local", "ray")


def run_one(planned: PlannedRun, *, data_root, progress: bool, log, watch=None, command=None) -> str:
    """Finish one planned run: skip it when it is finished, resume it when it was started, or start it.

    ``watch(iteration, total)`` hears of the training steps, ``command`` is what the run's session records
    (see :func:`unetbench.runner.run`).
    """
    from unetbench.runner import run

    directory = planned.directory
    # Each run's own report stays beside the runs; the ablation's table is the report that goes to reports/.
    common = dict(
        data_root=data_root,
        reports=directory.parent / "reports",
        progress=progress,
        log=log,
        watch=watch,
        command=command,
    )
    state = RunDir.state(directory)
    if state == "finished":
        return "done before"
    if state == "started":
        run(planned.spec, resume=directory, **common)
        return "resumed"
    run(planned.spec, out=directory, **common)
    return "ran"


def pending_runs(runs: list[PlannedRun], log) -> list[PlannedRun]:
    """The runs without a record; the others are said to be skipped."""
    pending = [r for r in runs if RunDir.state(r.directory) != "finished"]
    for r in runs:
        if r not in pending:
            log(f"{r.directory.name}: done before, skipped")
    return pending


def run_all(runs: list[PlannedRun], *, data_root, progress: bool, log) -> None:
    """The ``local`` executor: one run after another, in this process."""
    pending = pending_runs(runs, log)
    for index, r in enumerate(pending, start=1):
        log(f"[{index}/{len(pending)}] {r.variant}, seed {r.seed_index}: {r.directory}")
        log(f"  {run_one(r, data_root=data_root, progress=progress, log=log)}")


def write_manifest(
    out: Path,
    spec: ChallengeSpec,
    runs: list[PlannedRun],
    *,
    spec_file: Path,
    switches: list[str],
    seeds: int,
    grid: str,
) -> None:
    """Which run folder is which variant and seed: with the records, all the report needs."""
    manifest = AblationManifest(
        challenge=spec.name,
        spec_file=str(spec_file),
        command=command_line(),
        switches=list(switches),
        seeds=seeds,
        grid=grid,
        runs=[
            PlannedRunEntry(r.variant, r.seed_index, r.directory.name, list(r.spec.overrides)) for r in runs
        ],
    )
    write_json_record(out / MANIFEST, manifest)
