"""Honest baselines: no mixing, average pooling, and global (quadratic) attention."""

from __future__ import annotations

import torch
from einops import einsum, rearrange
from torch import nn

from hiermlp.mixers.attention import WindowAttention
from hiermlp.mixers.base import register_mixer

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("einsum")
torch.fx.wrap("rearrange")


@register_mixer("identity")
class IdentityMixer(nn.Module):
    """No token mixing, ``(B*nW, N, C) -> (B*nW, N, C)``: the model is a stack of channel MLPs.

    MetaFormer's lower bound: what the rest of the architecture achieves without any spatial interaction.

    Args:
        dim: Channels C.
        window_size: Unused (part of the window-mixer contract).
    """

    honours_mask = True  # nothing crosses any boundary
    crop_modes = ("roll", "pad")  # per token: any window is the same function

    def __init__(self, dim: int, *, window_size: tuple[int, ...] | None) -> None:
        super().__init__()
        self.dim = dim

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, window_size: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        return x


@register_mixer("pool")
class PoolMixer(nn.Module):
    """PoolFormer's mixer within a window: the window average minus the token, ``(B*nW, N, C) -> (B*nW, N, C)``.

    Parameter-free. With a mask each token averages over the tokens it may interact with (its own region),
    so shifted windows and padding never leak.

    Args:
        dim: Channels C.
        window_size: Unused beyond the contract (the window is whatever the block partitions).
    """

    honours_mask = True
    # with the padding masked out (roll mode) a token averages its region's real tokens, those of the
    # cropped window; zero padding (pad mode) would enter the average, so no crop there
    crop_modes = ("roll",)

    def __init__(self, dim: int, *, window_size: tuple[int, ...] | None) -> None:
        super().__init__()
        self.dim = dim

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, window_size: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        if mask is None:
            return x.mean(dim=1, keepdim=True) - x
        weight = mask.to(x.dtype)
        weight = weight / weight.sum(dim=-1, keepdim=True)  # (nW, N, N), each row averages its region
        xw = rearrange(x, "(b w) n c -> b w n c", w=mask.shape[0])
        avg = einsum(weight, xw, "w n m, b w m c -> b w n c")
        return rearrange(avg - xw, "b w n c -> (b w) n c")


@register_mixer("global_attention")
class GlobalAttention(WindowAttention):
    """Multi-head self-attention over the whole feature map, ``(B, H*W, C) -> (B, H*W, C)``.

    ``global_window = True``: the block hands it the whole map as one window and never shifts. No relative
    position bias (the table would depend on the input size). The quadratic baseline for scaling studies.

    Args:
        dim: Channels C.
        window_size: None (the block passes None for global-window mixers).
        num_heads: Heads; must divide ``dim``.
        qkv_bias: Bias on the qkv projection.
        attn_drop: Dropout on attention weights.
        proj_drop: Dropout after the output projection.
    """

    global_window = True

    def __init__(
        self,
        dim: int,
        *,
        window_size: tuple[int, ...] | None,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(
            dim,
            window_size=None,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop,
            proj_drop=proj_drop,
            rel_pos=False,
        )
