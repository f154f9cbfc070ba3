import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops
from skimage.morphology import skeletonize

from unetbench.datasets import synthetic


def _tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("layout", ["tiff", "slices", "hdf5"])
def test_em_same_seed_same_bytes(tmp_path, layout):
    for name in ("a", "b"):
        synthetic.write_em(tmp_path / name, seed=5, samples=2, height=64, width=80, layout=layout)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    synthetic.write_em(tmp_path / "c", seed=6, samples=2, height=64, width=80, layout=layout)
    assert _tree_bytes(tmp_path / "a") != _tree_bytes(tmp_path / "c")


def test_cells_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        synthetic.write_cells(tmp_path / name, seed=5, samples=6, height=64, width=80, look="dic")
    a = _tree_bytes(tmp_path / "a")
    assert a == _tree_bytes(tmp_path / "b")
    assert "01/t005.tif" in a and "01_GT/SEG/man_seg004.tif" in a and "01_GT/TRA/man_track.txt" in a


def test_an_image_does_not_depend_on_how_many_are_made():
    few, _ = synthetic.em_stacks(1, 2, 64, 64)
    many, _ = synthetic.em_stacks(1, 4, 64, 64)
    np.testing.assert_array_equal(few, many[:2])


def test_em_slices_look_like_isbi_2012():
    image, labels = synthetic.em_slice(0, 0, 512, 512)
    assert image.dtype == labels.dtype == np.uint8
    assert set(np.unique(labels)) == {0, 255}
    membrane = labels == 0
    assert 0.05 < membrane.mean() < 0.35
    skeleton = skeletonize(membrane)
    mean_width = membrane.sum() / skeleton.sum()
    local_width = 2 * ndimage.distance_transform_edt(membrane)[skeleton]
    assert 2.0 <= mean_width <= 4.0  # membranes 2-4 px wide
    assert np.percentile(local_width, 50) >= 2.0 and np.percentile(local_width, 90) <= 4.5
    cells, count = ndimage.label(~membrane, structure=ndimage.generate_binary_structure(2, 1))
    assert count >= 60
    assert image[membrane].mean() < image[~membrane].mean() - 60  # dark membranes
    interior = image[ndimage.binary_erosion(~membrane, iterations=3)]
    assert np.percentile(interior, 1) < image[membrane].mean() + 40  # dark organelles inside cells
    assert interior.std() > 8  # textured interiors


def test_cells_touch_are_elongated_and_keep_their_labels():
    images, instances = synthetic.cell_sequence(2, 1, [0, 1], 256, 256)
    assert images.dtype == np.uint8 and instances.dtype == np.uint16
    first, second = instances
    labels = set(np.unique(first)) - {0}
    assert len(labels) >= 4
    elongation = [p.axis_major_length / p.axis_minor_length for p in regionprops(first) if p.area > 200]
    assert np.median(elongation) > 1.4
    for k in labels & set(np.unique(second)):  # small motion between frames: the same label, overlapping
        a, b = first == k, second == k
        assert (a & b).sum() / (a | b).sum() > 0.5
    touching = any(
        ((inst[:, 1:] != inst[:, :-1]) & (inst[:, 1:] > 0) & (inst[:, :-1] > 0)).any()
        for seed in range(4)
        for inst in synthetic.cell_sequence(seed, 1, [0], 256, 256)[1]
    )
    assert touching
