"""Cell instances as the release makes them: hand cases for each rule."""

import numpy as np
import pytest

from unetbench.inference.postprocess import cell_instances
from unetbench.spec import PostprocessSpec


def _map(rows: list[str]) -> np.ndarray:
    """'#' = P(cell) 0.9, '.' = 0.1, '=' = exactly 0.5."""
    values = {"#": 0.9, ".": 0.1, "=": 0.5}
    return np.array([[values[c] for c in row] for row in rows], dtype=np.float32)


def test_eight_connectivity_joins_diagonal_pixels_and_four_does_not():
    probability = _map(["#..", ".#.", "..#"])
    assert cell_instances(probability, PostprocessSpec()).max() == 1  # 8 neighbours: one cell
    four = cell_instances(probability, PostprocessSpec(connectivity=4))
    assert four.max() == 3 and len(np.unique(four[four > 0])) == 3


def test_segments_of_at_most_remove_small_pixels_go_and_the_rest_are_renumbered():
    probability = _map(["##..###", "##..###", ".......", "#......"])
    labels = cell_instances(probability, PostprocessSpec(remove_small=4))
    # the 4-pixel square and the single pixel go (size <= 4); the 6-pixel block stays, as label 1
    assert labels.max() == 1 and (labels == 1).sum() == 6 and labels[:2, 4:].all()
    assert cell_instances(probability, PostprocessSpec(remove_small=3)).max() == 2  # the square (4 px) stays
    assert cell_instances(probability, PostprocessSpec()).max() == 3  # 0: nothing removed


def test_holes_stay_background_unless_filled_and_a_tie_is_background():
    probability = _map(["###", "#.#", "###"])
    assert cell_instances(probability, PostprocessSpec())[1, 1] == 0
    assert cell_instances(probability, PostprocessSpec(fill_holes=True))[1, 1] == 1
    assert cell_instances(_map(["=#"]), PostprocessSpec()).tolist() == [[0, 1]]  # argmax picks background


def test_the_spec_refuses_other_connectivities_and_negative_sizes():
    from unetbench.spec import parse_spec

    base = {
        "name": "x",
        "data": {
            "dataset": "synthetic-cells",
            "split": {"method": "indices", "train": [0], "evaluation": [1]},
        },
        "evaluation": {"metrics": ["seg"], "primary": "seg"},
    }
    with pytest.raises(Exception, match=r"postprocess.connectivity: got an integer 6; valid choices: 4, 8"):
        parse_spec({**base, "postprocess": {"connectivity": 6}})
    with pytest.raises(Exception, match=r"postprocess.remove_small: must be >= 0 px"):
        parse_spec({**base, "postprocess": {"remove_small": -1}})
