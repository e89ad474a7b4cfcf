"""Independent reference formulations and test helpers, shared by the tests and the benchmarks.

Each reference is written from the paper and the official code's public layout (its parameter names), not
from hiermlp's modules, so converting its weights with hiermlp's loader and comparing outputs is a real
check. Nothing here is imported by the library itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from hiermlp import accel

__all__ = ["TINY_SWIN", "fast", "randomize_", "set_fast"]

# a Swin small enough for CPU unit tests: 4 stages, window 4, 32x32 input
TINY_SWIN = dict(
    img_size=32,
    patch_size=2,
    embed_dim=16,
    depths=(2, 2, 2, 2),
    num_heads=(1, 2, 2, 4),
    window_size=4,
    num_classes=10,
    drop_path_rate=0.0,
)


def randomize_(model: nn.Module, std: float = 0.02) -> nn.Module:
    """Noise on every parameter (norms and biases included: they init to 1/0) and random BatchNorm statistics,
    so a conversion that drops or misplaces any tensor shows in the outputs."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * std)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def set_fast(model: nn.Module, on: bool) -> nn.Module:
    """The speed layer on (:func:`hiermlp.accel.accelerate`) or off (:func:`hiermlp.accel.plain`), in place."""
    return accel.accelerate(model) if on else accel.plain(model)


@contextlib.contextmanager
def fast(model: nn.Module, on: bool) -> Iterator[nn.Module]:
    """``set_fast(model, on)`` inside a ``with`` block; the model's previous state is restored after."""
    was = accel.is_accelerated(model)
    set_fast(model, on)
    try:
        yield model
    finally:
        set_fast(model, was)
