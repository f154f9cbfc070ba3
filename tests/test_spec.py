import dataclasses
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.errors import SpecError
from unetbench.spec import (
    ChallengeSpec,
    dump_spec,
    parse_override,
    spec_to_dict,
)

from .helpers import CHALLENGES, EM


def test_every_shipped_spec_loads():
    names = sorted(p.stem for p in CHALLENGES.glob("*.toml"))
    assert names == ["dic-hela", "em", "em-cpu", "phc-u373", "quickstart"]
    for path in CHALLENGES.glob("*.toml"):
        assert isinstance(load_spec(path), ChallengeSpec)


def test_em_spec_has_the_papers_settings():
    spec = load_spec(EM)
    assert spec.data.dataset == "isbi2012"
    assert (spec.model.depth, spec.model.base_channels, spec.model.padding) == (5, 64, "valid")
    assert (spec.training.optimizer, spec.training.momentum, spec.training.batch_size) == ("sgd", 0.99, 1)
    assert spec.training.tile_size == 572
    augmentation = spec.augmentation
    assert (augmentation.elastic, augmentation.elastic_spacing, augmentation.elastic_sigma) == (
        True,
        285.5,
        10.0,
    )
    assert (spec.weightmap.enabled, spec.weightmap.w0, spec.weightmap.sigma) == (True, 10.0, 5.0)
    assert (spec.inference.tiling, spec.inference.tta) == ("overlap-tile", "dihedral")  # Table 1: rotations
    # labelled evaluation on held-out training slices, disjoint from training
    assert set(spec.data.split.evaluation).isdisjoint(spec.data.split.train)
    assert (
        len(spec.data.split.train) + len(spec.data.split.validation) + len(spec.data.split.evaluation) == 30
    )


def _mutated(tmp_path: Path, old: str, new: str, base: Path = EM) -> Path:
    text = base.read_text()
    assert re.search(old, text, flags=re.M), f"test bug: {old!r} not in {base.name}"
    path = tmp_path / "spec.toml"
    path.write_text(re.sub(old, new, text, count=1, flags=re.M))
    return path


BAD = [
    # (pattern, replacement, key, message fragment)
    (r"^momentum = 0.99.*$", "momentun = 0.99", "training.momentun", "did you mean 'training.momentum'"),
    (r"^\[training\]$", "[trainng]", "trainng", "did you mean 'training'"),
    (r"^sigma = 5.0$", "sigma = -1.0", "weightmap.sigma", "must be > 0"),
    (r"^tile_size = 572$", "tile_size = 570", "training.tile_size", "nearest valid sizes: 556 or 572"),
    (r'^padding = "valid".*$', 'padding = "full"', "model.padding", "valid choices: 'valid', 'same'"),
    (r"^iterations = 10000.*$", 'iterations = "many"', "training.iterations", "must be an integer"),
    (r"^iterations = 10000.*$", "iterations = true", "training.iterations", "must be an integer"),
    (r"^iterations = 10000.*$", "iterations = 0", "training.iterations", "must be >= 1"),
    (r"^learning_rate = 0.001.*$", "learning_rate = nan", "training.learning_rate", "finite"),
    (r'^dataset = "isbi2012"$', 'dataset = "isbi"', "data.dataset", "valid choices: "),
    (r'^primary = "rand_error"$', 'primary = "seg"', "evaluation.primary", "must be one of the metrics"),
    (
        r"^metrics = \[.*\]\nprimary = .*$",
        'metrics = ["seg"]\nprimary = "seg"',
        "evaluation.metrics",
        "does not apply to isbi2012",
    ),
    (
        r"^metrics = \[.*\]\nprimary = .*$",
        'metrics = ["iou"]\nprimary = "iou"',
        "evaluation.metrics",
        "'iou' is now 'foreground_iou' (the pooled foreground-pixel IoU); the paper's Table 2 'IoU' is the "
        "challenge's SEG measure, 'seg'",
    ),
    (
        r'^tta = "dihedral".*$',
        'tta = "rotations"',
        "inference.tta",
        "valid choices: 'none', 'flips', 'dihedral'",
    ),
    (r"^elastic_spacing = .*$", "elastic_spacing = 4.0", "augmentation.elastic_spacing", "must be >= 8 px"),
    (
        r"^elastic_spacing = .*$",
        'elastic_spacing = "wide"',
        "augmentation.elastic_spacing",
        "must be a number",
    ),
    (r"^validation = \[20, ", "validation = [19, 20, ", "data.split.validation", "also in train"),
    (r'^method = "indices"$', 'method = "sequence"', "data.split.train", "takes sequence names"),
    (r'^method = "indices"$', 'method = "kfold"', "data.split.train", "not used with method = 'kfold'"),
    (r"^evaluation = \[25, ", 'evaluation = ["x", ', "data.split.evaluation", "takes sample indices"),
    (r"^dropout = 0.5.*$", "dropout = 1.0", "model.dropout", "[0, 1)"),
    (r"^elastic_sigma = 10.0$", "elastic_sigma = -10.0", "augmentation.elastic_sigma", ">= 0"),
    (
        r'^class_balance = "dataset"$',
        'class_balance = "global"',
        "weightmap.class_balance",
        "'per-image', 'dataset', 'none'",
    ),
    (r"^\[report\]$", 'overrides = ["x=1"]\n[report]', "evaluation.overrides", "unknown key"),
    # the ROPE: a half-width for a listed metric, never negative
    (
        r'^primary = "rand_error"$',
        'primary = "rand_error"\nrope = { rand_error = -0.01 }',
        "evaluation.rope.rand_error",
        "must be >= 0 (a half-width in the metric's units), got -0.01",
    ),
    (
        r'^primary = "rand_error"$',
        'primary = "rand_error"\n[evaluation.rope]\nseg = 0.01',
        "evaluation.rope.seg",
        "'seg' is not one of the metrics listed (warping_error, rand_error",
    ),
    (r'^tta = "dihedral".*$', 'tta = "dihedral"\nborder = "black"', "inference.border", "'mirror', 'zeros'"),
    (
        r'^tiling = "overlap-tile"$',
        'tiling = "isolated"\nborder = "zeros"',
        "inference.border",
        "'zeros' replaces overlap-tile's mirrored context beyond the image; tiling = 'isolated' has none",
    ),
    (
        r"^overlays = .*$",
        'overlays = 3\nsettings_chosen_on = ["25", "25"]',
        "report.settings_chosen_on",
        "twice",
    ),
    (r"^\[data\.split\]$", "[data.split.extra]\n[data.split]", "data.split.extra", "unknown key"),
]


