"""hiermlp backbones for torchvision's detection models (``FasterRCNN``, ``MaskRCNN``, ``RetinaNet``, ...).

:class:`HierBackbone` (from :mod:`hiermlp.models.backbone`, shared with the segmentors) is the backbone as the
reference detection code (mmdet's ``SwinTransformer``) has it: the stem and stages of any hiermlp model, a norm
on each output (``norm0`` ... ``norm3``, the reference names), ``frozen_stages`` and ``norm_eval``;
:class:`HierBackboneWithFPN` adds torchvision's ``FeaturePyramidNetwork`` as torchvision's own
``BackboneWithFPN`` does, and carries ``out_channels`` as torchvision's detectors expect::

    backbone = hiermlp.detection.fpn_backbone("swin_tiny_patch4_window7_224", frozen_stages=1)
    detector = torchvision.models.detection.FasterRCNN(backbone, num_classes=91)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.models.backbone import HierBackbone
from hiermlp.models.network import HierNet

__all__ = ["HierBackbone", "HierBackboneWithFPN", "fpn_backbone"]


class HierBackboneWithFPN(nn.Module):
    """torchvision's ``BackboneWithFPN`` on a :class:`HierBackbone`: ``body`` then ``fpn``.

    ``(B, C_in, H, W) -> OrderedDict{"0": ..., "3": ..., "pool": ...}``, every map ``out_channels`` wide (the
    last-level max pool adds ``"pool"``, as torchvision's ResNet-FPN does).
    """

    def __init__(self, body: HierBackbone, *, out_channels: int = 256, extra_blocks: nn.Module | None = None) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        self.body = body
        self.fpn = FeaturePyramidNetwork(
            in_channels_list=list(body.out_channels_list),
            out_channels=out_channels,
            extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def fpn_backbone(
    model: str | HierNet,
    *,
    out_channels: int = 256,
    out_indices: int | Sequence[int] = (0, 1, 2, 3),
    frozen_stages: int = -1,
    norm_eval: bool = False,
    out_norm: bool = True,
    extra_blocks: nn.Module | None = None,
    **create_kwargs: Any,
) -> HierBackboneWithFPN:
    """A detection backbone with FPN from a hiermlp model or name (``create_kwargs`` go to ``create_model``,
    e.g. ``pretrained=True``, ``drop_path_rate=0.2``)."""
    if isinstance(model, str):
        from hiermlp.factory import create_model

        model = create_model(model, **create_kwargs)
    elif create_kwargs:
        raise ConfigError(f"create_kwargs {sorted(create_kwargs)} need a model name, not a built model")
    body = HierBackbone(
        model, out_indices=out_indices, frozen_stages=frozen_stages, norm_eval=norm_eval, out_norm=out_norm
    )
    return HierBackboneWithFPN(body, out_channels=out_channels, extra_blocks=extra_blocks)
