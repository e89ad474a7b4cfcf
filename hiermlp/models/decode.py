"""Decode heads of dense prediction, as mmsegmentation writes them: UPerNet, the FCN auxiliary head, Semantic FPN.

A head maps the backbone's list of channels-first maps ``[(B, C_i, *spatial_i), ...]`` (strides 4, 8, 16, 32
for a Swin) to class logits at the resolution of the first map, ``(B, num_classes, *spatial_0)``; the segmentor
(:mod:`hiermlp.models.segment`) resizes them to the input. Module and parameter names are mmseg's
(``ConvModule``'s ``conv`` / ``bn``, ``conv_seg``, ``psp_modules``, ``bottleneck``, ``lateral_convs``,
``fpn_convs``, ``fpn_bottleneck``, ``convs``, ``scale_heads``), so mmseg checkpoints load with their keys as
they are. ``spatial_dims`` picks 1-, 2- or 3-D convolutions, norms, pools and interpolation: mmseg's heads are
2-D, and the 2-D path is the one tests check against an independent formulation of mmseg's layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers.conv import Conv3d

__all__ = ["PPM", "ConvModule", "FCNHead", "FPNHead", "FPNNeck", "UPerHead", "resize"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: Conv3d}  # Conv3d: float64 where torch's bf16 kernel is wrong
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
_LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _dims(spatial_dims: int) -> int:
    if spatial_dims not in _CONV:
        raise ConfigError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
    return spatial_dims


def resize(x: torch.Tensor, size: Sequence[int], *, align_corners: bool = False) -> torch.Tensor:
    """``(B, C, *spatial) -> (B, C, *size)`` by (bi/tri)linear interpolation (mmseg's ``resize``); a no-op at
    the same size."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode=_LINEAR_MODE[x.ndim - 2], align_corners=align_corners)


class ConvModule(nn.Module):
    """``(B, C_in, *s) -> (B, C_out, *s')``: conv, BatchNorm, ReLU (mmcv's ``ConvModule`` with ``norm_cfg=BN``).

    The conv has a bias only without a norm (mmcv's ``bias="auto"``); ``norm=False, act=False`` is a plain conv
    (mmseg's FPN neck).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        padding: int = 0,
        norm: bool = True,
        act: bool = True,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        d = _dims(spatial_dims)
        self.conv = _CONV[d](in_channels, out_channels, kernel_size, padding=padding, bias=not norm)
        self.bn = _BN[d](out_channels) if norm else None
        self.activate = nn.ReLU(inplace=True) if act else None
        # mmcv's init: kaiming normal (fan_out, relu) for the conv, zero bias, a unit norm
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.activate(x) if self.activate is not None else x


class _ClassifierMixin(nn.Module):
    """mmseg's ``BaseDecodeHead`` end: dropout, then the 1x1 classifier ``conv_seg``."""

    def _classifier(self, channels: int, num_classes: int, dropout: float, spatial_dims: int) -> None:
        if not (isinstance(num_classes, int) and num_classes >= 1):
            raise ConfigError(f"num_classes must be an integer >= 1 for a segmentation head, got {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        self.num_classes = num_classes
        self.conv_seg = _CONV[spatial_dims](channels, num_classes, 1)
        self.dropout = _DROPOUT[spatial_dims](dropout) if dropout > 0 else None
        nn.init.normal_(self.conv_seg.weight, 0.0, 0.01)  # mmseg's init of conv_seg
        nn.init.zeros_(self.conv_seg.bias)

    def cls_seg(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, channels, *s) -> (B, num_classes, *s)``."""
        if self.dropout is not None:
            x = self.dropout(x)
        return self.conv_seg(x)

    def reset_classifier(self, num_classes: int) -> None:
        """A new ``conv_seg`` for ``num_classes`` classes (the rest of the head is kept)."""
        d = self.conv_seg.weight.ndim - 2
        p = self.conv_seg.weight
        self.num_classes = num_classes
        self.conv_seg = _CONV[d](self.conv_seg.in_channels, num_classes, 1).to(device=p.device, dtype=p.dtype)
        nn.init.normal_(self.conv_seg.weight, 0.0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)


class PPM(nn.ModuleList):
    """Pyramid pooling: ``(B, C, *s) -> [(B, channels, *s)] * len(pool_scales)``; each branch an adaptive
    average pool to ``scale``, a 1x1 ConvModule, and an upsampling back to ``s``."""

    def __init__(
        self,
        *,
        pool_scales: Sequence[int],
        in_channels: int,
        channels: int,
        align_corners: bool = False,
        spatial_dims: int = 2,
    ) -> None:
        d = _dims(spatial_dims)
        super().__init__(
            nn.Sequential(
                _POOL[d](scale),
                ConvModule(in_channels=in_channels, out_channels=channels, kernel_size=1, spatial_dims=d),
            )
            for scale in pool_scales
        )
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return [resize(branch(x), x.shape[2:], align_corners=self.align_corners) for branch in self]


class UPerHead(_ClassifierMixin):
    """UPerNet (Xiao et al. 2018) as mmseg's ``UPerHead``: ``[(B, C_i, *s_i)] -> (B, num_classes, *s_0)``.

    A pyramid pooling module on the last map, an FPN over the others (1x1 lateral convs, top-down upsampling
    and sums, 3x3 convs), every level upsampled to the first and concatenated, a 3x3 conv, dropout and the 1x1
    classifier. Every conv is a ConvModule (BatchNorm + ReLU) with ``channels`` outputs.

    Args:
        in_channels: Channels of each input map, finest first.
        num_classes: Classes of the classifier.
        channels: Width of every conv of the head (512 in the Swin paper).
        pool_scales: Output sizes of the pyramid pooling branches.
        dropout: Dropout before the classifier (channel-wise, as mmseg's ``Dropout2d``).
        align_corners: Of every interpolation.
        spatial_dims: 1, 2 or 3.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        num_classes: int,
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        align_corners: bool = False,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        d = _dims(spatial_dims)
        in_channels = tuple(in_channels)
        if len(in_channels) < 1 or not pool_scales:
            raise ConfigError("UPerHead needs at least one input map and one pool scale")
        self.in_channels, self.channels, self.align_corners = in_channels, channels, align_corners
        self.psp_modules = PPM(
            pool_scales=pool_scales,
            in_channels=in_channels[-1],
            channels=channels,
            align_corners=align_corners,
            spatial_dims=d,
        )
        top = in_channels[-1] + len(pool_scales) * channels
        self.bottleneck = ConvModule(in_channels=top, out_channels=channels, kernel_size=3, padding=1, spatial_dims=d)
        self.lateral_convs = nn.ModuleList(
            ConvModule(in_channels=c, out_channels=channels, kernel_size=1, spatial_dims=d) for c in in_channels[:-1]
        )
        self.fpn_convs = nn.ModuleList(
            ConvModule(in_channels=channels, out_channels=channels, kernel_size=3, padding=1, spatial_dims=d)
            for _ in in_channels[:-1]
        )
        self.fpn_bottleneck = ConvModule(
            in_channels=len(in_channels) * channels, out_channels=channels, kernel_size=3, padding=1, spatial_dims=d
        )
        self._classifier(channels, num_classes, dropout, d)

    def psp_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_last, *s) -> (B, channels, *s)``: the pooled branches beside the map, through the bottleneck."""
        return self.bottleneck(torch.cat([x, *self.psp_modules(x)], dim=1))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(inputs) != len(self.in_channels):
            raise ConfigError(f"UPerHead was built for {len(self.in_channels)} maps, got {len(inputs)}")
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        laterals.append(self.psp_forward(inputs[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down: each level gets the coarser one, upsampled
            laterals[i - 1] = laterals[i - 1] + resize(
                laterals[i], laterals[i - 1].shape[2:], align_corners=self.align_corners
            )
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)] + [laterals[-1]]
        size = outs[0].shape[2:]
        outs = [outs[0]] + [resize(o, size, align_corners=self.align_corners) for o in outs[1:]]
        return self.cls_seg(self.fpn_bottleneck(torch.cat(outs, dim=1)))


class FCNHead(_ClassifierMixin):
    """The auxiliary head of the Swin/UPerNet recipe, mmseg's ``FCNHead``: ``[maps] -> (B, num_classes, *s_i)``
    from map ``in_index``: ``num_convs`` 3x3 ConvModules (``concat_input``: the input concatenated and fused by
    one more), dropout and the 1x1 classifier.

    Args:
        in_channels: Channels of map ``in_index``.
        num_classes: Classes of the classifier.
        channels: Width of the convs (256 in the Swin recipe).
        in_index: Which of the input maps it reads (2: stride 16, Swin's stage 3).
        num_convs: 3x3 convs (0: the classifier reads the map itself; then ``channels`` must equal ``in_channels``).
        concat_input: Concatenate the input to the convs' output before the classifier (mmseg's ``conv_cat``).
        dropout: Dropout before the classifier.
        spatial_dims: 1, 2 or 3.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        channels: int = 256,
        in_index: int = 2,
        num_convs: int = 1,
        concat_input: bool = False,
        dropout: float = 0.1,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        d = _dims(spatial_dims)
        if num_convs == 0 and channels != in_channels:
            raise ConfigError(f"FCNHead with num_convs=0 needs channels == in_channels ({in_channels}), got {channels}")
        self.in_index, self.concat_input = in_index, concat_input
        convs = [
            ConvModule(
                in_channels=in_channels if i == 0 else channels,
                out_channels=channels,
                kernel_size=3,
                padding=1,
                spatial_dims=d,
            )
            for i in range(num_convs)
        ]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        self.conv_cat = (
            ConvModule(
                in_channels=in_channels + channels, out_channels=channels, kernel_size=3, padding=1, spatial_dims=d
            )
            if concat_input
            else None
        )
        self._classifier(channels, num_classes, dropout, d)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        x = inputs[self.in_index]
        out = self.convs(x)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))
        return self.cls_seg(out)


