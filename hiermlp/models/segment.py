"""Segmentation models: a hiermlp backbone with a decode head, two baselines, and whole / sliding-window inference.

:class:`HierSegmentor` is mmsegmentation's ``EncoderDecoder`` on any hierarchical hiermlp backbone: the
backbone of :mod:`hiermlp.models.backbone` (one normalised map per stage, ``backbone.norm0`` ...), an optional
neck, a decode head (:mod:`hiermlp.models.decode`) and an optional auxiliary head, under mmseg's module names
(``backbone``, ``neck``, ``decode_head``, ``auxiliary_head``), so an mmseg checkpoint's keys are the model's.
``head="upernet"`` is the Swin paper's UPerNet (PPM + FPN, 512 channels) with the FCN auxiliary head on stage 3
(256 channels); ``head="fpn"`` is Semantic FPN (an FPN neck and a light head) for small budgets.

Every segmentation model here maps ``(B, C_in, H, W) -> (B, num_classes, H, W)`` logits at the input size;
``model(x, aux=True)`` returns ``(logits, aux_logits)`` (``aux_logits`` None without an auxiliary head) for a
training loss. :func:`segment_logits` runs one whole image or mmseg's sliding window (``slide``) for sizes
the model was not trained at. Models carry ``task = "segment"``.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hiermlp.errors import ConfigError, ShapeError, suggest
from hiermlp.models.backbone import HierBackbone
from hiermlp.models.decode import FCNHead, FPNHead, FPNNeck, UPerHead, resize
from hiermlp.models.inputs import check_images
from hiermlp.models.network import HierNet, no_weight_decay_names

__all__ = ["HEADS", "ConvEncoderDecoder", "HierSegmentor", "PixelLinear", "segment_logits", "slide_logits"]

HEADS = ("upernet", "fpn")
# HierNet options a segmentor decides itself (the backbone has no classifier, no final norm)
_OWN = ("num_classes", "global_pool", "drop_rate", "head_norm")


class HierSegmentor(nn.Module):
    """``(B, C_in, H, W) -> (B, num_classes, H, W)``: a hierarchical backbone, a decode head, an auxiliary head.

    Args:
        num_classes: Classes (150 for ADE20K).
        in_chans: Input channels.
        img_size: Nominal input (crop) size; sets the backbone's window rule. Other sizes run too.
        head: ``"upernet"`` (UPerHead) or ``"fpn"`` (an FPN neck with Semantic FPN's head).
        channels: Width of the decode head (UPerNet 512; Semantic FPN 128).
        pool_scales: UPerNet's pyramid pooling sizes.
        neck_channels: Width of Semantic FPN's neck.
        aux_channels: Width of the auxiliary FCN head (0: none).
        aux_index: The map the auxiliary head reads (2: stage 3 of a Swin, stride 16).
        dropout: Dropout before each classifier.
        align_corners: Of every interpolation (mmseg's Swin configs: False).
        out_indices: Backbone stages the heads read (None: all).
        frozen_stages: Freeze the stem and the first stages (see :class:`~hiermlp.models.backbone.HierBackbone`).
        norm_eval: Keep the backbone's BatchNorms in eval mode while training.
        drop_path_rate: The backbone's stochastic depth (mmseg's Swin configs: 0.3).
        backbone: A registered hierarchical classifier to start the backbone from (its builder and options,
            e.g. ``"cyclemlp_b1"``), or None for a plain :class:`~hiermlp.models.network.HierNet`.
        **backbone_options: Any other option of the backbone's builder (``embed_dim``, ``depths``,
            ``num_heads``, ``window_size``, ``mixer``, ``shift``, ``stem``, ``downsample``, ...), over the
            registered classifier's.
    """

    task = "segment"

    def __init__(
        self,
        *,
        num_classes: int = 150,
        in_chans: int = 3,
        img_size: int | tuple[int, int] = 512,
        head: str = "upernet",
        channels: int = 512,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        neck_channels: int = 256,
        aux_channels: int = 256,
        aux_index: int = 2,
        dropout: float = 0.1,
        align_corners: bool = False,
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = -1,
        norm_eval: bool = False,
        drop_path_rate: float = 0.3,
        backbone: str | None = None,
        **backbone_options: Any,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ConfigError(f"head={head!r} is not a decode head; choose one of {', '.join(HEADS)}")
        builder, options = _backbone_builder(backbone, backbone_options)
        net = builder(
            num_classes=0, in_chans=in_chans, img_size=img_size, drop_path_rate=drop_path_rate, head_norm=False,
            **options,
        )  # fmt: skip
        take = tuple(range(len(net.stages))) if out_indices is None else tuple(out_indices)
        self.backbone = HierBackbone(net, out_indices=take, frozen_stages=frozen_stages, norm_eval=norm_eval)
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, net.img_size
        self.align_corners = align_corners
        self.feature_info = self.backbone.feature_info
        maps = list(self.backbone.out_channels_list)
        self.neck: nn.Module | None = None
        if head == "upernet":
            self.decode_head: nn.Module = UPerHead(
                in_channels=maps, num_classes=num_classes, channels=channels, pool_scales=pool_scales,
                dropout=dropout, align_corners=align_corners,
            )  # fmt: skip
        else:
            self.neck = FPNNeck(in_channels=maps, out_channels=neck_channels)
            maps = [neck_channels] * len(maps)
            self.decode_head = FPNHead(
                in_channels=maps, feature_strides=self.feature_info.reduction(), num_classes=num_classes,
                channels=channels, dropout=dropout, align_corners=align_corners,
            )  # fmt: skip
        self.auxiliary_head: FCNHead | None = None
        if aux_channels:
            if not -len(maps) <= aux_index < len(maps):
                raise ConfigError(f"aux_index={aux_index} is out of range for the {len(maps)} maps the heads read")
            self.auxiliary_head = FCNHead(
                in_channels=maps[aux_index], num_classes=num_classes, channels=aux_channels, in_index=aux_index,
                dropout=dropout,
            )  # fmt: skip
        self._pools_one = head == "upernet" and 1 in tuple(pool_scales)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C_in, H, W) -> [(B, C_i, H/r_i, W/r_i), ...]``: the maps the heads read (after the neck)."""
        stem = self.backbone.patch_embed
        x = check_images(x, self.in_chans, next(stem.parameters()), int(getattr(stem, "reduction", 1)))
        if self.training and self._pools_one and x.shape[0] == 1:
            raise ShapeError(
                "UPerNet's pyramid pooling normalises a 1x1 map over the batch, which needs at least 2 images per "
                "training step on each process: raise batch_size (or call model.eval() for inference)"
            )
        feats = list(self.backbone(x).values())
        return self.neck(feats) if self.neck is not None else feats

    def forward(self, x: torch.Tensor, *, aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, num_classes, H, W)``; with ``aux`` the pair (logits, auxiliary logits or None)."""
        feats = self.forward_features(x)
        logits = resize(self.decode_head(feats), x.shape[2:], align_corners=self.align_corners)
        if not aux:
            return logits
        if self.auxiliary_head is None:
            return logits, None
        return logits, resize(self.auxiliary_head(feats), x.shape[2:], align_corners=self.align_corners)

    # ---- timm-style model API ----------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.decode_head.conv_seg

    def reset_classifier(self, num_classes: int) -> None:
        """New classifiers (decode and auxiliary heads) for ``num_classes`` classes; the rest is kept."""
        self.num_classes = num_classes
        for h in (self.decode_head, self.auxiliary_head):
            if h is not None:
                h.reset_classifier(num_classes)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The backbone's position tables (1-D tensors, norms and biases are skipped by rule)."""
        return no_weight_decay_names(self)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for s in self.backbone.stages:
            s.grad_checkpointing = enable


