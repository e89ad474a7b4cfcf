"""sMLPNet's fusion without the concatenation.

``fuse(cat(x, x_row, x_col))`` with ``fuse`` a bias-free linear of ``3C -> C`` is ``x @ W1ᵀ + x_row @ W2ᵀ +
x_col @ W3ᵀ`` for the three column blocks of its weight: three GEMMs accumulating into one output, with no
3C-wide copy written and read back. Equal to the plain fusion up to float32 summation order
(tests/test_fast_paths.py checks values and gradients).
"""

from __future__ import annotations

import torch
from torch import nn

from hiermlp.accel.linear import FastLinear
from hiermlp.accel.trace import hooked, is_fx_tracing
from hiermlp.mixers.smlp import SparseMlp


class FastSparseMlp(SparseMlp):
    """:class:`~hiermlp.mixers.smlp.SparseMlp` whose fusion runs as three accumulating GEMMs."""

    def fuse_parts(self, x: torch.Tensor, x_row: torch.Tensor, x_col: torch.Tensor) -> torch.Tensor:
        fuse = self.fuse
        # a wrapped or replaced fuse (LoRA, quantised), or one with hooks, keeps its own forward
        if is_fx_tracing() or type(fuse) not in (nn.Linear, FastLinear) or fuse.bias is not None or hooked(fuse):
            return super().fuse_parts(x, x_row, x_col)
        c = x.shape[-1]
        w = fuse.weight
        out = torch.mm(x.reshape(-1, c), w[:, :c].t())
        out = out.addmm_(x_row.reshape(-1, c), w[:, c : 2 * c].t())
        out = out.addmm_(x_col.reshape(-1, c), w[:, 2 * c :].t())
        return out.view(*x.shape[:-1], w.shape[0])
