"""UNETR's convolutional blocks on CPU in the channels-last 3-D layout (NDHWC), and instance norms that keep it.

oneDNN's 3-D convolutions take an NDHWC map directly; a channels-first (NCDHW) one is reordered into oneDNN's
blocked layout and back on every call, and a transposed convolution's NCDHW result is copied once more. SwinUNETR's
decoder at full resolution (96^3 x 48 channels) is dominated by these convolutions (benchmarks/results/ndim_cpu).
:class:`FastUnetConv3d` and :class:`FastConvTranspose3d` take an NDHWC copy of a channels-first input; every result
is then NDHWC, and the maps between the blocks (norms, activations, sums, concatenations) keep it.

torch's CPU instance norm on an NDHWC map is slow, and its group norm (the same function with one group per
channel) sums in one float32 pass there, which at 96^3 voxels is off by 1e-3 of the result.
:class:`FastInstanceNorm3d` normalises an NDHWC map in two passes (mean, then the mean square of the centred
values) with torch's pairwise sums, as accurate as the channels-first kernel. Both switch with
``SETTINGS.conv_channels_last`` and step aside for traced code (compilers choose layouts themselves, exporters
and FX want the plain ops); every other input (channels-first, non-CPU, half precision, running statistics)
takes the plain path.
"""

from __future__ import annotations

import torch
from torch import nn

from hiermlp.accel import settings
from hiermlp.accel.trace import is_fx_tracing, is_tracing
from hiermlp.layers.unet import UnetConv3d

CL = torch.channels_last_3d


def _enabled() -> bool:
    return settings.current().conv_channels_last and not is_tracing() and not is_fx_tracing()


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` as an NDHWC map where the lever applies: a 5-D CPU map with more than one channel (one channel
    has no layout to choose; the convolution after it converts)."""
    if x.dim() == 5 and x.shape[1] > 1 and x.device.type == "cpu" and _enabled():
        return x.contiguous(memory_format=CL)
    return x


class FastUnetConv3d(UnetConv3d):
    """UNETR's :class:`~hiermlp.layers.unet.UnetConv3d` on an NDHWC map."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return super()._conv_forward(_channels_last(x), weight, bias)


class FastConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` on an NDHWC map (its NCDHW result would be copied out of oneDNN's layout)."""

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        return super().forward(_channels_last(x), output_size)


def _is_channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=CL)


class FastInstanceNorm3d(nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` that normalises a CPU NDHWC map without leaving the layout (float32 and float64,
    no running statistics); other inputs take ``nn.InstanceNorm3d``'s path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            x.dim() == 5
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and not self.track_running_stats
            and _is_channels_last(x)
            and _enabled()
        ):
            return super().forward(x)
        b, c = x.shape[:2]
        v = x.permute(0, 2, 3, 4, 1).reshape(b, -1, c)  # a view: (B, voxels, C), channels innermost
        centred = v - v.mean(1, keepdim=True)
        rstd = (centred.square().mean(1, keepdim=True) + self.eps).rsqrt()  # biased variance, as instance norm
        # in place where autograd does not need the centred values again
        out = centred.mul_(rstd) if not (torch.is_grad_enabled() and x.requires_grad) else centred * rstd
        if self.affine:
            out = out * self.weight + self.bias
        return out.view(b, *x.shape[2:], c).permute(0, 4, 1, 2, 3)
