"""The challenge spec's schema: one frozen dataclass per table of the TOML file, each with its own rules.

Every key is documented where it is declared. A value that breaks a rule raises
:class:`~unetbench.spec.decoding.ValueProblem` from ``__post_init__``, which the decoder
(:mod:`unetbench.spec.decoding`) reports at its dotted key. This module knows the spec's own rules only; what
depends on the registries (which data sets and metrics exist) is checked one layer up, in
:mod:`unetbench.challenges`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from unetbench.model.sizes import output_size
from unetbench.spec.decoding import ValueProblem

# A generated data set lives in memory, and makes ~5 images a second: beyond this many pixels (about
# 1,000 slices of 512 x 512) it would take minutes to hours and gigabytes before the first training step.
MAX_GENERATED_PIXELS = 2**28


_ValueProblem = ValueProblem  # raised inside ``__post_init__``; reported with the full key path


# The network padding each inference.tiling needs (unetbench.inference.tiling).
TILING_PADDING = {"overlap-tile": "valid", "isolated": "valid", "none": "same"}


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise _ValueProblem(key, message)


# Choices that the command line offers too (its options read them from here).
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)
Tta = Literal["none", "flips", "dihedral"]  # the versions each averages: unetbench.inference.tiling
TTA_CHOICES: tuple[str, ...] = get_args(Tta)


@dataclass(frozen=True)
class SplitSpec:
    """How the labelled samples are divided into train / validation / evaluation.

    - ``indices``: ``train``, ``validation`` and ``evaluation`` list sample indices (0-based, in the
      adapter's order: slice order for ISBI 2012, sequence then frame for the CTC sets).
    - ``sequence``: they list sequence names (``"01"``, ``"02"``) of a Cell Tracking Challenge set.
    - ``kfold``: the samples are cut into ``folds`` contiguous folds (shuffled first when
      ``shuffle_seed`` is set; whole sequences per fold for time-lapse data); fold ``fold`` is evaluated,
      the next fold (cyclically) validates when there are at least 3 folds, the rest trains
      (:func:`unetbench.datasets.splits.kfold_indices`).
    """

    method: Literal["indices", "sequence", "kfold"] = "indices"
    train: tuple[int | str, ...] = ()
    validation: tuple[int | str, ...] = ()
    evaluation: tuple[int | str, ...] = ()
    folds: int = 5
    fold: int = 0
    # Unset: contiguous folds, the honest choice for serial sections, whose neighbours look alike.
    shuffle_seed: int | None = None

    def __post_init__(self) -> None:
        parts = {"train": self.train, "validation": self.validation, "evaluation": self.evaluation}
        if self.method != "kfold":
            for name, value, default in (("folds", self.folds, 5), ("fold", self.fold, 0)):
                _require(value == default, name, f"only used with method = 'kfold'; remove it (got {value})")
            _require(self.shuffle_seed is None, "shuffle_seed", "only used with method = 'kfold'; remove it")
        if self.method == "kfold":
            for name, values in parts.items():
                _require(not values, name, "not used with method = 'kfold' (use folds and fold instead)")
            _require(self.folds >= 2, "folds", f"must be at least 2, got {self.folds}")
            _require(0 <= self.fold < self.folds, "fold", f"must be in 0..{self.folds - 1}, got {self.fold}")
            return
        wanted = int if self.method == "indices" else str
        example = "sample indices such as [0, 1, 2]" if wanted is int else 'sequence names such as ["01"]'
        for name, values in parts.items():
            for value in values:
                ok = isinstance(value, wanted) and not isinstance(value, bool)
                _require(ok, name, f"method = '{self.method}' takes {example}, got {value!r}")
                if wanted is int:
                    _require(value >= 0, name, f"indices must be >= 0, got {value}")
            _require(len(set(values)) == len(values), name, "lists the same entry twice")
        _require(bool(self.train), "train", "must not be empty")
        _require(bool(self.evaluation), "evaluation", "must not be empty")
        seen: dict[int | str, str] = {}
        for name, values in parts.items():
            for value in values:
                other = seen.setdefault(value, name)
                _require(other == name, name, f"{value!r} is also in {other}; the parts must not overlap")


@dataclass(frozen=True)
class SyntheticSpec:
    """Size of a generated data set (used only by the ``synthetic-*`` data sets)."""

    samples: int = 12
    height: int = 256
    width: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.samples >= 1, "samples", f"must be >= 1, got {self.samples}")
        for name in ("height", "width"):
            value = getattr(self, name)
            _require(32 <= value <= 8192, name, f"must be in 32..8192 px, got {value}")
        pixels = self.samples * self.height * self.width
        _require(
            pixels <= MAX_GENERATED_PIXELS,
            "samples",
            f"{self.samples} samples of {self.height}x{self.width} px are {pixels:,} pixels, more than the "
            f"{MAX_GENERATED_PIXELS:,} a generated set may have (about "
            f"{MAX_GENERATED_PIXELS // (self.height * self.width):,} samples of this size); use fewer, or "
            "write a large set to disk with `unetbench data synth` and read it as a real data set",
        )


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    split: SplitSpec  # required: a run must say which samples it trains and evaluates on
    # Where this data set's files are; unset: <data root>/<data set folder>, where the data root is
    # --data-root, else $UNETBENCH_DATA, else the per-user cache directory.
    root: str | None = None
    # Only for the generated data sets (synthetic-*), which get the defaults when it is left out.
    synthetic: SyntheticSpec | None = None

    def __post_init__(self) -> None:
        _require(self.dataset.strip() != "", "dataset", "must name a data set")
        _require(self.root is None or self.root.strip() != "", "root", "must not be empty")


@dataclass(frozen=True)
class ModelSpec:
    depth: int = 5  # levels; depth - 1 poolings (paper: 5 levels, 4 poolings)
    base_channels: int = 64  # channels of the first level, doubled at every level (paper: 64 .. 1024)
    padding: Literal["valid", "same"] = "valid"  # valid: the paper's unpadded convolutions
    dropout: float = 0.5  # drop-out at the end of the contracting path (paper, Sec. 3.1)
    classes: int = 2
    in_channels: int = 1
    batch_norm: bool = False  # not in the 2015 paper

    def __post_init__(self) -> None:
        _require(1 <= self.depth <= 8, "depth", f"must be in 1..8, got {self.depth}")
        _require(self.base_channels >= 1, "base_channels", f"must be >= 1, got {self.base_channels}")
        _require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        _require(self.classes >= 2, "classes", f"must be >= 2 (softmax over classes), got {self.classes}")
        _require(self.in_channels >= 1, "in_channels", f"must be >= 1, got {self.in_channels}")


@dataclass(frozen=True)
class TrainingSpec:
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.99  # paper, Sec. 3: high momentum because the batch is a single tile
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "step", "cosine"] = "constant"
    lr_step_every: int = 10000  # iterations between decays, for lr_schedule = "step"
    lr_step_factor: float = 0.1
    iterations: int = 10000
    tile_size: int = 572  # input tile edge in px; the output is smaller by twice the context margin
    batch_size: int = 1  # paper: one large tile per step rather than a large batch
    seed: int = 0
    device: Device = "auto"
    # A checkpoint is written before the first step, then every checkpoint_every iterations or every
    # checkpoint_minutes minutes, whichever comes first: a kill loses at most that much training.
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 10.0
    validate_every: int = 500  # 0: no validation; a run shorter than this validates once, at its end
    # auto: bf16 autocast on CUDA and on CPUs with bf16 in hardware (unetbench.system.devices), else float32;
    # loss and soft-max are float32 in every case
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"  # auto: as precision
    compile: bool = False  # torch.compile the network for the training steps (validation runs eager)

    def __post_init__(self) -> None:
        _require(self.learning_rate > 0, "learning_rate", f"must be > 0, got {self.learning_rate}")
        _require(0.0 <= self.momentum < 1.0, "momentum", f"must be in [0, 1), got {self.momentum}")
        _require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(self.lr_step_every >= 1, "lr_step_every", f"must be >= 1, got {self.lr_step_every}")
        _require(
            0 < self.lr_step_factor <= 1, "lr_step_factor", f"must be in (0, 1], got {self.lr_step_factor}"
        )
        _require(self.iterations >= 1, "iterations", f"must be >= 1, got {self.iterations}")
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.seed >= 0, "seed", f"must be >= 0, got {self.seed}")
        _require(self.checkpoint_every >= 1, "checkpoint_every", f"must be >= 1, got {self.checkpoint_every}")
        _require(
            self.checkpoint_minutes > 0,
            "checkpoint_minutes",
            f"must be > 0 minutes, got {self.checkpoint_minutes}",
        )
        _require(self.validate_every >= 0, "validate_every", f"must be >= 0, got {self.validate_every}")


@dataclass(frozen=True)
class AugmentationSpec:
    elastic: bool = True
    # px between control points, fixed whatever the tile: 285.5 = the paper's 3x3 grid over its 572 px tile
    elastic_spacing: float = 285.5
    elastic_sigma: float = 10.0  # std of the coarse displacements in px (paper: 10 px)
    interpolation: Literal["cubic", "linear"] = "cubic"  # for the image; labels are always nearest
    shift: float = 0.0  # largest random shift in px
    rotation: float = 0.0  # largest random rotation in degrees
    flip: bool = True  # random horizontal and vertical flips
    grey_values: float = 0.0  # largest relative change of brightness and contrast

    def __post_init__(self) -> None:
        _require(self.elastic_spacing >= 8, "elastic_spacing", f"must be >= 8 px, got {self.elastic_spacing}")
        _require(self.elastic_sigma >= 0, "elastic_sigma", f"must be >= 0 px, got {self.elastic_sigma}")
        _require(self.shift >= 0, "shift", f"must be >= 0 px, got {self.shift}")
        _require(0 <= self.rotation <= 180, "rotation", f"must be in 0..180 degrees, got {self.rotation}")
        _require(0 <= self.grey_values < 1, "grey_values", f"must be in [0, 1), got {self.grey_values}")


@dataclass(frozen=True)
class WeightmapSpec:
    """w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)) (paper, Eq. 2)."""

    enabled: bool = True
    w0: float = 10.0
    sigma: float = 5.0  # px
    # w_c: class frequencies balanced per training image, over the whole training split, or not at all.
    class_balance: Literal["per-image", "dataset", "none"] = "dataset"

    def __post_init__(self) -> None:
        _require(self.w0 >= 0, "w0", f"must be >= 0, got {self.w0}")
        _require(self.sigma > 0, "sigma", f"must be > 0 px, got {self.sigma}")


@dataclass(frozen=True)
class InferenceSpec:
    # overlap-tile: output-sized tiles fed with their context, mirrored beyond the image (paper, Fig. 2).
    # isolated: the same valid network on output-sized tiles, each fed with itself mirrored at its edges,
    # no context from its neighbours (the inference-only --no-tiling). none: a same-padded network on
    # zero-padded tiles (--no-tiling-same-padding, which changes the network). unetbench.inference.tiling.
    tiling: Literal["overlap-tile", "isolated", "none"] = "overlap-tile"
    # What overlap-tile feeds as context beyond the image border: the mirrored image (paper, Fig. 2) or
    # zeros (--no-mirror). Only overlap-tile has such context.
    border: Literal["mirror", "zeros"] = "mirror"
    tile_size: int = 572  # input tile edge in px
    batch_size: int = 4  # tiles per forward pass
    # Test-time averaging of the soft-max over versions of the image: none; flips (the original and its
    # three mirror images, the release's cell protocol); dihedral (the 8 rotations and mirrors: the
    # original and the paper's "7 rotated versions", Table 1). See unetbench.inference.tiling.predict_image.
    tta: Tta = "none"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA and bf16 CPUs
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"  # auto: channels_last everywhere

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass(frozen=True)
class PostprocessSpec:
    """Cell instances from P(cell), as the authors' release makes them (unetbench.inference.postprocess)."""

    connectivity: Literal[4, 8] = 8  # the release: MATLAB bwconncomp's default, 8-connected
    remove_small: int = 0  # px: segments of at most this many pixels are removed (release, PhC-U373: 500)
    fill_holes: bool = False  # fill background enclosed by a segment (the release does not)

    def __post_init__(self) -> None:
        _require(self.remove_small >= 0, "remove_small", f"must be >= 0 px, got {self.remove_small}")


