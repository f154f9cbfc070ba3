"""Cell Tracking Challenge 2D data sets (PhC-C2DH-U373, DIC-C2DH-HeLa, or any 2D set in the layout).

Official layout of a training set::

    01/t000.tif ... t114.tif           frames (3 or 4 digits; 8- or 16-bit)
    01_GT/SEG/man_seg000.tif ...        instance labels for a subset of frames (16-bit, 0 = background)
    01_GT/TRA/man_track.txt             tracks: "L B E P" per line (label, begin, end, parent)
    02/ ... 02_GT/ ...

Only frames with SEG ground truth are samples (the paper trains and scores on them); the rest of each
sequence is counted by ``data info`` but not loaded. Images are scaled by the rule of
:mod:`unetbench.datasets.images` (divided by 255 or 65535). ``instances`` are the SEG labels;
``target`` is their foreground without the pixels where two different cells touch (a pixel is background
when one of its 4 neighbours belongs to another cell, on both sides, so the rule does not depend on the
label numbers): the separation borders between touching cells that the paper's weight map emphasises.
``man_track.txt`` is parsed and validated when present (it is not needed for segmentation).

Cite: Ulman et al. (2017), Nature Methods 14:1141-1152; Maska et al. (2014), Bioinformatics
30(11):1609-1617.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unetbench.datasets.base import Collection, DatasetAdapter, Presence, Sample, register
from unetbench.datasets.download import Resource, download, safe_extract
from unetbench.datasets.images import read_image, to_unit_float, write_tiff
from unetbench.errors import DataError

if TYPE_CHECKING:
    from unetbench.spec import DataSpec

CITATION = (
    "Ulman et al. (2017), Nature Methods 14:1141-1152; Maska et al. (2014), Bioinformatics 30(11):1609-1617"
)
_URL = "http://data.celltrackingchallenge.net/training-datasets/{}.zip"

# name used by specs and commands -> (official set name, sha256 of the official zip as torch-em publishes it)
SETS = {
    "phc-u373": ("PhC-C2DH-U373", "b18185c18fce54e8eeb93e4bbb9b201d757add9409bbf2283b8114185a11bc9e"),
    "dic-hela": ("DIC-C2DH-HeLa", "832fed2d05bb7488cf9c51a2994b75f8f3f53b3c3098856211f2d39023c34e1a"),
}
RESOURCES = {name: Resource(_URL.format(official), sha) for name, (official, sha) in SETS.items()}

_SEQUENCE = re.compile(r"^\d{2}$")
_FRAME = re.compile(r"^t(\d{3,4})\.tiff?$")
_SEG = re.compile(r"^man_seg(\d{3,4})\.tiff?$")
_MASK = re.compile(r"^mask(\d{3,4})\.tiff?$")
_GT_DIR = re.compile(r"^(\d{2})_GT$")
_RES_DIR = re.compile(r"^(\d{2})_RES$")


@dataclass(frozen=True)
class Track:
    """One line of ``man_track.txt``: a cell's label, first and last frame, and parent (0 = none)."""

    label: int
    begin: int
    end: int
    parent: int


