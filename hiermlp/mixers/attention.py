"""Window multi-head self-attention (Swin's W-MSA / SW-MSA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers import RelativePositionBias
from hiermlp.mixers.base import register_mixer

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("rearrange")


def mask_to_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool ``(..., N, N)`` mask to an additive one: 0 where allowed, -inf where not.

    The reference adds -100; -inf gives the same softmax to float32 precision and stays exact in bf16.
    Every row has at least one allowed entry (a token may always attend to itself), so no row is all -inf.
    """
    return torch.zeros_like(mask, dtype=dtype).masked_fill_(~mask, float("-inf"))


@register_mixer("attention")
class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, ``(B*nW, N, C) -> (B*nW, N, C)``.

    ``softmax(q k^T / sqrt(d) + bias) v`` per head, with ``bias`` the relative position bias plus the
    shifted-window mask (-inf where two tokens may not interact), then an output projection. The parameter
    names are the reference's (``qkv``, ``proj``, ``relative_position_bias_table``). The speed layer
    (:mod:`hiermlp.accel`) swaps in a subclass that picks the attention kernel per device and caches the
    folded bias; this class is the definition it is tested against.

    Args:
        dim: Channels C.
        window_size: ``(wh, ww)``; None for a global window (then there is no position bias).
        num_heads: Heads; must divide ``dim``.
        qkv_bias: Bias on the qkv projection.
        attn_drop: Dropout on attention weights.
        proj_drop: Dropout after the output projection.
        rel_pos: Learn a relative position bias table.

    ``forward(x, mask, window_size)``: ``window_size`` is the window the block actually partitioned, the
    top-left part of the built one when the map is smaller (``crop_modes``); None means the built window.
    """

    honours_mask = True
    # a map smaller than the window runs as a smaller window: with the padding masked out (roll mode), the
    # logits among the real tokens are those of the sub-window with the sub-matrix of the position bias, so
    # cropping is the same function (not with zero padding, which real tokens would attend to)
    crop_modes = ("roll",)

    def __init__(
        self,
        dim: int,
        *,
        window_size: tuple[int, ...] | None,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rel_pos: bool = True,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ConfigError(f"attention: num_heads={num_heads} must be >= 1 and divide dim={dim}")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rel_pos = (
            RelativePositionBias(window_size=window_size, num_heads=num_heads)
            if rel_pos and window_size is not None
            else None
        )

    def attn_bias(
        self, mask: torch.Tensor | None, dtype: torch.dtype, window_size: tuple[int, ...] | None = None
    ) -> torch.Tensor | None:
        """Position bias plus shift mask, ``-> (1, nW*heads, N, N)`` (``nW = 1`` without a mask) or None.

        ``window_size``: the window actually run (the top-left part of the built one), None for the built one.
        """
        bias = None if self.rel_pos is None else self.rel_pos(window_size).to(dtype)[None]  # (1, heads, N, N)
        if mask is not None:
            folded = mask_to_bias(mask[:, None], dtype)  # (nW, 1, N, N)
            bias = folded if bias is None else folded + bias
        if bias is None:
            return None
        return rearrange(bias.expand(-1, self.num_heads, -1, -1), "w heads n m -> 1 (w heads) n m")

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, window_size: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        x = self.multi_head(self.qkv(x), mask, window_size)
        return self.proj_drop(self.proj(x))

    def multi_head(
        self, qkv: torch.Tensor, mask: torch.Tensor | None, window_size: tuple[int, ...] | None
    ) -> torch.Tensor:
        """Multi-head attention of projected windows, ``(B*nW, N, 3C) -> (B*nW, N, C)``: the heads split out,
        :meth:`attend`, the heads merged back (a hook: the speed layer keeps CPU inference in the projection's
        own memory layout)."""
        nw = 1 if mask is None else mask.shape[0]
        # windows are batch-major: (B*nW) splits as (B, nW), and the (nW*heads) bias broadcasts over B
        q, k, v = rearrange(
            qkv, "(b w) n (three heads d) -> three b (w heads) n d", w=nw, three=3, heads=self.num_heads
        )
        x = self.attend(q, k, v, mask, window_size)
        return rearrange(x, "b (w heads) n d -> (b w) n (heads d)", w=nw)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        window_size: tuple[int, ...] | None,
    ) -> torch.Tensor:
        """``softmax(q k^T * scale + attn_bias) v`` with attention dropout, ``(B, nW*heads, N, d) -> same``.

        The kernel (a hook: the speed layer picks one per device and caches the bias)."""
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=self.attn_bias(mask, q.dtype, window_size),
            dropout_p=self.attn_drop if self.training else 0.0,
            scale=self.scale,
        )

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"
