"""The paper's setting as data: its scores, and the settings every report compares a run against.

Ronneberger, Fischer & Brox (2015) and, where the paper is silent, the authors' release (DESIGN.md).
:data:`PAPER_SETTINGS` is the one table of settings: a run's report lists each row where the run's spec
differs from it, and each row the paper leaves open (``paper`` None) with the run's value, so that a reader
sees every departure and every choice the paper did not make for us. :func:`differences` adds the lines
that depend on the run's record rather than its spec (data, iterations, the loss's scale, the scored
weights, the precision that ran, the overrides).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from unetbench.model.sizes import output_size

_TABLE_2 = (
    'Table 2, whose "IOU" column is the challenge\'s SEG measure (the mean Jaccard index of each '
    "reference cell with the segment that covers more than half of it), the quantity the organisers ranked "
    "by; it is compared with this run's SEG, not with the pooled foreground IoU"
)


# The paper's numbers, on the challenges' hidden test sets: (scores, where the paper gives them).
PAPER = {
    "isbi2012": ({"warping_error": 0.000353, "rand_error": 0.0382, "pixel_error": 0.0611}, "Table 1"),
    "phc-u373": ({"seg": 0.9203}, _TABLE_2),
    "dic-hela": ({"seg": 0.7756}, _TABLE_2),
}


PAPER_PARAMETERS = 31_030_658  # the network of Fig. 1: 5 levels, 64 to 1024 channels, unpadded


PAPER_TILE = 572


# Image sizes of the paper's data sets (shared/datasets/README.md), to say when one tile covers an image.
IMAGE_SIZES = {"isbi2012": (512, 512), "phc-u373": (520, 696), "dic-hela": (512, 512)}


@dataclass(frozen=True)
class Setting:
    """One row: ``keys`` of the spec, the paper's values for them (None: the paper does not give them),
    and how the paper says it. ``kind``: the data the row is about ("em", "cells"; "" for every run)."""

    topic: str
    keys: tuple[str, ...]
    paper: tuple[Any, ...] | None
    says: str
    kind: str = ""
    # What the values alone do not show (an interpretation, a setting that means something else at this
    # tile size): a remark for the spec, or None. A row with a remark is listed even where the values
    # are the paper's.
    remark: Callable[[Any], str | None] | None = None

    def difference(self, spec, kind: str) -> str | None:
        """The report's line for a run of ``spec``, or None where the run has the paper's setting."""
        if self.kind and self.kind != kind:
            return None
        remark = self.remark(spec) if self.remark else None
        if remark is None and self.paper is not None and self._values(spec) == self.paper:
            return None
        if not self.keys:
            return f"{self.topic}: {self.says}."
        return f"{self.topic}: {self.shown(spec)} ({self.says})."

    def _values(self, spec) -> tuple:
        return tuple(_value(spec, key) for key in self.keys)

    def shown(self, spec) -> str:
        """The run's values of this row's keys, as a report writes them ("optimizer adam, momentum ...")
        and, where there is one, the row's remark."""
        values = ", ".join(
            f"{key.rpartition('.')[2]} {_inert(spec, key) or _shown(_value(spec, key))}" for key in self.keys
        )
        remark = self.remark(spec) if self.remark else None
        return f"{values}: {remark}" if remark else values


def _elastic_grid(spec) -> str | None:
    """The paper's "3 by 3 grid" spans its 572 px tile; a fixed spacing on another tile does not."""
    augmentation, tile = spec.augmentation, spec.training.tile_size
    if not augmentation.elastic or tile == PAPER_TILE:
        return None
    spans = (tile - 1) / augmentation.elastic_spacing
    return (
        f"control points {augmentation.elastic_spacing:g} px apart on a {tile} px tile, which spans "
        f"{spans:.2f} grid spacings (the paper's tile spans 2): the field is as smooth per pixel as the "
        "paper's, but not a 3x3 grid over the tile"
    )


def _other_augmentation(spec) -> str | None:
    augmentation = spec.augmentation
    words = []
    if augmentation.shift == 0:
        words.append("shifts off, which the paper names")
    if augmentation.flip:
        words.append("flips added, which the paper does not name")
    return "; ".join(words) or None


def _one_tile(spec) -> str | None:
    """Overlap-tile whose one tile covers a whole image: no seams, only the extrapolated border."""
    inference, model = spec.inference, spec.model
    size = IMAGE_SIZES.get(spec.data.dataset)
    if inference.tiling != "overlap-tile" or size is None:
        return None
    out = output_size(inference.tile_size, depth=model.depth, padding="valid")
    if out < max(size):
        return None
    return (
        f"one {inference.tile_size} px input tile ({out} px output) covers a whole {size[0]}x{size[1]} "
        "image, so there are no seams between tiles, only the extrapolated border (the paper's 572 px "
        "tile, 388 px output, needs several per image)"
    )


