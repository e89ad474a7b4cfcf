"""AS-MLP's token mixer (Lian et al. 2021, "AS-MLP: An Axial Shifted MLP Architecture for Vision").

The axial shift splits the channels into ``shift_size`` contiguous groups (``torch.chunk``'s sizes:
``ceil(C / shift_size)`` each, the last one shorter) and moves group ``g`` by ``g - shift_size//2`` positions
along one axis, zero-filled, exactly as the official code (svip-lab/AS-MLP: a CUDA kernel, or its
pure-PyTorch fallback that pads, rolls each chunk and crops). Here it is one slice copy per group on the
channels-last map: no CUDA kernel, no padded intermediate.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers import GroupNorm1NHWC
from hiermlp.mixers.base import register_mixer

# the shift's slicing depends on the map size: an opaque call under torch.fx (timm's and torchvision's feature
# extractors), where sizes are proxies
torch.fx.wrap("axial_shift")


def axial_shift(x: torch.Tensor, shift_size: int, axis: int) -> torch.Tensor:
    """``(B, H, W, C) -> (B, H, W, C)``: channel group g moves by ``s = g - shift_size//2`` along ``axis``
    (1 = H, 2 = W), ``out[p] = x[p - s]``, zero where ``p - s`` leaves the map.

    Groups are ``torch.chunk(C, shift_size)``'s: size ``ceil(C / shift_size)``, so a narrow map may have fewer
    than ``shift_size`` groups (the official code's behaviour too).
    """
    if shift_size == 1:
        return x
    n, c = x.shape[axis], x.shape[3]
    size = math.ceil(c / shift_size)
    out = torch.empty_like(x)
    for g, c0 in enumerate(range(0, c, size)):
        ch = slice(c0, min(c0 + size, c))
        s = g - shift_size // 2
        dst = [slice(None), slice(None), slice(None), ch]
        src = list(dst)
        if abs(s) >= n:
            out[tuple(dst)] = 0
            continue
        dst[axis], src[axis] = slice(max(s, 0), n + min(s, 0)), slice(max(-s, 0), n - max(s, 0))
        out[tuple(dst)] = x[tuple(src)]
        if s:
            dst[axis] = slice(0, s) if s > 0 else slice(n + s, n)
            out[tuple(dst)] = 0
    return out


@register_mixer("axial_shift")
class AxialShift(nn.Module):
    """AS-MLP's token mixer, ``(B, H, W, C) -> (B, H, W, C)``.

    ``conv1`` -> GroupNorm -> GELU, then two branches: the axial shift along W (``conv2_1``) and along H
    (``conv2_2``), each a linear map and GELU; their sum -> GroupNorm -> ``conv3``. The official names (its
    1x1 convolutions are the linears here, ``norm1``/``norm2`` are ``GroupNorm(1, C)``).

    Args:
        dim: Channels C.
        shift_size: Number of channel groups / the shift span (5 in the released models; odd).
        as_bias: Biases on the four linear maps.
    """

    kind = "map"

    def __init__(self, dim: int, *, shift_size: int = 5, as_bias: bool = True) -> None:
        super().__init__()
        if shift_size < 1 or shift_size % 2 == 0:
            raise ConfigError(
                f"axial_shift: shift_size must be odd and >= 1 (the official kernel's rule), got {shift_size}"
            )
        self.dim = dim
        self.shift_size = shift_size
        self.conv1 = nn.Linear(dim, dim, bias=as_bias)
        self.conv2_1 = nn.Linear(dim, dim, bias=as_bias)
        self.conv2_2 = nn.Linear(dim, dim, bias=as_bias)
        self.conv3 = nn.Linear(dim, dim, bias=as_bias)
        self.actn = nn.GELU()
        self.norm1 = GroupNorm1NHWC(dim)
        self.norm2 = GroupNorm1NHWC(dim)

    def init_weights(self) -> None:
        """The official init: PyTorch's defaults for the 1x1 convs (``AS_MLP`` re-initialises only
        ``nn.Linear`` heads and LayerNorms)."""
        for m in (self.conv1, self.conv2_1, self.conv2_2, self.conv3, self.norm1, self.norm2):
            m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.actn(self.norm1(self.conv1(x)))
        x_lr = self.actn(self.conv2_1(axial_shift(x, self.shift_size, 2)))
        x_td = self.actn(self.conv2_2(axial_shift(x, self.shift_size, 1)))
        return self.conv3(self.norm2(x_lr + x_td))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, shift_size={self.shift_size}"
