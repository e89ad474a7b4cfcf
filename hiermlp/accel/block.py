"""The block's fast paths: one-gather window geometry, masks only where they mask, fused residuals, chunking.

Same function as :class:`~hiermlp.models.block.HierBlock` (tests/test_fast_paths.py):

* window geometry (pad + shift + partition, and back + crop) as one indexed copy each way, the indices from
  the bounded geometry LRU (:func:`hiermlp.accel.gather.cached_window_index`), instead of five or six copies;
* no mask where it would allow everything (an unshifted window of an unpadded map);
* the channel MLP's residual add inside ``fc2``'s kernel, drop path and residual as one ``addcmul``;
* CPU inference on a few images at a time (``SETTINGS.chunk_tokens``): every block is independent per
  image, and smaller intermediates stay cache-resident and reuse allocator memory;
* with autograd on CPU, the channel-MLP branch on a few images at a time (``SETTINGS.mlp_chunk_mib``), so
  its hidden activations stay small enough for glibc to reuse heap memory instead of mapping (and
  page-faulting) fresh memory on every step; only where the branch is per-image and draws no random
  numbers but the drop-path factor, which is drawn once for the whole batch.

Traced code (``torch.compile``, ``torch.export``, ONNX) takes the plain composition, which compilers fuse
themselves, with the same mask rule; ``torch.fx`` symbolic tracing takes the plain block unchanged.
"""

from __future__ import annotations

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from hiermlp.accel import settings
from hiermlp.accel.gather import cached_window_index, gather_windows, scatter_windows
from hiermlp.accel.linear import FastMlp
from hiermlp.accel.trace import hooked, is_exporting, is_fx_tracing, is_symbolic, is_tracing
from hiermlp.models.block import HierBlock
from hiermlp.ops import actual_window, cached_window_mask, crop_to, cyclic_shift, pad_to_multiple


def drops_paths(drop: nn.Module) -> bool:
    """Whether ``drop`` is a ``DropPath`` that currently drops anything (training, with a rate above 0)."""
    return isinstance(drop, DropPath) and drop.training and drop.drop_prob > 0.0


def drop_path_factor(drop: DropPath, y: torch.Tensor) -> torch.Tensor:
    """``DropPath``'s per-sample factor for a batch like ``y``: 0, or ``1 / (1 - p)`` with probability
    ``1 - p`` (the same draws as ``DropPath`` itself)."""
    keep = 1.0 - drop.drop_prob
    factor = y.new_empty((y.shape[0],) + (1,) * (y.ndim - 1)).bernoulli_(keep)
    if keep > 0.0 and drop.scale_by_keep:
        factor.div_(keep)
    return factor


def add_drop_path(x: torch.Tensor, y: torch.Tensor, drop: nn.Module) -> torch.Tensor:
    """``x + drop(y)`` where ``drop`` is timm's ``DropPath`` (or ``nn.Identity``), in one pass when training.

    Same distribution as ``DropPath``: each sample's branch is kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)``; ``addcmul`` applies the per-sample factor and the residual add together.
    """
    if not isinstance(drop, DropPath):
        return x + drop(y)
    if not drops_paths(drop):
        return x + y
    return torch.addcmul(x, y, drop_path_factor(drop, y))


def per_image_and_deterministic(*modules: nn.Module) -> bool:
    """Whether these modules compute each image on its own and draw no random numbers: no BatchNorm in
    training (batch statistics) and no active dropout."""
    for m in (sub for module in modules for sub in module.modules()):
        if m.training and (
            isinstance(m, nn.modules.batchnorm._BatchNorm) or (isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0)
        ):
            return False
    return True


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
        if self.mlp is None:
            return x
        images = self._mlp_chunk(x)
        if images:
            return self._chunked_mlp_branch(x, images)
        return self._mlp_branch(x, None)

    def _mlp_branch(self, x: torch.Tensor, factor: torch.Tensor | None) -> torch.Tensor:
        """``x + drop_path2(mlp(norm2(x)))``; ``factor``: drop path's per-image factor, drawn already."""
        if factor is not None:
            return torch.addcmul(x, self.mlp(self.norm2(x)), factor)
        if isinstance(self.mlp, FastMlp) and not drops_paths(self.drop_path2) and not hooked(self.mlp):
            return self.mlp.forward_residual(self.norm2(x), x)
        return add_drop_path(x, self.mlp(self.norm2(x)), self.drop_path2)

    def _mlp_chunk(self, x: torch.Tensor) -> int:
        """Images per channel-MLP call with autograd on CPU (``SETTINGS.mlp_chunk_mib``); 0: the whole batch."""
        budget = settings.current().mlp_chunk_mib * 2**20
        b, h, w, _ = x.shape
        fc1 = getattr(self.mlp, "fc1", None)
        if (
            not budget
            or b < 2
            or x.device.type != "cpu"
            or not torch.is_grad_enabled()
            or is_exporting()
            or is_symbolic(b, h, w)
            or not isinstance(self.mlp, Mlp)
            or not isinstance(fc1, nn.Linear)
            or not isinstance(self.drop_path2, (DropPath, nn.Identity))
        ):
            return 0
        images = max(1, budget // (h * w * fc1.out_features * x.element_size()))
        if images >= b or not per_image_and_deterministic(self.norm2, self.mlp):
            return 0
        return images

    def _chunked_mlp_branch(self, x: torch.Tensor, images: int) -> torch.Tensor:
        # drop path's factor is drawn for the whole batch, as the unsplit branch draws it (nothing else in the
        # branch draws random numbers), so the result is the same function and the same draws
        factor = drop_path_factor(self.drop_path2, x) if drops_paths(self.drop_path2) else None
        parts = x.split(images)
        factors = factor.split(images) if factor is not None else [None] * len(parts)
        return torch.cat([self._mlp_branch(part, f) for part, f in zip(parts, factors)])

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
