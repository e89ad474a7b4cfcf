"""Baseline classifiers for comparisons: a linear classifier on the pixels, and a narrow timm ResNet.

A token mixer earns its place only by beating what needs no token mixing at all. ``hiermlp compare``
trains these with the same recipe and budget as the mixers:

- ``linear_pixels``: one ``nn.Linear`` on the flattened image, ``(B, C, H, W) -> (B, num_classes)``;
- ``resnet_micro``: timm's ``ResNet`` with basic blocks (2, 2, 2, 2) and channels (48, 96, 192, 384)
  (ResNet-18 at 3/4 width): 0.021 GMACs at 32x32, like the micro hierarchies of the compare presets.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

from hiermlp.models.registry import register_model

__all__ = ["LinearPixels", "resnet_micro"]


class LinearPixels(nn.Module):
    """A linear classifier on the raw pixels, ``(B, C, H, W) -> (B, num_classes)``.

    Args:
        img_size: Input side (int or (H, W)); the input must have exactly this size.
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
        h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.img_size, self.in_chans, self.num_classes = (h, w), in_chans, num_classes
        self.num_features = in_chans * h * w
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
                f"linear_pixels was built for inputs (B, {self.in_chans}, {self.img_size[0]}, {self.img_size[1]}), "
                f"got {tuple(x.shape)}: build it with img_size/in_chans of the data"
            )
        return self.fc(self.drop(rearrange(x, "b c h w -> b (c h w)")))


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


register_model(
    "linear_pixels",
    builder=LinearPixels,
    family="baseline",
    notes="baseline: one linear map on the flattened pixels (no token mixing, no depth)",
)
register_model(
    "resnet_micro",
    builder=resnet_micro,
    family="baseline",
    notes="baseline: timm ResNet-18 at 3/4 width, channels (48, 96, 192, 384); 0.021 GMACs at 32x32",
)
