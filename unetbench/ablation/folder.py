"""An ablation's folder: the one place that knows its layout (as :class:`~unetbench.records.run_folder.RunDir`
knows a
run's).

::

    runs/<challenge>/ablation-<id>/    (unetbench ablate; `unetbench run --folds K` makes cv-<id>/)
        ablation.json                  the manifest: which run folder is which variant, fold and seed
        <variant>[-fold<k>]-seed<s>-<digest>/   the runs (RunDir folders)
        logs/<run>.log                 what each run printed, when it ran in a process of its own
        reports/<challenge>/<run>.md   each run's own report
        crossval.json                  out-of-fold scores of every variant and seed (with --folds)
        selection.json                 nested selection (--select): each fold's choice, its out-of-fold score
        superseded.json                a later report replaces this one's (``unetbench report
                                       --superseded-by``): the banner its report opens with

A manifest entry names its run's folder relative to the ablation's folder; a run reused from a
cross-validation of the same spec lies beside it (``../cv-<id>/...``).

The same layout, holding only ``ablation.json``, ``crossval.json`` and ``records/<run>/record.json``, is
what a committed report carries beside its table (:meth:`AblationDir.bundle`): any table can be rendered
again from it (``unetbench report <folder>``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from unetbench.ablation.plan import PlannedRun
from unetbench.ablation.records import (
    CROSSVAL_SCHEMA,
    MANIFEST_SCHEMA,
    SELECTION_SCHEMA,
    SUPERSEDED_SCHEMA,
    AblationManifest,
    CrossValidated,
    PlannedRunEntry,
    Selection,
    Superseded,
)
from unetbench.errors import UserError
from unetbench.records.json_io import read_json_record, write_json_record
from unetbench.records.provenance import command_line
from unetbench.records.run_folder import ABLATION_MANIFEST, RunDir
from unetbench.records.run_record import RunRecord
from unetbench.spec import ChallengeSpec, dump_spec
from unetbench.system.atomic_writes import atomic_path


class AblationDir:
    MANIFEST = ABLATION_MANIFEST
    CROSSVAL = "crossval.json"
    SELECTION = "selection.json"
    SUPERSEDED = "superseded.json"
    LOGS = "logs"
    REPORTS = "reports"
    RECORDS = "records"  # in a bundle only

    def __init__(self, path: Path):
        self.path = Path(path).absolute()

    @staticmethod
    def default(spec: ChallengeSpec, kind: str, key: list) -> AblationDir:
        """``runs/<name>/ablation-<id>`` or ``runs/<name>/cv-<id>``, the id from the spec and ``key`` (the
        switches, --vary, folds, seeds, grid): the same command finds the same folder."""
        text = json.dumps([dump_spec(spec), *key])
        prefix = "cv" if kind == "cross-validation" else "ablation"
        return AblationDir(
            Path("runs") / spec.name / f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
        )

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def manifest_file(self) -> Path:
        return self.path / self.MANIFEST

    @property
    def logs(self) -> Path:
        return self.path / self.LOGS

    @property
    def run_reports(self) -> Path:
        return self.path / self.REPORTS

    def log_file(self, run: PlannedRun) -> Path:
        return self.logs / f"{run.name}.log"

    def run_folder(self, relative: str) -> Path:
        return Path(os.path.normpath(self.path / relative))

    def relative(self, directory: Path) -> str:
        return os.path.relpath(directory, self.path)

    # --- the manifest --------------------------------------------------------------------------------

    def write_manifest(
        self,
        spec: ChallengeSpec,
        runs: list[PlannedRun],
        *,
        kind: str,
        spec_file: Path,
        switches: list[str],
        vary: list[str],
        folds: int | None,
        seeds: int,
        grid: str,
    ) -> None:
        manifest = AblationManifest(
            kind=kind,
            challenge=spec.name,
            spec_file=str(spec_file),
            command=command_line(),
            switches=list(switches),
            vary=list(vary),
            folds=folds,
            seeds=seeds,
            grid=grid,
            runs=[
                PlannedRunEntry(
                    variant=r.variant,
                    fold=r.fold,
                    seed_index=r.seed_index,
                    directory=self.relative(r.directory),
                    overrides=list(r.spec.overrides),
                    weights_from=self.relative(r.weights_from) if r.weights_from else None,
                )
                for r in runs
            ],
        )
        write_json_record(self.manifest_file, manifest)

    def read_manifest(self) -> AblationManifest:
        if not self.manifest_file.is_file():
            raise UserError(
                f"{self.path}: no {self.MANIFEST}; is this a folder made by `unetbench ablate` or "
                "`unetbench run --folds`?"
            )
        return read_json_record(
            self.manifest_file, AblationManifest, what="an ablation manifest", schema=MANIFEST_SCHEMA
        )

    def read_runs(self) -> tuple[AblationManifest, list[tuple[PlannedRunEntry, RunRecord]]]:
        """The manifest and every planned run's record (one line naming the first run without one)."""
        manifest = self.read_manifest()
        return manifest, [(e, RunDir(self.run_folder(e.directory)).read_record()) for e in manifest.runs]

    # --- the typed files beside the runs: out-of-fold scores, nested selection, a later report ---------

    # file name -> (record type, what it is, schema): each is optional, written once its step is done
    EXTRAS = {
        CROSSVAL: (CrossValidated, "cross-validated scores", CROSSVAL_SCHEMA),
        SELECTION: (Selection, "a nested selection", SELECTION_SCHEMA),
        SUPERSEDED: (Superseded, "a superseded note", SUPERSEDED_SCHEMA),
    }

    def _write(self, name: str, record) -> None:
        write_json_record(self.path / name, record)

    def _read(self, name: str):
        path = self.path / name
        if not path.is_file():
            return None
        cls, what, schema = self.EXTRAS[name]
        return read_json_record(path, cls, what=what, schema=schema)

    def write_crossval(self, scores: CrossValidated) -> None:
        self._write(self.CROSSVAL, scores)

    def read_crossval(self) -> CrossValidated | None:
        return self._read(self.CROSSVAL)

    def write_selection(self, selection: Selection) -> None:
        self._write(self.SELECTION, selection)

    def read_selection(self) -> Selection | None:
        return self._read(self.SELECTION)

    def write_superseded(self, superseded: Superseded) -> None:
        self._write(self.SUPERSEDED, superseded)

    def read_superseded(self) -> Superseded | None:
        return self._read(self.SUPERSEDED)

    # --- the bundle a committed report carries -------------------------------------------------------

    def bundle(self, destination: Path) -> AblationDir:
        """Copy the manifest (its folders pointing at ``records/<run>``), the out-of-fold scores and every
        run's ``record.json`` to ``destination``: an :class:`AblationDir` that renders the same report."""
        destination = Path(destination).absolute()
        if destination == self.path:
            return self
        manifest, runs = self.read_runs()
        entries = []
        for entry, _ in runs:
            source = self.run_folder(entry.directory)
            target = destination / self.RECORDS / bundled_name(entry, source)
            with atomic_path(target / RunDir.RECORD) as temporary:
                shutil.copyfile(source / RunDir.RECORD, temporary)
            parent = _paired_name(runs, entry.weights_from)
            entries.append(
                PlannedRunEntry(
                    entry.variant,
                    entry.fold,
                    entry.seed_index,
                    f"{self.RECORDS}/{target.name}",
                    entry.overrides,
                    f"{self.RECORDS}/{parent}" if parent else None,
                )
            )
        copy = AblationDir(destination)
        write_json_record(copy.manifest_file, _with_runs(manifest, entries))
        for name in self.EXTRAS:
            found = self._read(name)
            if found is not None:
                copy._write(name, found)
        return copy


def bundled_name(entry: PlannedRunEntry, source: Path) -> str:
    """A run's folder name in a bundle: its name in this ablation (variant, fold, seed and the digest of
    its resolved spec), also where it was reused from a folder that named it otherwise (a cross-validation
    reusing an ablation's ``no-tta-fold0-...``)."""
    from unetbench.ablation.plan import run_folder_name

    digest = source.name.rsplit("-", 1)[-1]
    return run_folder_name(entry.variant, entry.fold, entry.seed_index, digest)


def _paired_name(runs: list[tuple[PlannedRunEntry, RunRecord]], weights_from: str | None) -> str | None:
    """The bundle's name of the run ``weights_from`` names (a manifest's relative folder)."""
    if weights_from is None:
        return None
    for entry, _ in runs:
        if entry.directory == weights_from:
            return bundled_name(entry, Path(entry.directory))
    return Path(weights_from).name


def _with_runs(manifest: AblationManifest, entries: list[PlannedRunEntry]) -> AblationManifest:
    import dataclasses

    return dataclasses.replace(manifest, runs=entries)
