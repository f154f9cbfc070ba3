"""Challenge specs: one TOML file that says exactly what a run does.

A spec is parsed once, with :mod:`tomllib`, into the frozen dataclasses below. The parser is driven by
their type annotations: an unknown key, a value of the wrong type, a choice outside a ``Literal`` or an
impossible value (a negative sigma, a tile size the network cannot take) raises :class:`SpecError` naming
the file, the dotted key and what would be valid, before any data is read or any network is built.

This module knows the spec's own rules only. What depends on the registries (which data sets exist,
which metrics fit them, whether a data set is generated) is checked one layer up, in
:mod:`unetbench.spec_checks`, whose :func:`~unetbench.spec_checks.load_spec` and
:func:`~unetbench.spec_checks.apply_overrides` are what the rest of unetbench calls; so ``spec`` imports
neither ``datasets`` nor ``metrics``, and both may import ``spec``.

Command-line flags and ablation variants change a spec only through overrides (:func:`with_overrides`),
which re-validate the whole spec and record each override in ``ChallengeSpec.overrides`` so that a run's
record says what it ran with.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from unetbench.errors import SpecError
from unetbench.model.sizes import output_size
from unetbench.typed import Dialect, Problem, ValueProblem, decode, join, unknown_key

# A generated data set lives in memory, and makes ~5 images a second: beyond this many pixels (about
# 1,000 slices of 512 x 512) it would take minutes to hours and gigabytes before the first training step.
MAX_GENERATED_PIXELS = 2**28

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib


_ValueProblem = ValueProblem  # raised inside ``__post_init__``; reported with the full key path

# The network padding each inference.tiling needs (unetbench.inference.tiling).
TILING_PADDING = {"overlap-tile": "valid", "isolated": "valid", "none": "same"}


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise _ValueProblem(key, message)


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
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # A checkpoint is written before the first step, then every checkpoint_every iterations or every
    # checkpoint_minutes minutes, whichever comes first: a kill loses at most that much training.
    checkpoint_every: int = 1000
    checkpoint_minutes: float = 10.0
    validate_every: int = 500  # 0: no validation; a run shorter than this validates once, at its end
    # auto: bf16 autocast on CUDA and on CPUs with bf16 in hardware (unetbench.devices), else float32;
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
    tta: Literal["none", "flips", "dihedral"] = "none"
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA and bf16 CPUs
    memory_format: Literal["auto", "channels_last", "contiguous"] = "auto"  # auto: as precision

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
    # Set once, when the spec is checked against the data sets (unetbench.spec_checks.check_spec), from the
    # data set's adapter: "em" or "cells"; it decides the metrics, the scoring and the exports.
    kind: str = field(default="", metadata={"in_file": False})

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


# --------------------------------------------------------------------------------------------------
# Parsing: TOML tables -> dataclasses, driven by the annotations above.

_TYPE_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
    if isinstance(value, dict):
        return "a table"
    shown = _toml_value(value) if _dumpable(value) else repr(value)
    return f"{kind.get(type(value), type(value).__name__)} {shown}"


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _file_fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("in_file", True)}


# How the decoder (unetbench.typed) speaks of a spec: TOML's words, the value shown, unknown keys refused.
TOML = Dialect(
    table="a table",
    describe=_describe,
    type_words={**_TYPE_WORDS, list: "an array"},
    strict=True,
    missing="missing; this key is required",
    fields=_file_fields,
)


def _unknown_key(source: str, path: str, key: str, fields: Mapping[str, Any], shown: str = "") -> SpecError:
    problem = unknown_key(path, key, fields, shown)
    return SpecError(source, problem.where, problem.message)


def parse_spec(table: Mapping[str, Any], *, source: str = "<spec>") -> ChallengeSpec:
    """Build a :class:`ChallengeSpec` from an already-parsed TOML document."""
    try:
        return decode(ChallengeSpec, dict(table), "", TOML)
    except Problem as problem:
        raise SpecError(source, problem.where, problem.message) from None


def read_spec(path: str | Path) -> ChallengeSpec:
    """Read a challenge spec file and check the spec's own rules (:func:`unetbench.spec_checks.load_spec`
    adds the checks against the data sets and metrics).

    Raises
    ------
    SpecError
        For a missing or unreadable file, invalid TOML, an unknown key, a wrong type or an
        impossible value; the message names the file and the key.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), "", "no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(str(path), "", f"cannot be read: {err}") from None
    return spec_from_text(text, source=str(path))


