"""One decoder from plain values to frozen dataclasses, driven by their annotations.

TOML specs (:mod:`unetbench.spec`), JSON records (:mod:`unetbench.records.run_record`) and the training log
inside a checkpoint are plain dicts, lists, numbers and strings; :func:`decode` checks each value against the
annotation of the field it fills and builds the dataclasses. A value that does not fit raises :class:`Problem`
with the dotted place (``training.iterations``, ``sessions[2].pid``) and what is wrong; the caller turns it
into its one line (a :class:`~unetbench.errors.SpecError`, a :class:`~unetbench.errors.UserError` naming the
file).

The two kinds of file speak differently, and a :class:`Dialect` says how: a spec refuses keys it does not
know (with the closest valid key) and non-finite numbers, names TOML's types and shows the value; a record
ignores keys a later unetbench added and names JSON's types.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal


class Problem(Exception):
    """A value that does not fit its annotation: ``where`` (dotted) and ``message``."""

    def __init__(self, where: str, message: str):
        super().__init__(message)
        self.where, self.message = where, message


class ValueProblem(Exception):
    """Raised by a dataclass's ``__post_init__`` for a value its own rules refuse: ``key`` (relative to
    the dataclass) and ``message``; :func:`decode` reports it at that key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key, self.message = key, message


@dataclass(frozen=True)
class Dialect:
    table: str  # the word for a mapping ("a table", "an object")
    describe: Callable[[Any], str]  # a found value, as the message shows it
    type_words: dict[type, str]  # what a scalar type is called in "must be ..."
    strict: bool  # refuse unknown keys and non-finite numbers
    missing: str  # the message for a required key that is absent
    fields: Callable[[type], dict[str, dataclasses.Field]] = lambda cls: {
        f.name: f for f in dataclasses.fields(cls)
    }


def join(where: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else key


def decode(tp: Any, value: Any, where: str, dialect: Dialect) -> Any:
    """``value`` as annotation ``tp`` says (module docstring); raises :class:`Problem`."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _table(tp, value, where, dialect)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if value not in args or type(value) is not type(args[0]):
            choices = ", ".join(repr(c) for c in args)
            raise Problem(where, f"got {dialect.describe(value)}; valid choices: {choices}")
        return value
    if origin in (typing.Union, types.UnionType):
        return _union(args, value, where, dialect)
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise Problem(where, f"must be {dialect.type_words[list]}, got {dialect.describe(value)}")
        items = [decode(args[0], v, join(where, i), dialect) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise Problem(where, f"must be {dialect.table}, got {dialect.describe(value)}")
        return {k: decode(args[1], v, join(where, k), dialect) for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Problem(where, f"must be {dialect.type_words[float]}, got {dialect.describe(value)}")
        if dialect.strict and not math.isfinite(value):
            raise Problem(where, f"must be a finite number, got {value}")
        return float(value)
    if tp in (bool, int, str):
        if type(value) is not tp:
            raise Problem(where, f"must be {dialect.type_words[tp]}, got {dialect.describe(value)}")
        return value
    raise TypeError(f"annotation {tp!r} at {where} is not supported by the decoder")  # a bug, not input


def _table(cls: type, value: Any, where: str, dialect: Dialect) -> Any:
    if not isinstance(value, dict):
        shown = f"{dialect.table} ([{where}])" if dialect.strict and where else dialect.table
        raise Problem(where, f"must be {shown}, got {dialect.describe(value)}")
    fields = dialect.fields(cls)
    hints = typing.get_type_hints(cls)
    if dialect.strict:
        for key in value:
            if key not in fields:
                raise unknown_key(where, key, fields)
    kwargs = {
        name: decode(hints[name], item, join(where, name), dialect)
        for name, item in value.items()
        if name in fields
    }
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in kwargs:
            raise Problem(join(where, name), dialect.missing)
    try:
        return cls(**kwargs)
    except ValueProblem as problem:
        raise Problem(join(where, problem.key), problem.message) from None


def _union(members: tuple, value: Any, where: str, dialect: Dialect) -> Any:
    if value is None and type(None) in members:
        return None
    members = tuple(m for m in members if m is not type(None))
    tables = [m for m in members if dataclasses.is_dataclass(m)]
    if tables and isinstance(value, dict):  # an optional table: its own errors name the key inside it
        return decode(tables[0], value, where, dialect)
    problems = []
    for member in members:
        try:
            return decode(member, value, where, dialect)
        except Problem as problem:
            problems.append(problem.message)
    if not dialect.strict:
        raise Problem(where, problems[0])
    wanted = " or ".join(dialect.type_words.get(m, str(m)) for m in members)
    raise Problem(where, f"must be {wanted}, got {dialect.describe(value)}")


def unknown_key(where: str, key: str, fields, shown: str = "") -> Problem:
    """The problem of a key the table does not have, with the closest valid key as a suggestion."""
    close = difflib.get_close_matches(key, list(fields), n=1)
    hint = f" (did you mean {join(where, close[0])!r}?)" if close else ""
    return Problem(shown or join(where, key), f"unknown key{hint}; valid keys here: {', '.join(fields)}")
