"""CycleMLP's token mixer (Chen et al. 2021, "CycleMLP: A MLP-like Architecture for Dense Prediction").

Cycle FC reads input channel ``i`` at a fixed spatial offset ``(i + k//2) % k - k//2`` along one axis (the
offsets cycle over a 1xk or kx1 pseudo-kernel), zero outside the map, then applies one linear map over
channels. The official code (ShoufaChen/CycleMLP) computes it as a 1x1 deformable convolution whose offsets
are constant integers; bilinear sampling at integer offsets is an exact read, so the same function is a
per-channel-group shift (one strided copy per residue ``i mod k``) followed by a GEMM.
"""

from __future__ import annotations

import torch
from torch import nn

from hiermlp.layers import Linear, Mlp
from hiermlp.mixers.base import register_mixer


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


class CycleFC(Linear):
    """Cycle FC, ``(B, H, W, C_in) -> (B, H, W, C_out)``: :func:`cycle_shift` along one axis, then a linear map.

    ``kernel_size`` is the pseudo-kernel ``(1, k)`` (offsets along W) or ``(k, 1)`` (offsets along H), as in
    the official ``CycleFC``. ``weight`` is ``(C_out, C_in)`` (the official ``(C_out, C_in, 1, 1)``); the
    official ``offset`` buffer is not stored: it is a function of ``C_in`` and the kernel.
    """

    def __init__(self, in_features: int, out_features: int, *, kernel_size: tuple[int, int], bias: bool = True):
        super().__init__(in_features, out_features, bias=bias)
        kh, kw = kernel_size
        if kh != 1 and kw != 1:
            raise ValueError(f"a Cycle FC pseudo-kernel is 1xk or kx1, got {kernel_size}")
        self.kernel_size = (kh, kw)
        self.kernel, self.axis = (kw, 2) if kh == 1 else (kh, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(cycle_shift(x, self.kernel, self.axis))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, kernel_size={self.kernel_size}"


class CycleMlp(nn.Module):
    """CycleMLP's token mixer, ``(B, H, W, C) -> (B, H, W, C)``.

    Two Cycle FCs (``sfc_h``: 1xk, offsets along W; ``sfc_w``: kx1, offsets along H; the official names) and
    a channel FC ``mlp_c``; a small MLP on the spatial mean of their sum gives per-channel softmax weights
    over the three branches; ``proj`` maps the weighted sum. Official names and init (trunc-normal 0.02
    linears, zero biases: the network's generic init), so official checkpoints load by renaming alone.

    Args:
        dim: Channels C.
        kernel_size: Pseudo-kernel length k (3 in every released CycleMLP).
        qkv_bias: Bias on ``mlp_c`` (the official option name; off in every released model).
    """

    kind = "map"

    def __init__(self, dim: int, *, kernel_size: int = 3, qkv_bias: bool = False) -> None:
        super().__init__()
        self.mlp_c = Linear(dim, dim, bias=qkv_bias)
        self.sfc_h = CycleFC(dim, dim, kernel_size=(1, kernel_size))
        self.sfc_w = CycleFC(dim, dim, kernel_size=(kernel_size, 1))
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, _, c = x.shape
        h, w, cc = self.sfc_h(x), self.sfc_w(x), self.mlp_c(x)
        # (B, 3C) -> (3, B, 1, 1, C): the official reshape is channel-major, (c k) with k the branch
        a = self.reweight((h + w + cc).mean((1, 2)))
        a = a.view(b, c, 3).permute(2, 0, 1).softmax(dim=0)[:, :, None, None, :]
        return self.proj(h * a[0] + w * a[1] + cc * a[2])


register_mixer("cycle", CycleMlp)