def _backbone_builder(name: str | None, options: dict[str, Any]) -> tuple[type[HierNet], dict[str, Any]]:
    """The backbone's builder and options: a registered classifier's (``name``) under ``options``, or HierNet's."""
    builder: Any = HierNet
    base: dict[str, Any] = {}
    if name is not None:
        from hiermlp.models.registry import get_entry

        entry = get_entry(name)
        if not (isinstance(entry.builder, type) and issubclass(entry.builder, HierNet)) or entry.task != "classify":
            raise ConfigError(f"backbone={name!r} is not a hierarchical classifier; use one of `hiermlp list`")
        builder = entry.builder
        base = {k: v for k, v in entry.kwargs.items() if k not in (*_OWN, "img_size", "drop_path_rate")}
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):  # a subclass passing its options on: HierNet's
        params = {**inspect.signature(HierNet).parameters, **params}
    valid = [k for k, p in params.items() if k not in _OWN and p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown segmentation model option(s) {unknown}.{suggest(unknown[0], valid)} A segmentor takes its "
            f"head options and the backbone's ({builder.__name__}) options: {sorted(valid)}"
        )
    return builder, {**base, **options}


def _no_drop_path(name: str, drop_path_rate: float) -> None:
    if drop_path_rate:
        raise ConfigError(f"{name} has no residual blocks for drop_path_rate={drop_path_rate} to drop: set it to 0")


class PixelLinear(nn.Module):
    """``(B, C_in, H, W) -> (B, num_classes, H, W)``: one linear map of each pixel's own values (a 1x1 conv).

    The baseline that sees no context at all: what a pixel's colour alone says about its class.

    Args:
        num_classes: Classes.
        in_chans: Input channels.
        img_size: Accepted for the trainer's uniform call: any size runs.
        drop_path_rate: Must be 0 (nothing to drop).
    """

    task = "segment"

    def __init__(
        self, *, num_classes: int = 150, in_chans: int = 3, img_size: Any = None, drop_path_rate: float = 0.0
    ) -> None:
        super().__init__()
        _no_drop_path("pixel_linear", drop_path_rate)
        self.num_classes, self.in_chans = num_classes, in_chans
        self.classifier = nn.Conv2d(in_chans, num_classes, 1)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward(self, x: torch.Tensor, *, aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, None]:
        weight = self.classifier.weight
        logits = self.classifier(check_images(x, self.in_chans, weight))
        return (logits, None) if aux else logits


