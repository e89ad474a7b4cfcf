"""CycleMLP's token mixer (Chen et al. 2021, "CycleMLP: A MLP-like Architecture for Dense Prediction").

Cycle FC reads input channel ``i`` at a fixed spatial offset ``(i + k//2) % k - k//2`` along one axis (the
offsets cycle over a 1xk or kx1 pseudo-kernel), zero outside the map, then applies one linear map over
channels. The official code (ShoufaChen/CycleMLP) computes it as a 1x1 deformable convolution whose offsets
are constant integers; bilinear sampling at integer offsets is an exact read, so the same function is a
per-channel-group shift (one strided copy per residue ``i mod k``, :func:`cycle_shift`) followed by a plain
``nn.Linear`` (which the speed layer runs as any other linear).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers import Mlp
from hiermlp.mixers.base import register_mixer

# the shift's slicing depends on the map size: an opaque call under torch.fx (timm's and torchvision's feature
# extractors), where sizes are proxies
torch.fx.wrap("cycle_shift")
torch.fx.wrap("rearrange")


def cycle_offsets(channels: int, kernel: int) -> list[int]:
    """The offset of each input channel along the pseudo-kernel's axis: ``(i + k//2) % k - k//2``."""
    return [(i + kernel // 2) % kernel - kernel // 2 for i in range(channels)]


def _along(axis: int, s: slice, ch: slice) -> tuple:
    """An index of ``(B, H, W, C)`` taking slice ``s`` on ``axis`` (1 = H, 2 = W) and ``ch`` on C."""
    idx = [slice(None)] * 4
    idx[axis], idx[3] = s, ch
    return tuple(idx)


def cycle_shift(x: torch.Tensor, kernel: int, axis: int) -> torch.Tensor:
    """``(B, H, W, C) -> (B, H, W, C)``: ``out[..., p, i] = x[..., p + d_i, i]`` along ``axis``, 0 outside.

    Channels ``i = r, r + k, r + 2k, ...`` share the offset ``d_r`` (:func:`cycle_offsets`), so the shift is
    one strided copy per residue ``r`` plus the zero border it leaves.
    """
    if kernel == 1:
        return x
    n = x.shape[axis]
    out = torch.empty_like(x)
    for r in range(kernel):
        d = (r + kernel // 2) % kernel - kernel // 2
        ch = slice(r, None, kernel)
        if d == 0:
            out[_along(axis, slice(None), ch)] = x[_along(axis, slice(None), ch)]
        elif abs(d) >= n:  # the offset leaves the map: every read is zero fill
            out[_along(axis, slice(None), ch)] = 0
        elif d > 0:
            out[_along(axis, slice(0, n - d), ch)] = x[_along(axis, slice(d, n), ch)]
            out[_along(axis, slice(n - d, n), ch)] = 0
        else:
            out[_along(axis, slice(-d, n), ch)] = x[_along(axis, slice(0, n + d), ch)]
            out[_along(axis, slice(0, -d), ch)] = 0
    return out


@register_mixer("cycle")
class CycleMlp(nn.Module):
    """CycleMLP's token mixer, ``(B, H, W, C) -> (B, H, W, C)``.

    Two Cycle FCs (``sfc_h``: a 1xk pseudo-kernel, offsets along W; ``sfc_w``: kx1, offsets along H; the
    official names; each :func:`cycle_shift` then its linear map, ``weight`` ``(C, C)`` for the official
    ``(C, C, 1, 1)``, the official constant ``offset`` buffer not stored) and a channel FC ``mlp_c``; a
    small MLP on the spatial mean of their sum gives per-channel softmax weights over the three branches;
    ``proj`` maps the weighted sum. Official names and init (trunc-normal 0.02 linears, zero biases: the
    network's generic init), so official checkpoints load by renaming alone.

    Args:
        dim: Channels C.
        kernel_size: Pseudo-kernel length k (3 in every released CycleMLP).
        qkv_bias: Bias on ``mlp_c`` (the official option name; off in every released model).
    """

    kind = "map"

    def __init__(self, dim: int, *, kernel_size: int = 3, qkv_bias: bool = False) -> None:
        super().__init__()
        if kernel_size < 1:
            raise ConfigError(f"cycle: kernel_size must be >= 1, got {kernel_size}")
        self.kernel_size = kernel_size
        self.mlp_c = nn.Linear(dim, dim, bias=qkv_bias)
        self.sfc_h = nn.Linear(dim, dim)
        self.sfc_w = nn.Linear(dim, dim)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        h, w, cc = self.sfc_h(cycle_shift(x, k, axis=2)), self.sfc_w(cycle_shift(x, k, axis=1)), self.mlp_c(x)
        # per-channel weights over the three branches; the official reshape is channel-major, (c k)
        a = rearrange(self.reweight((h + w + cc).mean((1, 2))), "b (c k) -> k b 1 1 c", k=3).softmax(dim=0)
        return self.proj(h * a[0] + w * a[1] + cc * a[2])

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"