@dataclass(frozen=True)
class EvaluationSpec:
    metrics: tuple[str, ...] = ()
    # The metric that picks the best checkpoint, and an ablation's headline: its primary family is every
    # variant on this metric, Holm-adjusted; the other metrics are exploratory.
    primary: str = ""
    # Region of practical equivalence per metric: a difference within ±rope is too small to matter (an
    # ablation's equivalence verdict). Metrics left out get the default of the metric table
    # (unetbench.metrics.names), filled in when the spec is checked, so every record holds the values used.
    rope: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _require(bool(self.metrics), "metrics", "must name at least one metric")
        _require(len(set(self.metrics)) == len(self.metrics), "metrics", "names a metric twice")
        _require(
            self.primary in self.metrics,
            "primary",
            f"must be one of the metrics listed ({', '.join(self.metrics)}), got {self.primary!r}",
        )
        for metric, width in self.rope.items():
            _require(
                metric in self.metrics,
                f"rope.{metric}",
                f"{metric!r} is not one of the metrics listed ({', '.join(self.metrics)}); give a ROPE for "
                "those only",
            )
            _require(
                width >= 0,
                f"rope.{metric}",
                f"must be >= 0 (a half-width in the metric's units), got {width}",
            )


@dataclass(frozen=True)
class ReportSpec:
    directory: str = "reports"  # reports go to <directory>/<challenge name>/
    overlays: int = 3  # images shown with input / ground truth / prediction / error
    # The labelled images on which this spec's settings were chosen, where they were not chosen on
    # validation images alone, by the names records and reports give them ("25" for ISBI 2012's slice 25,
    # "01/t013" for a CTC frame): every report that scores one of them says so.
    settings_chosen_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(self.directory.strip() != "", "directory", "must not be empty")
        _require(self.overlays >= 0, "overlays", f"must be >= 0, got {self.overlays}")
        _require(
            len(set(self.settings_chosen_on)) == len(self.settings_chosen_on),
            "settings_chosen_on",
            "lists the same image twice",
        )


