import hashlib

import h5py
import numpy as np
import pytest
import tifffile
from scipy import ndimage

from unetbench.datasets import DATASETS, isbi2012, synthetic
from unetbench.datasets.images import to_unit_float, write_png
from unetbench.errors import DataError

from .helpers import synthetic_data


def _assert_same(a, b):
    assert [s.key for s in a] == [s.key for s in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
        if x.target is None:
            assert y.target is None and y.instances is None
        else:
            np.testing.assert_array_equal(x.target, y.target)
            np.testing.assert_array_equal(x.instances, y.instances)


@pytest.mark.parametrize("layout", ["tiff", "hdf5", "slices"])
def test_synthetic_em_round_trips_through_every_layout(tmp_path, layout):
    data = synthetic_data("synthetic-em", samples=3)
    expected = DATASETS["synthetic-em"].load(tmp_path, data)
    where = synthetic.write_em(tmp_path / "em", seed=3, samples=3, height=96, width=128, layout=layout)
    got = isbi2012.load(where)
    _assert_same(got.labelled, expected.labelled)
    assert len(got.unlabelled) == 3 and got.unlabelled[0].target is None
    assert got.labelled[0].image.dtype == np.float32 and got.labelled[0].target.dtype == np.uint8


def test_per_slice_tiffs_and_zhixuhao_folder_names(tmp_path):
    images, labels = synthetic.em_stacks(0, 3, 64, 64)
    for i in range(3):  # train/image/N.png, train/label/N.png, test/N.png; names sort naturally
        for sub, stack in (("train/image", images), ("train/label", labels), ("test", images)):
            (tmp_path / sub).mkdir(parents=True, exist_ok=True)
            write_png(tmp_path / sub / f"{i * 5}.png", stack[i])
    got = isbi2012.load(tmp_path)
    assert [s.key for s in got.labelled] == ["00", "01", "02"]
    np.testing.assert_array_equal(
        got.labelled[2].target, (labels[2] > 0).astype(np.uint8)
    )  # 10.png after 5.png


def test_labels_are_normalised_and_cells_are_4_connected(tmp_path):
    labels = np.array([[255, 255, 0, 0], [255, 0, 255, 0], [0, 0, 255, 255], [0, 0, 0, 255]], dtype=np.uint8)[
        None
    ]
    isbi2012.write_tiff_layout(tmp_path, np.zeros_like(labels), labels, None)
    sample = isbi2012.load(tmp_path).labelled[0]
    np.testing.assert_array_equal(sample.target, labels[0] // 255)
    # the two cells touch only diagonally: two instances, as the official metrics' 4-connectivity says
    np.testing.assert_array_equal(
        sample.instances,
        [[1, 1, 0, 0], [1, 0, 2, 0], [0, 0, 2, 2], [0, 0, 0, 2]],
    )


def test_scaling_rule_divides_by_the_type_maximum():
    np.testing.assert_array_equal(
        to_unit_float(np.array([0, 51, 255], np.uint8), source="x"),
        np.array([0, 51, 255], np.float32) / np.float32(255),
    )
    out = to_unit_float(np.array([0, 4095, 65535], np.uint16), source="x")
    assert out.dtype == np.float32 and out[2] == 1.0 and out[1] == np.float32(4095) / np.float32(65535)
    with pytest.raises(DataError, match=r"a.tif: float image values span \[-0.5, 2\]"):
        to_unit_float(np.array([-0.5, 2.0]), source="a.tif")
    with pytest.raises(DataError, match="NaN"):
        to_unit_float(np.array([np.nan], np.float32), source="a.tif")
    with pytest.raises(DataError, match="int32 are not supported"):
        to_unit_float(np.array([1], np.int32), source="a.tif")


def test_non_binary_labels_are_refused(tmp_path):
    images, labels = synthetic.em_stacks(0, 2, 32, 32)
    isbi2012.write_tiff_layout(tmp_path, images, images, None)  # images passed as labels
    with pytest.raises(DataError, match="labels must be binary .* are images and labels swapped"):
        isbi2012.load(tmp_path)


def test_missing_and_mismatched_files_are_named(tmp_path):
    images, labels = synthetic.em_stacks(0, 2, 32, 32)
    tifffile.imwrite(tmp_path / "train-volume.tif", images)
    with pytest.raises(DataError, match="train-labels.tif is missing"):
        isbi2012.load(tmp_path)
    tifffile.imwrite(tmp_path / "train-labels.tif", labels[:1])
    with pytest.raises(DataError, match=r"training images \(2, 32, 32\) and labels \(1, 32, 32\) differ"):
        isbi2012.load(tmp_path)
    (tmp_path / "train-labels.tif").write_bytes(b"not a tiff")
    with pytest.raises(DataError, match="train-labels.tif: cannot be read as a TIFF stack"):
        isbi2012.load(tmp_path)


def test_hdf5_without_the_expected_datasets_lists_what_it_found(tmp_path):
    path = tmp_path / "isbi.h5"
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = np.zeros((1, 8, 8), np.uint8)
    with pytest.raises(DataError, match="no dataset 'raw' .*found: volumes, volumes/raw"):
        isbi2012.load(path)


def test_slices_without_their_labels_and_unknown_folders(tmp_path):
    images, labels = synthetic.em_stacks(0, 2, 32, 32)
    isbi2012.write_slices_layout(tmp_path, images, labels)
    (tmp_path / "train" / "labels" / "1.png").unlink()
    with pytest.raises(DataError, match="no slice named '1'"):
        isbi2012.load(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no ISBI 2012 data found; expected train-volume.tif"):
        isbi2012.load(tmp_path / "empty")


@pytest.mark.slow
def test_real_isbi_stacks(real_isbi):
    data = isbi2012.load(real_isbi)
    assert len(data.labelled) == 30 and len(data.unlabelled) == 30
    first = data.labelled[0]
    assert first.image.shape == (512, 512) and first.image.dtype == np.float32
    assert first.image.min() >= 0.0 and first.image.max() <= 1.0
    raw = tifffile.imread(real_isbi / "train-labels.tif")
    membrane = np.mean([1 - s.target.mean() for s in data.labelled])
    assert membrane == pytest.approx((raw == 0).mean())
    assert 0.15 < membrane < 0.3  # membranes are about a fifth of the pixels
    four = ndimage.generate_binary_structure(2, 1)
    for sample in data.labelled[:5]:  # instance labels agree with an independent labelling
        _, count = ndimage.label(sample.target, structure=four)
        assert sample.instances.max() == count > 50
    for resource in isbi2012.RESOURCES:  # the checksum constants are the real files'
        digest = hashlib.sha256((real_isbi / resource.filename).read_bytes()).hexdigest()
        assert digest == resource.sha256


@pytest.mark.slow
def test_real_isbi_reads_the_same_in_every_layout(tmp_path, real_isbi):
    reference = isbi2012.load(real_isbi)
    stacks = isbi2012.read_stacks(real_isbi)
    isbi2012.write_hdf5_layout(
        tmp_path / "isbi.h5", stacks.train_images, stacks.train_labels, stacks.test_images
    )
    isbi2012.write_slices_layout(
        tmp_path / "slices", stacks.train_images, stacks.train_labels, stacks.test_images
    )
    for where in (tmp_path / "isbi.h5", tmp_path / "slices"):
        got = isbi2012.load(where)
        _assert_same(got.labelled, reference.labelled)
        _assert_same(got.unlabelled, reference.unlabelled)
