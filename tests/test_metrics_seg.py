"""Instance metrics: SEG against the organisers' py-ctcmetrics, hand cases, properties."""

import numpy as np
import pytest
import tifffile

from unetbench.datasets import synthetic
from unetbench.metrics import detection_scores, foreground_iou, instance_scores, seg


def test_seg_hand_case():
    ref = np.zeros((4, 10), np.uint16)
    ref[0:2, 0:5] = 1  # |R1| = 10
    ref[3, 0:4] = 2  # |R2| = 4, left unmatched
    res = np.zeros((4, 10), np.uint16)
    res[0:2, 2:6] = 7  # 6 px inside R1 (> 5), |S| = 8: J = 6 / (10 + 8 - 6) = 0.5
    res[3, 0:2] = 9  # covers exactly half of R2: not more than half, no match
    assert seg(ref, res) == pytest.approx((0.5 + 0.0) / 2)


def test_seg_perfect_relabelled_and_empty():
    _, labels = synthetic.cell_sequence(1, 1, [0, 1], 96, 96)
    assert seg(labels, labels) == 1.0
    permuted = np.zeros_like(labels)
    ids = np.unique(labels)[1:]
    for old, new in zip(ids, np.random.default_rng(0).permutation(ids) + 100, strict=True):
        permuted[labels == old] = new
    assert seg(labels, permuted) == 1.0
    assert np.isnan(seg(np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8)))


def _ctc_metrics_seg(tmp_path, refs, results):
    from ctc_metrics.metrics import seg as ctc_seg
    from ctc_metrics.utils.representations import match

    labels_ref, ious = [], []
    for t, (ref, res) in enumerate(zip(refs, results, strict=True)):
        ref_path, res_path = tmp_path / f"ref{t}.tif", tmp_path / f"res{t}.tif"
        tifffile.imwrite(ref_path, ref.astype(np.uint16))
        tifffile.imwrite(res_path, res.astype(np.uint16))
        ref_labels, _, _, _, iou = match(str(ref_path), str(res_path))
        labels_ref.append(ref_labels)
        ious.append(iou)
    return ctc_seg(labels_ref, ious)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_seg_agrees_with_py_ctcmetrics(tmp_path, seed):
    frames = [0, 2, 4]
    _, refs = synthetic.cell_sequence(seed, 1, frames, 128, 160)
    _, moved = synthetic.cell_sequence(seed, 1, [f + 1 for f in frames], 128, 160)  # a plausible result
    rng = np.random.default_rng(seed)
    results = []
    for m in moved:  # relabel, drop one object, and add a spurious one
        out = np.zeros_like(m)
        for new, old in enumerate(np.unique(m)[1:], start=1):
            if new != 2:
                out[m == old] = new + 50 * (rng.random() > 0.5)
        out[:10, :10] = 999
        results.append(out)
    expected = _ctc_metrics_seg(tmp_path, refs, results)
    assert 0.3 < expected < 1.0
    assert seg(refs, results) == pytest.approx(expected, abs=1e-9)


def test_foreground_iou_and_detection_hand_case():
    ref = np.zeros((2, 8), np.uint8)
    ref[0, 0:4] = 1
    ref[1, 4:8] = 2
    res = np.zeros((2, 8), np.uint8)
    res[0, 0:3] = 5  # IoU 3/4 with object 1
    res[1, 6:8] = 6  # IoU 2/4 with object 2: not > 0.5
    res[0, 7] = 7  # spurious
    assert foreground_iou(ref, res) == pytest.approx(5 / 9)
    scores = detection_scores(ref, res)
    assert scores["precision"] == pytest.approx(1 / 3)
    assert scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(2 / 5)
    # IoU 0.75 > t for t = 0.5 .. 0.7 (5 thresholds): TP 1 -> 1 / (1 + 2 + 1); else 0 / (0 + 3 + 2)
    assert scores["average_precision"] == pytest.approx(5 * 0.25 / 10)
    assert set(instance_scores(ref, res)) == {
        "seg",
        "foreground_iou",
        "precision",
        "recall",
        "f1",
        "average_precision",
    }


def test_instance_inputs_are_checked():
    with pytest.raises(ValueError, match="differ in shape"):
        seg(np.zeros((2, 2), int), np.zeros((3, 2), int))
    with pytest.raises(ValueError, match="must be integer instance labels"):
        seg(np.zeros((2, 2), int), np.zeros((2, 2), float))
    with pytest.raises(ValueError, match="reference has 2 frames, result 1"):
        seg([np.zeros((2, 2), int)] * 2, [np.zeros((2, 2), int)])
