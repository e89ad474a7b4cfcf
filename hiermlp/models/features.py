"""Multi-scale backbone wrapper (``features_only=True``) for detection and segmentation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models import FeatureInfo
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.models.network import HierNet, stage_indices


class HierFeatures(nn.Module):
    """The stem and stages of a :class:`HierNet`, returning one map per chosen stage.

    ``(B, C_in, H, W) -> [(B, C_i, H/r_i, W/r_i), ...]`` (``output_fmt="NCHW"``, what detection and
    segmentation necks expect) or channels-last with ``"NHWC"``. Stages after the last index, the final norm
    and the head are dropped. ``feature_info`` is timm's :class:`FeatureInfo`
    (``.channels()``, ``.reduction()``). State-dict keys equal the full model's, so checkpoints load as is.
    """

    def __init__(self, model: HierNet, out_indices: Sequence[int] | None = None, output_fmt: str = "NCHW") -> None:
        super().__init__()
        if output_fmt not in ("NCHW", "NHWC"):
            raise ConfigError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        n = len(model.stages)
        self.out_indices = tuple(stage_indices(n, tuple(out_indices) if out_indices is not None else None))
        self.output_fmt = output_fmt
        self.patch_embed = model.patch_embed
        self.stages = model.stages[: max(self.out_indices) + 1]
        self.feature_info = FeatureInfo(model.feature_info, self.out_indices)
        self.pretrained_cfg = getattr(model, "pretrained_cfg", {})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        out = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                out.append(x.permute(0, 3, 1, 2).contiguous() if self.output_fmt == "NCHW" else x)
        return out

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for s in self.stages:
            s.grad_checkpointing = enable