def parse_man_track(path: Path, n_frames: int | None = None) -> list[Track]:
    """Read and validate a CTC ``man_track.txt``.

    Checks: four non-negative integers per line; labels > 0 and unique; begin <= end; end < n_frames
    when given; a parent is 0 or another listed track that ends before its daughter begins.
    """
    tracks: list[Track] = []
    try:
        text = path.read_bytes().decode("ascii")
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not a text file (byte {err.start} is 0x{err.object[err.start]:02x}); "
            "man_track.txt holds lines of four integers 'L B E P'"
        ) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not all(f.isdigit() for f in fields):
            raise DataError(
                f"{path}:{number}: expected four non-negative integers 'L B E P', got {line.strip()!r}"
            )
        track = Track(*map(int, fields))
        where = f"{path}:{number}: track {track.label}"
        if track.label == 0:
            raise DataError(f"{path}:{number}: label 0 is the background and cannot be a track")
        if track.begin > track.end:
            raise DataError(f"{where}: begins at frame {track.begin} after it ends ({track.end})")
        if n_frames is not None and track.end >= n_frames:
            raise DataError(f"{where}: ends at frame {track.end}, but the sequence has {n_frames} frames")
        if track.parent == track.label:
            raise DataError(f"{where}: is its own parent")
        tracks.append(track)
    by_label: dict[int, Track] = {}
    for track in tracks:
        if by_label.setdefault(track.label, track) is not track:
            raise DataError(f"{path}: track {track.label} is listed twice")
    for track in tracks:
        if track.parent == 0:
            continue
        parent = by_label.get(track.parent)
        if parent is None:
            raise DataError(f"{path}: track {track.label} names parent {track.parent}, which is not listed")
        if parent.end >= track.begin:
            raise DataError(
                f"{path}: track {track.label} begins at frame {track.begin} but its parent "
                f"{parent.label} lasts until frame {parent.end}"
            )
    return tracks


def semantic_target(instances: np.ndarray) -> np.ndarray:
    """Foreground (1) without the pixels that touch a different cell in their 4-neighbourhood."""
    fg = instances > 0
    border = np.zeros_like(fg)
    for axis in (0, 1):
        a = np.swapaxes(instances, 0, axis)
        touching = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)  # (H-1, W) pairs across one edge
        b = np.swapaxes(border, 0, axis)
        b[1:] |= touching
        b[:-1] |= touching
    return (fg & ~border).astype(np.uint8)


def _numbered(directory: Path, pattern: re.Pattern) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        match = pattern.match(path.name)
        if match:
            index = int(match.group(1))
            if index in found:
                raise DataError(f"{path}: frame {index} is also {found[index].name}")
            found[index] = path
    return found


@dataclass(frozen=True)
class SequenceFiles:
    name: str
    frames: dict[int, Path]
    segmentations: dict[int, Path]
    man_track: Path | None


