"""Typed values: check a mapping against a dataclass's field types (or a key -> type mapping) with pydantic.

One checker for every typed set of options (the training config, the speed-layer settings, a compare
preset's sections), strict where a loose reading would be a silent wrong result:

- ``bool`` takes only ``true``/``false``: the string ``"False"`` or the int ``5`` is an error, never truthy;
- ``int`` takes ints and whole floats (``3.0``), never bools or strings; ``float`` takes ints and floats;
- ``str`` takes strings, paths, and numbers as their text; ``None`` is ``""``;
- a tuple takes a list (a lone scalar is one element, ``""``/``None`` none) and checks each element;
- a dict takes a mapping (``None`` is empty).

Every failure is one line that names the key (``betas[1]``), the value, the expected type and, for a
dataclass field, an example (its default) in the ``key=value`` grammar of :mod:`hiermlp.overrides`.
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import os
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, Strict, TypeAdapter, ValidationError

from hiermlp.errors import ConfigError
from hiermlp.overrides import format_value, unknown_key

__all__ = ["check_fields", "check_value", "field_types"]

_MISSING = dataclasses.MISSING


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's fields -> their resolved type hints (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _whole(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _text(v: Any) -> Any:
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if v is None:
        return ""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return str(v)
    return v


def _elements(v: Any) -> Any:
    if v is None or v == "":
        return []
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return [v]  # a scalar where a tuple is expected: one element (mean=0.5)
    return v


def _empty(v: Any) -> Any:
    return {} if v is None else v


def _strict(tp: Any) -> Any:
    """``tp`` with the strictness of the module docstring."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return Annotated[bool, Strict()]
    if tp is int:
        return Annotated[int, Strict(), BeforeValidator(_whole)]
    if tp is float:
        return Annotated[float, Strict()]
    if tp is str:
        return Annotated[str, Strict(), BeforeValidator(_text)]
    if origin is tuple:
        inner = tuple(a if a is Ellipsis else _strict(a) for a in args)
        return Annotated[tuple[inner], BeforeValidator(_elements)]
    if origin is list:
        return list[_strict(args[0])] if args else list
    if origin is dict or tp is dict:
        return Annotated[dict[args[0], _strict(args[1])] if args else dict, BeforeValidator(_empty)]
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_strict(a) for a in args))
    return tp


@functools.cache
def _adapter(tp: Any) -> TypeAdapter:
    return TypeAdapter(_strict(tp))


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"{len(args)} values ({', '.join(map(_type_name, args))})"
    if origin is list:
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _walk(tp: Any, loc: tuple[Any, ...]) -> tuple[str, Any, int]:
    """Follow pydantic's error location ``loc`` through ``tp``: the path text, the type there, parts used."""
    path = ""
    for used, part in enumerate(loc):
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is tuple and isinstance(part, int):
            variadic = len(args) == 2 and args[1] is Ellipsis
            if not variadic and part >= len(args):
                return path, tp, used
            path, tp = path + f"[{part}]", args[0] if variadic else args[part]
        elif origin is list and isinstance(part, int):
            path, tp = path + f"[{part}]", args[0]
        elif origin is dict or tp is dict:
            is_key = loc[used + 1 : used + 2] == ("[key]",)  # pydantic's mark of a failed key, not its value
            path, tp = path + f".{part}", (args[0 if is_key else 1] if args else Any)
            if is_key:
                return path, tp, len(loc)
        else:
            return path, tp, used
    return path, tp, len(loc)


def _message(key: str, value: Any, tp: Any, error: Mapping[str, Any]) -> str:
    loc = tuple(error["loc"])
    if error["type"] == "missing":  # a fixed tuple too short: the location is the first missing element
        loc = loc[:-1]
    path, at, used = _walk(tp, loc)
    fixed = typing.get_origin(at) is tuple and not (len(typing.get_args(at)) == 2 and typing.get_args(at)[1] is ...)
    if fixed and error["type"] in ("missing", "too_short", "too_long"):
        seq = value
        for part in loc[:used]:
            seq = seq[part]
        seq = _elements(seq)
        n = len(seq) if isinstance(seq, list | tuple) else 1
        return f"{key}{path} needs {len(typing.get_args(at))} values, got {n}: {seq!r}"
    given = error.get("input", value)
    return f"{key}{path} expects {_type_name(at)}, got {type(given).__name__} {given!r}"


def check_value(key: str, value: Any, tp: Any, *, default: Any = _MISSING) -> Any:
    """``value`` converted to ``tp`` (see the module docstring).

    Raises:
        ConfigError: One line: ``key``, the value, the expected type and ``key=default`` as an example.
    """
    try:
        return _adapter(tp).validate_python(value)
    except ValidationError as e:
        text = _message(key, value, tp, e.errors(include_url=False)[0])
        if default is not _MISSING:
            text += f"; e.g. {key}={format_value(default)} (the default)"
        raise ConfigError(text) from None


def check_fields(schema: type | Mapping[str, Any], values: Mapping[str, Any], *, what: str = "key") -> dict[str, Any]:
    """``values`` (any subset of the schema's keys) checked and converted to the schema's types.

    Args:
        schema: A dataclass (its fields' types, and their defaults as examples in errors) or key -> type.
        values: The values to check.
        what: What a key is called in an unknown-key error.

    Raises:
        ConfigError: An unknown key (with the closest known ones) or a value of the wrong type.
    """
    defaults: dict[str, Any] = {}
    if isinstance(schema, type):
        defaults = {f.name: f.default for f in dataclasses.fields(schema)}
        schema = field_types(schema)
    out = {}
    for key, value in values.items():
        if key not in schema:
            raise unknown_key(key, schema, what=what)
        out[key] = check_value(key, value, schema[key], default=defaults.get(key, _MISSING))
    return out
