"""Challenge spec files: TOML in, TOML out, and overrides.

A spec is parsed once, with :mod:`tomllib`, into the dataclasses of :mod:`unetbench.spec.schema`; the parser
is driven by their type annotations (:mod:`unetbench.spec.decoding`): an unknown key, a value of the wrong
type, a choice outside a ``Literal`` or an impossible value raises :class:`~unetbench.errors.SpecError` naming
the file, the dotted key and what would be valid, before any data is read or any network is built.

Command-line flags and ablation variants change a spec only through overrides (:func:`with_overrides`), which
re-validate the whole spec and record each override in ``ChallengeSpec.overrides`` so that a run's record says
what it ran with.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from unetbench.errors import SpecError
from unetbench.spec.decoding import Dialect, Problem, decode, join, unknown_key

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib
from unetbench.spec.schema import ChallengeSpec, SplitSpec

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


# How the decoder (unetbench.spec.decoding) speaks of a spec: TOML's words, the value shown, unknown keys
# refused.
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
    """Read a challenge spec file and check the spec's own rules
    (:func:`unetbench.challenges.loading.load_spec`
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
    return dataclasses.replace(new, overrides=tuple(recorded), source=spec.source)


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


def with_default_rope(evaluation):
    """``evaluation`` with a ROPE for every metric it lists: the spec's own, else the metric table's
    default (:data:`unetbench.metrics.names.METRICS`), so that a record holds every value its verdicts
    used."""
    from unetbench.metrics.names import METRICS

    rope = {m: evaluation.rope.get(m, METRICS[m].rope) for m in evaluation.metrics}
    return dataclasses.replace(evaluation, rope=rope)
