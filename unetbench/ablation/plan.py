"""The plan of an ablation: which runs, each with its resolved spec and its folder. Nothing runs here.

An ablation is the same run repeated over spec overrides, folds and seeds (never subclasses):

- **Variants.** The baseline (the spec as given, with ``--set``), then one variant per switch, and one per
  value of a ``--vary KEY=V1,V2,...`` other than the spec's own value. The switches are one table,
  :data:`SWITCHES` (flag, variant name, overrides, what the pair compares), which the command line, the
  errors, the report and the docs read. Four change one thing:

  - ``--no-weightmap``: ``weightmap.enabled = false``. The border term w0 exp(-(d1 + d2)^2 / (2 sigma^2))
    goes; the class balance w_c stays as the spec sets it, so the switch measures the border term alone.
  - ``--no-elastic``: ``augmentation.elastic = false``; shifts, rotations, flips and grey values unchanged.
  - ``--no-tta``: ``inference.tta = "none"``: one prediction of each image instead of the average over its
    rotated or mirrored versions. Inference-only.
  - ``--no-tiling``: ``inference.tiling = "isolated"`` with ``inference.tile_size`` the training tile: the
    baseline's own network and weights predict each image in non-overlapping tiles of the output size it
    was trained on, each tile fed with itself mirrored at its edges, against overlap-tile (context from the
    image around each tile). Inference-only.
  - ``--no-mirror``: ``inference.border = "zeros"``: overlap-tile whose context beyond the image border is
    zeros instead of the mirrored image. Inference-only.

  One changes more, and its name says so:

  - ``--no-tiling-same-padding``: ``model.padding = "same"``, ``inference.tiling = "none"``: a different
    network, zero-padded in every convolution, trained and predicting on non-overlapping tiles without
    context (:mod:`unetbench.inference.tiling`). Its tiles, in training and prediction, are the valid
    network's output for the spec's training tile, rounded down to the pooling factor (388 -> 384 for the
    paper's 572 px tile; 164 -> 160 for em-cpu's 252). It compares two networks as well as two ways of
    predicting, so it does not measure overlap-tile alone.

  ``--grid one`` runs the baseline and each variant alone; ``--grid full`` every combination of switches.
- **Folds** (``--folds K``): the spec's split is replaced by fold k of K (``data.split.method = "kfold"``:
  fold k evaluates, the next validates, the rest trains; :func:`unetbench.datasets.splits.kfold_indices`).
- **Seeds** (``--seeds S``): seed index s > 0 adds ``training.seed = <spec seed> + s``; index 0 is the
  spec's own, so the baseline's first run is the spec file.

A run's folder is ``<variant>[-fold<k>]-seed<s>-<digest>``, the digest that of its resolved spec (what
the spec says, not the order of the overrides that made it): the same command plans the same folders, so
running it again skips finished runs and resumes started ones. A run whose folder does not exist yet,
but whose resolved spec a finished run in a sibling folder of the ablation has (a cross-validation of the
same spec: ``runs/<name>/cv-*/``), is that run: it is reused, not trained again, where it ran with the
precision and layout this machine gives the spec (``auto`` differs between processors).

A variant that differs from a trained run of the same fold and seed only in
:data:`~unetbench.spec.PREDICTION_SECTIONS` (``--no-tta``, ``--vary inference.tile_size=...``) trains
nothing: it predicts with that run's scored weights (``weights_from``), so its pairing is exact.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetbench.ablation.switches import SWITCHES, switch_overrides
from unetbench.challenges.loading import apply_overrides
from unetbench.errors import SpecError, UserError
from unetbench.records.run_folder import RunDir
from unetbench.spec import ChallengeSpec, dump_spec, parse_override, spec_to_table, training_part
from unetbench.system.execution import ExecutionUsed

BASELINE = "baseline"


GRIDS = ("one", "full")  # --grid: the baseline and each variant alone; every combination of switches


@dataclass(frozen=True)
class Variant:
    name: str  # "baseline", "no-weightmap", "no-weightmap+no-elastic", "training.learning_rate=0.003"
    overrides: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    fold: int | None  # None: the spec's own split
    seed_index: int
    spec: ChallengeSpec
    directory: Path  # its own folder below the ablation's, or a reused finished run's
    weights_from: Path | None = None  # the trained run this one predicts with (an inference-only variant)
    track: tuple[str, ...] = ()  # where the run is also shown (--track): no part of the plan's identity

    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def trains(self) -> bool:
        return self.weights_from is None

    def tracking(self):
        """The run's :class:`~unetbench.tracking.trackers.Tracking`: its variant, fold and seed as labels, its
        ablation folder as the group."""
        from unetbench.tracking.trackers import Tracking, run_labels

        labels = run_labels(self.variant, self.fold, self.seed_index)
        return Tracking(self.track, labels, self.directory.parent.name)

    def describe(self) -> str:
        fold = f", fold {self.fold}" if self.fold is not None else ""
        how = ", weights of the paired run" if self.weights_from else ""
        return f"{self.variant}{fold}, seed {self.seed_index}{how}"


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2,...`` into the key and its values (each read as ``--set`` reads one; commas inside
    brackets or quotes belong to the value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise UserError(
            f"--vary {text}: expected KEY=V1,V2,..., e.g. training.learning_rate=0.0003,0.001,0.003"
        )
    pieces, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(raw):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(raw[start:i])
            start = i + 1
    pieces.append(raw[start:])
    if any(not p.strip() for p in pieces):
        raise UserError(f"--vary {text}: an empty value; give KEY=V1,V2,... without empty entries")
    return key.strip(), [parse_override(f"{key}={p}")[1] for p in pieces]


def vary_variants(spec: ChallengeSpec, text: str) -> list[Variant]:
    """One variant per value of ``--vary`` other than the spec's own (which is the baseline). An unknown
    key, a value the key refuses, or only the spec's own value: one :class:`UserError` each."""
    key, values = parse_vary(text)
    variants = []
    for value in values:
        # an unknown key, a table, a value the key refuses: one line from the spec layer
        apply_overrides(spec, [(key, value)], source=f"--vary {text}")
    own = _value(spec, key)
    for value in values:
        if value == own or any(v.overrides == ((key, value),) for v in variants):
            continue
        variants.append(Variant(f"{key}={_word(value)}", ((key, value),)))
    if not variants:
        raise UserError(
            f"--vary {text}: every value is the spec's own ({key} = {own!r}), the baseline; give other values"
        )
    return variants