@pytest.mark.parametrize(("old", "new", "key", "fragment"), BAD, ids=[b[2] + ":" + b[3][:20] for b in BAD])
def test_bad_spec_names_file_key_and_what_is_valid(tmp_path, old, new, key, fragment):
    path = _mutated(tmp_path, old, new)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    err = info.value
    assert err.source == str(path)
    assert err.key == key
    assert fragment in err.message
    assert str(err).startswith(f"{path}: {key}: ")
    assert "\n" not in str(err)


def test_sequence_split_on_data_without_sequences_is_refused(tmp_path):
    path = _mutated(tmp_path, r'^method = "indices"$', 'method = "sequence"\n')
    text = path.read_text()
    text = re.sub(r"^train = \[.*$", 'train = ["01"]', text, flags=re.M)
    text = re.sub(r"^validation = \[.*$", "validation = []", text, flags=re.M)
    text = re.sub(r"^evaluation = \[.*$", 'evaluation = ["02"]', text, flags=re.M)
    path.write_text(text)
    with pytest.raises(SpecError, match="data.split.method: isbi2012 has no sequences"):
        load_spec(path)


def test_missing_required_table(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text('name = "x"\n[evaluation]\nmetrics = ["seg"]\nprimary = "seg"\n')
    with pytest.raises(SpecError, match=r"spec.toml: data: missing; this key is required"):
        load_spec(path)


def test_invalid_toml_and_missing_file_name_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\n[data\n')
    with pytest.raises(SpecError, match=r"broken.toml: is not valid TOML"):
        load_spec(path)
    with pytest.raises(SpecError, match=r"nope.toml: no such file"):
        load_spec(tmp_path / "nope.toml")


def test_overrides_replace_validate_and_are_recorded():
    spec = load_spec(EM)
    ablated = apply_overrides(spec, {"weightmap.enabled": False, "training.iterations": 20})
    assert ablated.weightmap.enabled is False and ablated.training.iterations == 20
    assert ablated.overrides == ("weightmap.enabled=false", "training.iterations=20")
    assert spec.weightmap.enabled is True and spec.overrides == ()  # the original is untouched
    assert (
        dataclasses.replace(ablated, weightmap=spec.weightmap, training=spec.training, overrides=()) == spec
    )
    no_tiling = [("inference.tiling", "none"), ("model.padding", "same"), ("inference.tile_size", 512)]
    again = apply_overrides(ablated, [*no_tiling, ("training.tile_size", 512)])
    assert again.overrides[2:4] == ('inference.tiling="none"', 'model.padding="same"')
    assert len(again.overrides) == 6
    assert spec_to_dict(again)["overrides"] == list(again.overrides)


def test_no_overrides_gives_back_the_spec_file():
    spec = load_spec(EM)
    assert apply_overrides(spec, {}) == spec


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("weightmap.sigma", -1.0, "weightmap.sigma: must be > 0"),
        ("training.iteratons", 3, "did you mean 'training.iterations'"),
        ("training", 3, "is a table"),
        ("name.x", 3, "name is not a table"),
        ("model.padding", "full", "valid choices"),
        ("training.tile_size", 570, "556 or 572"),
        ("model.padding", "same", "'overlap-tile' needs model.padding = 'valid'"),
        ("training.checkpoint_minutes", 0, "training.checkpoint_minutes: must be > 0 minutes, got 0.0"),
        ("training.checkpoint_minutes", "often", "training.checkpoint_minutes: must be a number"),
        (
            "training.precision",
            "fp16",
            "training.precision: got a string \"fp16\"; valid choices: 'auto', 'fp32', 'bf16'",
        ),
        ("inference.precision", "half", 'inference.precision: got a string "half"; valid choices'),
        ("training.memory_format", "nhwc", "valid choices: 'auto', 'channels_last', 'contiguous'"),
        ("inference.memory_format", "nhwc", "inference.memory_format"),
        ("training.compile", "yes", "training.compile: must be true or false"),
        ("evaluation.rope.rand_error", -1.0, "evaluation.rope.rand_error: must be >= 0"),
        ("evaluation.rope.v_info", "wide", "evaluation.rope.v_info: must be a number"),
        ("inference.border", "zeros", None),  # valid: overlap-tile with zeros beyond the border
    ],
)
def test_bad_override_is_a_spec_error_naming_the_key(key, value, fragment):
    if fragment is None:
        assert apply_overrides(load_spec(EM), {key: value}, source="--set").inference.border == value
        return
    with pytest.raises(SpecError, match=re.escape(fragment)):
        apply_overrides(load_spec(EM), {key: value}, source="--set")


