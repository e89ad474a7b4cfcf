"""The hierarchical network: stem -> stages -> norm -> head, with timm's model API."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers import ClassifierHead, PatchEmbed
from hiermlp.models.block import ShiftMode
from hiermlp.models.stage import HierStage

# parameter names that never get weight decay (besides 1-D tensors, which optimizers skip by rule)
NO_WEIGHT_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed")


def per_stage(value: Any, n: int, name: str) -> tuple:
    """A scalar (or dict) for every stage, or a tuple/list with exactly one entry per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(f"{name} has {len(value)} entries but the model has {n} stages: give one per stage")
        return tuple(value)
    return (value,) * n


def to_2tuple(v: int | Sequence[int], name: str) -> tuple[int, int]:
    t = tuple(v) if isinstance(v, (list, tuple)) else (v, v)
    if len(t) != 2 or not all(isinstance(i, int) for i in t):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t


def make_norm(norm_layer: str | type[nn.Module], eps: float) -> type[nn.Module]:
    if isinstance(norm_layer, str):
        if norm_layer.lower() not in ("layernorm", "ln"):
            raise ConfigError(f"unknown norm_layer {norm_layer!r}; use 'layernorm' or pass a class")
        return functools.partial(nn.LayerNorm, eps=eps)
    return norm_layer


