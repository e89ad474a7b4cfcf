"""``torch.compile`` that keeps the batch dimension symbolic and every other size static.

A hiermlp model's geometry (the window rule, padding, shift masks, relative-position indices) is Python
arithmetic on the input's spatial size. Under torch's default dynamic shapes, a second input size retraces
the model with symbolic sizes: every one of those computations becomes a symbolic expression with guards,
and the recompile takes many times the first compile. :func:`compile_model` compiles with
``dynamic=False`` instead, so at each spatial size the geometry is constants computed while tracing and a
new size compiles a new static graph (about as fast as the first), and marks only the dimension that no
geometry depends on, the batch, as dynamic: one graph serves every batch size from 2 up (dynamo
specialises a batch of 1, one more graph).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["BatchDynamic", "compile_model", "mark_batch_dynamic"]


def mark_batch_dynamic(x: Any) -> Any:
    """Mark dimension 0 of a tensor as dynamic for the next compiled call (a hint: a graph that needs it static
    keeps it static); other values pass through."""
    if isinstance(x, torch.Tensor) and x.dim() > 0:
        torch._dynamo.maybe_mark_dynamic(x, 0)
    return x


class BatchDynamic(nn.Module):
    """A compiled module whose tensor inputs get their batch dimension marked dynamic before every call."""

    def __init__(self, compiled: nn.Module) -> None:
        super().__init__()
        self.compiled = compiled

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.compiled(*map(mark_batch_dynamic, args), **kwargs)


def compile_model(model: nn.Module, *, backend: str = "inductor", fullgraph: bool = False) -> nn.Module:
    """``model`` compiled with static sizes except the batch (see the module docstring); call it as ``model``.

    The parameters stay ``model``'s own: save and load ``model``, not the returned wrapper.
    """
    return BatchDynamic(torch.compile(model, backend=backend, fullgraph=fullgraph, dynamic=False))
