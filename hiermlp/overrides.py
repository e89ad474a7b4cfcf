"""The one ``key=value`` grammar of hiermlp: ``hiermlp train``, ``bench -k``, ``compare``, ``HIERMLP_ACCEL``, ``--set``.

One item is ``key=value``:

- the value is read as YAML (:func:`parse_value`): ``3`` an int, ``1e-3`` a float, ``true``/``false`` a bool,
  ``null`` None, ``[1, 2]`` a list (``(1, 2)`` too, as Python writes tuples), ``{a: 1}`` a mapping, anything else
  a string; ``key=`` is the empty string.
  YAML 1.1 leaves exponents without a dot (``1e-3``) as strings; here they are floats, in files too.
- a dotted key sets inside nested mappings (``model_kwargs.embed_dim=48``), creating them; an undotted key
  replaces the whole value (``model_kwargs={embed_dim: 48}``).
- leading dashes are dropped and dashes in keys read as underscores (``--warmup-epochs=2``).

A *schema* (key -> type, or key -> nested schema for a section with known keys) makes an unknown key an
error that suggests the closest known ones, and keeps the text of a value whose type is ``str`` verbatim
(``out_dir=007`` is the string ``"007"``, not the int 7). Checking the values against their types is the
caller's next step (:mod:`hiermlp.schema`), so a wrong type is named where the value is used, whatever
entry point it came from.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from hiermlp.errors import ConfigError, suggest

__all__ = [
    "format_value",
    "load_yaml",
    "parse_overrides",
    "parse_value",
    "split_item",
    "split_list",
    "unknown_key",
]


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load``'s reading, plus exponent floats without a dot (``1e-3``, ``5E4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """A YAML document read with the grammar's types (the reading of presets and config files).

    Raises:
        yaml.YAMLError: Malformed YAML (the caller names the file and the line).
    """
    return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain values only, never objects


def parse_value(text: str, *, key: str = "") -> Any:
    """``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"[1, 2]"`` -> [1, 2], ``""`` -> ``""`` (see the module docstring).

    Raises:
        ConfigError: The text is not valid YAML (one line naming the item and the fix).
    """
    stripped = text.strip()
    if not stripped:
        return ""
    if stripped.startswith("(") and stripped.endswith(")"):  # a Python tuple is the YAML flow sequence
        inner = stripped[1:-1]
        text = f"[{inner}]" if "," in inner or not inner.strip() else inner  # (3) is 3, as in Python
    try:
        return load_yaml(text)
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"cannot parse the value of {key}={text!r}: {problem}; quote it or fix its YAML (e.g. {key}='[1, 2]')"
        ) from None


def format_value(value: Any) -> str:
    """The value text that :func:`parse_value` reads back as ``value`` (``False`` -> ``false``, ``()`` -> ``[]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return value if value and parse_value(value) == value else repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {format_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def split_item(item: str) -> tuple[str, str]:
    """``"--warmup-epochs=2"`` -> ``("warmup_epochs", "2")``: the normalised key and the raw value text.

    Raises:
        ConfigError: No ``=``, or nothing before it.
    """
    key, sep, raw = item.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not of the form key=value; write it as {key or 'KEY'}=VALUE")
    return key, raw


def split_list(text: str) -> list[str]:
    """Split a comma list of items at the commas outside brackets and quotes: ``"a=[1, 2],b=x"`` -> two items."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [s.strip() for s in items if s.strip()]


def unknown_key(key: str, known: Iterable[str], *, what: str = "key") -> ConfigError:
    """The error for a key no schema knows: the closest known keys, else all of them."""
    known = sorted(known)
    hint = suggest(key.rsplit(".", 1)[-1], known, n=3)
    return ConfigError(f"unknown {what} '{key}'." + (hint or f" Valid: {', '.join(known)}."))


def _is_section(tp: Any) -> bool:
    return isinstance(tp, Mapping)


def _is_free(tp: Any) -> bool:
    """A value that may hold any keys below it (a dict field, Any, or no schema)."""
    return tp is None or tp is Any or tp is dict or typing.get_origin(tp) is dict


def parse_overrides(
    items: Iterable[str],
    schema: type | Mapping[str, Any] | Iterable[str] | None = None,
    *,
    base: Mapping[str, Any] | None = None,
    what: str = "key",
) -> dict[str, Any]:
    """Apply ``key=value`` items in order to a copy of ``base`` (default: an empty dict) and return it.

    Args:
        items: ``key=value`` strings (see the module docstring).
        schema: None (any key), the known top-level keys, key -> type / nested schema, or a dataclass (its
            fields' types). A ``str`` type keeps the value's text verbatim; a dotted key may only enter a
            nested schema or a dict-typed key.
        base: The values the items change; never modified (the mappings along a dotted key are copied).
        what: What a key is called in an error (``"config key"``, ``"speed-layer setting"``).

    Returns:
        The updated mapping; values are typed by YAML, not yet checked against the schema's types.

    Raises:
        ConfigError: A malformed item, an unknown key (with the closest known ones), a dotted key into a value
            that is not a mapping, or unparsable YAML. One line naming the item and the fix.
    """
    if dataclasses.is_dataclass(schema) and isinstance(schema, type):
        hints = typing.get_type_hints(schema)
        schema = {f.name: hints[f.name] for f in dataclasses.fields(schema)}
    elif schema is not None and not isinstance(schema, Mapping):
        schema = dict.fromkeys(schema)
    out: dict[str, Any] = dict(base or {})
    for item in items:
        key, raw = split_item(item)
        parts = key.split(".")
        if any(not p for p in parts):
            raise ConfigError(f"override {item!r} has an empty part in its key; write it as a.b=VALUE")
        level: Mapping[str, Any] | None = schema
        tp: Any = None
        for i, part in enumerate(parts):
            if level is not None and part not in level:
                raise unknown_key(".".join(parts[: i + 1]), level, what=what)
            tp = level[part] if level is not None else None
            if i == len(parts) - 1:
                break
            if not (_is_section(tp) or _is_free(tp)):
                prefix = ".".join(parts[: i + 1])
                raise ConfigError(f"'{prefix}' is not a dict field, so '{key}' is not a valid key; set {prefix}=VALUE")
            level = tp if _is_section(tp) else None
        value = raw if tp is str else parse_value(raw, key=key)
        d = out
        for i, part in enumerate(parts[:-1]):
            inner = d.get(part)
            if inner is None:
                inner = {}
            elif not isinstance(inner, Mapping):
                prefix = ".".join(parts[: i + 1])
                raise ConfigError(
                    f"'{prefix}' is {inner!r}, not a mapping, so '{key}' cannot set inside it; set {prefix}=VALUE"
                )
            d[part] = dict(inner)
            d = d[part]
        d[parts[-1]] = value
    return out
