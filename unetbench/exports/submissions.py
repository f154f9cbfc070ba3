"""Challenge submissions of a finished run: the ISBI 2012 stack and the Cell Tracking Challenge result
folders, in the layouts the organisers' tools read."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from unetbench.errors import UserError
from unetbench.exports.loading import instance_masks, load_trained, probability_maps
from unetbench.system.atomic_writes import atomic_path, check_folder


def _no_submission(record, asked: str) -> str:
    """Why a run has no submission of the kind ``asked``, and what it does have: the other challenge's
    export where its data is that challenge's, else its predictions (a generated data set is no
    challenge's)."""
    dataset = record.data.dataset
    if dataset == "isbi2012":
        return f"a run on isbi2012 has no {asked.split(' ', 1)[1]}; use `unetbench export isbi2012`"
    if record.kind == "cells" and dataset in ("phc-u373", "dic-hela"):
        return f"a run on {dataset} has no {asked.split(' ', 1)[1]}; use `unetbench export ctc`"
    return (
        f"a run on {dataset}, which is no challenge's data, so it has no {asked.split(' ', 1)[1]}; its "
        "predictions are in its predictions.h5, and `unetbench predict RUN IMAGES --out DIR` writes them as "
        "TIFFs"
    )


def export_isbi2012(run: Path, out: Path) -> Path:
    """The ISBI 2012 submission of a finished run: its predictions of the 30 test slices as one 32-bit
    float TIFF stack (30 x 512 x 512), values in [0, 1], 1 = cell (non-membrane), 0 = membrane.

    The convention is the one the challenge's official evaluation reads: its Fiji script (Trainable Weka
    Segmentation's metrics, which the organisers published with the challenge) thresholds the proposal's
    32-bit values at thresholds in [0, 1] and compares the result with the labels (255 = cell, 0 =
    membrane), so a proposal is P(non-membrane), the convention :mod:`unetbench.metrics` reproduces from
    running that implementation. The challenge's submission page
    (brainiac2.mit.edu/isbi_challenge) could not be read from the machines this was written on, so the
    citation is the evaluation code, not the page. The slices are the run's own predictions
    (``predictions.h5``, ``test/00`` .. ``test/29``), made with the run's tiling and test-time averaging.
    """
    import h5py

    from unetbench.datasets.images import write_tiff
    from unetbench.records.run_folder import RunDir

    if out.suffix.lower() not in (".tif", ".tiff"):
        raise UserError(f"--out {out}: the submission is one TIFF stack; give a file name ending in .tif")
    record = RunDir(run).read_record()
    if record.data.dataset != "isbi2012":
        raise UserError(f"{run}: {_no_submission(record, 'an ISBI 2012 submission')}")
    names = record.data.split.get("test", [])
    path = RunDir(run).predictions
    if len(names) != 30 or not path.is_file():
        raise UserError(
            f"{run}: the run predicted {len(names)} test slices (the challenge has 30)"
            + ("" if path.is_file() else f" and {path} is missing")
            + "; run it on the imported isbi2012 data with its test-volume.tif"
        )
    with h5py.File(path, "r") as f:
        missing = [n for n in names if n not in f]
        if missing:
            raise UserError(f"{path}: has no prediction {missing[0]}; the run folder is damaged")
        stack = np.stack([np.asarray(f[n], dtype=np.float32) for n in names])
    if stack.shape != (30, 512, 512) or not (
        np.isfinite(stack).all() and stack.min() >= 0 and stack.max() <= 1
    ):
        raise UserError(f"{path}: the test predictions are not 30 slices of P(cell) in [0, 1] of 512 x 512")
    with atomic_path(out) as temporary:
        write_tiff(temporary, stack)
    return out


def export_ctc(run: Path, out: Path, *, data_root: Path | None = None, reporter=None) -> list[Path]:
    """A Cell Tracking Challenge segmentation result of a finished run: every frame of the sequences the
    run evaluated on, predicted with the run's network, tiling and test-time averaging, turned into
    instances by its ``[postprocess]``, as ``<out>/<NN>_RES/mask<T>.tif`` (16-bit, T with as many digits
    as the data set's frame names: 3, or 4 for sequences of 1000 frames or more), the layout the
    organisers' evaluation tools read. The frames are read from where the run read its data (or from
    ``data_root``, if the data set has moved)."""
    from unetbench.datasets import ctc
    from unetbench.datasets.images import read_image, to_unit_float, write_tiff
    from unetbench.records.run_folder import RunDir
    from unetbench.run.progress import Reporter

    record = RunDir(run).read_record()
    if record.kind != "cells":
        raise UserError(f"{run}: {_no_submission(record, 'a Cell Tracking Challenge result')}")
    location = Path(data_root) / record.data.dataset if data_root else Path(record.data.location)
    if not location.is_dir():
        raise UserError(
            f"{location}: no such folder; the run read its data there. Give --data-root where the data set "
            "lives now (or write a generated one with `unetbench data synth`)"
        )
    wanted = sorted({name.split("/")[1] for name in record.data.split[record.data.scored]})
    sequences = {s.name: s for s in ctc.scan(location)}
    missing = [w for w in wanted if w not in sequences]
    if missing:
        raise UserError(f"{location}: has no sequence {missing[0]}, which the run evaluated on")
    taken = [ctc.result_folder(out, w) for w in wanted if ctc.result_folder(out, w).exists()]
    if taken:
        raise UserError(f"{taken[0]}: exists already; choose another --out folder or remove it")
    check_folder(out, what="--out")
    trained = load_trained(run)
    reporter = reporter or Reporter(bars=False)
    total = sum(len(sequences[w].frames) for w in wanted)
    written: list[Path] = []
    try:
        with reporter.items(f"segmenting {total} frames", total) as advance:
            for name in wanted:
                frames = sequences[name].frames
                digits = max(len(re.sub(r"\D", "", p.stem)) for p in frames.values())
                folder = ctc.result_folder(out, name)
                folder.mkdir(parents=True, exist_ok=True)
                written.append(folder)
                for index, frame in sorted(frames.items()):
                    image = to_unit_float(read_image(frame), source=str(frame))
                    maps = probability_maps(trained, image[None])
                    mask = instance_masks(trained, maps, str(frame))[0]
                    path = folder / ctc.mask_name(index, digits)
                    with atomic_path(path) as temporary:
                        write_tiff(temporary, mask)
                    advance()
    except BaseException:
        import shutil

        for folder in written:  # all or nothing
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return written