class _ConvBlock(nn.Sequential):
    """Two 3x3 conv + BatchNorm + ReLU, ``(B, C_in, H, W) -> (B, C_out, H, W)`` (U-Net's double conv)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers += [nn.Conv2d(c, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class ConvEncoderDecoder(nn.Module):
    """``(B, C_in, H, W) -> (B, num_classes, H, W)``: a small U-Net (Ronneberger et al. 2015), the CNN baseline.

    ``len(widths)`` levels: a double 3x3 conv per level, 2x max-pooling between levels on the way down;
    bilinear 2x upsampling, concatenation with the level's skip and a double conv on the way up; a 1x1
    classifier. Any input size runs (upsampling goes to the skip's size).

    Args:
        num_classes: Classes.
        in_chans: Input channels.
        widths: Channels of each level, finest first.
        img_size: Accepted for the trainer's uniform call.
        drop_path_rate: Must be 0 (no residual blocks).
    """

    task = "segment"

    def __init__(
        self,
        *,
        num_classes: int = 150,
        in_chans: int = 3,
        widths: Sequence[int] = (16, 32, 64),
        img_size: Any = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        _no_drop_path("unet", drop_path_rate)
        widths = tuple(widths)
        if not widths or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ConfigError(f"widths must list at least one channel count >= 1, got {widths!r}")
        self.num_classes, self.in_chans = num_classes, in_chans
        self.down = nn.ModuleList(_ConvBlock(c_in, c) for c_in, c in zip((in_chans, *widths), widths))
        self.up = nn.ModuleList(_ConvBlock(widths[i] + widths[i + 1], widths[i]) for i in range(len(widths) - 1))
        self.classifier = nn.Conv2d(widths[0], num_classes, 1)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def forward(self, x: torch.Tensor, *, aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, None]:
        x = check_images(x, self.in_chans, self.classifier.weight)
        skips = []
        for i, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2, ceil_mode=True) if i else x)
            skips.append(x)
        for block, skip in zip(reversed(self.up), reversed(skips[:-1])):
            x = block(torch.cat([skip, resize(x, skip.shape[2:])], dim=1))
        logits = self.classifier(x)
        return (logits, None) if aux else logits


def slide_logits(model: nn.Module, x: torch.Tensor, *, crop: Sequence[int], stride: Sequence[int]) -> torch.Tensor:
    """``(B, C, *spatial) -> (B, K, *spatial)``: mmseg's ``slide`` inference.

    Crops of size ``crop`` start every ``stride`` along each axis; the last crop of an axis is moved back to end
    at the border (a map smaller than the crop is one crop of its own size). Each crop's logits are summed into
    place and every pixel is divided by the number of crops that covered it.
    """
    spatial = x.shape[2:]
    if len(crop) != len(spatial) or len(stride) != len(spatial):
        raise ConfigError(f"crop {tuple(crop)} and stride {tuple(stride)} need one value per axis of {tuple(spatial)}")
    if min(crop) < 1 or min(stride) < 1:
        raise ConfigError(f"crop {tuple(crop)} and stride {tuple(stride)} must be >= 1")
    starts = [range(max(n - c + s - 1, 0) // s + 1) for n, c, s in zip(spatial, crop, stride)]
    logits = count = None
    for grid in itertools.product(*starts):
        window = []
        for g, n, c, s in zip(grid, spatial, crop, stride):
            end = min(g * s + c, n)
            window.append(slice(max(end - c, 0), end))
        out = model(x[(slice(None), slice(None), *window)])
        if logits is None:
            logits = out.new_zeros((x.shape[0], out.shape[1], *spatial))
            count = out.new_zeros((1, 1, *spatial))
        logits[(slice(None), slice(None), *window)] += out
        count[(slice(None), slice(None), *window)] += 1
    return logits / count


def segment_logits(
    model: nn.Module,
    x: torch.Tensor,
    *,
    mode: str = "whole",
    crop: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
) -> torch.Tensor:
    """``(B, C, *spatial) -> (B, K, *spatial)`` logits of a segmentation model: ``mode="whole"`` runs the image
    at once, ``"slide"`` runs crops (:func:`slide_logits`; ``stride`` defaults to 2/3 of the crop, mmseg's
    512/341)."""
    if mode == "whole":
        return model(x)
    if mode != "slide":
        raise ConfigError(f"inference mode {mode!r} is unknown; use 'whole' or 'slide'")
    if crop is None:
        raise ConfigError("slide inference needs a crop size (the size the model was trained at)")
    stride = stride if stride is not None else [max(1, (2 * c) // 3) for c in crop]
    return slide_logits(model, x, crop=crop, stride=stride)
