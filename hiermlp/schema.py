"""Typed values: check a mapping against a dataclass's field types (or a key -> type mapping) with pydantic.

One checker for every typed set of options (the training config, the speed-layer settings, a compare
preset's sections), strict where a loose reading would be a silent wrong result:

- ``bool`` takes only ``true``/``false``: the string ``"False"`` or the int ``5`` is an error, never truthy;
- ``int`` takes ints and whole floats (``3.0``), never bools or strings; ``float`` takes ints and floats;
- ``str`` takes strings, paths, and numbers as their text; ``None`` is ``""``;
- a tuple takes a list (a lone scalar is one element, ``""``/``None`` none) and checks each element;
- a dict takes a mapping (``None`` is empty);
- a ``Literal`` takes only its values; a class (``nn.Module``) takes its instances, ``type[X]`` subclasses of X.

:func:`check_fields` checks a mapping against a dataclass (a config); :func:`check_arguments` checks the
arguments of a call against the callable's annotations (a model or mixer constructor: ``shift="False"`` or
``qkv_bias=5`` is an error there too, whichever entry point the value came from).

Every failure is one line that names the key (``betas[1]``), the value, the expected type and, for a
dataclass field, an example (its default) in the ``key=value`` grammar of :mod:`hiermlp.overrides`.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import inspect
import numbers
import operator
import os
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Strict, TypeAdapter, ValidationError

from hiermlp.errors import ConfigError
from hiermlp.overrides import format_value, unknown_key

__all__ = ["check_arguments", "check_fields", "check_value", "field_types"]

_MISSING = dataclasses.MISSING


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """A dataclass's fields -> their resolved type hints (string annotations evaluated)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _whole(v: Any) -> Any:
    if isinstance(v, numbers.Integral) and not isinstance(v, bool | int):  # numpy's ints
        return int(v)
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


def _exact_int(v: Any) -> Any:
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool | int) else v


def _strict(tp: Any, exact: bool = False) -> Any:
    """``tp`` with the strictness of the module docstring; ``exact``: an int must be an integer (a value that
    is checked, not converted, reaches its user as it was given)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        return Annotated[bool, Strict()]
    if tp is int:
        return Annotated[int, Strict(), BeforeValidator(_exact_int if exact else _whole)]
    if tp is float:
        return Annotated[float, Strict()]
    if tp is str:
        return Annotated[str, Strict(), BeforeValidator(_text)]
    if origin is tuple:
        inner = tuple(a if a is Ellipsis else _strict(a, exact) for a in args)
        return Annotated[tuple[inner], BeforeValidator(_elements)]
    if origin is list:
        return list[_strict(args[0], exact)] if args else list
    if origin is collections.abc.Sequence:
        return collections.abc.Sequence[_strict(args[0], exact)] if args else collections.abc.Sequence
    if origin is dict or tp is dict:
        return Annotated[dict[args[0], _strict(args[1], exact)] if args else dict, BeforeValidator(_empty)]
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, (_strict(a, exact) for a in args))
    return tp


@functools.lru_cache(maxsize=512)
def _adapter(tp: Any, exact: bool = False) -> TypeAdapter:
    # a class pydantic has no schema for (nn.Module, torch.Tensor) is checked with isinstance
    return TypeAdapter(_strict(tp, exact), config=ConfigDict(arbitrary_types_allowed=True))


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"{len(args)} values ({', '.join(map(_type_name, args))})"
    if origin in (list, collections.abc.Sequence):
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is type:
        return f"a subclass of {_type_name(args[0])}" if args else "a class"
    if origin is collections.abc.Callable or tp is collections.abc.Callable:
        return "a callable"
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
        elif origin in (list, collections.abc.Sequence) and isinstance(part, int):
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
    if fixed and value is None and not loc:  # None read as no values: name what was given
        return f"{key} expects {_type_name(at)}, got None"
    if fixed and error["type"] in ("missing", "too_short", "too_long"):
        seq = value
        for part in loc[:used]:
            seq = seq[part]
        seq = _elements(seq)
        n = len(seq) if isinstance(seq, list | tuple) else 1
        return f"{key}{path} needs {len(typing.get_args(at))} values, got {n}: {seq!r}"
    given = error.get("input", value)
    return f"{key}{path} expects {_type_name(at)}, got {type(given).__name__} {given!r}"


def check_value(key: str, value: Any, tp: Any, *, default: Any = _MISSING, exact: bool = False) -> Any:
    """``value`` converted to ``tp`` (see the module docstring).

    Raises:
        ConfigError: One line: ``key``, the value, the expected type and ``key=default`` as an example.
    """
    try:
        return _adapter(tp, exact).validate_python(value)
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


@functools.lru_cache(maxsize=512)
def _annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    """The resolvable parameter annotations of ``fn`` (a class: its ``__init__``); unresolvable ones are left out."""
    target = fn.__init__ if isinstance(fn, type) else fn
    target = inspect.unwrap(target)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # a name only imported under TYPE_CHECKING: check what resolves one by one
        hints = {}
        raw = getattr(target, "__annotations__", {})
        namespace = getattr(target, "__globals__", {})
        for name, ann in raw.items():
            try:
                hints[name] = (
                    eval(ann, namespace) if isinstance(ann, str) else ann
                )  # what get_type_hints does, per name
            except Exception:
                continue
    hints.pop("return", None)
    usable = {}
    for name, tp in hints.items():
        try:
            _adapter(tp, True)
        except Exception:  # a type pydantic cannot express: that argument is the callable's own business
            continue
        usable[name] = tp
    return usable


def check_arguments(fn: Callable[..., Any], arguments: Mapping[str, Any], *, what: str = "") -> None:
    """Check each argument against ``fn``'s annotation of that parameter (a class: its ``__init__``'s).

    Arguments without an annotation (or with one pydantic cannot express) are not checked; nothing is
    converted: the callable gets the values it was given.

    Args:
        fn: The function or class whose parameters are annotated.
        arguments: Parameter name -> the value passed.
        what: Names the callable in the message (``"mixer 'attention'"``); empty for none.

    Raises:
        ConfigError: One line: the callable, the argument, the value and the expected type.
    """
    hints = _annotations(fn)
    for key, value in arguments.items():
        tp = hints.get(key)
        if tp is None or tp is Any:
            continue
        try:
            check_value(key, value, tp, exact=True)
        except ConfigError as e:
            raise ConfigError(f"{what}: {e}" if what else str(e)) from None
