"""UNETR's convolutional blocks (MONAI's ``dynunet_block`` / ``unetr_block``), channels-first, in 1-3 dims.

Names follow MONAI's modules (``layer.conv1.conv.weight``, ``transp_conv.conv.weight``, ``conv_block.*``,
``conv.conv.*``) so that SwinUNETR checkpoints load by renaming the encoder only. Norms are instance norms
without affine parameters (MONAI's ``norm_name="instance"``), activations LeakyReLU(0.01).

Activations and the residual sum run in place and each block lets go of its upsampled map before the next
convolution, as MONAI's blocks do: at full resolution every map is large (96^3 x 48 channels is 170 MB), and
one extra map alive at the decoder's last block is that much more peak memory than MONAI's.
"""

from __future__ import annotations

import torch
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers.conv import Conv3d


class UnetConv3d(Conv3d):
    """The 3-D convolution of UNETR's blocks: hiermlp's :class:`~hiermlp.layers.conv.Conv3d`, under a class of
    its own so that the speed layer's channels-last lever (measured on SwinUNETR's decoder) acts here alone."""


CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: UnetConv3d}  # Conv3d: float64 where torch's bf16 kernel is wrong
CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
INSTANCE_NORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}


def _dims(spatial_dims: int) -> int:
    if spatial_dims not in CONV:
        raise ConfigError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    return spatial_dims


class ConvLayer(nn.Module):
    """A convolution under the attribute ``conv`` (MONAI's ``Convolution`` wrapper), ``(B, C, *s) -> (B, C', *s')``."""

    def __init__(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = False,
        transposed: bool = False,
    ) -> None:
        super().__init__()
        table = CONV_T if transposed else CONV
        padding = {} if transposed else {"padding": (kernel_size - 1) // 2}
        self.conv = table[_dims(spatial_dims)](
            in_channels, out_channels, kernel_size, stride=stride, bias=bias, **padding
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UnetResBlock(nn.Module):
    """``lrelu(norm2(conv2(lrelu(norm1(conv1(x))))) + shortcut(x))``, ``(B, C_in, *s) -> (B, C_out, *s)``.

    The shortcut is the identity, or a 1x1 convolution and a norm when the channels change (MONAI's
    ``UnetResBlock`` with stride 1)."""

    def __init__(self, *, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        conv = dict(spatial_dims=spatial_dims, out_channels=out_channels)
        norm = INSTANCE_NORM[_dims(spatial_dims)]
        self.conv1 = ConvLayer(**conv, in_channels=in_channels, kernel_size=kernel_size)
        self.conv2 = ConvLayer(**conv, in_channels=out_channels, kernel_size=kernel_size)
        self.lrelu = nn.LeakyReLU(0.01, inplace=True)
        self.norm1 = norm(out_channels)
        self.norm2 = norm(out_channels)
        self.shortcut = in_channels != out_channels
        if self.shortcut:
            self.conv3 = ConvLayer(**conv, in_channels=in_channels, kernel_size=1)
            self.norm3 = norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm2(self.conv2(self.lrelu(self.norm1(self.conv1(x)))))
        out += self.norm3(self.conv3(x)) if self.shortcut else x
        return self.lrelu(out)


class UnetrBasicBlock(nn.Module):
    """A :class:`UnetResBlock` under the attribute ``layer`` (MONAI's ``UnetrBasicBlock`` with ``res_block``)."""

    def __init__(self, *, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.layer = UnetResBlock(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class UnetrUpBlock(nn.Module):
    """Upsample 2x by a transposed convolution, concatenate the skip, then a :class:`UnetResBlock`:
    ``(B, C_in, *s), (B, C_out, *2s) -> (B, C_out, *2s)``.

    The upsampled map is cropped to the skip's size: an encoder that padded an odd size (hiermlp's merging
    does, so any volume size runs) gives back one row more than the skip has."""

    def __init__(self, *, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.transp_conv = ConvLayer(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            kernel_size=2,
            stride=2,
            transposed=True,
        )
        self.conv_block = UnetResBlock(
            spatial_dims=spatial_dims, in_channels=2 * out_channels, out_channels=out_channels, kernel_size=kernel_size
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.transp_conv(x)
        # one name for both maps, so that the upsampled one is freed once concatenated
        up = torch.cat((up[(slice(None), slice(None), *(slice(None, s) for s in skip.shape[2:]))], skip), dim=1)
        return self.conv_block(up)


class UnetOutBlock(nn.Module):
    """The 1x1 classifier, ``(B, C, *s) -> (B, num_classes, *s)`` (MONAI's ``UnetOutBlock``)."""

    def __init__(self, *, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvLayer(
            spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels, kernel_size=1, bias=True
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
