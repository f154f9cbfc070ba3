"""Following runs in the tools researchers already use: TensorBoard and MLflow. Optional, off by default.

``--track tensorboard`` and ``--track mlflow`` (``run``, ``ablate``) say where a run is shown, not what
the experiment is: tracking is no spec key and takes no part in resume checks. ``unetbench track DIR --to
...`` writes the same from finished records (:func:`replay`), so earlier runs, the committed reports'
included, can be browsed.

- **TensorBoard** (:class:`TensorBoardTracker`): event files in the run folder, so that ``tensorboard
  --logdir`` on an ablation folder shows every run side by side, named by its folder (variant, fold,
  seed). Scalars: ``train/loss``, ``train/learning_rate`` and ``train/tiles_per_second`` at every log point
  of the training curve; ``validation/<metric>`` at every validation; ``trained/<metric>`` and
  ``untrained/<metric>`` at the last iteration. The resolved spec as hyper-parameters with the trained
  scores as their metrics; the overlays as images. A resumed run writes with ``purge_step`` at its
  checkpoint's iteration, which hides what the killed session wrote from there on, and writes the
  checkpoint's own points again: every step is in the log exactly once.
- **MLflow** (:class:`MlflowTracker`): one MLflow run per unetbench run, in the store MLflow is configured
  with (``MLFLOW_TRACKING_URI``), else a local SQLite store beside the run folder (``mlflow.db``, artifacts
  in ``mlartifacts/``); never a server the user did not name. Params: the flattened spec; metrics with
  their steps; the record, the report and the figures as artifacts; tags for the commit, device, variant,
  fold and seed. The MLflow run id is kept in the run folder (``mlflow.json``), so a resumed run continues
  the same MLflow run; steps it logged before are not logged twice. An ablation's runs share an experiment
  named after the ablation (``<challenge>/<folder>``); a single run's experiment is its challenge's name.

Only rank 0 of a data-parallel run tracks (the runner opens trackers there alone).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetbench.errors import UserError
from unetbench.records.run_folder import RunDir
from unetbench.records.run_record import CurvePoint, RunRecord, ValidationPoint
from unetbench.system.atomic_writes import atomic_write_json

# --track NAME: (the module it needs, the extra that installs it)
KINDS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
MLFLOW_FILE = "mlflow.json"  # in the run folder: the MLflow store and run id a resume continues
ARTIFACTS = "mlartifacts"  # beside the run folders: the local store's artifacts


@dataclass(frozen=True)
class Tracking:
    """Where a run is shown: ``kinds`` from ``--track``; ``labels`` name the run in an ablation (variant,
    fold, seed); ``group``: the ablation or cross-validation folder the run belongs to."""

    kinds: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    group: str | None = None


def check_kinds(kinds: list[str] | tuple[str, ...], option: str = "--track") -> tuple[str, ...]:
    """``--track`` values checked before any work starts: each known, its extra installed, and MLflow's
    configured store reachable; one :class:`UserError` otherwise."""
    for kind in kinds:
        if kind not in KINDS:
            raise UserError(f"{option} {kind}: unknown; valid choices: {', '.join(KINDS)}")
        module, extra = KINDS[kind]
        if importlib.util.find_spec(module) is None:
            raise UserError(
                f"{option} {kind}: the {module} package is not installed; install the extra with "
                f"pip install 'unetbench[{extra}]'"
            )
    if "mlflow" in kinds and os.environ.get("MLFLOW_TRACKING_URI"):
        _reach(os.environ["MLFLOW_TRACKING_URI"])
    return tuple(dict.fromkeys(kinds))


def _reach(uri: str) -> None:
    """Ask the store at ``uri`` for one experiment, with no retries: an unreachable server is one line."""
    from mlflow.tracking import MlflowClient

    probe = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
    before = {key: os.environ.get(key) for key in probe}
    os.environ.update(probe)  # for the probe alone: the run's own requests keep MLflow's retries
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as err:  # mlflow raises MlflowException, requests' errors and others
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"MLFLOW_TRACKING_URI={uri}: cannot reach the MLflow store ({first[:200]}); start the server, "
            "correct the variable, or unset it for a local store beside the run"
        ) from None
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Tracker:
    """What a run tells a tracker; each method does nothing unless a tracker overrides it. ``where``:
    where the run is shown, for the run's output."""

    where = ""

    def logged(self, point: CurvePoint, tiles_per_second: float | None) -> None: ...

    def validated(self, point: ValidationPoint) -> None: ...

    def finished(self, record: RunRecord, figures: Path, report: Path | None) -> None: ...

    def close(self) -> None: ...


class Trackers(Tracker):
    """Several trackers as one."""

    def __init__(self, trackers: list[Tracker]):
        self.trackers = trackers
        self.where = "; ".join(t.where for t in trackers)

    def logged(self, point, tiles_per_second) -> None:
        for tracker in self.trackers:
            tracker.logged(point, tiles_per_second)

    def validated(self, point) -> None:
        for tracker in self.trackers:
            tracker.validated(point)

    def finished(self, record, figures, report) -> None:
        for tracker in self.trackers:
            tracker.finished(record, figures, report)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()


