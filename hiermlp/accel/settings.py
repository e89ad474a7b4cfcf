"""The speed layer's one settings object, read from one environment variable.

``HIERMLP_ACCEL`` is ``1`` (the default: every lever at its measured default), ``0`` (no speed layer:
``create_model`` returns the plain reference modules), or a comma list of overrides such as
``onednn=1,chunk_tokens=0,attention=sdpa`` (``onednn=auto``, the default, leaves the GEMM path to the
machine profile). In code: ``hiermlp.accel.SETTINGS`` and the :func:`override` context manager.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from hiermlp.errors import ConfigError
from hiermlp.overrides import parse_overrides, split_list

ENV = "HIERMLP_ACCEL"


@dataclasses.dataclass
class AccelSettings:
    # master switch: create_model applies the speed layer (accelerate) to the models it builds
    enabled: bool = True
    # float32 CPU linears on oneDNN's inner product with a fused GELU epilogue (True) or MKL's F.linear (False);
    # None: whichever the machine profile measured faster on this machine (accel/machine.py), cached per
    # machine so that its runs stay reproducible
    onednn: bool | None = None
    # CPU inference under bfloat16 autocast: linears call oneDNN's bfloat16 inner product directly (the kernel
    # F.linear reaches there), with the channel MLP's GELU in its epilogue (accel/linear.py)
    onednn_bf16: bool = True
    # CPU inference runs a stage's blocks on at most this many tokens at a time, whole images (0: never split)
    chunk_tokens: int = 4096
    # ... also under CPU autocast (off: there every linear casts its float32 weight to the autocast dtype and
    # oneDNN repacks it on each call, so each chunk pays that again; benchmarks/results/perf_cpu_xeon)
    chunk_autocast: bool = False
    # CPU autograd runs the channel-MLP branch a few images at a time so that its 4C-wide hidden activation
    # stays under this many MiB per call (0: never split): glibc serves blocks over 32 MiB from fresh mmap'd
    # pages, faulted in again on every step
    mlp_chunk_mib: int = 24
    # inference runs window attention a few windows at a time where the position bias plus shift mask of all
    # windows (one N x N map per window and head) would exceed this many MiB (0: never split)
    attn_chunk_mib: int = 16
    # CPU 3-D convolutions of UNETR's blocks (SwinUNETR's decoder) run on channels-last maps (NDHWC), oneDNN's
    # own layout, with instance norms that keep it (accel/volume.py)
    conv_channels_last: bool = True
    # CPU inference: SDPA reads q, k and v as strided views of the qkv projection, windows and heads as
    # (B*nW, heads), instead of copies in the (B, nW*heads) layout (accel/attention.py)
    sdpa_views: bool = True
    # window attention kernel: "auto" (per device, see accel/attention.py), "sdpa" or "explicit"
    attention: str = "auto"
    # CUDA SDPA gets the folded bias as a view with rows padded to a multiple of this (0: unaligned)
    align_mask: int = 16

    def replace(self, **changes: Any) -> AccelSettings:
        from hiermlp.schema import check_fields  # pydantic: imported when a setting changes, not by import hiermlp

        onednn = changes.get("onednn")
        if onednn is not None and not isinstance(onednn, bool):  # strict: a string or a number is no switch
            raise ConfigError(
                f"onednn expects bool or auto, got {type(onednn).__name__} {onednn!r}; "
                "e.g. onednn=auto (the default: the machine profile decides), onednn=1 or onednn=0"
            )
        changes = check_fields(AccelSettings, changes, what="speed-layer setting")
        if changes.get("attention", self.attention) not in ("auto", "sdpa", "explicit"):
            raise ConfigError(f"attention must be 'auto', 'sdpa' or 'explicit', got {changes['attention']!r}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


_SWITCH = {"1": True, "true": True, "on": True, "yes": True, "0": False, "false": False, "off": False, "no": False}


def from_env(text: str | None) -> AccelSettings:
    """Settings from the value of ``HIERMLP_ACCEL`` (None or empty: the defaults).

    The value is ``1``/``0`` (the speed layer on/off) or a comma list of items in hiermlp's ``key=value``
    grammar (:mod:`hiermlp.overrides`), where a switch also takes ``1``/``0``.

    Raises:
        ConfigError: A malformed item, an unknown setting (with the closest ones) or a value of the wrong type.
    """
    base = AccelSettings()
    text = (text or "").strip()
    if not text or text.lower() in _SWITCH:
        return base if _SWITCH.get(text.lower(), True) else base.replace(enabled=False)
    from hiermlp.schema import field_types

    types = field_types(AccelSettings)
    try:
        changes = parse_overrides(split_list(text), types, what="speed-layer setting")
        for key, value in changes.items():  # the 0/1 shorthand of a switch; auto for a per-machine choice
            switch = types[key] in (bool, bool | None)
            if switch and type(value) is int and value in (0, 1):
                changes[key] = bool(value)
            elif types[key] == bool | None and value == "auto":
                changes[key] = None
        return base.replace(**changes)
    except ConfigError as e:
        raise ConfigError(f"{ENV}={text!r}: {e}") from None


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
