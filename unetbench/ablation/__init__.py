"""``unetbench ablate`` and ``unetbench run --folds``: what each of the paper's tricks is worth, counted in
trained networks.

The package, one direction of imports (the report, :mod:`unetbench.ablation.report`, reads from here;
nothing here reads the report):

- :mod:`~unetbench.ablation.plan`: switches and ``--vary`` values -> variants -> (variant, fold, seed)
  runs with their resolved specs and folders; inference-only variants paired with a trained run;
- :mod:`~unetbench.ablation.folder`: :class:`AblationDir`, the folder's layout and its typed files;
- :mod:`~unetbench.ablation.executors`: the local executor (in this process, or N processes per device)
  and what executors share; :mod:`~unetbench.ablation.ray`: the Ray executor;
- :mod:`~unetbench.ablation.crossval`: out-of-fold stack scores;
- :mod:`~unetbench.ablation.statistics` and :mod:`~unetbench.ablation.summary`: intervals over trained
  networks and the typed rows of the table.

:func:`ablate` takes one typed :class:`AblationRequest` and reads like its table of contents: plan (every
option checked, the device's memory too), finish every run, score the folds out of fold;
:func:`plan_ablation` (``--plan``) plans and says so, writing nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import PlannedRun, check_folds, variants
from unetbench.ablation.plan import plan as plan_runs
from unetbench.ablation.switches import SWITCHES
from unetbench.errors import RunInterrupted, UserError
from unetbench.records.provenance import command_line
from unetbench.spec import ChallengeSpec

EXECUTORS = ("local", "ray")
KINDS = ("ablation", "cross-validation")


@dataclass(frozen=True)
class AblationRequest:
    """What ``unetbench ablate`` (or ``run --folds``) was asked: the design and how to run it.

    ``kind = "cross-validation"``: the baseline alone over the folds. ``given``: the command line's
    ``--set KEY=VALUE`` (checked against ``folds``). ``select``: nested selection of the ``--vary`` key
    (:mod:`unetbench.ablation.selection`). ``executor``: ``local`` (``runs_per_device`` at a time) or
    ``ray`` (:mod:`unetbench.ablation.ray`, on the cluster at ``ray_address``, default a local instance;
    ``retries`` per run; ``cpus_per_run`` CPUs per run on a cluster without GPUs, ``1 / runs_per_device``
    of a GPU otherwise). ``track``: where every run is also shown (``--track``).
    """

    spec: ChallengeSpec
    spec_file: Path
    switches: tuple[str, ...] = ()
    vary: tuple[str, ...] = ()
    folds: int | None = None
    seeds: int = 1
    grid: str = "one"
    select: bool = False
    kind: str = "ablation"
    given: tuple[str, ...] = ()
    out: Path | None = None
    data_root: Path | None = None
    progress: bool = True
    executor: str = "local"
    ray_address: str | None = None
    retries: int = 2
    cpus_per_run: int = 1
    runs_per_device: int = 1
    track: tuple[str, ...] = ()


def ablate(request: AblationRequest, *, log=print) -> AblationDir:
    """Plan the runs, write the manifest, finish every run (skip, resume or start), and with folds
    write their out-of-fold scores (and the nested selection); returns the folder, from which the report
    is rendered."""
    directory, runs = planned(request)
    _finish_runs(request, directory, runs, log)
    _score(request, directory, runs, log)
    return directory


def plan_ablation(request: AblationRequest, *, pilot: Path | None = None, log=print) -> None:
    """``--plan``: print the design, its cost and, with ``pilot``, its power
    (:mod:`unetbench.ablation.planning`); write nothing."""
    from unetbench.ablation.planning import describe, read_pilot

    if pilot is not None:
        read_pilot(pilot, request.spec.name)  # another challenge's, or no ablation: one line first
    directory, runs = planned(request)
    describe(runs, directory, data_root=request.data_root, pilot=pilot, log=log)


def planned(request: AblationRequest) -> tuple[AblationDir, list[PlannedRun]]:
    """Every option checked (one line each, nothing read but the data for --folds), the variants, the
    folder and the runs; nothing written."""
    r = request
    if r.select:
        from unetbench.ablation.selection import check_select

        check_select(r.spec, list(r.switches), list(r.vary), r.folds, r.grid)
    _check_options(r)
    found = variants(r.spec, list(r.switches), list(r.vary), r.grid)
    _check_folds(r.spec, r.folds, r.data_root, list(r.given))
    key = [sorted(r.switches), list(r.vary), r.folds, r.seeds, r.grid] + (["select"] if r.select else [])
    directory = AblationDir(r.out) if r.out is not None else AblationDir.default(r.spec, r.kind, key)
    runs = plan_runs(r.spec, found, folds=r.folds, seeds=r.seeds, out=directory.path)
    runs = [dataclasses.replace(run, track=tuple(r.track)) for run in runs]
    if r.executor == "local":
        _check_memory(runs, r.runs_per_device)
    return directory, runs


def _executor(request: AblationRequest, directory: AblationDir, stack: contextlib.ExitStack, runs):
    """The executor the request names; Ray's connects and checks the runs first, so an unreachable
    cluster leaves nothing behind."""
    if request.executor == "ray":
        from unetbench.ablation.ray import RayExecutor

        pool = stack.enter_context(
            RayExecutor(
                address=request.ray_address,
                retries=request.retries,
                cpus_per_run=request.cpus_per_run,
                runs_per_device=request.runs_per_device,
                directory=directory,
            )
        )
        pool.check(runs)
        return pool
    from unetbench.ablation.executors import LocalExecutor

    return LocalExecutor(directory, runs_per_device=request.runs_per_device)


def _finish_runs(request: AblationRequest, directory: AblationDir, runs: list[PlannedRun], log) -> None:
    """The manifest, then every run finished by the executor; Ctrl-C says how to go on."""
    from unetbench.system.atomic_writes import check_folder

    r = request
    check_folder(directory.path, what="--out")
    check_folder(Path(r.spec.report.directory).absolute(), what="report.directory")
    with contextlib.ExitStack() as stack:
        pool = _executor(r, directory, stack, runs)
        directory.write_manifest(
            r.spec,
            runs,
            kind=r.kind,
            spec_file=r.spec_file,
            switches=list(r.switches),
            vary=list(r.vary),
            folds=r.folds,
            seeds=r.seeds,
            grid=r.grid,
        )
        log(f"{r.kind}: {_counts(runs)}, in {directory.path}")
        try:
            pool.run_all(runs, data_root=r.data_root, progress=r.progress, log=log)
        except RunInterrupted as stopped:
            raise RunInterrupted(
                f"{stopped}\nThe {r.kind} continues where it stopped when you run the same command again: "
                f"{command_line()}",
                stopped.signal_name,
            ) from None


def _score(request: AblationRequest, directory: AblationDir, runs: list[PlannedRun], log) -> None:
    """With folds, every variant's out-of-fold scores; with --select, each fold's choice."""
    if request.folds:
        from unetbench.ablation.crossval import out_of_fold

        log(f"scoring the out-of-fold predictions of {request.folds} folds as one set ...")
        directory.write_crossval(out_of_fold(runs, request.folds, request.data_root, log))
    if request.select:
        from unetbench.ablation.selection import select as nested

        log(f"choosing {request.vary[0].partition('=')[0]} on each fold's validation images ...")
        directory.write_selection(nested(runs, request.vary[0], request.folds, request.data_root))


def _counts(runs: list[PlannedRun]) -> str:
    """What the runs will do: train a network, predict with a paired one, or nothing (finished already,
    here or in a folder they are reused from)."""
    from unetbench.records.run_folder import RunDir

    todo = [r for r in runs if RunDir.state(r.directory) != "finished"]
    train = sum(r.trains for r in todo)
    return (
        f"{len(runs)} runs: {train} to train a network, {len(todo) - train} to predict with a paired "
        f"network, {len(runs) - len(todo)} finished already (here or reused)"
    )


def _check_options(r: AblationRequest) -> None:
    """The options that need no data: one :class:`UserError` each, before anything is read or written."""
    if r.kind == "ablation" and not r.switches and not r.vary:
        raise UserError(
            "name at least one switch ("
            + ", ".join(switch.flag for switch in SWITCHES.values())
            + ") or --vary KEY=V1,V2,..."
        )
    if r.executor not in EXECUTORS:
        raise UserError(f"--executor: unknown value {r.executor!r}; valid choices: {', '.join(EXECUTORS)}")
    if r.executor != "ray" and r.ray_address is not None:
        raise UserError("--ray-address goes with --executor ray")
    if r.runs_per_device < 1:
        raise UserError(f"--runs-per-device must be at least 1, got {r.runs_per_device}")
    if r.executor == "ray" and (r.out is None or not r.out.is_absolute()):
        raise UserError(
            f"--out: with --executor ray give an absolute folder that every node of the cluster sees "
            f"(a shared file system), e.g. --out /shared/ablations/{r.spec.name}; got "
            f"{str(r.out) if r.out is not None else 'none'}"
        )


def _check_folds(spec: ChallengeSpec, folds: int | None, data_root: Path | None, given: list[str]) -> None:
    """``--folds`` against the data: read once here, so a bad count is one line before anything starts."""
    if folds is None:
        return
    check_folds(spec, folds, labelled=max(folds, 2), sequences=[], given=given)  # without reading data
    from unetbench.datasets import load_dataset

    labelled = load_dataset(spec.data, data_root).labelled
    check_folds(spec, folds, len(labelled), sorted({s.group for s in labelled if s.group}), given)


def _check_memory(runs: list[PlannedRun], runs_per_device: int) -> None:
    """N runs at once on this machine's device: refused in one line when its memory cannot hold them."""
    from unetbench.system.devices import check_memory, resolve_device

    for run in runs:  # arithmetic on layer sizes: cheap
        check_memory(run.spec, resolve_device(run.spec.training.device), runs=runs_per_device)


__all__ = [
    "EXECUTORS",
    "KINDS",
    "SWITCHES",
    "AblationDir",
    "AblationRequest",
    "PlannedRun",
    "ablate",
    "plan_ablation",
]
