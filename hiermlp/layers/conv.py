"""Convolutions on channels-last maps, the layout between every hiermlp stem, stage and block."""

from __future__ import annotations

import torch
from torch import nn


class ConvCL(nn.Conv2d):
    """``nn.Conv2d`` applied to a channels-last map, ``(B, H, W, C_in) -> (B, H', W', C_out)``.

    The NCHW view of a channels-last tensor is in ``torch.channels_last`` memory format, which the CPU and
    GPU convolution kernels take directly, so neither permute copies. Same parameters and state dict as
    ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that computes in float64 where torch's bfloat16 kernel gives wrong gradients.

    In torch 2.14 on CPU, a bfloat16 Conv3d (under autocast or on bfloat16 weights) whose input is shorter than
    the kernel along an axis (e.g. 2 frames under a 3x3x3 kernel, SwinUNETR's decoder on short clips) returns
    weight gradients off by orders of magnitude, sometimes inf or NaN (tests/test_swin_unetr.py compares with
    float32). Such maps are tiny, so a bfloat16 result on them is recomputed in float64 (which autocast leaves
    alone, on every device) and cast to bfloat16, the dtype the bfloat16 kernel returns. Same parameters and
    state dict as ``nn.Conv3d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if out.dtype != torch.bfloat16 or all(s >= k for s, k in zip(x.shape[2:], self.kernel_size)):
            return out
        bias = None if self.bias is None else self.bias.double()
        return self._conv_forward(x.double(), self.weight.double(), bias).to(torch.bfloat16)
