"""The methods of a comparison and their ground truth, as read: files as ``unetbench evaluate`` takes
them, finished runs (their predictions of the images they evaluated) and ablations (each variant's
out-of-fold stack). Every method must score the same images; every problem is one line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetbench.errors import UserError
from unetbench.leaderboard.scores import CHALLENGES, Candidate, Truth, digest_of
from unetbench.records.run_folder import ABLATION_MANIFEST, RunDir


def _named(item: str) -> tuple[str, str]:
    """``NAME=PATH`` or ``PATH`` (named by the file's stem)."""
    name, sep, path = item.partition("=")
    if sep and name and re.fullmatch(r"[\w.+-]+", name):
        return name, path
    return Path(item.rstrip("/")).stem or item, item


def _unique(names: list[str]) -> None:
    seen = set()
    for name in names:
        if name in seen:
            raise UserError(f"method name {name!r} is given twice; name each method once (NAME=PATH)")
        seen.add(name)


def is_folder_of_runs(item: str) -> bool:
    """A finished run's folder or an ablation's, rather than a prediction file or a CTC result folder."""
    path = Path(item)
    return (path / RunDir.RECORD).is_file() or (path / ABLATION_MANIFEST).is_file()


def from_files(
    challenge: str, gt: str, items: list[str], *, scale: float | None, data_root: Path | None = None
) -> tuple[Truth, list]:
    """The ground truth and the methods of ``unetbench compare --gt GT [NAME=]PREDICTION ...``; run and
    ablation folders among them are methods too, and must score the ground truth's images and labels."""
    if challenge not in CHALLENGES:
        raise UserError(f"--challenge: unknown value {challenge!r}; valid choices: {', '.join(CHALLENGES)}")
    files = [item for item in items if not is_folder_of_runs(item)]
    named = [_named(item) for item in files]
    if challenge == "em":
        truth, methods = _em_files(gt, named, scale)
    elif scale is not None:
        raise UserError("--scale applies to EM probability maps, not to CTC instance masks")
    else:
        truth, methods = _ctc_files(gt, named)
    folders = [Path(item) for item in items if is_folder_of_runs(item)]
    if folders:
        theirs, more = from_folders(folders, data_root)
        _same_truth(truth, theirs)
        methods += more
    _unique([m.name for m in methods])
    return truth, methods


def _same_truth(truth: Truth, theirs: Truth) -> None:
    """The runs' labels are the ground truth's: the same images, the same cells."""
    same = len(theirs.targets) == len(truth.targets) and all(
        a.shape == b.shape and np.array_equal(np.asarray(a) > 0, np.asarray(b) > 0)
        for a, b in zip(truth.targets, theirs.targets, strict=False)
    )
    if theirs.challenge != truth.challenge or not same:
        raise UserError(
            f"{theirs.source}: its runs scored {len(theirs.images)} images whose labels are not those of "
            f"--gt {truth.source} ({len(truth.images)} images); compare methods on one ground truth"
        )


def _em_files(gt: str, named: list[tuple[str, str]], scale: float | None) -> tuple[Truth, list]:
    from unetbench.evaluation.files import check_scale, read_array, read_probabilities

    check_scale(scale)
    labels = read_array(gt)
    labels = labels[None] if labels.ndim == 2 else labels
    images = [f"{i:02d}" for i in range(len(labels))]
    truth = Truth("em", "em", gt, images, list(labels), digest_of([labels]))
    methods = []
    for name, path in named:
        proposal = read_probabilities(path, scale, name=f"{name} ({path})")
        proposal = proposal[None] if proposal.ndim == 2 else proposal
        _check_probabilities(name, path, proposal, labels.shape)
        methods.append(Candidate(name, path, list(proposal), digest_of([proposal])))
    return truth, methods


def _check_probabilities(name: str, source: str, proposal: np.ndarray, shape) -> None:
    if proposal.shape != tuple(shape):
        raise UserError(
            f"{name} ({source}): images of shape {proposal.shape}, the ground truth's {tuple(shape)} "
            "(images, height, width); give predictions of the same images"
        )
    if not np.isfinite(proposal).all() or proposal.min() < 0 or proposal.max() > 1:
        raise UserError(
            f"{name} ({source}): values outside [0, 1] or not finite (min {np.nanmin(proposal):.4g}, max "
            f"{np.nanmax(proposal):.4g}); give P(cell) in [0, 1] (--scale 255 for 8-bit maps)"
        )


def _ctc_files(gt: str, named: list[tuple[str, str]]) -> tuple[Truth, list]:
    from unetbench.datasets import ctc
    from unetbench.datasets.images import read_image

    frames = None
    methods = []
    for name, path in named:
        pairs = ctc.pair_results_with_ground_truth(Path(gt), Path(path))
        keys = [f"{seq}/t{frame:03d}" for seq, frame, _, _ in pairs]
        if frames is None:
            frames = (keys, [read_image(seg) for _, _, seg, _ in pairs])
        elif keys != frames[0]:
            raise UserError(
                f"{name} ({path}): results for frames {', '.join(keys[:3])}..., the first method's for "
                f"{', '.join(frames[0][:3])}...; every method must segment the same frames"
            )
        masks = [read_image(mask) for _, _, _, mask in pairs]
        methods.append(Candidate(name, path, masks, digest_of(masks)))
    keys, references = frames
    return Truth("ctc", "ctc", gt, keys, references, digest_of(references)), methods


def from_folders(paths: list[Path], data_root: Path | None) -> tuple[Truth, list]:
    """The methods of ``unetbench compare RUN_OR_ABLATION_DIR ...``: a run's evaluation predictions, an
    ablation's out-of-fold stack per variant and seed; the ground truth from the data the runs read."""
    from unetbench.ablation.folder import AblationDir

    found: list[tuple[str, str, object, list[str], list[np.ndarray]]] = []
    for path in paths:
        if (path / ABLATION_MANIFEST).is_file():
            found += _ablation_methods(AblationDir(path), data_root)
        elif (path / RunDir.RECORD).is_file():
            found.append(_run_method(path, data_root))
        else:
            raise UserError(
                f"{path}: neither a finished run (record.json) nor an ablation (ablation.json); give run or "
                "ablation folders, or --gt and prediction files"
            )
    _unique([name for name, *_ in found])
    name, source, (record, samples), images, _ = found[0]
    for other in found[1:]:
        if other[3] != images:
            raise UserError(
                f"{other[0]} ({other[1]}) scored {len(other[3])} images, {name} ({source}) {len(images)} "
                "others; every method must score the same images (runs of the same split, ablations of the "
                "same folds)"
            )
    challenge = "em" if record.kind == "em" else "ctc"
    targets = [s.target if challenge == "em" else s.instances for s in samples]
    truth = Truth(challenge, record.challenge, source, images, targets, digest_of(targets))
    methods = [
        Candidate(n, s, _as_submissions(challenge, maps, record), digest_of(maps))
        for n, s, _, _, maps in found
    ]
    return truth, methods


def _as_submissions(challenge: str, maps: list[np.ndarray], record) -> list[np.ndarray]:
    """EM: the probability maps; cells: instances by the runs' post-processing."""
    if challenge == "em":
        return maps
    from unetbench.inference.postprocess import cell_instances

    return [cell_instances(m, record.resolved_spec().postprocess) for m in maps]


def _collection(record, data_root: Path | None):
    """The data set a run read: where it read it (its record), or below ``data_root``."""
    import dataclasses

    from unetbench.datasets import get_adapter, load_dataset

    spec = record.resolved_spec()
    data = spec.data
    if data_root is None and get_adapter(data.dataset).folder and Path(record.data.location).is_dir():
        data = dataclasses.replace(data, root=record.data.location)
    return load_dataset(data, data_root)


def _run_method(path: Path, data_root: Path | None):
    import h5py

    run = RunDir(path)
    record = run.read_record()
    names = record.data.split[record.data.scored]
    if not run.predictions.is_file():
        raise UserError(f"{path}: the run kept no predictions ({run.predictions} is missing); run it again")
    by_key = {s.key: s for s in _collection(record, data_root).labelled}
    samples = [by_key[name.split("/", 1)[1]] for name in names]
    with h5py.File(run.predictions, "r") as f:
        missing = [n for n in names if n not in f]
        if missing:
            raise UserError(f"{run.predictions}: has no prediction {missing[0]}; the run folder is damaged")
        maps = [np.asarray(f[n], dtype=np.float32) for n in names]
    images = [name.split("/", 1)[1] for name in names]
    return path.name, str(path), (record, samples), images, maps


def _ablation_methods(directory, data_root: Path | None):
    """One method per variant and seed whose runs cover every fold: its out-of-fold stack."""
    from collections import defaultdict

    from unetbench.ablation.crossval import Stacks

    manifest, runs = directory.read_runs()
    if not manifest.folds:
        raise UserError(f"{directory.path}: an ablation without --folds has no out-of-fold stack to compare")
    groups = defaultdict(list)
    for entry, record in runs:
        groups[entry.variant, entry.seed_index].append((entry, record))
    seeds = {seed for _, seed in groups}
    found = []
    for (variant, seed), members in groups.items():
        folders = [directory.run_folder(e.directory) for e, _ in members]
        lacking = [f for f in folders if not RunDir(f).predictions.is_file()]
        if lacking:
            raise UserError(
                f"{lacking[0]}: the run kept no predictions; this ablation's stacks cannot be compared"
            )
        record = members[0][1]
        stacks = Stacks(data_root)
        planned = [_Planned(r.resolved_spec(), f) for (_, r), f in zip(members, folders, strict=True)]
        labelled, maps = stacks.collect(planned, variant)  # each run's own split: its own fold
        name = variant if len(seeds) == 1 else f"{variant}-seed{seed}"
        found.append(
            (
                name,
                f"{directory.path} ({variant}, seed {seed})",
                (record, labelled),
                [s.key for s in labelled],
                maps,
            )
        )
    return found


@dataclass(frozen=True)
class _Planned:  # what Stacks reads of a planned run: its spec and its folder
    spec: object
    directory: Path
