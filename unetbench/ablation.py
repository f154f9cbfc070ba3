"""``unetbench ablate``: what each of the paper's tricks is worth, as a table with error bars.

An ablation is the same run repeated over spec overrides and seeds (never subclasses). The switches:

- ``--no-weightmap``: ``weightmap.enabled = false``. The border term w0 exp(-(d1 + d2)^2 / (2 sigma^2))
  goes; the class balance w_c stays as the spec sets it, so the switch measures the border term alone
  (the trick the paper credits for separating touching cells), not class balancing.
- ``--no-elastic``: ``augmentation.elastic = false``; shifts, rotations, flips and grey values unchanged.
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

import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from unetbench.errors import UserError
from unetbench.model.sizes import output_size
from unetbench.results import RECORD, atomic_write_bytes, read_record
from unetbench.spec import ChallengeSpec, apply_overrides, dump_spec

SWITCHES = ("weightmap", "elastic", "tiling")


def switch_overrides(spec: ChallengeSpec, switch: str) -> list[tuple[str, Any]]:
    """The spec overrides one switch stands for (module docstring)."""
    if switch == "weightmap":
        return [("weightmap.enabled", False)]
    if switch == "elastic":
        return [("augmentation.elastic", False)]
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


def ablation_dir(spec: ChallengeSpec, switches: list[str], seeds: int, grid: str) -> Path:
    key = json.dumps([dump_spec(spec), sorted(switches), seeds, grid])
    return Path("runs") / spec.name / f"ablation-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def run_one(planned: PlannedRun, *, data_root, progress: bool, log) -> str:
    """Finish one planned run: skip it when its record exists, resume it from a checkpoint, or start it."""
    from unetbench.runner import run

    directory = planned.directory
    # Each run's own report stays beside the runs; the ablation's table is the report that goes to reports/.
    common = dict(data_root=data_root, reports=directory.parent / "reports", progress=progress, log=log)
    if (directory / RECORD).is_file():
        return "done before"
    if (directory / "checkpoints" / "last.pt").is_file():
        run(planned.spec, resume=directory, **common)
        return "resumed"
    if directory.exists():
        shutil.rmtree(directory)  # started but never checkpointed: nothing worth keeping
    run(planned.spec, out=directory, **common)
    return "ran"


def run_all(
    runs: list[PlannedRun], *, spec_file: Path, data_root, progress: bool, log, gpus: int = 0
) -> None:
    """One after another; with several GPUs, side by side, one ``unetbench run`` process per GPU."""
    pending = [r for r in runs if not (r.directory / RECORD).is_file()]
    for r in runs:
        if r not in pending:
            log(f"{r.directory.name}: done before, skipped")
    if gpus > 1 and pending:
        _run_on_gpus(pending, spec_file=spec_file, data_root=data_root, gpus=gpus, log=log)
        return
    for index, r in enumerate(pending, start=1):
        log(f"[{index}/{len(pending)}] {r.variant}, seed {r.seed_index}: {r.directory}")
        log(f"  {run_one(r, data_root=data_root, progress=progress, log=log)}")


def _command(r: PlannedRun, spec_file: Path, data_root) -> list[str]:
    """``unetbench run`` for one planned run, with its overrides as --set flags (so its record names them)."""
    command = [sys.executable, "-m", "unetbench", "run", str(spec_file), "--no-progress", "--device", "cuda"]
    command += ["--reports", str(r.directory.parent / "reports")]
    for override in r.spec.overrides:
        command += ["--set", override]
    if (r.directory / "checkpoints" / "last.pt").is_file():
        return [*command, "--resume", str(r.directory)]
    if r.directory.exists():
        shutil.rmtree(r.directory)
    return [*command, "--out", str(r.directory)] + (["--data-root", str(data_root)] if data_root else [])


def _run_on_gpus(pending: list[PlannedRun], *, spec_file: Path, data_root, gpus: int, log) -> None:
    import time

    queue = list(pending)
    active: dict[int, tuple[subprocess.Popen, PlannedRun]] = {}
    failures = []
    while queue or active:
        for gpu in range(gpus):
            if gpu not in active and queue:
                r = queue.pop(0)
                log(f"GPU {gpu}: {r.variant}, seed {r.seed_index}: {r.directory}")
                env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
                active[gpu] = (subprocess.Popen(_command(r, spec_file, data_root), env=env), r)
        time.sleep(1)
        for gpu, (process, r) in list(active.items()):
            if process.poll() is not None:
                del active[gpu]
                if process.returncode != 0:
                    failures.append(r.directory.name)
    if failures:
        raise UserError(
            f"{len(failures)} ablation run(s) failed: {', '.join(failures)}; run the command again to retry"
        )


# --------------------------------------------------------------------------------------------------
# The comparison table, from the run records only.


def _paired_interval(differences: np.ndarray) -> tuple[float, float, float]:
    """Mean of paired differences and its two-sided 95% Student-t interval (NaN with fewer than 2 pairs)."""
    from scipy import stats

    n = len(differences)
    mean = float(np.mean(differences)) if n else math.nan
    if n < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, n - 1) * np.std(differences, ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows per variant: mean and std over seeds per metric, paired difference to the baseline over
    (seed, image) with a 95% interval, and training time."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_variant.setdefault(record["ablation"]["variant"], []).append(record)
    metrics = records[0]["spec"]["evaluation"]["metrics"]
    baseline = {r["ablation"]["seed_index"]: r for r in by_variant.get("baseline", [])}
    rows = []
    for variant, group in by_variant.items():
        row: dict[str, Any] = {"variant": variant, "seeds": len(group), "overrides": group[0]["overrides"]}
        for metric in metrics:
            values = np.array([r["metrics"]["trained"]["aggregate"][metric] for r in group], dtype=float)
            row[metric] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            }
            if variant != "baseline" and baseline:
                pairs = []
                for r in group:
                    base = baseline.get(r["ablation"]["seed_index"])
                    if base is None:
                        continue
                    for key, value in r["metrics"]["trained"]["per_image"].items():
                        pairs.append(value[metric] - base["metrics"]["trained"]["per_image"][key][metric])
                mean, low, high = _paired_interval(np.array(pairs, dtype=float))
                row[metric]["difference"] = {"mean": mean, "low": low, "high": high, "pairs": len(pairs)}
        row["training_seconds"] = float(np.mean([r["timings_seconds"]["training"] for r in group]))
        rows.append(row)
    order = ["baseline"] + sorted(v for v in by_variant if v != "baseline")
    rows.sort(key=lambda row: order.index(row["variant"]))
    return {"metrics": metrics, "rows": rows}


MANIFEST = "ablation.json"


def write_manifest(out: Path, runs: list[PlannedRun], spec_file: Path, command: str) -> None:
    """Which run directory is which variant and seed: with the records, all the report needs."""
    manifest = {
        "spec_file": str(spec_file),
        "command": command,
        "runs": [
            {"variant": r.variant, "seed_index": r.seed_index, "directory": r.directory.name} for r in runs
        ],
    }
    atomic_write_bytes(out / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def collect_records(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    path = out / MANIFEST
    if not path.is_file():
        raise UserError(f"{out}: no {MANIFEST}; is this an ablation directory made by `unetbench ablate`?")
    manifest = json.loads(path.read_text())
    records = []
    for entry in manifest["runs"]:
        record = read_record(out / entry["directory"])
        record["ablation"] = {"variant": entry["variant"], "seed_index": entry["seed_index"]}
        records.append(record)
    return manifest, records