def _official_root(location: Path) -> Path:
    """The folder holding 01/, 02/: ``location`` itself or its single sub-folder (as the zips nest it)."""
    if not location.is_dir():
        raise DataError(f"{location}: no such folder")
    if any(_SEQUENCE.match(p.name) and p.is_dir() for p in location.iterdir()):
        return location
    subdirs = [p for p in location.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if len(subdirs) == 1 and any(_SEQUENCE.match(p.name) for p in subdirs[0].iterdir()):
        return subdirs[0]
    raise DataError(
        f"{location}: no Cell Tracking Challenge sequences (folders 01/, 02/ with frames tNNN.tif and "
        "ground truth in 01_GT/SEG/man_segNNN.tif)"
    )


def scan(location: Path) -> list[SequenceFiles]:
    """Find the sequences; check that every SEG file has its frame and that the tracks are valid."""
    root = _official_root(location)
    sequences = []
    for seq_dir in sorted(p for p in root.iterdir() if p.is_dir() and _SEQUENCE.match(p.name)):
        frames = _numbered(seq_dir, _FRAME)
        if not frames:
            raise DataError(f"{seq_dir}: no frames named tNNN.tif")
        seg_dir = root / f"{seq_dir.name}_GT" / "SEG"
        segs = _numbered(seg_dir, _SEG) if seg_dir.is_dir() else {}
        if seg_dir.is_dir():
            strays = [
                p.name for p in seg_dir.iterdir() if p.name.startswith("man_seg") and not _SEG.match(p.name)
            ]
            if strays:
                raise DataError(
                    f"{seg_dir}: {strays[0]} is not named man_segNNN.tif (slice-wise 3D annotations "
                    "are not supported; this adapter reads 2D sets)"
                )
        for index, path in segs.items():
            if index not in frames:
                raise DataError(
                    f"{path}: ground truth for frame {index}, but {seq_dir}/t{index:03d}.tif is missing"
                )
        track = root / f"{seq_dir.name}_GT" / "TRA" / "man_track.txt"
        if track.is_file():
            parse_man_track(track, n_frames=max(frames) + 1)
        sequences.append(SequenceFiles(seq_dir.name, frames, segs, track if track.is_file() else None))
    if not any(s.segmentations for s in sequences):
        raise DataError(f"{root}: no SEG ground truth (NN_GT/SEG/man_segNNN.tif) in any sequence")
    return sequences


def _labelled_sample(seq: SequenceFiles, index: int) -> Sample:
    frame_path, seg_path = seq.frames[index], seq.segmentations[index]
    raw = read_image(frame_path)
    labels = read_image(seg_path)
    if labels.shape != raw.shape:
        raise DataError(
            f"{seg_path}: shape {labels.shape} differs from its frame {frame_path.name} {raw.shape}"
        )
    if labels.dtype.kind not in "ui":
        raise DataError(f"{seg_path}: instance labels must be integers, got {labels.dtype}")
    if labels.min() < 0:
        raise DataError(f"{seg_path}: instance labels must be >= 0")
    instances = labels.astype(np.int32)
    return Sample(
        key=f"{seq.name}/t{index:03d}",
        image=to_unit_float(raw, source=str(frame_path)),
        target=semantic_target(instances),
        instances=instances,
        group=seq.name,
    )


def load(location: Path, data: DataSpec | None = None, *, name: str = "ctc") -> Collection:
    sequences = scan(location)
    labelled = tuple(_labelled_sample(seq, i) for seq in sequences for i in sorted(seq.segmentations))
    return Collection(dataset=name, location=str(location), labelled=labelled)


def describe(location: Path) -> Presence:
    if not location.exists():
        return Presence("absent")
    try:
        sequences = scan(location)
    except DataError as err:
        return Presence("invalid", detail=str(err))
    n_frames = sum(len(s.frames) for s in sequences)
    n_seg = sum(len(s.segmentations) for s in sequences)
    parts = ", ".join(f"{s.name}: {len(s.frames)} frames, {len(s.segmentations)} SEG" for s in sequences)
    tra = "TRA present" if all(s.man_track for s in sequences) else "no TRA for some sequences"
    return Presence("present", labelled=n_seg, unlabelled=n_frames - n_seg, detail=f"{parts}; {tra}")


def result_folder(directory: Path, sequence: str) -> Path:
    """Where a sequence's result masks go in the CTC result layout: ``<directory>/<sequence>_RES``."""
    return directory / f"{sequence}_RES"


def mask_name(frame: int, digits: int = 3) -> str:
    """A result mask's file name: ``mask<T>.tif``, T with ``digits`` digits (the frames' own)."""
    return f"mask{frame:0{digits}d}.tif"


def write_results(directory: Path, sequence: str, masks: dict[int, np.ndarray], *, digits: int = 3) -> Path:
    """Write instance masks in the CTC result layout, ``<directory>/<sequence>_RES/maskNNN.tif`` (16-bit),
    which the organisers' evaluation tools read."""
    if not _SEQUENCE.match(sequence):
        raise ValueError(f"sequence names are two digits such as '01', got {sequence!r}")
    out = result_folder(directory, sequence)
    out.mkdir(parents=True, exist_ok=True)
    for frame, mask in sorted(masks.items()):
        mask = np.asarray(mask)
        if mask.dtype.kind not in "ui" or mask.min() < 0 or mask.max() > 65535:
            raise ValueError(f"frame {frame}: masks must be instance labels in 0..65535, got {mask.dtype}")
        write_tiff(out / mask_name(frame, digits), mask.astype(np.uint16))
    return out


def read_results(directory: Path) -> dict[str, dict[int, Path]]:
    """The result masks of a CTC result folder: ``{sequence: {frame: path}}``. ``directory`` holds
    ``NN_RES/`` folders, or is one."""
    if not directory.is_dir():
        raise DataError(f"{directory}: no such folder")
    match = _RES_DIR.match(directory.name)
    folders = (
        [directory]
        if match
        else sorted(p for p in directory.iterdir() if p.is_dir() and _RES_DIR.match(p.name))
    )
    if not folders:
        raise DataError(f"{directory}: no CTC results (folders NN_RES/ with maskNNN.tif)")
    return {_RES_DIR.match(f.name).group(1): _numbered(f, _MASK) for f in folders}


def pair_results_with_ground_truth(gt: Path, results: Path) -> list[tuple[str, int, Path, Path]]:
    """(sequence, frame, man_seg path, mask path) for every SEG frame of the sequences of ``gt`` that
    ``results`` has (``NN_RES``); every SEG frame of those must have its mask. A run evaluates one held-out
    sequence, so its result folder (``unetbench export ctc``) has that one: it is scored against that
    sequence's ground truth. Results for none of the ground truth's sequences are one :class:`DataError`.

    ``gt`` is a data set folder (with ``NN_GT/SEG``) or one ``NN_GT`` folder.
    """
    match = _GT_DIR.match(gt.name)
    if match and (gt / "SEG").is_dir():
        truth = {match.group(1): _numbered(gt / "SEG", _SEG)}
    else:
        truth = {seq.name: seq.segmentations for seq in scan(gt) if seq.segmentations}
    found = read_results(results)
    scored = {sequence: frames for sequence, frames in truth.items() if sequence in found}
    if truth and not scored:
        names = ", ".join(sorted(truth))
        raise DataError(
            f"{results}: no results for any sequence with SEG ground truth in {gt} ({names}); expected "
            f"NN_RES/maskNNN.tif for one of them"
        )
    pairs = []
    for sequence, frames in sorted(scored.items()):
        for frame, seg_path in sorted(frames.items()):
            mask = found[sequence].get(frame)
            if mask is None:
                raise DataError(
                    f"{results}: {sequence}_RES/mask{frame:03d}.tif is missing "
                    f"(the ground truth has {seg_path.name})"
                )
            pairs.append((sequence, frame, seg_path, mask))
    if not pairs:
        raise DataError(f"{gt}: no SEG ground truth frames")
    return pairs


def _copy_official(source_root: Path, destination: Path) -> None:
    for path in sorted(source_root.iterdir()):
        if path.is_dir() and re.match(r"^\d{2}(_GT)?$", path.name):
            shutil.copytree(path, destination / path.name, symlinks=False)


def _make_fetch(name: str):
    def fetch(destination: Path, *, mirror: str | None = None, progress: bool = True) -> None:
        """Download the official zip, verify it, extract it safely and check it with the adapter."""
        work = destination / ".download"
        work.mkdir()
        archive = download(RESOURCES[name], work, mirror=mirror, progress=progress)
        safe_extract(archive, work / "extracted")
        _copy_official(_official_root(work / "extracted"), destination)
        shutil.rmtree(work)
        scan(destination)

    return fetch


def import_files(source: Path, destination: Path) -> None:
    """Copy a user's copy (the official folder, or its zip) into ``destination`` after checking it."""
    if source.is_file() and source.suffix.lower() == ".zip":
        work = destination / ".extracted"
        safe_extract(source, work)
        import_files(work, destination)
        shutil.rmtree(work)
        return
    root = _official_root(source)
    scan(root)
    _copy_official(root, destination)


def _make_load(name: str):
    def load_set(location: Path, data: DataSpec | None = None) -> Collection:
        return load(location, data, name=name)

    return load_set


for _name, (_official, _sha) in SETS.items():
    register(
        DatasetAdapter(
            name=_name,
            title=f"Cell Tracking Challenge {_official}",
            kind="cells",
            folder=_name,
            sequences=("01", "02"),
            citation=CITATION,
            load=_make_load(_name),
            describe=describe,
            fetch=_make_fetch(_name),
            import_files=import_files,
        )
    )
