import zipfile

import numpy as np
import pytest

from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.cli import main
from unetbench.datasets import load_dataset, synthetic
from unetbench.datasets.splits import split_collection
from unetbench.errors import DataError, SpecError

from .helpers import CHALLENGES


def test_quickstart_data_is_generated_and_split_as_the_spec_says():
    spec = load_spec(CHALLENGES / "quickstart.toml")
    collection = load_dataset(spec.data)
    assert len(collection.labelled) == spec.data.synthetic.samples == 12
    split = split_collection(collection, spec.data.split)
    assert split.keys()["evaluation"] == ["evaluation/10", "evaluation/11"]
    assert split.train[0].image.shape == (256, 256)
    again = load_dataset(spec.data)
    np.testing.assert_array_equal(again.labelled[5].image, collection.labelled[5].image)


def test_spec_data_root_is_read_and_missing_data_says_how_to_get_it(tmp_path):
    spec = load_spec(CHALLENGES / "em.toml")
    with pytest.raises(
        DataError, match=r"isbi2012: no data at .*isbi2012; get it with `unetbench data fetch isbi2012`"
    ):
        load_dataset(spec.data, data_root=tmp_path)
    synthetic.write_em(tmp_path / "mine", seed=0, samples=30, height=64, width=64)
    spec = apply_overrides(spec, {"data.root": str(tmp_path / "mine")})
    split = split_collection(load_dataset(spec.data), spec.data.split)
    assert (len(split.train), len(split.validation), len(split.evaluation), len(split.test)) == (20, 5, 5, 30)


def test_generated_data_split_is_checked_against_its_size():
    with pytest.raises(
        SpecError, match=r"data.split.evaluation: index 10 is out of range; data.synthetic.samples = 10"
    ):
        apply_overrides(load_spec(CHALLENGES / "quickstart.toml"), {"data.synthetic.samples": 10})


def test_generated_data_takes_no_root():
    with pytest.raises(SpecError, match="data.root: synthetic-em is generated in memory"):
        apply_overrides(load_spec(CHALLENGES / "quickstart.toml"), {"data.root": "/somewhere"})


def test_import_a_ctc_zip(tmp_path, capsys):
    synthetic.write_cells(tmp_path / "cells", seed=2, samples=4, height=48, width=64)
    archive = tmp_path / "DIC-C2DH-HeLa.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "cells").rglob("*")):
            if path.is_file():
                zf.write(path, f"DIC-C2DH-HeLa/{path.relative_to(tmp_path / 'cells')}")
    root = tmp_path / "data"
    assert main(["data", "import", "dic-hela", str(archive), "--data-root", str(root)]) == 0
    assert "imported 4 labelled and 4 unlabelled samples" in capsys.readouterr().out
    assert sorted(p.name for p in (root / "dic-hela").iterdir()) == ["01", "01_GT", "02", "02_GT"]
