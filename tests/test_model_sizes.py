import pytest

from unetbench.model.sizes import context_margin, nearest_valid_input_sizes, output_size


def test_paper_network_572_gives_388_and_margin_92():
    assert output_size(572) == 388
    assert context_margin() == 92  # (572 - 388) / 2


def test_hand_computed_depth_3():
    # 124 -> 120 -> 60 -> 56 -> 28 -> 24 (bottom) -> 48 -> 44 -> 88 -> 84
    assert output_size(124, depth=3) == 84
    assert context_margin(depth=3) == 20


def test_invalid_size_names_the_nearest_valid_ones():
    assert nearest_valid_input_sizes(570) == [556, 572]
    with pytest.raises(ValueError, match="nearest valid sizes: 556 or 572"):
        output_size(570)


def test_too_small_input_points_to_the_smallest_valid_size():
    assert nearest_valid_input_sizes(100) == [188]
    with pytest.raises(ValueError, match="188"):
        output_size(100)


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_margin_does_not_depend_on_the_input_size(depth):
    smallest = nearest_valid_input_sizes(1, depth=depth)[0]
    step = 2 ** (depth - 1)
    for size in (smallest, smallest + step, smallest + 7 * step):
        assert (size - output_size(size, depth=depth)) // 2 == context_margin(depth=depth)


def test_same_padding_keeps_the_size_and_needs_a_multiple_of_the_pooling_factor():
    assert output_size(512, padding="same") == 512
    assert context_margin(padding="same") == 0
    with pytest.raises(ValueError, match="multiple of 16"):
        output_size(500, padding="same")
    assert nearest_valid_input_sizes(500, padding="same") == [496, 512]