PAPER_SETTINGS: tuple[Setting, ...] = (
    Setting("Network depth", ("model.depth",), (5,), "paper: 5 levels, 4 poolings"),
    Setting(
        "Network width",
        ("model.base_channels",),
        (64,),
        "paper: 64 channels at the first level, 1024 deepest",
    ),
    Setting(
        "Convolutions", ("model.padding",), ("valid",), "paper: unpadded, the output smaller than the input"
    ),
    Setting(
        "Drop-out",
        ("model.dropout",),
        (0.5,),
        "the authors' release: element-wise 0.5 on the two deepest levels; the paper: at the end of the "
        "contracting path",
    ),
    Setting("Batch normalisation", ("model.batch_norm",), (False,), "paper: none"),
    Setting(
        "Initialisation",
        (),
        None,
        "normal with std sqrt(2/N), N the inputs of a unit, as the paper (Sec. 3); the network built is "
        "Fig. 1's, from which the release's prototxt differs",
    ),
    Setting(
        "Training tile",
        ("training.tile_size", "training.batch_size"),
        (572, 1),
        "paper: one 572 px tile per step",
    ),
    Setting(
        "Optimiser", ("training.optimizer", "training.momentum"), ("sgd", 0.99), "paper: SGD, momentum 0.99"
    ),
    Setting("Weight decay", ("training.weight_decay",), None, "the paper gives none"),
    Setting(
        "Learning-rate schedule", ("training.lr_schedule",), None, "the paper gives neither rate nor schedule"
    ),
    Setting(
        "Elastic deformation",
        ("augmentation.elastic", "augmentation.elastic_spacing", "augmentation.elastic_sigma"),
        (True, 285.5, 10.0),
        "paper: displacements on a 3x3 grid over the 572 px tile, 10 px std",
        remark=_elastic_grid,
    ),
    Setting(
        "Interpolation of the deformed image", ("augmentation.interpolation",), ("cubic",), "paper: bicubic"
    ),
    Setting(
        "Other augmentation",
        ("augmentation.shift", "augmentation.rotation", "augmentation.flip", "augmentation.grey_values"),
        None,
        "the paper names shifts, rotations and grey-value variations, no flips, and gives no magnitudes",
        remark=_other_augmentation,
    ),
    Setting(
        "Weight map border term",
        ("weightmap.enabled", "weightmap.w0", "weightmap.sigma"),
        (True, 10.0, 5.0),
        "paper: w0 = 10, sigma = 5 px",
    ),
    Setting(
        "Weight map class balance",
        ("weightmap.class_balance",),
        None,
        "Eq. 2's w_c balances the class frequencies; the paper does not say over which pixels",
    ),
    Setting(
        "Prediction",
        ("inference.tiling", "inference.border"),
        ("overlap-tile", "mirror"),
        "paper: overlap-tile, mirrored at the image border; 'isolated': tiles without their neighbours' "
        "context; 'none': a same-padded network on zero-padded tiles; border 'zeros': zeros beyond the image",
        remark=_one_tile,
    ),
    Setting(
        "Test-time averaging",
        ("inference.tta",),
        None,
        "paper, Table 1: 'averaged over 7 rotated versions of the input data', which it does not list; "
        "'dihedral' reads them as the 7 rotations and mirrors of the image besides itself, 8 versions in "
        "all: an interpretation",
        kind="em",
    ),
    Setting(
        "Warping error",
        (),
        None,
        "the splits-and-mergers warping error of the challenge's official tool "
        "(WarpingError.getMinimumSplitsAndMergersErrorValue(0.0, 0.9, 0.1, false, 20)), not the classic one "
        "that counts every mismatch; the paper's Table 1 says only 'warping error'",
        kind="em",
    ),
    Setting(
        "Test-time averaging",
        ("inference.tta",),
        ("flips",),
        "the authors' release averages mirrored versions for the cell data",
        kind="cells",
    ),
)


# Keys a run's other settings make meaningless: key -> (the deciding key, its value there, what to say).
_ADAM = "unused by Adam, whose betas are torch's 0.9 and 0.999"


_INERT = {"training.momentum": ("training.optimizer", "adam", _ADAM)}


def _inert(spec, key: str) -> str | None:
    """What to show for ``key`` where it means nothing in this spec (:data:`_INERT`), else None."""
    if key in _INERT and _value(spec, _INERT[key][0]) == _INERT[key][1]:
        return _INERT[key][2]
    return None


def _value(spec, key: str) -> Any:
    value = spec
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
