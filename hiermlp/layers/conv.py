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
