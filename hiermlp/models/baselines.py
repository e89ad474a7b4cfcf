"""Baseline classifiers for comparisons: a linear classifier on the pixels, a narrow timm ResNet, a 3-D CNN.

A token mixer earns its place only by beating what needs no token mixing at all. ``hiermlp compare``
trains these with the same recipe and budget as the mixers:

- ``linear_pixels``: one ``nn.Linear`` on the flattened input, ``(B, C, *spatial) -> (B, num_classes)`` (an
  image, or a clip with ``img_size=(T, H, W)``);
- ``resnet_micro``: timm's ``ResNet`` with basic blocks (2, 2, 2, 2) and channels (48, 96, 192, 384)
  (ResNet-18 at 3/4 width): 0.021 GMACs at 32x32, like the micro hierarchies of the compare presets;
- ``cnn3d_micro``: five 3x3x3 convolutions with BatchNorm and ReLU (the first strides only space, two more
  stride time and space), global average pool, linear head: the standard CNN of clips, for ``compare video``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from einops import rearrange
from timm.models import register_model as _timm_register
from torch import nn

from hiermlp.layers.conv import Conv3d

__all__ = ["LinearPixels", "cnn3d_micro", "resnet_micro"]


class LinearPixels(nn.Module):
    """A linear classifier on the raw pixels, ``(B, C, *spatial) -> (B, num_classes)``.

    Args:
        img_size: Input side (int: a square image), or the size per axis ((H, W); a clip's (T, H, W)); the input
            must have exactly this size.
        in_chans: Input channels.
        num_classes: Classes.
        drop_rate: Dropout on the pixels before the linear map.
        drop_path_rate: Accepted for the trainer's uniform call; a linear map has no residual branch for
            stochastic depth to drop, so it must be 0.
    """

    def __init__(
        self,
        *,
        img_size: int | Sequence[int] = 32,
        in_chans: int = 1,
        num_classes: int = 10,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        from hiermlp.errors import ConfigError

        if drop_path_rate:
            raise ConfigError(
                f"linear_pixels has no residual blocks for drop_path_rate={drop_path_rate} to drop: set it to 0"
            )
        size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        if not size or any(s < 1 for s in size):
            raise ConfigError(f"linear_pixels needs img_size >= 1 per axis, got {img_size!r}")
        self.img_size, self.in_chans, self.num_classes = size, in_chans, num_classes
        self.num_features = in_chans * math.prod(size)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(self.num_features, num_classes)
        nn.init.zeros_(self.fc.weight)  # the convex problem's natural start: every class equally likely
        nn.init.zeros_(self.fc.bias)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != (self.in_chans, *self.img_size):
            from hiermlp.errors import ShapeError

            raise ShapeError(
                f"linear_pixels was built for inputs {('B', self.in_chans, *self.img_size)}, "
                f"got {tuple(x.shape)}: build it with img_size/in_chans of the data"
            )
        return self.fc(self.drop(rearrange(x, "b ... -> b (...)")))


def resnet_micro(
    *,
    img_size: int | Sequence[int] = 32,
    in_chans: int = 1,
    num_classes: int = 10,
    layers: Sequence[int] = (2, 2, 2, 2),
    channels: Sequence[int] = (48, 96, 192, 384),
    stem_width: int = 48,
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """timm's ``ResNet`` with basic blocks, ``(B, C, H, W) -> (B, num_classes)``, narrow for small images.

    Args:
        img_size: Accepted for the trainer's uniform call; a CNN takes any input size.
        in_chans: Input channels.
        num_classes: Classes.
        layers: Basic blocks per stage.
        channels: Channels per stage.
        stem_width: Channels of the 7x7 stride-2 stem convolution (then a stride-2 max pool).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth over the residual blocks.
    """
    from timm.models.resnet import BasicBlock, ResNet

    del img_size  # any size: the global average pool makes the head size-independent
    return ResNet(
        block=BasicBlock,
        layers=tuple(layers),
        channels=tuple(channels),
        stem_width=stem_width,
        in_chans=in_chans,
        num_classes=num_classes,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )


def cnn3d_micro(
    *,
    img_size: int | Sequence[int] = (8, 32, 32),
    in_chans: int = 1,
    num_classes: int = 10,
    widths: Sequence[int] = (16, 32, 64),
    drop_rate: float = 0.0,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """A small 3-D CNN for clips, ``(B, C, T, H, W) -> (B, num_classes)``.

    ``conv(w0, stride (1, 2, 2))``, then per further width ``conv(w, stride 2)`` and ``conv(w)``, each a 3x3x3
    convolution, BatchNorm and ReLU; global average pool, dropout, linear head.

    Args:
        img_size: Accepted for the trainer's uniform call; the global pool makes it take any clip size.
        in_chans: Input channels.
        num_classes: Classes.
        widths: Channels of the first convolution, then of each strided pair.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Accepted for the trainer's uniform call; these plain convolutions have no residual
            branch for stochastic depth to drop, so it must be 0.
    """
    from hiermlp.errors import ConfigError

    del img_size
    if drop_path_rate:
        raise ConfigError(
            f"cnn3d_micro has no residual blocks for drop_path_rate={drop_path_rate} to drop: set it to 0"
        )
    if not widths:
        raise ConfigError("cnn3d_micro needs at least one width")

    def conv(cin: int, cout: int, stride: int | tuple[int, int, int]) -> list[nn.Module]:
        return [Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU()]

    layers = conv(in_chans, widths[0], (1, 2, 2))
    for cin, cout in itertools.pairwise(widths):
        layers += conv(cin, cout, 2) + conv(cout, cout, 1)
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(drop_rate))
    net.append(nn.Linear(widths[-1], num_classes))
    return net


def _timm_builder(build: Callable[..., nn.Module], name: str) -> Callable[..., nn.Module]:
    """A timm entrypoint for ``build``: these have no pretrained weights and no hierarchy API."""

    def entry(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        from hiermlp.errors import ConfigError

        for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm's loader options
            kwargs.pop(key, None)
        if pretrained:
            raise ConfigError(f"{name} is a baseline trained from scratch: it has no pretrained weights")
        return build(**kwargs)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = build.__doc__
    return entry


# Registered in timm's registry (timm.create_model("linear_pixels"), and so by name in every hiermlp config):
# hiermlp's own registry lists Swin-style networks with a pretrained cfg, feature maps and ``head.fc``, which
# these baselines are not.
_timm_register(_timm_builder(LinearPixels, "linear_pixels"))
_timm_register(_timm_builder(resnet_micro, "resnet_micro"))
_timm_register(_timm_builder(cnn3d_micro, "cnn3d_micro"))