def open_trackers(tracking: Tracking, folder: Path, spec, *, start: int, log) -> Trackers:
    """The trackers of a run in ``folder`` whose checkpoint is at iteration ``start`` (0: a new run);
    ``log``: its :class:`~unetbench.training.checkpoint.TrainingLog` so far."""
    trackers: list[Tracker] = []
    for kind in tracking.kinds:
        if kind == "tensorboard":
            trackers.append(TensorBoardTracker(folder, start=start, log=log))
        else:
            trackers.append(MlflowTracker(folder, spec, tracking))
    return Trackers(trackers)


def flat_spec(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The spec in file form as ``{"training.learning_rate": 0.001, ...}``; lists as their text."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_spec(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, (bool, int, float, str)) else json.dumps(value)
    return flat


def _validation_scalars(point: ValidationPoint) -> list[tuple[str, float]]:
    return [(f"validation/{m}", v) for m, v in point.metrics.items() if v is not None]


def _final_scalars(record: RunRecord) -> list[tuple[str, float]]:
    """The trained and the untrained network's scores, as ``trained/<metric>``, ``untrained/<metric>``."""
    parts = (("trained", record.trained.aggregate), ("untrained", record.untrained.aggregate))
    return [(f"{part}/{m}", v) for part, scores in parts for m, v in scores.items() if v is not None]


# --------------------------------------------------------------------------------------------------
# TensorBoard


class TensorBoardTracker(Tracker):
    def __init__(self, folder: Path, *, start: int = 0, log=None):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides every event at or after ``start`` that a killed session wrote
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=start if start > 0 else None)
        self.where = f"TensorBoard events in {folder} (tensorboard --logdir {folder.parent})"
        if start > 0 and log is not None:  # the checkpoint's own points were hidden with the rest
            for point in log.curve:
                if point.iteration == start:
                    self.logged(point, None)
            for point in log.validation:
                if point.iteration == start:
                    self.validated(point)

    def logged(self, point: CurvePoint, tiles_per_second: float | None) -> None:
        self.writer.add_scalar("train/loss", point.loss, point.iteration)
        self.writer.add_scalar("train/learning_rate", point.lr, point.iteration)
        if tiles_per_second is not None:
            self.writer.add_scalar("train/tiles_per_second", tiles_per_second, point.iteration)

    def validated(self, point: ValidationPoint) -> None:
        for tag, value in _validation_scalars(point):
            self.writer.add_scalar(tag, value, point.iteration)

    def finished(self, record: RunRecord, figures: Path, report: Path | None) -> None:
        from torch.utils.tensorboard.summary import hparams

        step = record.training.iterations
        for tag, value in _final_scalars(record):
            self.writer.add_scalar(tag, value, step)
        metrics = {f"trained/{m}": v for m, v in record.trained.aggregate.items() if v is not None}
        for summary in hparams(flat_spec(record.spec), metrics):
            self.writer.file_writer.add_summary(summary, step)
        from skimage.io import imread

        for name in record.figures:
            if (figures / name).is_file():
                image = imread(figures / name)[..., :3]
                self.writer.add_image(f"overlays/{name}", image, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# --------------------------------------------------------------------------------------------------
# MLflow


def local_store(folder: Path) -> str:
    """The local store for the runs beside ``folder``: ``sqlite:///<parent>/mlflow.db``."""
    return f"sqlite:///{(folder.parent / 'mlflow.db').absolute()}"


class MlflowTracker(Tracker):
    def __init__(self, folder: Path, spec, tracking: Tracking, *, run_name: str | None = None):
        import logging

        from mlflow.tracking import MlflowClient

        for name in ("mlflow.store.db.utils", "alembic"):  # table creation is not the run's news
            logging.getLogger(name).setLevel(logging.WARNING)
        self.folder = folder
        noted = folder / MLFLOW_FILE
        previous = json.loads(noted.read_text(encoding="utf-8")) if noted.is_file() else None
        uri = (
            (previous or {}).get("tracking_uri")
            or os.environ.get("MLFLOW_TRACKING_URI")
            or local_store(folder)
        )
        self.client = MlflowClient(tracking_uri=uri)
        if previous is not None:
            self.run_id = previous["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = self._experiment(
                spec.name if tracking.group is None else f"{spec.name}/{tracking.group}"
            )
            run = self.client.create_run(
                experiment, run_name=run_name or folder.name, tags=self._tags(tracking)
            )
            self.run_id = run.info.run_id
            atomic_write_json(noted, {"tracking_uri": uri, "run_id": self.run_id})
            from unetbench.spec import spec_to_table

            self._params(flat_spec(spec_to_table(spec)))
        self.logged_to: dict[str, int] = {}  # per metric, the last step this MLflow run holds
        self.continued = previous is not None  # only a continued MLflow run can hold steps already
        self.where = f"MLflow run {self.run_id} in {uri}"

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        artifacts = (self.folder.parent / ARTIFACTS).absolute().as_uri()
        uri = self.client.tracking_uri
        return self.client.create_experiment(
            name, artifact_location=artifacts if uri.startswith("sqlite") else None
        )

    @staticmethod
    def _tags(tracking: Tracking) -> dict[str, str]:
        from unetbench.records.provenance import git_revision

        commit, dirty = git_revision()
        tags = {f"unetbench.{k}": str(v) for k, v in tracking.labels.items()}
        tags["unetbench.commit"] = (commit or "unknown") + ("+changes" if dirty else "")
        return tags

    def _params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:500]) for k, v in params.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def _metric(self, key: str, value: float, step: int) -> None:
        if key not in self.logged_to:
            history = self.client.get_metric_history(self.run_id, key) if self.continued else []
            self.logged_to[key] = max((m.step for m in history), default=-1)
        if step > self.logged_to[key]:  # what a killed session logged already is not logged twice
            self.client.log_metric(self.run_id, key, value, step=step)
            self.logged_to[key] = step

    def logged(self, point: CurvePoint, tiles_per_second: float | None) -> None:
        self._metric("train/loss", point.loss, point.iteration)
        self._metric("train/learning_rate", point.lr, point.iteration)
        if tiles_per_second is not None:
            self._metric("train/tiles_per_second", tiles_per_second, point.iteration)

    def validated(self, point: ValidationPoint) -> None:
        for tag, value in _validation_scalars(point):
            self._metric(tag, value, point.iteration)

    def finished(self, record: RunRecord, figures: Path, report: Path | None) -> None:
        step = record.training.iterations
        for tag, value in _final_scalars(record):
            self._metric(tag, value, step)
        self.client.set_tag(self.run_id, "unetbench.device", record.provenance.hardware.device)
        record_file = RunDir(self.folder).record_file
        if record_file.is_file():
            self.client.log_artifact(self.run_id, str(record_file))
        if report is not None and report.is_file():
            self.client.log_artifact(self.run_id, str(report))
        for name in record.figures:
            if (figures / name).is_file():
                self.client.log_artifact(self.run_id, str(figures / name), artifact_path=RunDir.FIGURES)
        self.client.set_terminated(self.run_id, status="FINISHED")

    def close(self) -> None:
        run = self.client.get_run(self.run_id)
        if run.info.status == "RUNNING":
            self.client.set_terminated(self.run_id, status="KILLED")


