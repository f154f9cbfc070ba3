"""The ablation switches, one table (:data:`SWITCHES`): each switch's flag, help, what the pair
(baseline, variant) compares, the spec overrides it stands for, whether it needs overlap-tile and whether
it is inference-only. The command line, the planner, the errors, the reports and docs/ablations.md read
it (:mod:`unetbench.ablation.plan` says what each switch does)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from unetbench.model.sizes import output_size
from unetbench.spec import ChallengeSpec


@dataclass(frozen=True)
class Switch:
    """One ablation switch (module docstring): ``--no-<name>`` makes the variant ``no-<name>``."""

    name: str
    help: str  # the command line's help
    compares: str  # what the pair (baseline, variant) compares, for docs and reports
    changes: Callable[[ChallengeSpec], list[tuple[str, Any]]]  # the spec overrides it stands for
    needs_overlap_tile: bool = False  # only meaningful against overlap-tile prediction
    inference_only: bool = (
        False  # it changes only PREDICTION_SECTIONS: it predicts with the baseline's weights
    )

    @property
    def flag(self) -> str:
        return f"--no-{self.name}"

    @property
    def variant(self) -> str:
        return f"no-{self.name}"


def _same_padding_changes(spec: ChallengeSpec) -> list[tuple[str, Any]]:
    tile = no_tiling_tile(spec)
    return [
        ("model.padding", "same"),
        ("inference.tiling", "none"),
        ("training.tile_size", tile),
        ("inference.tile_size", tile),
    ]


_SWITCH_LIST = (
    Switch(
        "weightmap",
        "Drop the border term of the weight map (the class balance stays).",
        "the border term of the weight map against none, the class balance kept",
        lambda spec: [("weightmap.enabled", False)],
    ),
    Switch(
        "elastic",
        "No elastic deformation (the other augmentation stays).",
        "elastic deformation against none, the other augmentation kept",
        lambda spec: [("augmentation.elastic", False)],
    ),
    Switch(
        "tiling",
        "Inference only: the baseline's network on isolated tiles of its training tile's output size, "
        "each mirrored from itself (no context from neighbouring tiles).",
        "the baseline's network predicting each image in isolated tiles of the output size it was trained "
        "on, each fed with itself mirrored at its edges, against overlap-tile with the image as context",
        lambda spec: [("inference.tiling", "isolated"), ("inference.tile_size", spec.training.tile_size)],
        needs_overlap_tile=True,
        inference_only=True,
    ),
    Switch(
        "mirror",
        "Inference only: overlap-tile with zeros beyond the image border instead of the mirrored image.",
        "overlap-tile with zeros as the context beyond the image border against the mirrored image",
        lambda spec: [("inference.border", "zeros")],
        needs_overlap_tile=True,
        inference_only=True,
    ),
    Switch(
        "tta",
        "Inference only: one prediction per image, no test-time averaging.",
        "one prediction per image against the average over the spec's rotated or mirrored versions",
        lambda spec: [("inference.tta", "none")],
        inference_only=True,
    ),
    Switch(
        "tiling-same-padding",
        "Changes the network: a same-padded network trained and predicting on tiles without context.",
        "a same-padded network trained and predicting on zero-padded tiles without context against the "
        "valid network with overlap-tile: two networks as well as two ways of predicting",
        _same_padding_changes,
        needs_overlap_tile=True,
    ),
)


SWITCHES: dict[str, Switch] = {switch.name: switch for switch in _SWITCH_LIST}


def switch_overrides(spec: ChallengeSpec, switch: str) -> list[tuple[str, Any]]:
    """The spec overrides one switch stands for (module docstring)."""
    if switch not in SWITCHES:
        raise ValueError(f"unknown switch {switch!r}")
    return SWITCHES[switch].changes(spec)


def switch_of(overrides: list[str], spec: ChallengeSpec) -> str | None:
    """The switch whose overrides of ``spec`` are exactly ``overrides`` (a variant's, as its manifest
    entry keeps them), whatever its ablation named it; None for a --vary value or a combination."""
    from unetbench.spec import override_text

    given = set(overrides)
    for name, switch in SWITCHES.items():
        if given == {override_text(key, value) for key, value in switch.changes(spec)}:
            return name
    return None


def no_tiling_tile(spec: ChallengeSpec) -> int:
    """The tile of the same-padded variant: the training tile's valid output, down to the pooling factor."""
    m = spec.model
    factor = 2 ** (m.depth - 1)
    train_out = output_size(spec.training.tile_size, depth=m.depth, padding=m.padding)
    return max(factor, train_out // factor * factor)