def _value(spec: ChallengeSpec, key: str) -> Any:
    """The spec's value at a dotted key, as the TOML file has it (None: unset)."""
    node: Any = spec_to_table(spec)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _word(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def variants(spec: ChallengeSpec, switches: list[str], vary: list[str], grid: str) -> list[Variant]:
    """The variants to run, the baseline first (module docstring)."""
    if grid not in GRIDS:
        raise UserError(f"--grid: unknown value {grid!r}; valid choices: {', '.join(GRIDS)}")
    if grid == "full" and vary:
        raise UserError("--vary goes with --grid one (each value against the baseline)")
    for name in switches:
        _check_switch(spec, name)
    if grid == "one":
        combos = [(s,) for s in switches]
    else:
        combos = [c for r in range(1, len(switches) + 1) for c in itertools.combinations(switches, r)]
    found = [Variant(BASELINE, ())]
    for combo in combos:
        changes = tuple(change for s in combo for change in switch_overrides(spec, s))
        name = "+".join(SWITCHES[s].variant for s in combo)
        if len(combo) > 1:
            _check_combination(spec, combo, changes)
        found.append(Variant(name, changes))
    for text in vary:
        found += vary_variants(spec, text)
    return found


def _check_switch(spec: ChallengeSpec, name: str) -> None:
    """A switch the spec can take, or one :class:`UserError`: an unknown one lists the switches; one
    that compares against overlap-tile needs a spec that predicts with it; one that changes nothing is
    refused."""
    if name not in SWITCHES:
        raise UserError(
            f"unknown switch {name!r}; valid switches: {', '.join(s.flag for s in SWITCHES.values())}"
        )
    switch = SWITCHES[name]
    if switch.needs_overlap_tile and spec.inference.tiling != "overlap-tile":
        raise UserError(
            f"{switch.flag}: the spec predicts with inference.tiling = {spec.inference.tiling!r}, not "
            f"overlap-tile; {switch.flag} compares {switch.compares}, so it needs a spec that predicts "
            "with overlap-tile (inference.tiling = 'overlap-tile')"
        )
    changes = switch.changes(spec)
    unchanged = [f"{key} = {value!r}" for key, value in changes if _value(spec, key) == value]
    if len(unchanged) == len(changes):
        raise UserError(
            f"{switch.flag}: the spec already has {', '.join(unchanged)}, so this variant would repeat "
            "the baseline; leave the switch out"
        )


def _check_combination(spec: ChallengeSpec, combo: tuple[str, ...], changes) -> None:
    """``--grid full``: switches that set the same key, or whose changes together make a spec that is
    not valid, cannot be combined; one :class:`UserError` naming them."""
    flags = " and ".join(SWITCHES[s].flag for s in combo)
    keys = [key for key, _ in changes]
    shared = sorted({key for key in keys if keys.count(key) > 1})
    if shared:
        raise UserError(
            f"--grid full: {flags} both set {', '.join(shared)}, so they cannot be combined; leave one out "
            "or use --grid one"
        )
    try:
        apply_overrides(spec, list(changes), source="combination")
    except SpecError as err:
        raise UserError(
            f"--grid full: {flags} cannot be combined ({err.key}: {err.message}); leave one out or use "
            "--grid one"
        ) from None


def check_folds(
    spec: ChallengeSpec, folds: int | None, labelled: int, sequences: list[str], given: list[str] = ()
) -> None:
    """``--folds K``: at least 2, at most the labelled images (or sequences, for time-lapse data), and no
    ``--set data.split...`` among ``given`` (the command line's, ``KEY=VALUE``) that says otherwise; one
    :class:`UserError` each."""
    if folds is None:
        return
    if folds < 2:
        raise UserError(
            f"--folds must be at least 2 (each fold is evaluated by a network trained on the others), "
            f"got {folds}"
        )
    if sequences and folds > len(sequences):
        raise UserError(
            f"--folds {folds}: {spec.data.dataset} has {len(sequences)} labelled sequences "
            f"({', '.join(sequences)}), and folds cut by sequence (neighbouring frames of one sequence look "
            f"alike); give at most --folds {len(sequences)}"
        )
    if folds > labelled:
        raise UserError(
            f"--folds {folds}: {spec.data.dataset} has {labelled} labelled images; give at most "
            f"--folds {labelled}"
        )
    allowed = {"method": "kfold", "folds": folds}
    for override in given:
        key, value = parse_override(override)
        if not key.startswith("data.split."):
            continue
        name = key.removeprefix("data.split.")
        if name == "shuffle_seed" or allowed.get(name, object()) == value:
            continue
        raise UserError(
            f"--folds {folds} with --set {override}: --folds makes the split (fold k of {folds} evaluates, "
            "the next validates, the rest trains); leave out --set data.split... (data.split.shuffle_seed "
            "may stay)"
        )


def fold_overrides(folds: int, fold: int) -> list[tuple[str, Any]]:
    return [("data.split.method", "kfold"), ("data.split.folds", folds), ("data.split.fold", fold)]


def spec_digest(spec: ChallengeSpec) -> str:
    """The first 8 hex of the sha256 of what the spec says (not of how overrides made it)."""
    return hashlib.sha256(dump_spec(dataclasses.replace(spec, overrides=())).encode()).hexdigest()[:8]


def plan(
    spec: ChallengeSpec,
    variants_: list[Variant],
    *,
    folds: int | None,
    seeds: int,
    out: Path,
) -> list[PlannedRun]:
    """Every (variant, fold, seed) with its resolved spec and folder (module docstring)."""
    if seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {seeds}")
    runs: list[PlannedRun] = []
    for variant in variants_:
        for fold in range(folds) if folds else [None]:
            for k in range(seeds):
                changes = list(variant.overrides)
                changes += fold_overrides(folds, fold) if fold is not None else []
                changes += [("training.seed", spec.training.seed + k)] if k else []
                resolved = (
                    apply_overrides(spec, changes, source=f"ablation {variant.name}") if changes else spec
                )
                directory = out / run_folder_name(variant.name, fold, k, spec_digest(resolved))
                runs.append(PlannedRun(variant.name, fold, k, resolved, _reusable(directory, resolved)))
    return _pair_inference_only(runs)


def run_folder_name(variant: str, fold: int | None, seed_index: int, digest: str) -> str:
    """``<variant>[-fold<k>]-seed<s>-<digest>`` (module docstring)."""
    stem = _folder_word(variant) + (f"-fold{fold}" if fold is not None else "")
    return f"{stem}-seed{seed_index}-{digest}"


def _folder_word(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=+_-]", "_", name)


def _reusable(directory: Path, spec: ChallengeSpec) -> Path:
    """``directory``, or a finished run of the same resolved spec in a sibling folder of the ablation's."""
    if directory.exists():
        return directory
    digest = directory.name.rsplit("-", 1)[1]
    for candidate in sorted(directory.parent.parent.glob(f"*/*-{digest}")):
        if candidate.parent == directory.parent or RunDir.state(candidate) != "finished":
            continue
        record = RunDir(candidate).read_record()
        if record.spec == spec_to_table(spec) and _trains_alike_here(record, spec):
            return candidate
    return directory


def _trains_alike_here(record, spec: ChallengeSpec) -> bool:
    """Whether a finished run's precision and layout are what ``spec`` gets on this machine: ``auto``
    becomes bf16 channels_last on a CPU with bf16 in hardware and float32 elsewhere, so one resolved spec
    trains another network on another processor (em-cpu's baselines: bf16 on a Xeon, float32 on an EPYC;
    issue 29, item 8). A record from before ``execution`` was kept ran the rule of its time: float32
    contiguous on the CPU, bf16 channels_last on CUDA. Where this machine cannot run the spec's device (a
    Ray head planning GPU runs), the spec alone decides. The prediction's memory layout is not compared:
    it changes the probabilities by float rounding (about 1e-5), once, where the training's compounds over
    every step into another network (``auto`` predicts in channels_last on every device now; earlier runs
    on a CPU without bf16 predicted in contiguous layout)."""
    from unetbench.system import devices

    try:
        device = devices.resolve_device(spec.training.device)
    except UserError:
        return True
    here = devices.resolve(spec, device)
    used = record.execution
    if used is None:  # the rule of its time
        rule = ("fp32", "contiguous") if device == "cpu" else ("bf16", "channels_last")
        used = ExecutionUsed(*rule, spec.training.compile, *rule, native_bf16=here.native_bf16)
    layout = here.inference_memory_format
    return dataclasses.replace(used, native_bf16=here.native_bf16, inference_memory_format=layout) == here


def _pair_inference_only(runs: list[PlannedRun]) -> list[PlannedRun]:
    """Give each run that differs from an earlier trained run of the same fold and seed only in the
    prediction sections that run's folder as ``weights_from`` (module docstring)."""
    trained: dict[tuple, PlannedRun] = {}
    paired = []
    for run in runs:
        key = (run.fold, run.seed_index, repr(training_part(run.spec)))
        parent = trained.setdefault(key, run)
        if parent is not run:
            run = dataclasses.replace(run, weights_from=parent.directory)
        paired.append(run)
    return paired
