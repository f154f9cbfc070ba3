"""Input and output sizes of the U-Net (paper, Sec. 2 and Fig. 1).

Each of the ``depth`` levels applies two 3x3 convolutions; the first ``depth - 1`` levels end in a 2x2
max-pooling with stride 2 and the expanding path mirrors them with 2x2 up-convolutions. With unpadded
("valid") convolutions every convolution removes one pixel at each border, so a 572x572 tile shrinks to a
388x388 output for the paper's depth of 5, and every 2x2 pooling must see an even size ("it is important
to select the input tile size such that all 2x2 max-pooling operations are applied to a layer with an
even x- and y-size"). With zero ("same") padding the size is kept and only the poolings constrain it.

These functions need no torch, so a challenge spec can be checked without building a network.
"""

from __future__ import annotations

import itertools
from typing import Literal

Padding = Literal["valid", "same"]

# Two 3x3 convolutions per level, each removing one pixel per border when unpadded.
_CONV_LOSS = 4


def _trace_valid(size: int, depth: int) -> int | None:
    """Output size of a valid-padding U-Net for one input edge, or None when the size does not work."""
    s = size
    for _ in range(depth - 1):  # contracting path: two convolutions, then pooling
        s -= _CONV_LOSS
        if s < 2 or s % 2:
            return None
        s //= 2
    s -= _CONV_LOSS  # bottom level
    if s < 1:
        return None
    for _ in range(depth - 1):  # expanding path: up-convolution doubles, two convolutions shrink
        s = 2 * s - _CONV_LOSS
        if s < 1:
            return None
    return s


def _check_architecture(depth: int) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1 (levels of the U-Net), got {depth!r}")


def _works(size: int, depth: int, padding: Padding) -> bool:
    if size < 1:
        return False
    if padding == "same":
        return size % (2 ** (depth - 1)) == 0
    return _trace_valid(size, depth) is not None


def nearest_valid_input_sizes(size: int, *, depth: int = 5, padding: Padding = "valid") -> list[int]:
    """The valid input sizes closest to ``size``: the largest one below it and the smallest one above.

    ``size`` itself is returned alone when it is valid.
    """
    _check_architecture(depth)
    if _works(size, depth, padding):
        return [size]
    below = next((s for s in range(size - 1, 0, -1) if _works(s, depth, padding)), None)
    above = next(s for s in itertools.count(max(size + 1, 1)) if _works(s, depth, padding))
    return [s for s in (below, above) if s is not None]


def output_size(size: int, *, depth: int = 5, padding: Padding = "valid") -> int:
    """Edge length of the network's output for an input edge of ``size`` pixels.

    Raises
    ------
    ValueError
        When the network cannot take ``size``; the message names the nearest valid sizes.
    """
    _check_architecture(depth)
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    if not _works(size, depth, padding):
        near = " or ".join(str(s) for s in nearest_valid_input_sizes(size, depth=depth, padding=padding))
        why = (
            f"a multiple of {2 ** (depth - 1)}"
            if padding == "same"
            else "a size whose every 2x2 pooling sees an even edge"
        )
        raise ValueError(
            f"a {padding}-padding U-Net of depth {depth} cannot take an input of {size} px "
            f"(it needs {why}); nearest valid sizes: {near}"
        )
    return size if padding == "same" else _trace_valid(size, depth)  # type: ignore[return-value]


def context_margin(*, depth: int = 5, padding: Padding = "valid") -> int:
    """Pixels of context the network consumes at each border: (input - output) / 2.

    It does not depend on the input size: 92 px for the paper's network ((572 - 388) / 2).
    """
    _check_architecture(depth)
    if padding == "same":
        return 0
    smallest = nearest_valid_input_sizes(1, depth=depth, padding=padding)[-1]
    return (smallest - output_size(smallest, depth=depth, padding=padding)) // 2


# --------------------------------------------------------------------------------------------------
# Memory, from the same arithmetic: a spec whose tiles cannot fit is refused before anything is allocated.

_FLOAT_BYTES = 4


