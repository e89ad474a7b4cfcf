"""MLP-Mixer's token-mixing MLP, restricted to a window."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.mixers.base import register_mixer

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("rearrange")


@register_mixer("token_mlp")
class TokenMlp(nn.Module):
    """Two-layer MLP across the tokens of each window, ``(B*nW, N, C) -> (B*nW, N, C)``.

    ``fc2(act(fc1(x^T)))^T``: per channel, the N token values go through ``Linear(N, hidden)``, GELU and
    ``Linear(hidden, N)``, shared by all channels and windows. The names (``fc1``, ``fc2``) are those of
    timm's ``MixerBlock.mlp_tokens``, so ``mixer_b16_224`` converts by renaming only.

    The hidden layer is nonlinear, so the mask cannot be folded into a weight: ``honours_mask = False``, and
    the block shifts by zero padding (the reference Swin-MLP scheme) instead of a cyclic roll.

    Args:
        dim: Channels C.
        window_size: ``(wh, ww)`` (one size per spatial axis), ``N = prod(window_size)``.
        token_mlp_ratio: Hidden size / N, when ``hidden_tokens`` is not given.
        hidden_tokens: Hidden size of the token MLP (timm's Mixer-B/16: 384 for 196 tokens).
        drop: Dropout after each layer.
    """

    honours_mask = False
    # no crop: Linear(N, hidden) mixes all N slots, so a map smaller than the window is padded up to it
    crop_modes = ()

    def __init__(
        self,
        dim: int,
        *,
        window_size: tuple[int, ...] | None,  # None (a global window) is refused with its own message
        token_mlp_ratio: float = 2.0,
        hidden_tokens: int | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        if window_size is None:
            raise ConfigError("token_mlp needs a fixed window_size: its layers are Linear(N, hidden)")
        n = math.prod(window_size)
        hidden = hidden_tokens if hidden_tokens is not None else round(token_mlp_ratio * n)
        if hidden < 1:
            raise ConfigError(f"token_mlp: hidden size must be >= 1, got {hidden}")
        self.dim = dim
        self.window_size = tuple(window_size)
        self.fc1 = nn.Linear(n, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, n)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = rearrange(x, "b n c -> b c n")
        x = self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
        return rearrange(x, "b c n -> b n c")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, hidden_tokens={self.fc1.out_features}"
