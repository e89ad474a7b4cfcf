"""The speed layer's one settings object, read from one environment variable.

``HIERMLP_ACCEL`` is ``1`` (the default: every lever at its measured default), ``0`` (no speed layer:
``create_model`` returns the plain reference modules), or a comma list of overrides such as
``onednn=0,chunk_tokens=0,attention=sdpa``. In code: ``hiermlp.accel.SETTINGS`` and the
:func:`override` context manager.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from hiermlp.errors import ConfigError

ENV = "HIERMLP_ACCEL"


@dataclasses.dataclass
class AccelSettings:
    # master switch: create_model applies the speed layer (accelerate) to the models it builds
    enabled: bool = True
    # float32 CPU linears on oneDNN's inner product with a fused GELU epilogue. Off by default:
    # whether it beats MKL's sgemm depends on the machine and its load (benchmarks/results/perf_cpu has the
    # lever measured both ways); a per-process timing choice would make runs irreproducible, so it is opt-in
    onednn: bool = False
    # CPU inference runs a stage's blocks on at most this many tokens at a time, whole images (0: never split)
    chunk_tokens: int = 4096
    # CPU autograd runs the channel-MLP branch a few images at a time so that its 4C-wide hidden activation
    # stays under this many MiB per call (0: never split): glibc serves blocks over 32 MiB from fresh mmap'd
    # pages, faulted in again on every step
    mlp_chunk_mib: int = 24
    # window attention kernel: "auto" (per device, see accel/attention.py), "sdpa" or "explicit"
    attention: str = "auto"
    # CUDA SDPA gets the folded bias as a view with rows padded to a multiple of this (0: unaligned)
    align_mask: int = 16

    def replace(self, **changes: Any) -> AccelSettings:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown speed-layer setting(s) {unknown}; known: {self.names()}")
        for name, value in changes.items():
            changes[name] = _coerce(name, value, type(getattr(self, name)))
        if changes.get("attention", self.attention) not in ("auto", "sdpa", "explicit"):
            raise ConfigError(f"attention must be 'auto', 'sdpa' or 'explicit', got {changes['attention']!r}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def _coerce(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, str):
        text = value.strip().lower()
        if kind is bool:
            if text in ("1", "true", "on", "yes"):
                return True
            if text in ("0", "false", "off", "no"):
                return False
        elif kind is int:
            try:
                return int(text)
            except ValueError:
                pass
        else:
            return text
        raise ConfigError(f"{ENV}: {name}={value!r} is not a valid {kind.__name__}")
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ConfigError(f"speed-layer setting {name} must be {kind.__name__}, got {value!r}")
    return value


def from_env(text: str | None) -> AccelSettings:
    """Settings from the value of ``HIERMLP_ACCEL`` (None or empty: the defaults)."""
    base = AccelSettings()
    text = (text or "").strip()
    if not text or text.lower() in ("1", "true", "on", "yes"):
        return base
    if text.lower() in ("0", "false", "off", "no"):
        return base.replace(enabled=False)
    changes = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{ENV}={text!r}: expected 0, 1 or key=value pairs such as onednn=0,chunk_tokens=0")
        changes[key.strip()] = value
    return base.replace(**changes)


SETTINGS = from_env(os.environ.get(ENV))


def current() -> AccelSettings:
    return SETTINGS


@contextlib.contextmanager
def override(**changes: Any) -> Iterator[AccelSettings]:
    """Change speed-layer settings inside a ``with`` block (A/B comparisons, tests); restored after."""
    global SETTINGS
    previous = SETTINGS
    SETTINGS = previous.replace(**changes)
    try:
        yield SETTINGS
    finally:
        SETTINGS = previous