# --------------------------------------------------------------------------------------------------
# unetbench track: finished records, written as a run would have


def replay(
    directory: Path,
    kind: str,
    *,
    labels: dict[Path, dict[str, str]] | None = None,
    group: str | None = None,
    log=print,
) -> int:
    """Write every finished run under ``directory`` (a run folder, an ablation or cross-validation folder,
    or a report's bundle of records) to ``kind`` as the run would have; returns how many were written.
    ``labels``: per run folder (resolved), its variant, fold and seed; ``group``: the ablation's folder
    name. A run that is there already (TensorBoard events, an ``mlflow.json``) is skipped. ``kind`` is
    checked by the caller (:func:`check_kinds`)."""
    labels = labels or {}
    # the records MLflow keeps as artifacts (mlartifacts/, beside the runs) and the copy a run's report
    # keeps beside it (<name>.md and <name>/record.json) are no runs of their own
    found = directory.rglob(RunDir.RECORD)
    folders = sorted(
        {
            p.parent.resolve()
            for p in found
            if ARTIFACTS not in p.relative_to(directory).parts
            and not (p.parent != directory and p.parent.with_suffix(".md").is_file())
        }
    )
    if not folders:
        raise UserError(f"{directory}: holds no finished run (no record.json below it)")
    written = 0
    for folder in folders:
        if _tracked(folder, kind):
            log(f"{folder}: in {kind} already, skipped")
            continue
        from unetbench.report.owners import run_report_of

        record = RunDir(folder).read_record()
        tracking = Tracking((kind,), labels.get(folder, {}), group)
        tracker = open_trackers(tracking, folder, record.resolved_spec(), start=0, log=None)
        with contextlib.closing(tracker):
            for point in record.training.curve:
                tracker.logged(point, None)
            for point in record.training.validation:
                tracker.validated(point)
            tracker.finished(record, RunDir(folder).figures, run_report_of(record))
        log(f"{folder}: written to {kind}")
        written += 1
    return written


def run_labels(variant: str, fold: int | None, seed: int) -> dict[str, str]:
    """How a run of an ablation is named in the trackers: variant, fold ("none": the spec's split), seed."""
    return {"variant": variant, "fold": "none" if fold is None else str(fold), "seed": str(seed)}


def _tracked(folder: Path, kind: str) -> bool:
    if kind == "tensorboard":
        return any(folder.glob("events.out.tfevents.*"))
    return (folder / MLFLOW_FILE).is_file()