def feature_map_elements(
    size: int, *, depth: int, base_channels: int, padding: Padding, in_channels: int = 1, classes: int = 2
) -> tuple[list[int], list[int]]:
    """Elements per image of every layer output of one forward pass, and of the skip connections.

    Counts each convolution's output (ReLU works in place), each pooling, the drop-out on the two deepest
    levels, each up-convolution and concatenation, and the 1x1 head; ``size`` must be valid for the network.
    """
    output_size(size, depth=depth, padding=padding)
    loss = 0 if padding == "same" else 2  # per 3x3 convolution
    maps, skips = [in_channels * size * size], []
    s = size
    for level in range(depth):
        width = base_channels * 2**level
        for _ in range(2):
            s -= loss
            maps.append(width * s * s)
        if level >= depth - 2:
            maps.append(maps[-1])  # drop-out, as released (unet.py)
        if level < depth - 1:
            skips.append(maps[-1])
            s //= 2
            maps.append(width * s * s)
    for level in reversed(range(depth - 1)):
        width = base_channels * 2**level
        s *= 2
        maps += [width * s * s, 2 * width * s * s]  # up-convolution, concatenation
        for _ in range(2):
            s -= loss
            maps.append(width * s * s)
    maps.append(classes * s * s)
    return maps, skips


def parameter_count(
    *, depth: int, base_channels: int, in_channels: int = 1, classes: int = 2, batch_norm: bool = False
) -> int:
    """Trainable parameters of :class:`~unetbench.model.unet.UNet` (31,030,658 for the paper's)."""

    def conv(c_in: int, c_out: int) -> int:  # 3x3; batch norm replaces the bias by a scale and a shift
        return 9 * c_in * c_out + (2 * c_out if batch_norm else c_out)

    total, c_in = 0, in_channels
    for level in range(depth):
        width = base_channels * 2**level
        total += conv(c_in, width) + conv(width, width)
        c_in = width
    for level in range(depth - 1):
        width = base_channels * 2**level
        total += 4 * 2 * width * width + width  # 2x2 up-convolution, halving the channels
        total += conv(2 * width, width) + conv(width, width)
    return total + base_channels * classes + classes


def unet_kwargs(model_spec) -> dict:
    """The keyword arguments of :class:`~unetbench.model.unet.UNet` that a
    :class:`~unetbench.spec.ModelSpec` describes: the network itself, and the sizes below, read them."""
    return dict(
        in_channels=model_spec.in_channels,
        classes=model_spec.classes,
        depth=model_spec.depth,
        base_channels=model_spec.base_channels,
        padding=model_spec.padding,
        dropout=model_spec.dropout,
        batch_norm=model_spec.batch_norm,
    )


def training_step_bytes(size: int, batch: int, **network) -> int:
    """About how much memory one training step takes: every layer output kept for the backward pass and
    its gradient (2 x float32 per element), plus weights, gradients and two optimiser states.

    ``network``: ``depth``, ``base_channels``, ``padding`` and optionally ``in_channels``, ``classes``,
    ``batch_norm``, ``dropout`` (which changes no size), as :func:`unet_kwargs` gives them.
    """
    maps, _, params = _sizes(size, **network)
    return _FLOAT_BYTES * (2 * batch * sum(maps) + 4 * params)


def inference_bytes(size: int, batch: int, **network) -> int:
    """About how much memory one forward pass without gradients takes: the skip connections, which live
    until the expanding path uses them, and the few largest maps alive at one time, plus the weights."""
    maps, skips, params = _sizes(size, **network)
    return _FLOAT_BYTES * (batch * (sum(skips) + 3 * max(maps)) + params)


def _sizes(
    size: int,
    *,
    depth: int,
    base_channels: int,
    padding: Padding,
    in_channels: int = 1,
    classes: int = 2,
    batch_norm: bool = False,
    dropout: float = 0.0,  # noqa: ARG001 - drop-out changes no size
) -> tuple[list[int], list[int], int]:
    maps, skips = feature_map_elements(
        size,
        depth=depth,
        base_channels=base_channels,
        padding=padding,
        in_channels=in_channels,
        classes=classes,
    )
    params = parameter_count(
        depth=depth,
        base_channels=base_channels,
        in_channels=in_channels,
        classes=classes,
        batch_norm=batch_norm,
    )
    return maps, skips, params


def format_bytes(count: float) -> str:
    """1536 -> '1.5 KiB', in powers of 1024, as memory is sold."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    power = 0
    while count >= 1024 and power < len(units) - 1:
        count /= 1024
        power += 1
    return f"{count:.0f} B" if power == 0 else f"{count:.1f} {units[power]}"
