import numpy as np
import pytest
import tifffile

from unetbench.datasets import DATASETS, ctc, synthetic
from unetbench.errors import DataError

from .helpers import synthetic_data


def _write_set(root, frames=4, seg=(0, 2), digits=3, dtype=np.uint8):
    """A hand-made two-sequence CTC set: one 10x10 cell in every frame."""
    for seq in ("01", "02"):
        (root / seq).mkdir(parents=True)
        (root / f"{seq}_GT" / "SEG").mkdir(parents=True)
        (root / f"{seq}_GT" / "TRA").mkdir(parents=True)
        for t in range(frames):
            image = np.full((20, 24), t * 10, dtype=dtype)
            tifffile.imwrite(root / seq / f"t{t:0{digits}d}.tif", image)
            if t in seg:
                labels = np.zeros((20, 24), np.uint16)
                labels[5:15, 5:15] = 7
                tifffile.imwrite(root / f"{seq}_GT" / "SEG" / f"man_seg{t:0{digits}d}.tif", labels)
        (root / f"{seq}_GT" / "TRA" / "man_track.txt").write_text(f"7 0 {frames - 1} 0\n")
    return root


def test_synthetic_cells_round_trip_through_the_ctc_adapter(tmp_path):
    data = synthetic_data("synthetic-cells", samples=5)
    expected = DATASETS["synthetic-cells"].load(tmp_path, data).labelled
    synthetic.write_cells(tmp_path / "set", seed=3, samples=5, height=96, width=128)
    got = DATASETS["phc-u373"].load(tmp_path / "set", data).labelled
    assert (
        [s.key for s in got]
        == [s.key for s in expected]
        == ["01/t000", "01/t002", "01/t004", "02/t000", "02/t002"]
    )
    assert [s.group for s in got] == ["01", "01", "01", "02", "02"]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.target, b.target)
        np.testing.assert_array_equal(a.instances, b.instances)


def test_only_frames_with_seg_ground_truth_are_samples_and_4_digit_names_work(tmp_path):
    _write_set(tmp_path, frames=12, seg=(3, 11), digits=4)
    data = ctc.load(tmp_path)
    assert [s.key for s in data.labelled] == ["01/t003", "01/t011", "02/t003", "02/t011"]
    np.testing.assert_array_equal(data.labelled[1].image, np.full((20, 24), 110 / 255, np.float32))
    presence = ctc.describe(tmp_path)
    assert (presence.status, presence.labelled, presence.unlabelled) == ("present", 4, 20)


def test_16_bit_frames_are_scaled_by_65535(tmp_path):
    _write_set(tmp_path, dtype=np.uint16)
    sample = ctc.load(tmp_path).labelled[1]  # frame 2: grey value 20
    assert sample.image.dtype == np.float32
    assert sample.image[0, 0] == np.float32(20) / np.float32(65535)


def test_official_zip_nesting_is_found(tmp_path):
    _write_set(tmp_path / "PhC-C2DH-U373")
    assert len(ctc.load(tmp_path).labelled) == 4


def test_semantic_target_separates_touching_cells_on_both_sides():
    instances = np.array([[1, 1, 2, 2, 0, 3]])
    np.testing.assert_array_equal(ctc.semantic_target(instances), [[1, 0, 0, 1, 0, 1]])
    vertical = np.array([[1], [1], [2], [0]])
    np.testing.assert_array_equal(ctc.semantic_target(vertical), [[1], [0], [0], [0]])


def test_man_track_is_parsed(tmp_path):
    path = tmp_path / "man_track.txt"
    path.write_text("1 0 4 0\n2 5 9 1\n3 5 7 1\n\n")
    tracks = ctc.parse_man_track(path, n_frames=10)
    assert tracks == [ctc.Track(1, 0, 4, 0), ctc.Track(2, 5, 9, 1), ctc.Track(3, 5, 7, 1)]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("1 0 4\n", "expected four non-negative integers"),
        ("1 0 x 0\n", "expected four non-negative integers"),
        ("1 -1 4 0\n", "expected four non-negative integers"),
        ("0 0 4 0\n", "label 0 is the background"),
        ("1 5 4 0\n", "begins at frame 5 after it ends"),
        ("1 0 10 0\n", "ends at frame 10, but the sequence has 10 frames"),
        ("1 0 4 1\n", "is its own parent"),
        ("1 0 4 0\n1 5 6 0\n", "listed twice"),
        ("1 0 4 0\n2 5 6 9\n", "names parent 9, which is not listed"),
        ("1 0 5 0\n2 5 6 1\n", "its parent 1 lasts until frame 5"),
    ],
)
def test_man_track_errors_name_file_and_line(tmp_path, text, fragment):
    path = tmp_path / "man_track.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=fragment) as info:
        ctc.parse_man_track(path, n_frames=10)
    assert str(path) in str(info.value)


def test_invalid_tracks_fail_loading(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "02_GT" / "TRA" / "man_track.txt").write_text("7 0 9 0\n")
    with pytest.raises(
        DataError, match="02_GT/TRA/man_track.txt:1: track 7: ends at frame 9, but the sequence has 4"
    ):
        ctc.load(tmp_path)


def test_ground_truth_for_a_missing_frame(tmp_path):
    _write_set(tmp_path)
    (tmp_path / "01" / "t002.tif").unlink()
    with pytest.raises(
        DataError, match=r"man_seg002.tif: ground truth for frame 2, but .*t002.tif is missing"
    ):
        ctc.load(tmp_path)


def test_ground_truth_of_the_wrong_shape(tmp_path):
    _write_set(tmp_path)
    tifffile.imwrite(tmp_path / "01_GT" / "SEG" / "man_seg000.tif", np.zeros((5, 5), np.uint16))
    with pytest.raises(DataError, match=r"man_seg000.tif: shape \(5, 5\) differs from its frame t000.tif"):
        ctc.load(tmp_path)


def test_no_ground_truth_and_3d_annotations_are_refused(tmp_path):
    _write_set(tmp_path)
    tifffile.imwrite(tmp_path / "01_GT" / "SEG" / "man_seg_000_003.tif", np.zeros((20, 24), np.uint16))
    with pytest.raises(DataError, match="slice-wise 3D annotations are not supported"):
        ctc.load(tmp_path)
    for seq in ("01", "02"):
        for f in (tmp_path / f"{seq}_GT" / "SEG").iterdir():
            f.unlink()
    with pytest.raises(DataError, match="no SEG ground truth"):
        ctc.load(tmp_path)
    with pytest.raises(DataError, match="no Cell Tracking Challenge sequences"):
        ctc.load(tmp_path / "01_GT")
