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


@pytest.mark.parametrize(
    "depth, base, padding, size, batch_norm",
    [(3, 4, "valid", 124, False), (4, 2, "same", 64, True), (2, 3, "valid", 44, False)],
)
def test_memory_arithmetic_matches_the_network_layer_by_layer(depth, base, padding, size, batch_norm):
    """The sizes behind the memory estimate, against the real network: every layer output (recorded by
    forward hooks, in order), the skip connections, and the parameter count."""
    import torch
    from torch import nn

    from unetbench.model.sizes import feature_map_elements, parameter_count
    from unetbench.model.unet import UNet

    net = UNet(1, 2, depth=depth, base_channels=base, padding=padding, dropout=0.5, batch_norm=batch_norm)
    outputs, encoded = [], []
    for encoder in net.encoders:
        encoder.register_forward_hook(lambda m, args, out: encoded.append(out[0].numel()))
    leaves = (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.Dropout)
    for module in net.modules():
        if isinstance(module, leaves):
            module.register_forward_hook(lambda m, args, out: outputs.append(out[0].numel()))
    original_cat = torch.cat

    def cat(tensors, dim=0):
        result = original_cat(tensors, dim=dim)
        outputs.append(result[0].numel())
        return result

    torch.cat = cat
    try:
        net(torch.zeros(1, 1, size, size))
    finally:
        torch.cat = original_cat
    maps, skips = feature_map_elements(size, depth=depth, base_channels=base, padding=padding)
    assert sorted(maps[1:]) == sorted(outputs)  # maps[0] is the input tile
    assert skips == encoded[:-1]  # every level's output but the bottom's waits for the expanding path
    assert parameter_count(depth=depth, base_channels=base, batch_norm=batch_norm) == sum(
        p.numel() for p in net.parameters()
    )


def test_paper_network_parameters_and_a_training_step_of_about_two_gigabytes():
    from unetbench.model.sizes import format_bytes, parameter_count, training_step_bytes

    assert parameter_count(depth=5, base_channels=64) == 31_030_658
    step = training_step_bytes(572, 1, depth=5, base_channels=64, padding="valid")
    assert format_bytes(step) == "1.8 GiB" and format_bytes(1536) == "1.5 KiB" and format_bytes(12) == "12 B"
