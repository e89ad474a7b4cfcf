"""Swin-MLP's spatial MLP with its masked weight cached in inference."""

from __future__ import annotations

import torch

from hiermlp.accel.cache import derived
from hiermlp.accel.trace import is_fx_tracing, is_tracing
from hiermlp.mixers.spatial_mlp import SpatialMlp


class FastSpatialMlp(SpatialMlp):
    """:class:`SpatialMlp` whose per-window masked weight ``(nW, heads, N, N)`` is built once per mask while no
    gradient flows to the weight (validated by content, :mod:`hiermlp.accel.cache`)."""

    def masked_weight(self, mask: torch.Tensor, window_size: tuple[int, int] | None = None) -> torch.Tensor:
        w = self.weight
        if is_tracing() or is_fx_tracing() or (w.requires_grad and torch.is_grad_enabled()):
            return super().masked_weight(mask, window_size)
        window = tuple(window_size) if window_size is not None else self.window_size
        return derived(
            self,
            ("masked", w.dtype, str(w.device), window),
            (mask,),
            (w,),
            lambda: super(FastSpatialMlp, self).masked_weight(mask, window),
        )
