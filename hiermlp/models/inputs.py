"""The checks every network runs on its arguments and inputs, and timm's feature-index convention.

Each failure is a one-line :class:`~hiermlp.errors.ConfigError` (arguments) or
:class:`~hiermlp.errors.ShapeError` (inputs) that names the fix.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from hiermlp.errors import ConfigError, ShapeError


def per_stage(value: Any, n: int, name: str) -> tuple:
    """A scalar (or dict) for every stage, or a tuple/list with exactly one entry per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(f"{name} has {len(value)} entries but the model has {n} stages: give one per stage")
        return tuple(value)
    return (value,) * n


def to_ntuple(v: int | Sequence[int], n: int, name: str) -> tuple[int, ...]:
    """An int for every one of ``n`` spatial axes, or one int per axis, as a tuple; else a ConfigError."""
    t = tuple(v) if isinstance(v, (list, tuple)) else (v,) * n
    if len(t) != n or not all(isinstance(i, int) and not isinstance(i, bool) for i in t):
        what = {1: "an int", 2: "a pair of ints", 3: "a triple of ints"}.get(n, f"{n} ints")
        raise ConfigError(f"{name} must be an int or {what} (one per spatial axis), got {v!r}")
    return t


# how the input of a model with 1, 2 or 3 spatial axes is written in messages
INPUT_AXES = {1: "L", 2: "H, W", 3: "T, H, W"}


def check_number(value: Any, name: str, *, low: float, high: float = math.inf, integer: bool = False, strict_low=False):
    """``value`` if it is a number in range, else a ConfigError naming ``name``, the value and the range."""
    kind = numbers.Integral if integer else numbers.Real
    bad_type = not isinstance(value, kind) or isinstance(value, bool) or not math.isfinite(value)
    if bad_type or not (value > low if strict_low else value >= low) or value > high:
        bound = f"> {low}" if strict_low else f">= {low}"
        rng = f"{bound}" + (f" and <= {high}" if high != math.inf else "")
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'} {rng}, got {value!r}")
    return value


def check_images(
    x: torch.Tensor, in_chans: int, weight: torch.Tensor, patch: int | tuple[int, ...] = 1, spatial_dims: int = 2
) -> torch.Tensor:
    # ``weight``: any parameter of the model, for its dtype
    """``x`` if it is a batch of images (clips, volumes, sequences) this model can take, else a ShapeError
    that names the fix."""
    axes = INPUT_AXES.get(spatial_dims, "...")
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"expected a tensor of images (B, {in_chans}, {axes}), got {type(x).__name__}")
    if x.ndim != spatial_dims + 2 or x.shape[1] != in_chans:
        channels = x.shape[1] if x.ndim == spatial_dims + 2 else "..."
        raise ShapeError(
            f"expected {'images' if spatial_dims == 2 else f'{spatial_dims}-D inputs'} of shape "
            f"(B, {in_chans}, {axes}), got {tuple(x.shape)}; build the model "
            f"with in_chans={channels} (and spatial_dims={x.ndim - 2 if x.ndim > 2 else '...'}) or convert the input"
        )
    if x.shape[0] == 0:
        raise ShapeError("got an empty batch (0 images); pass at least one image")
    patch = (patch,) * spatial_dims if isinstance(patch, int) else tuple(patch)
    if any(s < p for s, p in zip(x.shape[2:], patch)):
        size, need = "x".join(str(s) for s in x.shape[2:]), "x".join(map(str, patch))
        raise ShapeError(
            f"input {size} is smaller than one {need} patch; resize it to at "
            f"least {need} (the model was trained near its pretrained_cfg input_size)"
        )
    if not x.is_floating_point():
        raise ShapeError(
            f"images are {x.dtype}, the model takes floating point; convert them, e.g. x.float() / 255 "
            "then normalise with the model's pretrained_cfg mean/std"
        )
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(torch.device(x.device).type):  # input check
        raise ShapeError(
            f"images are {x.dtype} but the model's weights are {weight.dtype}; use x.to({weight.dtype}), "
            f"model.to({x.dtype}), or torch.autocast"
        )
    return x


def stage_indices(n: int, indices: int | Sequence[int] | None, noun: str = "stages") -> list[int]:
    """timm's convention: None -> all, int k -> the last k, sequence -> those (negative from the end)."""
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ConfigError(f"cannot take the last {indices} of {n} {noun}")
        return list(range(n - indices, n))
    out = [i % n if -n <= i < n else None for i in indices]
    if None in out:
        raise ConfigError(f"{noun[:-1]} indices {tuple(indices)} out of range for {n} {noun} (0..{n - 1})")
    return out
