import numpy as np
import pytest

from unetbench.datasets import Collection, Sample
from unetbench.datasets.splits import kfold_indices, split_collection
from unetbench.errors import DataError
from unetbench.spec import SplitSpec


def _collection(n=10, groups=None):
    samples = tuple(
        Sample(
            f"s{i}",
            np.zeros((2, 2), np.float32),
            np.zeros((2, 2), np.uint8),
            np.zeros((2, 2), np.int32),
            group=groups[i] if groups else "",
        )
        for i in range(n)
    )
    test = (Sample("t0", np.zeros((2, 2), np.float32), None, None),)
    return Collection("toy", "memory", samples, test)


def test_indices_split_keeps_the_listed_order():
    split = split_collection(_collection(), SplitSpec(train=(3, 1, 2), validation=(0,), evaluation=(9, 8)))
    assert split.keys() == {  # samples named by their part, as run records and reports name them
        "train": ["train/s3", "train/s1", "train/s2"],
        "validation": ["validation/s0"],
        "evaluation": ["evaluation/s9", "evaluation/s8"],
        "test": ["test/t0"],
    }


def test_index_out_of_range_is_a_clear_error():
    with pytest.raises(
        DataError,
        match=r"data.split.evaluation: index 10 is out of range; toy has 10 labelled samples \(0-9\)",
    ):
        split_collection(_collection(), SplitSpec(train=(0,), evaluation=(10,)))


def test_sequence_split():
    groups = ["01"] * 4 + ["02"] * 6
    split = split_collection(
        _collection(groups=groups), SplitSpec(method="sequence", train=("01",), evaluation=("02",))
    )
    assert [s.key for s in split.train] == ["s0", "s1", "s2", "s3"] and len(split.evaluation) == 6
    assert split.validation == ()
    with pytest.raises(DataError, match="has no labelled sequence '03'; sequences with ground truth: 01, 02"):
        split_collection(
            _collection(groups=groups), SplitSpec(method="sequence", train=("01",), evaluation=("03",))
        )


@pytest.mark.parametrize(("n", "folds"), [(10, 5), (30, 5), (7, 3), (11, 4)])
def test_kfold_parts_cover_every_sample_once(n, folds):
    evaluated = []
    for fold in range(folds):
        parts = kfold_indices(n, folds, fold, shuffle_seed=None)
        everything = parts["train"] + parts["validation"] + parts["evaluation"]
        assert sorted(everything) == list(range(n))
        assert parts["validation"] == kfold_indices(n, folds, (fold + 1) % folds, None)["evaluation"]
        evaluated += parts["evaluation"]
    assert sorted(evaluated) == list(range(n))  # every sample is evaluated exactly once over the folds


def test_kfold_hand_case_and_two_folds_have_no_validation():
    assert kfold_indices(6, 3, 0, None) == {"train": [4, 5], "validation": [2, 3], "evaluation": [0, 1]}
    assert kfold_indices(4, 2, 1, None) == {"train": [0, 1], "validation": [], "evaluation": [2, 3]}


def test_kfold_shuffle_is_seeded_and_too_few_samples_is_an_error():
    a = kfold_indices(20, 4, 0, shuffle_seed=7)
    assert a == kfold_indices(20, 4, 0, shuffle_seed=7)
    assert a != kfold_indices(20, 4, 0, shuffle_seed=None)
    with pytest.raises(DataError, match="5 folds need at least 5 labelled samples, the data set has 3"):
        split_collection(_collection(3), SplitSpec(method="kfold", folds=5))


def test_kfold_of_time_lapse_data_keeps_whole_sequences_in_one_fold():
    groups = ["01"] * 4 + ["02"] * 6 + ["03"] * 2
    parts = kfold_indices(12, 3, 0, None, groups)
    for part in parts.values():
        assert len({groups[i] for i in part}) <= 1  # never a sequence cut between two parts
    assert sorted(parts["train"] + parts["validation"] + parts["evaluation"]) == list(range(12))
    two = kfold_indices(10, 2, 1, None, groups[:10])
    assert two["validation"] == [] and {groups[i] for i in two["evaluation"]} != {
        groups[i] for i in two["train"]
    }
    with pytest.raises(DataError, match="3 folds need 3 labelled sequences, the data set has 2 \\(01, 02\\)"):
        split_collection(_collection(groups=groups[:10]), SplitSpec(method="kfold", folds=3))


def test_contiguous_folds_are_scikit_learns_kfold():
    from sklearn.model_selection import KFold

    for fold, (_, test) in enumerate(KFold(n_splits=6).split(np.zeros(30))):
        assert kfold_indices(30, 6, fold, None)["evaluation"] == list(test)
    assert kfold_indices(30, 6, 5, None) == {
        "train": list(range(5, 25)),
        "validation": [0, 1, 2, 3, 4],
        "evaluation": [25, 26, 27, 28, 29],
    }
