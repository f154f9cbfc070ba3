"""Out-of-fold scores: every labelled image predicted by the network that did not train on it, the whole
set scored as one stack with the challenge's own metrics.

For ISBI 2012 that is all 30 labelled slices, the size of the hidden test stack of the paper's Table 1,
scored the way the challenge scores a stack (its pixel and Rand errors pool the pixels of all slices before
the best threshold is taken); for the cell data sets, every annotated frame, scored as SEG scores a set.
The predictions are the runs' own (``predictions.h5``, ``evaluation/<image>``), so nothing is predicted
again; the labels are read from the data set once.

Runs reused from a folder that kept their records but not their predictions (the bundle of a committed
report, copied beside the ablation) are scored by that folder's own ``crossval.json`` when its manifest
names the same runs under the same variant and seed; otherwise the variant has no out-of-fold scores,
and the log says which run lacks its predictions.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import h5py
import numpy as np

from unetbench.ablation.folder import AblationDir
from unetbench.ablation.plan import PlannedRun
from unetbench.ablation.records import CrossValidated, OutOfFold
from unetbench.datasets import load_dataset
from unetbench.datasets.splits import split_collection
from unetbench.errors import UserError
from unetbench.evaluation.scoring import score_maps
from unetbench.records.run_folder import RunDir


def out_of_fold(
    runs: list[PlannedRun], folds: int, data_root: Path | None, log=lambda text: None
) -> CrossValidated:
    """The out-of-fold scores of every (variant, seed) whose ``folds`` runs are all finished."""
    groups: dict[tuple[str, int], list[PlannedRun]] = defaultdict(list)
    for run in runs:
        groups[run.variant, run.seed_index].append(run)
    stacks = Stacks(data_root)
    entries = []
    for (variant, seed), members in groups.items():
        if len(members) != folds or any(RunDir.state(r.directory) != "finished" for r in members):
            continue
        without = [r for r in members if not RunDir(r.directory).predictions.is_file()]
        if without:
            earlier = _scored_where_kept(members, variant, seed, folds)
            if earlier is not None:
                entries.append(earlier)
            else:
                log(
                    f"{variant}, seed {seed}: no out-of-fold scores; {without[0].directory} kept no "
                    "predictions and its folder no crossval.json of these runs"
                )
            continue
        images, scores = stacks.score(members, f"{variant}, seed {seed}")
        entries.append(OutOfFold(variant, seed, images, scores))
    return CrossValidated(folds=folds, dataset=runs[0].spec.data.dataset, entries=entries)


class Stacks:
    """Scores the out-of-fold stack of a set of runs, one per fold: the labelled images are read once per
    data set."""

    def __init__(self, data_root: Path | None):
        self.data_root = data_root
        self.collections: dict[str, object] = {}

    def score(self, members: list[PlannedRun], what: str) -> tuple[int, dict]:
        """(images, the challenge's scores of the stack) of ``members``' evaluation predictions."""
        labelled, maps = self.collect(members, what)
        return len(labelled), score_maps(members[0].spec, labelled, maps, per_image=False).aggregate

    def collect(self, members: list[PlannedRun], what: str) -> tuple[tuple, list[np.ndarray]]:
        """(the labelled samples, each one's prediction by the member that evaluated it): the stack."""
        spec = members[0].spec
        key = repr(spec.data)
        if key not in self.collections:
            self.collections[key] = load_dataset(spec.data, self.data_root)
        collection = self.collections[key]
        labelled = collection.labelled
        index = {sample.key: i for i, sample in enumerate(labelled)}
        maps: list[np.ndarray | None] = [None] * len(labelled)
        for run in members:
            evaluated = split_collection(collection, run.spec.data.split).evaluation
            path = RunDir(run.directory).predictions
            with h5py.File(path, "r") as f:
                for sample in evaluated:
                    name = f"evaluation/{sample.key}"
                    if name not in f:
                        raise UserError(f"{path}: has no prediction {name}; the run folder is damaged")
                    maps[index[sample.key]] = np.asarray(f[name], dtype=np.float32)
        missing = [labelled[i].key for i, m in enumerate(maps) if m is None]
        if missing:  # the folds of a kfold split cover every image once; anything else is a bug
            raise RuntimeError(f"{what}: no out-of-fold prediction of {', '.join(missing)}")
        return labelled, maps


def _scored_where_kept(members: list[PlannedRun], variant: str, seed: int, folds: int) -> OutOfFold | None:
    """The out-of-fold scores of ``members`` from the one folder they were reused from, if its manifest
    names them under ``variant`` and ``seed`` and its ``crossval.json`` scored them over ``folds`` folds."""
    folders = {r.directory.parent for r in members}
    if len(folders) != 1:
        return None
    folder = AblationDir(folders.pop())
    if not folder.manifest_file.is_file():
        return None
    listed = {
        Path(e.directory).name
        for e in folder.read_manifest().runs
        if e.variant == variant and e.seed_index == seed
    }
    scored = folder.read_crossval()
    if scored is None or scored.folds != folds or not {r.directory.name for r in members} <= listed:
        return None
    return next((e for e in scored.entries if e.variant == variant and e.seed_index == seed), None)
