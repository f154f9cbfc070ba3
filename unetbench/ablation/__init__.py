"""``unetbench ablate`` and ``unetbench run --folds``: what each of the paper's tricks is worth, counted in
trained networks.

The package, one direction of imports (the report, :mod:`unetbench.report.ablation`, reads from here;
nothing here reads the report):

- :mod:`~unetbench.ablation.plan`: switches and ``--vary`` values -> variants -> (variant, fold, seed)
  runs with their resolved specs and folders; inference-only variants paired with a trained run;
- :mod:`~unetbench.ablation.folder`: :class:`AblationDir`, the folder's layout and its typed files;
- :mod:`~unetbench.ablation.executors`: the local executor (in this process, or N processes per device)
  and what executors share; :mod:`~unetbench.ablation.ray`: the Ray executor;
- :mod:`~unetbench.ablation.crossval`: out-of-fold stack scores;
- :mod:`~unetbench.ablation.statistics` and :mod:`~unetbench.ablation.summary`: intervals over trained
  networks and the typed rows of the table.

:func:`ablate` reads like its table of contents: check the options, plan, check the device's memory,
write the manifest, finish every run, score the folds out of fold.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import SWITCHES, PlannedRun, check_folds, variants
from unetbench.ablation.plan import plan as plan_runs
from unetbench.errors import RunInterrupted, UserError
from unetbench.results import command_line
from unetbench.spec import ChallengeSpec

EXECUTORS = ("local", "ray")
KINDS = ("ablation", "cross-validation")


def ablate(
    spec: ChallengeSpec,
    spec_file: Path,
    switches: list[str],
    *,
    vary: list[str] = (),
    folds: int | None = None,
    seeds: int = 1,
    grid: str = "one",
    out: Path | None = None,
    data_root: Path | None = None,
    progress: bool = True,
    log=print,
    executor: str = "local",
    ray_address: str | None = None,
    retries: int = 2,
    cpus_per_run: int = 1,
    runs_per_device: int = 1,
    kind: str = "ablation",
    given: list[str] = (),
    track: tuple[str, ...] = (),
    plan_only: bool = False,
    pilot: Path | None = None,
    select: bool = False,
) -> AblationDir | None:
    """Plan the runs, write the manifest, finish every run (skip, resume or start), and with ``folds``
    write their out-of-fold scores; returns the folder, from which the report is rendered.

    ``plan_only`` (``--plan``): print the design, its cost and, with ``pilot``, its power
    (:mod:`unetbench.ablation.planning`); write nothing and return None. ``select`` (``--select``): nested
    selection of the ``--vary`` key (:mod:`unetbench.ablation.selection`).

    ``kind = "cross-validation"`` (``unetbench run --folds``): the baseline alone over the folds.
    ``given``: the command line's ``--set KEY=VALUE`` (checked against ``folds``); ``track``: where every
    run is also shown (``--track``, :mod:`unetbench.tracking`).
    ``executor``: ``local`` (``runs_per_device`` at a time) or ``ray`` (:mod:`unetbench.ablation.ray`, on
    the cluster at ``ray_address``, default a local instance; ``retries`` per run; ``cpus_per_run`` CPUs
    per run on a cluster without GPUs, ``1 / runs_per_device`` of a GPU otherwise).
    """
    from unetbench.atomic import check_folder

    if select:
        from unetbench.ablation.selection import check_select

        check_select(spec, list(switches), list(vary), folds, grid)
    _check_options(spec, kind, switches, vary, out, executor, ray_address, runs_per_device)
    if pilot is not None and not plan_only:
        raise UserError("--pilot goes with --plan: it tells the power of the planned design")
    if pilot is not None:
        from unetbench.ablation.planning import read_pilot

        read_pilot(pilot, spec.name)  # another challenge's, or no ablation: one line before anything
    found = variants(spec, list(switches), list(vary), grid)
    _check_folds(spec, folds, data_root, list(given))
    key = [sorted(switches), list(vary), folds, seeds, grid] + (["select"] if select else [])
    directory = AblationDir(out) if out is not None else AblationDir.default(spec, kind, key)
    runs = plan_runs(spec, found, folds=folds, seeds=seeds, out=directory.path)
    runs = [dataclasses.replace(r, track=tuple(track)) for r in runs]
    if executor == "local":
        _check_memory(runs, runs_per_device)
    if plan_only:
        from unetbench.ablation.planning import describe

        describe(runs, directory, data_root=data_root, pilot=pilot, log=log)
        return None
    check_folder(directory.path, what="--out")
    check_folder(Path(spec.report.directory).absolute(), what="report.directory")
    with contextlib.ExitStack() as stack:
        if executor == "ray":
            from unetbench.ablation.ray import RayExecutor

            # connects and checks first: an unreachable cluster leaves nothing behind
            pool = stack.enter_context(
                RayExecutor(
                    address=ray_address,
                    retries=retries,
                    cpus_per_run=cpus_per_run,
                    runs_per_device=runs_per_device,
                    directory=directory,
                )
            )
            pool.check(runs)
        else:
            from unetbench.ablation.executors import LocalExecutor

            pool = LocalExecutor(directory, runs_per_device=runs_per_device)
        directory.write_manifest(
            spec,
            runs,
            kind=kind,
            spec_file=spec_file,
            switches=switches,
            vary=vary,
            folds=folds,
            seeds=seeds,
            grid=grid,
        )
        log(f"{kind}: {_counts(runs)}, in {directory.path}")
        try:
            pool.run_all(runs, data_root=data_root, progress=progress, log=log)
        except RunInterrupted as stopped:
            raise RunInterrupted(
                f"{stopped}\nThe {kind} continues where it stopped when you run the same command again: "
                f"{command_line()}",
                stopped.signal_name,
            ) from None
    if folds:
        from unetbench.ablation.crossval import out_of_fold

        log(f"scoring the out-of-fold predictions of {folds} folds as one set ...")
        directory.write_crossval(out_of_fold(runs, folds, data_root, log))
    if select:
        from unetbench.ablation.selection import select as nested

        log(f"choosing {vary[0].partition('=')[0]} on each fold's validation images ...")
        directory.write_selection(nested(runs, vary[0], folds, data_root))
    return directory


def _counts(runs: list[PlannedRun]) -> str:
    """What the runs will do: train a network, predict with a paired one, or nothing (finished already,
    here or in a folder they are reused from)."""
    from unetbench.rundir import RunDir

    todo = [r for r in runs if RunDir.state(r.directory) != "finished"]
    train = sum(r.trains for r in todo)
    return (
        f"{len(runs)} runs: {train} to train a network, {len(todo) - train} to predict with a paired "
        f"network, {len(runs) - len(todo)} finished already (here or reused)"
    )


def _check_options(spec, kind, switches, vary, out, executor, ray_address, runs_per_device) -> None:
    """The options that need no data: one :class:`UserError` each, before anything is read or written."""
    if kind == "ablation" and not switches and not vary:
        raise UserError(
            "name at least one switch ("
            + ", ".join(f"--no-{switch}" for switch in SWITCHES)
            + ") or --vary KEY=V1,V2,..."
        )
    if executor not in EXECUTORS:
        raise UserError(f"--executor: unknown value {executor!r}; valid choices: {', '.join(EXECUTORS)}")
    if executor != "ray" and ray_address is not None:
        raise UserError("--ray-address goes with --executor ray")
    if runs_per_device < 1:
        raise UserError(f"--runs-per-device must be at least 1, got {runs_per_device}")
    if executor == "ray" and (out is None or not out.is_absolute()):
        raise UserError(
            f"--out: with --executor ray give an absolute folder that every node of the cluster sees "
            f"(a shared file system), e.g. --out /shared/ablations/{spec.name}; got "
            f"{str(out) if out is not None else 'none'}"
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
    from unetbench.devices import check_memory, resolve_device

    for run in runs:  # arithmetic on layer sizes: cheap
        check_memory(run.spec, resolve_device(run.spec.training.device), runs=runs_per_device)


__all__ = ["EXECUTORS", "KINDS", "SWITCHES", "AblationDir", "PlannedRun", "ablate"]
