"""Swin-MLP's spatial MLP: a per-head linear map over the tokens of a window."""

from __future__ import annotations

import math

import torch
from einops import einsum, rearrange, repeat
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.mixers.base import register_mixer
from hiermlp.ops import crop_tokens

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("einsum")
torch.fx.wrap("rearrange")
torch.fx.wrap("repeat")
# a sub-window crop checks sizes: an opaque call under torch.fx
torch.fx.wrap("crop_tokens")


@register_mixer("spatial_mlp")
class SpatialMlp(nn.Module):
    """Per-head linear token map inside each window, ``(B*nW, N, C) -> (B*nW, N, C)``.

    Token ``n`` of head ``heads`` becomes ``sum_m weight[heads, n, m] * x[m] + bias[heads, n]``, the weight
    shared by the head's ``C / heads`` channels and by every window. This is the reference Swin-MLP's
    ``spatial_mlp`` (a grouped ``Conv1d(heads*N, heads*N, 1, groups=heads)``), written as a named einsum; its
    ``(heads*N, N, 1)`` weight is ``weight.reshape(heads * N, N, 1)`` here.

    With a mask the weight is multiplied by it per window, so a cyclic shift computes exactly the
    reference's zero-padding shift (tokens of other regions contribute nothing, as padded zeros do there)
    with fewer windows. The bias is not masked: in the reference every output token gets its bias.

    Args:
        dim: Channels C.
        window_size: ``(wh, ww)`` (one size per spatial axis: Swin-MLP in 1-D or 3-D), ``N = prod(window_size)``.
        num_heads: Heads; must divide ``dim``.

    ``forward(x, mask, window_size)``: ``window_size`` is the window the block actually partitioned (see
    ``crop_modes``); None means the built window.
    """

    honours_mask = True
    # a map smaller than the window runs as a smaller window: padded tokens (zeros, or masked out) add
    # nothing to the real ones, so the real outputs are the rows and columns of the weight for the real
    # tokens, plus their bias entries: the same function in both shift modes
    crop_modes = ("roll", "pad")

    def __init__(self, dim: int, *, window_size: tuple[int, ...] | None, num_heads: int) -> None:
        super().__init__()
        if window_size is None:
            raise ConfigError("spatial_mlp needs a fixed window_size: its weight is (heads, N, N)")
        if num_heads < 1 or dim % num_heads:
            raise ConfigError(f"spatial_mlp: num_heads={num_heads} must be >= 1 and divide dim={dim}")
        self.dim = dim
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        n = math.prod(self.window_size)
        self.weight = nn.Parameter(torch.empty(num_heads, n, n))
        self.bias = nn.Parameter(torch.empty(num_heads, n))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The reference init, ``nn.Conv1d``'s default: uniform(+-1/sqrt(fan_in)) with fan_in = N."""
        bound = 1 / math.sqrt(self.weight.shape[-1])
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def token_weight(self, window_size: tuple[int, ...] | None = None) -> torch.Tensor:
        """The token map of the window actually run (the top-left ``window_size`` part), ``(heads, N, N)``."""
        return crop_tokens(self.weight, self.window_size, window_size, dims=(1, 2))

    def masked_weight(self, mask: torch.Tensor, window_size: tuple[int, ...] | None = None) -> torch.Tensor:
        """``weight * mask`` per window, ``(nW, N, N) -> (nW, heads, N, N)``."""
        return self.token_weight(window_size) * mask[:, None].to(self.weight.dtype)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, window_size: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        bias = crop_tokens(self.bias, self.window_size, window_size, dims=(1,))
        bias = repeat(bias, "heads n -> n (heads d)", d=self.dim // self.num_heads)  # (N, C)
        if mask is None:
            x = rearrange(x, "b m (heads d) -> heads m (b d)", heads=self.num_heads)
            x = einsum(self.token_weight(window_size), x, "heads n m, heads m bd -> heads n bd")
            return rearrange(x, "heads n (b d) -> b n (heads d)", d=self.dim // self.num_heads) + bias
        # windows are batch-major: (B*nW) splits as (B, nW); one (N, N) @ (N, B*d) product per window and head
        x = rearrange(x, "(b w) m (heads d) -> w heads m (b d)", w=mask.shape[0], heads=self.num_heads)
        x = einsum(self.masked_weight(mask, window_size), x, "w heads n m, w heads m bd -> w heads n bd")
        return rearrange(x, "w heads n (b d) -> (b w) n (heads d)", d=self.dim // self.num_heads) + bias

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"
