"""The block's fast paths: one-gather window geometry, masks only where they mask, fused residuals, chunking.

Same function as :class:`~hiermlp.models.block.HierBlock` (tests/test_fast_paths.py):

* window geometry (pad + shift + partition, and back + crop) as one indexed copy each way, the indices from
  the bounded geometry LRU (:func:`hiermlp.ops.cached_window_index`), instead of five or six copies;
* no mask where it would allow everything (an unshifted window of an unpadded map);
* the channel MLP's residual add inside ``fc2``'s kernel, drop path and residual as one ``addcmul``;
* CPU inference on a few images at a time (``SETTINGS.chunk_tokens``): every block is independent per
  image, and smaller intermediates stay cache-resident and reuse allocator memory.

Traced code (``torch.compile``, ``torch.export``, ONNX) takes the plain composition, which compilers fuse
themselves, with the same mask rule; ``torch.fx`` symbolic tracing takes the plain block unchanged.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath
from torch import nn

from hiermlp.accel import settings
from hiermlp.accel.linear import FastMlp
from hiermlp.models.block import HierBlock
from hiermlp.ops import (
    actual_window,
    cached_window_index,
    cached_window_mask,
    crop_to,
    cyclic_shift,
    gather_windows,
    is_exporting,
    is_fx_tracing,
    is_symbolic,
    is_tracing,
    pad_to_multiple,
    scatter_windows,
)


def drops_paths(drop: nn.Module) -> bool:
    """Whether ``drop`` is a ``DropPath`` that currently drops anything (training, with a rate above 0)."""
    return isinstance(drop, DropPath) and drop.training and drop.drop_prob > 0.0


def add_drop_path(x: torch.Tensor, y: torch.Tensor, drop: nn.Module) -> torch.Tensor:
    """``x + drop(y)`` where ``drop`` is timm's ``DropPath`` (or ``nn.Identity``), in one pass when training.

    Same distribution as ``DropPath``: each sample's branch is kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)``; ``addcmul`` applies the per-sample factor and the residual add together.
    """
    if not isinstance(drop, DropPath):
        return x + drop(y)
    if not drops_paths(drop):
        return x + y
    keep = 1.0 - drop.drop_prob
    factor = y.new_empty((y.shape[0],) + (1,) * (y.ndim - 1)).bernoulli_(keep)
    if keep > 0.0 and drop.scale_by_keep:
        factor.div_(keep)
    return torch.addcmul(x, y, factor)


class FastHierBlock(HierBlock):
    """:class:`HierBlock` on the fast paths (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_fx_tracing():
            return super().forward(x)
        b, h, w, _ = x.shape
        chunk = settings.current().chunk_tokens
        inference = not self.training and not torch.is_grad_enabled() and not is_exporting()
        if inference and chunk and b > 1 and x.device.type == "cpu" and not is_symbolic(b, h, w) and b * h * w > chunk:
            return torch.cat([self._forward(part) for part in x.split(max(1, chunk // (h * w)))])
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_placement != "pre" or not isinstance(self.ls1, nn.Identity):
            return super().forward(x)
        x = add_drop_path(x, self.token_mix(self.norm1(x)), self.drop_path1)
        if self.mlp is not None:
            if isinstance(self.mlp, FastMlp) and not drops_paths(self.drop_path2):
                x = self.mlp.forward_residual(self.norm2(x), x)
            else:
                x = add_drop_path(x, self.mlp(self.norm2(x)), self.drop_path2)
        return x

    def window_mix(self, x: torch.Tensor) -> torch.Tensor:
        if is_fx_tracing():
            return super().window_mix(x)
        b, h, w, c = x.shape
        if is_tracing() or is_symbolic(h, w) or not settings.current().gather:
            return self._window_mix_traced(x)
        ws, shift = actual_window((h, w), self.window_size, self.shift_size, self.crops)
        if (h, w) == ws and not any(shift):  # one window covering the map, unshifted: no copy at all
            return self.call_mixer(x.reshape(b, h * w, c), None, ws).view_as(x)
        fwd, inv, padded_size, padded = cached_window_index((h, w), ws, shift, self.shift_mode, device=x.device)
        mask = None
        if self.shift_mode == "roll" and (any(shift) or padded):
            mask = cached_window_mask(padded_size, ws, shift, (h, w), device=x.device)
        windows = gather_windows(x, fwd, ws[0] * ws[1], padded=padded)
        return scatter_windows(self.call_mixer(windows, mask, ws), inv, b, (h, w))

    def _window_mix_traced(self, x: torch.Tensor) -> torch.Tensor:
        """The plain composition, with a mask only where one is needed (decided on static sizes)."""
        if self.shift_mode != "roll":
            return super().window_mix(x)
        h, w = x.shape[1], x.shape[2]
        ws, shift = actual_window((h, w), self.window_size, self.shift_size, self.crops)
        x = pad_to_multiple(x, ws)
        hp, wp = x.shape[1], x.shape[2]
        needs_mask = is_symbolic(h, w) or any(shift) or (hp, wp) != (h, w)
        mask = cached_window_mask((hp, wp), ws, shift, (h, w), device=x.device) if needs_mask else None
        x = cyclic_shift(x, shift)
        x = self.mix_windows(x, mask, ws)
        x = cyclic_shift(x, (-shift[0], -shift[1]))
        return crop_to(x, (h, w))
