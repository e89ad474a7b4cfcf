"""Scaled cosine window attention with a continuous position bias (Swin V2's W-MSA / SW-MSA)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers.cpb import ContinuousPositionBias
from hiermlp.mixers.base import register_mixer

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("rearrange")

# the reference clamps the learned log scale at log(1/0.01): logits are at most 100 * cos(q, k)
LOGIT_SCALE_MAX = math.log(1.0 / 0.01)

# Forbidden pairs get -100 added, as in the reference and timm, not -inf: cosine logits are bounded
# (|logit| <= 100 + 16), so -100 is what trained V2 weights saw, and keeping it keeps them exact at any
# logit scale. Every row keeps an allowed entry (a token always sees itself).
MASK_VALUE = -100.0


def _ntuple(v: int | tuple[int, ...] | list[int], n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


@register_mixer("cosine_attention")
class CosineWindowAttention(nn.Module):
    """Swin V2 window attention, ``(B*nW, N, C) -> (B*nW, N, C)``.

    ``softmax(cos(q, k) * exp(min(logit_scale, log 100)) + 16 sigmoid(cpb(coords))[index] + mask) v``, then
    an output projection. q and v have biases, k has none; ``logit_scale`` is learned per head (init log 10).
    The position bias comes from :class:`~hiermlp.layers.cpb.ContinuousPositionBias` over log-spaced
    coordinates normalised by ``pretrained_window_size``, so the same weights run at any window.

    Parameter names are timm's and the reference's (``qkv.weight``, ``q_bias``, ``v_bias``, ``logit_scale``,
    ``cpb_mlp.*``, ``proj.*``); the coordinate table and index are derived per window, never stored.

    The qkv projection is called as a module and the q/v biases added after it (timm's ``qkv_bias_separate``
    form), so a wrapped or replaced ``qkv`` (LoRA, quantisation, the speed layer's linears) is never bypassed.

    Args:
        dim: Channels C.
        window_size: ``(wh, ww)``, or one size per spatial axis (the CPB MLP then takes that many coordinates).
        num_heads: Heads; must divide ``dim``.
        pretrained_window_size: Window the weights were trained at (an int or one per axis); 0 = this window.
        qkv_bias: Learn q and v biases.
        attn_drop: Dropout on attention weights.
        proj_drop: Dropout after the output projection.
    """

    kind = "window"
    honours_mask = True

    def __init__(
        self,
        dim: int,
        *,
        window_size: tuple[int, ...] | None,  # None (a global window) is refused with its own message
        num_heads: int,
        pretrained_window_size: int | tuple[int, ...] = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ConfigError(f"cosine_attention: num_heads={num_heads} must be >= 1 and divide dim={dim}")
        if window_size is None:
            raise ConfigError("cosine_attention needs a window: its position bias is defined over window offsets")
        ndim = len(window_size)
        pretrained = _ntuple(pretrained_window_size, ndim)
        if len(pretrained) != ndim or any(not isinstance(p, int) or p < 0 for p in pretrained):
            raise ConfigError(
                f"cosine_attention: pretrained_window_size must be an int or {ndim} ints >= 0 (one per axis), "
                f"got {pretrained_window_size!r}"
            )
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = tuple(window_size)
        self.pretrained_window_size = pretrained
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = ContinuousPositionBias(num_heads=num_heads, spatial_dims=ndim)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def init_weights(self) -> None:
        """The reference init: trunc-normal(0.02) linears (the CPB MLP's too), zero biases, scale log 10."""
        for fc in (self.qkv, self.proj, self.cpb_mlp[0], self.cpb_mlp[2]):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            if fc.bias is not None:
                nn.init.zeros_(fc.bias)
        for b in (self.q_bias, self.v_bias):
            if b is not None:
                nn.init.zeros_(b)
        nn.init.constant_(self.logit_scale, math.log(10.0))

    def attn_bias(self, mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        """Position bias plus shift mask, ``-> (heads, N, N)`` or ``(nW, heads, N, N)``.

        Built from the parameters on every call: nothing parameter-derived is cached.
        """
        bias = self.cpb_mlp.position_bias(self.window_size, self.pretrained_window_size).to(dtype)  # (heads, N, N)
        if mask is None:
            return bias
        forbid = torch.zeros_like(mask, dtype=dtype).masked_fill_(~mask, MASK_VALUE)  # (nW, N, N)
        return bias + forbid[:, None]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        qkv = self.qkv(x)
        if self.q_bias is not None:
            qkv = qkv + torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        nw = 1 if mask is None else mask.shape[0]
        # windows are batch-major: (B*nW) splits as (B, nW) and the per-window bias broadcasts over B
        q, k, v = rearrange(qkv, "(b w) n (three heads d) -> three b w heads n d", w=nw, three=3, heads=self.num_heads)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        attn = attn * torch.clamp(self.logit_scale, max=LOGIT_SCALE_MAX).exp() + self.attn_bias(mask, attn.dtype)
        attn = attn.softmax(-1)
        if self.training and self.attn_drop > 0:
            attn = F.dropout(attn, p=self.attn_drop)
        x = rearrange(attn @ v, "b w heads n d -> (b w) n (heads d)")
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, window_size={self.window_size}, "
            f"pretrained_window_size={self.pretrained_window_size}, num_heads={self.num_heads}"
        )
