"""Window multi-head self-attention (Swin's W-MSA / SW-MSA)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers import RelativePositionBias
from hiermlp.mixers.base import register_mixer


def mask_to_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool ``(..., N, N)`` mask to an additive one: 0 where allowed, -inf where not.

    The reference adds -100; -inf gives the same softmax to float32 precision and stays exact in bf16.
    Every row has at least one allowed entry (a token may always attend to itself), so no row is all -inf.
    """
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


@register_mixer("attention")
class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, ``(B*nW, N, C) -> (B*nW, N, C)``.

    qkv projection, relative position bias added to the logits, the (shifted-window) mask, then
    ``F.scaled_dot_product_attention`` (a fused kernel where the device has one) and an output projection.
    The parameter names are the reference's (``qkv``, ``proj``, ``relative_position_bias_table``).

    Args:
        dim: Channels C.
        window_size: ``(wh, ww)``; None for a global window (then there is no position bias).
        num_heads: Heads; must divide ``dim``.
        qkv_bias: Bias on the qkv projection.
        attn_drop: Dropout on attention weights.
        proj_drop: Dropout after the output projection.
        rel_pos: Learn a relative position bias table.
    """

    honours_mask = True

    def __init__(
        self,
        dim: int,
        *,
        window_size: tuple[int, int] | None,
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
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rel_pos = (
            RelativePositionBias(window_size=window_size, num_heads=num_heads)
            if rel_pos and window_size is not None
            else None
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three heads d) -> three b heads n d", three=3, heads=self.num_heads)
        bias = None if self.rel_pos is None else self.rel_pos().to(q.dtype)  # (heads, N, N)
        if mask is not None:
            # windows are batch-major, so (B*nW) splits as (B, nW) and the mask broadcasts over B
            n_win = mask.shape[0]
            q, k, v = (rearrange(t, "(b w) heads n d -> b (w heads) n d", w=n_win) for t in (q, k, v))
            attn_bias = mask_to_bias(mask[:, None], q.dtype)  # (nW, 1, N, N)
            if bias is not None:
                attn_bias = attn_bias + bias
            attn_bias = rearrange(attn_bias.expand(-1, self.num_heads, -1, -1), "w heads n m -> (w heads) n m")
        else:
            attn_bias = bias
        x = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_bias, dropout_p=self.attn_drop if self.training else 0.0
        )
        if mask is not None:
            x = rearrange(x, "b (w heads) n d -> (b w) n (heads d)", heads=self.num_heads)
        else:
            x = rearrange(x, "b heads n d -> b n (heads d)")
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"