@dataclass(frozen=True)
class ChallengeSpec:
    name: str
    data: DataSpec
    evaluation: EvaluationSpec
    description: str = ""
    model: ModelSpec = field(default_factory=ModelSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    augmentation: AugmentationSpec = field(default_factory=AugmentationSpec)
    weightmap: WeightmapSpec = field(default_factory=WeightmapSpec)
    inference: InferenceSpec = field(default_factory=InferenceSpec)
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    report: ReportSpec = field(default_factory=ReportSpec)
    # Set by with_overrides, never by the file: "key=value" in the order they were applied.
    overrides: tuple[str, ...] = field(default=(), metadata={"in_file": False})
    # Set once, when the spec is checked against the data sets (unetbench.challenges.loading.check_spec),
    # from the data set's adapter: "em" or "cells"; it decides the metrics, the scoring and the exports.
    kind: str = field(default="", metadata={"in_file": False})
    # Set by load_spec, never by the file: where the spec came from, as records keep it ("built-in em
    # (unetbench 0.2.0)" or the file's absolute path); "" for a spec made in code or read from a record.
    # Not part of equality: two specs with the same settings are the same spec wherever they were read.
    source: str = field(default="", compare=False, metadata={"in_file": False})

    def __post_init__(self) -> None:
        _require(
            self.name.strip() != "" and "/" not in self.name,
            "name",
            f"must be a non-empty name without '/', got {self.name!r}",
        )
        needs = TILING_PADDING[self.inference.tiling]
        _require(
            self.model.padding == needs,
            "inference.tiling",
            f"{self.inference.tiling!r} needs model.padding = {needs!r} (overlap-tile and isolated feed a "
            "valid-padding network a margin around each tile; 'none' runs a same-padding network tile by "
            f"tile), got {self.model.padding!r}",
        )
        _require(
            self.inference.border == "mirror" or self.inference.tiling == "overlap-tile",
            "inference.border",
            f"'zeros' replaces overlap-tile's mirrored context beyond the image; tiling = "
            f"{self.inference.tiling!r} has none (isolated mirrors each tile from itself, none pads with "
            "zeros already): remove border or use tiling = 'overlap-tile'",
        )
        for section, key in (("training", "tile_size"), ("inference", "tile_size")):
            size = getattr(getattr(self, section), key)
            try:
                output_size(size, depth=self.model.depth, padding=self.model.padding)
            except ValueError as err:
                raise _ValueProblem(f"{section}.{key}", str(err)) from None
