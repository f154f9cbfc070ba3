"""Typed records in and out of JSON: the one place that turns the records' dataclasses into JSON and back,
checking every field's presence and type on the way in (:mod:`unetbench.spec.decoding` with JSON's words).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from unetbench import __version__
from unetbench.errors import UserError
from unetbench.spec.decoding import Dialect, Problem, decode
from unetbench.system.atomic_writes import atomic_write_json, json_ready


def to_json(record: Any) -> Any:
    """A record as JSON-ready values (:func:`~unetbench.system.atomic_writes.json_ready`); non-finite floats
    become None."""
    return json_ready(dataclasses.asdict(record))


def write_json_record(path: Path, record: Any) -> Path:
    return atomic_write_json(path, to_json(record))


def read_json_record(path: Path, cls: type, *, what: str, schema: int):
    """Read ``path`` as a ``cls``; every problem is one :class:`UserError` naming the file and the field."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot be read ({err})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err}); is it {what}?") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path}: holds {_json_type(payload)}, not {what} (a JSON object)")
    found = payload.get("schema")
    if found != schema:
        raise UserError(
            f"{path}: schema {found!r}, but this unetbench ({__version__}) reads schema {schema}; "
            "render it with the unetbench that wrote it, or run again"
        )
    try:
        return from_plain(cls, payload)
    except Problem as problem:
        raise UserError(
            f"{path}: {problem.where or 'the record'}: {problem.message}; is it {what}?"
        ) from None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    if isinstance(value, bool) or type(value) in names:
        return names[type(value)]
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


# How the decoder (unetbench.spec.decoding) speaks of a record: JSON's words; keys a later unetbench added are
# ignored, so that records stay readable within a schema.
JSON = Dialect(
    table="an object",
    describe=_json_type,
    type_words={float: "a number", int: "a number", str: "a string", bool: "a boolean", list: "a list"},
    strict=False,
    missing="missing",
)


PlainProblem = Problem  # what from_plain raises: ``where`` (the field) and ``message``


def from_plain(cls: type, value: Any, where: str = "") -> Any:
    """Plain values (dicts, lists, numbers, strings: JSON, or a checkpoint's part) as a ``cls``, checked
    against its annotations; a field that does not fit raises :data:`PlainProblem`."""
    return decode(cls, value, where, JSON)
