"""The context a module runs in: eager code, a compiler, an exporter, ``torch.fx``, a functorch transform, hooks.

The speed layer reads these to step aside: traced code takes the plain modules' composition (compilers fuse it
themselves, exporters need plain ops), nothing traced reads or fills the eager-mode caches (whose keys are
Python values a graph cannot guard on), and a fused path never skips a module that forward hooks observe.
The plain modules never ask.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.fx._symbolic_trace import is_fx_symbolic_tracing as _is_fx_symbolic_tracing
from torch.nn.modules import module as _module  # the global forward-hook registries

from hiermlp.ops import is_symbolic

__all__ = ["functorch_active", "hooked", "is_exporting", "is_fx_tracing", "is_symbolic", "is_tracing"]


def is_exporting() -> bool:
    """True under ``torch.export`` (and the ONNX exporter built on it), TorchScript tracing or ONNX export."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return exporting() or torch.jit.is_tracing() or (hasattr(torch, "onnx") and torch.onnx.is_in_onnx_export())


def is_tracing() -> bool:
    """True under ``torch.compile``/``torch.export``, TorchScript tracing or ONNX export."""
    return torch.compiler.is_compiling() or is_exporting()


def is_fx_tracing() -> bool:
    """True while ``torch.fx.symbolic_trace`` (or timm's / torchvision's feature extractors) traces a model:
    fast paths step aside for the plain modules, whose size-dependent geometry runs as wrapped calls."""
    return _is_fx_symbolic_tracing()


_functorch_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)


def functorch_active() -> bool:
    """True inside a functorch transform (``vmap``, ``grad``): hand-written kernels and autograd functions
    step aside there for the plain ops the transforms know."""
    return _functorch_transforms_active()


def hooked(*modules: nn.Module) -> bool:
    """Whether calling these modules would run forward hooks (then a fused path, which skips their
    ``forward``, must not be taken: the hooks would silently not fire)."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)
