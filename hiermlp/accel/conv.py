"""Grouped convolutions with one output channel per group, as a depthwise convolution and a sum.

Wave-MLP's ``tfc_h`` / ``tfc_w`` are 1x7 / 7x1 convolutions with ``groups = C_out`` and two input channels
per group. CPU convolution kernels handle that shape (a few input channels per group) poorly, in backward
especially; the same function is a depthwise convolution over the input channels (channel ``g*k + j`` with
kernel ``weight[g, j]``) followed by the sum of each group's ``k`` outputs. Equal to the grouped
convolution up to float32 summation order (tests/test_fast_paths.py checks values and gradients).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hiermlp.layers import ConvCL


class FastConvCL(ConvCL):
    """:class:`~hiermlp.layers.ConvCL` whose convolution (``nn.Conv2d``'s ``_conv_forward`` hook), where it has
    one output per group, runs depthwise and sums."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        k = self.in_channels // self.groups
        if not (self.groups > 1 and self.out_channels == self.groups and k > 1 and self.padding_mode == "zeros"):
            return super()._conv_forward(x, weight, bias)
        w = weight.reshape(self.in_channels, 1, *self.kernel_size)  # (g, j) -> input channel g*k + j
        y = F.conv2d(x, w, None, self.stride, self.padding, self.dilation, self.in_channels)
        # the k outputs of a group are adjacent channels: add strided slices (one pass each; a sum over a
        # trailing dim of size k is a slow strided reduction on CPU)
        out = y[:, 0::k] + y[:, 1::k]
        for j in range(2, k):
            out = out + y[:, j::k]
        return out if bias is None else out + bias[:, None, None]