class FPNNeck(nn.Module):
    """mmseg's ``FPN`` neck (Lin et al. 2017) without extra levels: ``[(B, C_i, *s_i)] -> [(B, out, *s_i)]``.

    1x1 lateral convs, top-down nearest upsampling and sums, then 3x3 convs; plain convs with biases (mmseg's
    default: no norm, no activation).
    """

    def __init__(self, *, in_channels: Sequence[int], out_channels: int = 256, spatial_dims: int = 2) -> None:
        super().__init__()
        d = _dims(spatial_dims)
        plain = dict(norm=False, act=False, spatial_dims=d)
        self.lateral_convs = nn.ModuleList(
            ConvModule(in_channels=c, out_channels=out_channels, kernel_size=1, **plain) for c in in_channels
        )
        self.fpn_convs = nn.ModuleList(
            ConvModule(in_channels=out_channels, out_channels=out_channels, kernel_size=3, padding=1, **plain)
            for _ in in_channels
        )

    def forward(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(x) for conv, x in zip(self.lateral_convs, inputs)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[2:], mode="nearest"
            )
        return [conv(lat) for conv, lat in zip(self.fpn_convs, laterals)]


class FPNHead(_ClassifierMixin):
    """Semantic FPN's head (Kirillov et al. 2019), mmseg's ``FPNHead``: ``[(B, C, *s_i)] -> (B, num_classes, *s_0)``.

    Level i goes through ``max(1, log2(stride_i / stride_0))`` 3x3 ConvModules, each followed by a 2x
    upsampling on the coarser levels, so every level reaches the finest map's size; the levels are summed,
    then dropout and the 1x1 classifier. Light: ``channels`` (128 in the paper) is the only width.

    Args:
        in_channels: Channels of each input map (the neck's width), finest first.
        feature_strides: Stride of each map (4, 8, 16, 32 for a Swin).
        num_classes: Classes of the classifier.
        channels: Width of the convs.
        dropout: Dropout before the classifier.
        align_corners: Of every interpolation.
        spatial_dims: 1, 2 or 3.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        feature_strides: Sequence[int],
        num_classes: int,
        channels: int = 128,
        dropout: float = 0.1,
        align_corners: bool = False,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        d = _dims(spatial_dims)
        if len(in_channels) != len(feature_strides) or list(feature_strides) != sorted(feature_strides):
            raise ConfigError(
                f"FPNHead needs one increasing stride per input map, got {tuple(feature_strides)} for "
                f"{len(in_channels)} maps"
            )
        self.align_corners = align_corners
        heads = []
        for c, stride in zip(in_channels, feature_strides):
            layers: list[nn.Module] = []
            for k in range(max(1, round(math.log2(stride) - math.log2(feature_strides[0])))):
                layers.append(
                    ConvModule(
                        in_channels=c if k == 0 else channels,
                        out_channels=channels,
                        kernel_size=3,
                        padding=1,
                        spatial_dims=d,
                    )
                )
                if stride != feature_strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode=_LINEAR_MODE[d], align_corners=align_corners))
            heads.append(nn.Sequential(*layers))
        self.scale_heads = nn.ModuleList(heads)
        self._classifier(channels, num_classes, dropout, d)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        out = self.scale_heads[0](inputs[0])
        for head, x in zip(self.scale_heads[1:], inputs[1:]):
            out = out + resize(head(x), out.shape[2:], align_corners=self.align_corners)
        return self.cls_seg(out)