def test_every_metric_has_a_rope_recorded_and_an_override_changes_one_only():
    from unetbench.metrics import METRICS

    spec = load_spec(EM)
    assert spec.evaluation.rope == {m: METRICS[m].rope for m in spec.evaluation.metrics}
    assert spec.evaluation.rope["rand_error"] == 0.005
    wider = apply_overrides(spec, {"evaluation.rope.rand_error": 0.01})
    assert wider.evaluation.rope == {**spec.evaluation.rope, "rand_error": 0.01}
    assert spec.evaluation.rope["rand_error"] == 0.005  # the frozen spec is not changed
    assert spec_to_dict(wider)["evaluation"]["rope"]["rand_error"] == 0.01  # what a record holds
    fewer = apply_overrides(spec, {"evaluation.metrics": ["rand_error"], "evaluation.primary": "rand_error"})
    assert fewer.evaluation.rope == {"rand_error": 0.005}  # the ROPEs of metrics no longer scored go


def test_parse_override_reads_toml_values():
    assert parse_override("training.iterations=200") == ("training.iterations", 200)
    assert parse_override("weightmap.enabled=false") == ("weightmap.enabled", False)
    assert parse_override("data.dataset=isbi2012") == ("data.dataset", "isbi2012")
    assert parse_override('data.dataset="a b"') == ("data.dataset", "a b")
    assert parse_override("data.split.train=[1, 2]") == ("data.split.train", [1, 2])
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        parse_override("training.iterations")


@pytest.mark.parametrize("path", sorted(CHALLENGES.glob("*.toml")), ids=lambda p: p.name)
def test_dump_reads_back_to_an_equal_spec(tmp_path, path):
    spec = load_spec(path)
    out = tmp_path / "resolved.toml"
    out.write_text(dump_spec(spec))
    assert load_spec(out) == spec


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    description=st.text(max_size=40),
    learning_rate=st.floats(min_value=1e-12, max_value=1e3, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**62),
    shuffle=st.none() | st.integers(min_value=0, max_value=10**9),
)
def test_dump_round_trip_property(tmp_path, description, learning_rate, seed, shuffle):
    spec = apply_overrides(
        load_spec(EM),
        {"description": description, "training.learning_rate": learning_rate, "training.seed": seed},
    )
    if (
        shuffle is not None
    ):  # a shuffled k-fold split: the index lists and k-fold keys swap places in the dump
        kfold = {"data.split.method": "kfold", "data.split.folds": 6, "data.split.shuffle_seed": shuffle}
        spec = apply_overrides(
            spec,
            {**kfold, "data.split.train": [], "data.split.validation": [], "data.split.evaluation": []},
        )
    out = tmp_path / "resolved.toml"
    out.write_text(dump_spec(spec), encoding="utf-8")
    assert load_spec(out) == dataclasses.replace(spec, overrides=())


def test_a_spec_without_a_split_is_refused(tmp_path):
    text = EM.read_text()
    start = text.index("[data.split]")
    end = text.index("[model]")
    path = tmp_path / "spec.toml"
    path.write_text(text[:start] + text[end:])
    with pytest.raises(SpecError, match=r"spec.toml: data.split: missing; this key is required"):
        load_spec(path)


def test_an_override_of_the_split_method_takes_the_old_methods_keys_away():
    spec = load_spec(EM)
    folded = apply_overrides(
        spec, [("data.split.method", "kfold"), ("data.split.folds", 6), ("data.split.fold", 2)]
    )
    assert (folded.data.split.train, folded.data.split.folds, folded.data.split.fold) == ((), 6, 2)
    assert folded.overrides == ('data.split.method="kfold"', "data.split.folds=6", "data.split.fold=2")
    back = apply_overrides(
        folded, [("data.split.method", "indices"), ("data.split.train", [0]), ("data.split.evaluation", [1])]
    )
    assert (back.data.split.method, back.data.split.train, back.data.split.folds) == ("indices", (0,), 5)
    with pytest.raises(SpecError, match="not used with method = 'kfold'"):  # given together: still refused
        apply_overrides(spec, [("data.split.method", "kfold"), ("data.split.train", [0, 1])])
