"""hiermlp backbones for torchvision's detection models (``FasterRCNN``, ``MaskRCNN``, ``RetinaNet``, ...).

:class:`HierBackbone` is the backbone as the reference detection code (mmdet's ``SwinTransformer``) has it: the
stem and stages of any hiermlp model, a norm on each output (``norm0`` ... ``norm3``, the reference names),
``frozen_stages`` and ``norm_eval``; :class:`HierBackboneWithFPN` adds torchvision's ``FeaturePyramidNetwork``
as torchvision's own ``BackboneWithFPN`` does, and carries ``out_channels`` as torchvision's detectors expect::

    backbone = hiermlp.detection.fpn_backbone("swin_tiny_patch4_window7_224", frozen_stages=1)
    detector = torchvision.models.detection.FasterRCNN(backbone, num_classes=91)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from hiermlp.errors import ConfigError
from hiermlp.models.features import HierFeatures
from hiermlp.models.network import HierNet


class HierBackbone(nn.Module):
    """``(B, C_in, H, W) -> OrderedDict{"0": (B, C_0, H/r_0, W/r_0), ...}``, one NCHW map per chosen stage.

    Any input size runs (the stem and merging pad). State-dict keys are the classifier's (``patch_embed.*``,
    ``stages.i.*``) plus ``norm{i}``, so ``hiermlp.load_checkpoint(backbone, classifier_checkpoint,
    strict=False)`` loads an ImageNet checkpoint (the head and final norm are skipped; ``norm{i}`` start at
    identity-like init, as in the reference).

    Args:
        model: A :class:`HierNet` (e.g. ``hiermlp.create_model(name, pretrained=True)``).
        out_indices: Stages to return (negative from the end; an int n = the last n).
        frozen_stages: The reference's rule: ``-1`` trains everything; ``0`` freezes the stem; ``k >= 1`` also
            freezes stages ``0..k-1`` (with the merging that ends stage ``k-1`` in the reference layout, i.e.
            ``stages[k].downsample`` here) and their output norms. Frozen parts stay in eval mode.
        norm_eval: Keep every BatchNorm in eval mode while training (frozen running statistics, as detection
            fine-tuning with small batches does). LayerNorm/GroupNorm have no statistics and are unaffected.
        out_norm: A LayerNorm over channels on each output (the reference's ``norm{i}``), else none.
    """

    def __init__(
        self,
        model: HierNet,
        *,
        out_indices: int | Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        out_norm: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(model, HierNet):
            raise ConfigError(f"HierBackbone wraps a hiermlp HierNet, got {type(model).__name__}")
        n = len(model.stages)
        if not -1 <= frozen_stages <= n:
            raise ConfigError(f"frozen_stages must be in -1..{n} for a {n}-stage model, got {frozen_stages}")
        features = HierFeatures(model, out_indices, output_fmt="NHWC")
        self.out_indices = features.out_indices
        self.patch_embed = features.patch_embed
        self.stages = features.stages
        self.feature_info = features.feature_info
        self.pretrained_cfg = features.pretrained_cfg
        self.out_channels_list = self.feature_info.channels()
        for i, c in zip(self.out_indices, self.out_channels_list):
            self.add_module(f"norm{i}", nn.LayerNorm(c) if out_norm else nn.Identity())
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        frozen: list[nn.Module] = [self.patch_embed]
        for i in range(self.frozen_stages):
            if i < len(self.stages):
                frozen.append(self.stages[i])
            if i + 1 < len(self.stages):
                frozen.append(self.stages[i + 1].downsample)
            if i in self.out_indices:
                frozen.append(getattr(self, f"norm{i}"))
        return frozen

    def _freeze(self) -> None:
        for m in self._frozen_modules():
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> HierBackbone:
        super().train(mode)
        self._freeze()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.patch_embed(x)
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                y = getattr(self, f"norm{i}")(x)
                out[str(len(out))] = y.permute(0, 3, 1, 2).contiguous()
        return out


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
