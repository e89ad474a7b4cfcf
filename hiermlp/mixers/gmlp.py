"""gMLP's block body: channel projections around a spatial gating unit, restricted to a window."""

from __future__ import annotations

import math

import torch
from einops import einsum, rearrange
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.mixers.base import register_mixer
from hiermlp.ops import crop_tokens

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("einsum")
torch.fx.wrap("rearrange")
# a sub-window crop checks sizes: an opaque call under torch.fx
torch.fx.wrap("crop_tokens")


class SpatialGatingUnit(nn.Module):
    """Gate one half of the channels by a spatial linear map of the other, ``(B*nW, N, 2D) -> (B*nW, N, D)``.

    ``u, v = split(x)``; ``v = LayerNorm(v)``; ``v[n] = sum_m weight[heads, n, m] * v[m] + bias[heads, n]`` per
    head; out ``= u * v``. With ``num_heads=1`` this is timm's ``SpatialGatingUnit`` (``proj`` =
    ``Linear(N, N)`` over tokens). Like :class:`~hiermlp.mixers.spatial_mlp.SpatialMlp` the map is linear in
    the tokens, so a mask multiplies its weight per window; the bias is left unmasked.

    Args:
        dim: Channels of the input (both halves), 2D.
        num_tokens: Tokens per window N.
        num_heads: Heads of the spatial map; must divide D.
        norm_eps: Epsilon of the gate LayerNorm (timm builds it with ``nn.LayerNorm``'s default, 1e-5).
    """

    def __init__(self, dim: int, *, num_tokens: int, num_heads: int = 1, norm_eps: float = 1e-5) -> None:
        super().__init__()
        if dim % 2 or (dim // 2) % num_heads:
            raise ConfigError(f"gmlp: the gate width {dim} must be even and its half divisible by heads={num_heads}")
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(dim // 2, eps=norm_eps)
        self.weight = nn.Parameter(torch.empty(num_heads, num_tokens, num_tokens))
        self.bias = nn.Parameter(torch.empty(num_heads, num_tokens))
        self.init_weights()

    def init_weights(self) -> None:
        """gMLP's near-identity start: spatial weight ~ N(0, 1e-6), bias 1, so the gate begins as ``u``."""
        nn.init.normal_(self.weight, std=1e-6)
        nn.init.ones_(self.bias)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        crop: tuple[tuple[int, ...], tuple[int, ...] | None] | None = None,
    ) -> torch.Tensor:
        """``crop = (window, sub_window)``: the tokens are those of the top-left ``sub_window`` of a ``window``
        (for a map smaller than the window), so the map is the weight's rows and columns for them."""
        u, v = x.chunk(2, dim=-1)
        v = self.norm(v)
        weight, bias = self.weight, self.bias
        if crop is not None:
            weight = crop_tokens(weight, crop[0], crop[1], dims=(1, 2))
            bias = crop_tokens(bias, crop[0], crop[1], dims=(1,))
        if mask is None:
            v = rearrange(v, "b n (heads d) -> b heads n d", heads=self.num_heads)
            v = einsum(weight, v, "heads n m, b heads m d -> b heads n d") + bias[..., None]
            v = rearrange(v, "b heads n d -> b n (heads d)")
        else:
            weight = weight * mask[:, None].to(weight.dtype)  # (nW, heads, N, N)
            v = rearrange(v, "(b w) n (heads d) -> b w heads n d", w=mask.shape[0], heads=self.num_heads)
            v = einsum(weight, v, "w heads n m, b w heads m d -> b w heads n d") + bias[..., None]
            v = rearrange(v, "b w heads n d -> (b w) n (heads d)")
        return u * v


@register_mixer("gmlp")
class GatedMlp(nn.Module):
    """The gMLP block body, ``(B*nW, N, C) -> (B*nW, N, C)``: ``fc2(sgu(gelu(fc1(x))))``.

    It carries its own channel projections, so build its blocks with ``mlp_ratio=0``. Names follow timm's
    ``GatedMlp`` (``fc1``, ``gate.norm``, ``fc2``; timm's ``gate.proj.weight (N, N)`` is ``gate.weight (1, N, N)``
    here), so ``gmlp_s16_224`` converts by renaming and a reshape.

    ``honours_mask = True``: the gate's token map is linear, so the block rolls and masks it. Unlike
    ``spatial_mlp``, the reference-style zero-padding shift (``shift_mode="pad"``) is *not* the same function
    here: padded tokens are zero before ``fc1`` but not after ``fc1``, GELU and the gate norm, so with padding
    the gate would also see a constant border token. The masked roll mixes real tokens of one region only.

    Args:
        dim: Channels C.
        window_size: ``(wh, ww)`` (one size per spatial axis), ``N = prod(window_size)``.
        num_heads: Heads of the spatial gating map (1 in the gMLP paper); must divide ``ffn_ratio*C/2``.
        ffn_ratio: ``fc1`` width / C (gMLP-S: 6); half of it is gated, half gates.
        gate_norm_eps: Epsilon of the gate LayerNorm.
        drop: Dropout after ``fc1``'s activation and after ``fc2``.
    """

    honours_mask = True
    # a map smaller than the window runs as a smaller window in roll mode: the padding is masked out of the
    # gate's linear token map and everything else is per token, so the real outputs are those of the gate's
    # weight rows and columns for the real tokens (not with zero padding: see above)
    crop_modes = ("roll",)

    def __init__(
        self,
        dim: int,
        *,
        window_size: tuple[int, ...] | None,  # None (a global window) is refused with its own message
        num_heads: int,
        ffn_ratio: float = 6.0,
        gate_norm_eps: float = 1e-5,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        if window_size is None:
            raise ConfigError("gmlp needs a fixed window_size: its spatial weight is (heads, N, N)")
        hidden = int(dim * ffn_ratio)
        self.dim = dim
        self.window_size = tuple(window_size)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.gate = SpatialGatingUnit(
            hidden, num_tokens=math.prod(window_size), num_heads=num_heads, norm_eps=gate_norm_eps
        )
        self.fc2 = nn.Linear(hidden // 2, dim)
        self.drop2 = nn.Dropout(drop)

    def init_weights(self) -> None:
        """timm's gMLP init: trunc-normal(0.02) projections, zero biases, the gate's near-identity start."""
        for fc in (self.fc1, self.fc2):
            nn.init.trunc_normal_(fc.weight, std=0.02)
            nn.init.zeros_(fc.bias)
        nn.init.ones_(self.gate.norm.weight)
        nn.init.zeros_(self.gate.norm.bias)
        self.gate.init_weights()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, window_size: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        x = self.drop1(self.act(self.fc1(x)))
        x = self.gate(x, mask, crop=(self.window_size, window_size))  # (B*nW, N, hidden/2)
        return self.drop2(self.fc2(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.gate.num_heads}"