def spec_from_text(text: str, *, source: str) -> ChallengeSpec:
    """:func:`read_spec` of a spec's TOML text (a file's, or the one an exported network carries)."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(source, "", f"is not valid TOML: {err}") from None
    return parse_spec(table, source=source)


# --------------------------------------------------------------------------------------------------
# Overrides: the one way a flag or an ablation variant changes a spec.


def spec_to_table(spec: Any) -> dict[str, Any]:
    """The spec as nested plain dicts, in file form: what ``parse_spec`` would read back.

    Tuples become lists, unset optional values are left out, and fields not read from files
    (``overrides``) are left out. So are keys that the spec does not use: the k-fold keys of a split by
    indices or sequences, and the index lists of a k-fold split (they are refused when set, so nothing
    is lost).
    """
    table: dict[str, Any] = {}
    unused = _unused_keys(spec)
    for name in _file_fields(type(spec)):
        value = getattr(spec, name)
        if value is None or name in unused:
            continue
        if dataclasses.is_dataclass(value):
            value = spec_to_table(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)  # a copy: overrides change the table, never the frozen spec
        table[name] = value
    return table


def _unused_keys(spec: Any) -> tuple[str, ...]:
    if isinstance(spec, SplitSpec):
        return ("train", "validation", "evaluation") if spec.method == "kfold" else ("folds", "fold")
    return ()


# The sections that do not change a trained network: how it predicts, how instances are made from its
# output, where reports go. Two specs equal outside them train the same network (an ablation's
# inference-only variants predict with their paired run's weights instead of training again).
PREDICTION_SECTIONS = ("inference", "postprocess", "report")


def training_part(spec: ChallengeSpec) -> dict[str, Any]:
    """The spec in file form without :data:`PREDICTION_SECTIONS`: what decides the trained network.

    (The validation that picks the scored checkpoint predicts with ``inference`` too; a run that reuses
    another's weights takes the checkpoint that run's validation picked.)
    """
    table = spec_to_table(spec)
    return {key: value for key, value in table.items() if key not in PREDICTION_SECTIONS}


def spec_to_dict(spec: ChallengeSpec) -> dict[str, Any]:
    """The full resolved spec, overrides included, as JSON-ready dicts (for run records)."""
    table = spec_to_table(spec)
    table["overrides"] = list(spec.overrides)
    return table


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``KEY=VALUE`` from the command line; VALUE is read as a TOML value, else as a plain string.

    ``training.iterations=200`` gives an integer, ``weightmap.enabled=false`` a boolean,
    ``data.dataset=isbi2012`` the string ``"isbi2012"``.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SpecError("--set", text, "expected KEY=VALUE, e.g. training.iterations=200")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def with_overrides(
    spec: ChallengeSpec, overrides: Mapping[str, Any] | Iterable[tuple[str, Any]], *, source: str = "override"
) -> ChallengeSpec:
    """Return a copy of ``spec`` with dotted keys replaced, validated as a whole, the overrides recorded.

    ``with_overrides(spec, {"weightmap.enabled": False})`` is how ``--no-weightmap`` is made. An
    override that sets a key to the value it already has is still recorded: the record says what was
    asked for. Raises :class:`SpecError` naming the key for an unknown key or a bad value.
    """
    items = list(overrides.items() if isinstance(overrides, Mapping) else overrides)
    table = spec_to_table(spec)
    recorded = list(spec.overrides)
    for key, value in items:
        parts = key.split(".")
        node, cls = table, ChallengeSpec
        for depth, part in enumerate(parts):
            fields = _file_fields(cls)
            if part not in fields:
                raise _unknown_key(source, ".".join(parts[:depth]), part, fields, shown=key)
            hint_type = typing.get_type_hints(cls)[part]
            if _is_union(hint_type):  # an optional table, e.g. data.synthetic
                tables = [t for t in typing.get_args(hint_type) if dataclasses.is_dataclass(t)]
                hint_type = tables[0] if tables else hint_type
            if typing.get_origin(hint_type) is dict and depth == len(parts) - 2:  # evaluation.rope.<metric>
                node.setdefault(part, {})[parts[-1]] = value
                break
            if depth == len(parts) - 1:
                if dataclasses.is_dataclass(hint_type):
                    raise SpecError(source, key, "is a table; override one of its keys instead")
                node[part] = list(value) if isinstance(value, tuple) else value
            else:
                if not dataclasses.is_dataclass(hint_type):
                    raise SpecError(source, key, f"{'.'.join(parts[: depth + 1])} is not a table")
                node = node.setdefault(part, {})
                cls = hint_type
        recorded.append(override_text(key, value))
    if any(key == "data.split.method" for key, _ in items):
        _drop_keys_of_the_old_method(table["data"]["split"], {key for key, _ in items})
    if any(key == "evaluation.metrics" for key, _ in items):  # a ROPE goes with the metric it is for
        evaluation = table["evaluation"]
        listed = set(evaluation.get("metrics", []))
        evaluation["rope"] = {m: w for m, w in evaluation.get("rope", {}).items() if m in listed}
    new = parse_spec(table, source=source)
    return dataclasses.replace(new, overrides=tuple(recorded))


def override_text(key: str, value: Any) -> str:
    """An override as a record keeps it: ``weightmap.enabled=false``, ``inference.tiling="isolated"``."""
    return f"{key}={_toml_value(value)}"


def _drop_keys_of_the_old_method(split: dict[str, Any], given: set[str]) -> None:
    """An override of ``data.split.method`` takes the old method's keys away with it (the index lists of
    ``indices``, the fold keys of ``kfold``), unless the same overrides set them: ``--set
    data.split.method=kfold --set data.split.fold=2`` turns a split by indices into fold 2."""
    lists, folds = ("train", "validation", "evaluation"), ("folds", "fold", "shuffle_seed")
    for key in lists if split.get("method") == "kfold" else folds:
        if f"data.split.{key}" not in given:
            split.pop(key, None)


# --------------------------------------------------------------------------------------------------
# Writing a resolved spec back as TOML (``unetbench spec show``). Only the value types specs use.


def _dumpable(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_dumpable(v) for v in value)
    return isinstance(value, (bool, int, float, str)) and not (
        isinstance(value, float) and not math.isfinite(value)
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        # TOML basic string: escape the quote, the backslash and every control character (DEL included).
        escaped = "".join(
            f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c
            for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a TOML value")


def _dump_table(table: Mapping[str, Any], path: str, lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict) and v}  # an empty one reads back so
    if path:
        lines.append(f"\n[{path}]")
    lines.extend(f"{key} = {_toml_value(value)}" for key, value in scalars.items())
    for key, sub in tables.items():
        _dump_table(sub, join(path, key), lines)


def dump_spec(spec: ChallengeSpec) -> str:
    """The resolved spec as a TOML document that :func:`read_spec` reads back to an equal spec.

    Overrides, which a file cannot set, are written as a comment.
    """
    return dump_table(spec_to_table(spec), spec.overrides)


def dump_table(table: Mapping[str, Any], overrides: Iterable[str] = ()) -> str:
    """A spec in file form (:func:`spec_to_table`'s, or a record's) as TOML, ``overrides`` as a comment."""
    lines: list[str] = []
    if overrides:
        lines.append("# overrides applied: " + ", ".join(overrides))
    _dump_table(table, "", lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def first_difference(a: dict, b: dict, path: str = "") -> str:
    """The first dotted key, in sorted order, whose values differ in two nested tables ("" if none)."""
    for key in sorted(set(a) | set(b)):
        where = f"{path}.{key}" if path else key
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            found = first_difference(a[key], b[key], where)
            if found:
                return found
        elif a.get(key) != b.get(key):
            return f"{where} was {a.get(key)!r}, now {b.get(key)!r}"
    return ""