class HierNet(nn.Module):
    """A Swin-style hierarchical network for any token mixer, ``(B, C_in, H, W) -> (B, num_classes)``.

    Per-stage arguments take a scalar (same in every stage) or a tuple with one entry per stage, so a
    hybrid is one line: ``mixer=("spatial_mlp", "spatial_mlp", "attention", "attention")``.

    Args:
        img_size: Nominal input size; sets the window rule (clamp, no shift) per stage. Other sizes run too.
        patch_size: Stem patch size.
        in_chans: Input channels.
        num_classes: Classes of the head (0: no classifier, features are pooled).
        global_pool: Head pooling (``"avg"``, ``"max"``, ``""`` for none).
        embed_dim: Channels of stage 0 (doubling per stage), or one value per stage.
        depths: Blocks per stage.
        num_heads: Heads per stage.
        window_size: Window per stage (int, square).
        shift: Use shifted windows (per stage).
        mixer: Mixer name or class per stage; ``mixer_kwargs`` its options per stage.
        mlp_ratio: Channel MLP ratio per stage (0: the mixer block carries its own).
        shift_mode: ``"auto"``/``"roll"``/``"pad"`` per stage, see :class:`~hiermlp.models.block.HierBlock`.
        downsample: Patch merging at the start of stages 1.. (False for isotropic, single-resolution models).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, growing linearly over all blocks.
        norm_layer: ``"layernorm"`` or a norm class; ``norm_eps`` its epsilon.
        patch_norm: Norm after the stem.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: int | Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 7,
        shift: bool | Sequence[bool] = True,
        mixer: Any = "attention",
        mixer_kwargs: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None,
        mlp_ratio: float | Sequence[float] = 4.0,
        shift_mode: ShiftMode | Sequence[ShiftMode] = "auto",
        downsample: bool = True,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer: str | type[nn.Module] = "layernorm",
        norm_eps: float = 1e-5,
        patch_norm: bool = True,
    ) -> None:
        super().__init__()
        depths = tuple(depths)
        n = len(depths)
        if n == 0 or any(d < 1 for d in depths):
            raise ConfigError(f"depths must list at least one stage of >= 1 block, got {depths}")
        img_size = to_2tuple(img_size, "img_size")
        if img_size[0] < patch_size or img_size[1] < patch_size:
            raise ConfigError(f"img_size {img_size} is smaller than one {patch_size}x{patch_size} patch")
        if isinstance(embed_dim, (list, tuple)):
            dims = per_stage(embed_dim, n, "embed_dim")
        else:
            dims = tuple(embed_dim * 2**i if downsample else embed_dim for i in range(n))
        heads = per_stage(num_heads, n, "num_heads")
        windows = tuple(to_2tuple(w, "window_size") for w in per_stage(window_size, n, "window_size"))
        shifts = per_stage(shift, n, "shift")
        mixers = per_stage(mixer, n, "mixer")
        mixer_kwargs = per_stage(mixer_kwargs, n, "mixer_kwargs")
        mlp_ratios = per_stage(mlp_ratio, n, "mlp_ratio")
        shift_modes = per_stage(shift_mode, n, "shift_mode")
        norm = make_norm(norm_layer, norm_eps)

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.img_size = img_size
        self.patch_size = patch_size
        self.num_features = self.head_hidden_size = dims[-1]
        self.output_fmt = "NHWC"
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(
            patch_size=patch_size,
            in_chans=in_chans,
            embed_dim=dims[0],
            norm_layer=norm if patch_norm else None,
        )
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        feat = (math.ceil(img_size[0] / patch_size), math.ceil(img_size[1] / patch_size))
        stages, self.feature_info, in_dim, reduction = [], [], dims[0], patch_size
        for i in range(n):
            down = downsample and i > 0
            if down:
                feat, reduction = (math.ceil(feat[0] / 2), math.ceil(feat[1] / 2)), reduction * 2
            stages.append(
                HierStage(
                    in_dim=in_dim,
                    dim=dims[i],
                    depth=depths[i],
                    downsample=down,
                    feat_size=feat,
                    num_heads=heads[i],
                    window_size=windows[i],
                    shift=shifts[i],
                    mixer=mixers[i],
                    mixer_kwargs=mixer_kwargs[i],
                    mlp_ratio=mlp_ratios[i],
                    drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                    norm_layer=norm,
                    shift_mode=shift_modes[i],
                )
            )
            self.feature_info.append(dict(num_chs=dims[i], reduction=reduction, module=f"stages.{i}"))
            in_dim = dims[i]
        self.stages = nn.Sequential(*stages)
        self.norm = norm(self.num_features)
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, input_fmt="NHWC"
        )
        self.apply(_init_weights)
        for m in self.modules():  # mixers with their own init (e.g. gMLP's near-identity gate) go last
            if m is not self and hasattr(m, "init_weights"):
                m.init_weights()

    # ---- timm model API -------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names of parameters excluded from weight decay (position tables)."""
        return {n for n, _ in self.named_parameters() if n.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise lr decay (timm convention)."""
        return dict(
            stem=r"^patch_embed",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.\w+\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head.reset(num_classes, pool_type=global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W) -> (B, H/r, W/r, C)`` normalised last-stage map (channels-last)."""
        x = self.patch_embed(x)
        x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, h, w, C) -> (B, num_classes)`` (or pooled ``(B, C)`` with ``pre_logits``)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (timm API). ``indices``: an int n takes the last n stages, a sequence picks stages.

        Returns the list of maps in ``output_fmt`` (``"NCHW"`` or ``"NHWC"``), preceded by the final
        normalised features unless ``intermediates_only``. ``norm`` applies the final norm to the last stage.
        """
        take = stage_indices(len(self.stages), indices)
        if output_fmt not in ("NCHW", "NHWC"):
            raise ConfigError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        x = self.patch_embed(x)
        last = len(self.stages) - 1
        stages = self.stages[: max(take) + 1] if stop_early or intermediates_only else self.stages
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else y)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop stages after the last index (and optionally the norm and head), timm API."""
        take = stage_indices(len(self.stages), indices)
        self.stages = self.stages[: max(take) + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take


def stage_indices(n: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's convention: None -> all, int k -> the last k, sequence -> those (negative from the end)."""
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ConfigError(f"cannot take the last {indices} of {n} stages")
        return list(range(n - indices, n))
    out = [i % n if -n <= i < n else None for i in indices]
    if None in out:
        raise ConfigError(f"stage indices {tuple(indices)} out of range for {n} stages (0..{n - 1})")
    return out


def _init_weights(m: nn.Module) -> None:
    """Swin's init: trunc-normal(0.02) linear weights, zero biases, unit norms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
