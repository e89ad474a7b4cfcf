"""SwinUNETR (Hatamizadeh et al. 2022; MONAI's ``SwinUNETR``): a Swin encoder on volumes or images and a U-Net
decoder of residual conv blocks, for segmentation, ``(B, C_in, *spatial) -> (B, num_classes, *spatial)``.

The encoder is hiermlp's: patch embedding (patch 2, no norm), stages of :class:`~hiermlp.models.block.HierBlock`
(any window mixer: ``mixer="spatial_mlp"`` gives a Swin-MLP encoder with one argument), and patch merging over
every axis *after* each stage, as MONAI orders it. With ``use_v2`` a residual conv block runs before each
stage. Its five maps (the embedding and each stage's merged output), layer-normalised without affine
parameters, feed the decoder (:mod:`hiermlp.layers.unet`, MONAI's module names). MONAI's checkpoints and its
self-supervised SwinViT encoder weights convert on load (:mod:`hiermlp.weights.monai`); tests/test_swin_unetr.py
checks logits against MONAI.

Differences, where MONAI's own result is not the function it means: MONAI requires sizes divisible by 32; here
any size runs (merging pads odd maps, the decoder crops its upsampled maps to the skips), and windows padded
at a non-multiple size keep their padding in a mask region of its own (MONAI lets real tokens attend to it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hiermlp.errors import ConfigError, ShapeError
from hiermlp.layers.embed import PatchEmbed, PatchMerging
from hiermlp.layers.unet import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from hiermlp.models.inputs import check_images, per_stage, to_ntuple
from hiermlp.models.network import init_tree
from hiermlp.models.stage import HierStage

# MONAI's downsample names: its original merging ("merging", an 8-offset order of its own) and "mergingv2"
MERGINGS = {"merging": (PatchMerging, "monai"), "mergingv2": (PatchMerging, "product")}


class SwinViT(nn.Module):
    """SwinUNETR's encoder, ``(B, C_in, *spatial) -> 5 maps (B, 2^i F, *spatial / 2^(i+1))``, channels-first.

    Args:
        in_chans: Input channels.
        embed_dim: Channels after the patch embedding (MONAI's ``feature_size``).
        depths, num_heads: Blocks and heads per stage.
        window_size: Window (an int or one per axis); the window rule applies at each stage's actual size.
        mixer, mixer_kwargs: The window mixer of every block (per stage allowed).
        mlp_ratio: Channel MLP ratio (0 with mixers that carry their own, such as gmlp).
        drop_path_rate: Stochastic depth, linear over all blocks.
        spatial_dims: 3 (volumes) or 2 (images).
        downsample: ``"merging"`` (MONAI's default) or ``"mergingv2"``.
        use_v2: A residual conv block before each stage (SwinUNETR-v2).
        normalize: Layer-normalise the returned maps (no affine parameters), as MONAI does by default.
    """

    def __init__(
        self,
        *,
        in_chans: int = 1,
        embed_dim: int = 48,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 7,
        patch_size: int = 2,
        mixer: Any = "attention",
        mixer_kwargs: dict[str, Any] | None = None,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        spatial_dims: int = 3,
        downsample: str = "merging",
        use_v2: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if downsample not in MERGINGS:
            raise ConfigError(f"downsample must be one of {', '.join(MERGINGS)} (MONAI's names), got {downsample!r}")
        n = len(depths)
        window = to_ntuple(window_size, spatial_dims, "window_size")
        self.spatial_dims, self.normalize, self.in_chans = spatial_dims, normalize, in_chans
        self.patch_embed = PatchEmbed(
            in_chans=in_chans, embed_dim=embed_dim, norm_layer=None, patch_size=patch_size, spatial_dims=spatial_dims
        )
        dims = [embed_dim * 2**i for i in range(n)]
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        mixers, kwargs = per_stage(mixer, n, "mixer"), per_stage(mixer_kwargs, n, "mixer_kwargs")
        merge_cls, order = MERGINGS[downsample]
        self.stages = nn.ModuleList(
            HierStage(
                in_dim=dims[i],
                dim=dims[i],
                depth=depths[i],
                downsample=None,
                # MONAI applies the window rule at the actual size only: a nominal size larger than the window
                # keeps the configured window and shift window // 2 on every axis
                feat_size=tuple(w + 1 for w in window),
                num_heads=num_heads[i],
                window_size=window,
                mixer=mixers[i],
                mixer_kwargs=kwargs[i],
                mlp_ratio=mlp_ratio,
                drop_path=dpr[sum(depths[:i]) : sum(depths[: i + 1])],
                spatial_dims=spatial_dims,
            )
            for i in range(n)
        )
        self.merges = nn.ModuleList(
            merge_cls(dim=d, out_dim=2 * d, spatial_dims=spatial_dims, order=order) for d in dims
        )
        self.convs = (
            nn.ModuleList(UnetrBasicBlock(spatial_dims=spatial_dims, in_channels=d, out_channels=d) for d in dims)
            if use_v2
            else None
        )

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        """A channels-last map as MONAI returns it: layer-normalised (no affine) if ``normalize``, channels-first."""
        if self.normalize:
            x = F.layer_norm(x, x.shape[-1:])
        return x.movedim(-1, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        outs = [self._out(x)]
        for i, (stage, merge) in enumerate(zip(self.stages, self.merges)):
            if self.convs is not None:  # the v2 conv block runs channels-first
                x = self.convs[i](x.movedim(-1, 1)).movedim(1, -1)
            x = merge(stage(x))
            outs.append(self._out(x))
        return outs


class SwinUNETR(nn.Module):
    """SwinUNETR, ``(B, C_in, *spatial) -> (B, num_classes, *spatial)`` segmentation logits (3-D or 2-D).

    Args:
        in_chans: Input channels (MONAI's ``in_channels``).
        num_classes: Output classes (MONAI's ``out_channels``).
        feature_size: Encoder and decoder width (24 or 48 in the papers); a multiple of 12.
        spatial_dims: 3 or 2.
        depths, num_heads, window_size, patch_size, mixer, mixer_kwargs, mlp_ratio, drop_path_rate, downsample,
            use_v2, normalize: The encoder's (:class:`SwinViT`).
        img_size: Nominal input size (for the pretrained cfg and the data pipeline; the model runs at any size).
    """

    task = "segment"  # (B, num_classes, *spatial) logits: not a classifier (kept out of timm's mirror)

    def __init__(
        self,
        *,
        in_chans: int = 1,
        num_classes: int = 14,
        feature_size: int = 48,
        spatial_dims: int = 3,
        img_size: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 2, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 7,
        patch_size: int = 2,
        mixer: Any = "attention",
        mixer_kwargs: dict[str, Any] | None = None,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        downsample: str = "merging",
        use_v2: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ConfigError(
                f"SwinUNETR takes volumes (spatial_dims=3) or images (2), got spatial_dims={spatial_dims!r}"
            )
        if len(depths) != 4 or len(num_heads) != 4:
            raise ConfigError(f"SwinUNETR's decoder is built for 4 stages; got depths={tuple(depths)}")
        if feature_size % 12:
            raise ConfigError(f"feature_size must be a multiple of 12 (MONAI's rule), got {feature_size}")
        self.num_classes, self.in_chans, self.spatial_dims = num_classes, in_chans, spatial_dims
        self.img_size = to_ntuple(img_size, spatial_dims, "img_size")
        self.patch_size = patch_size
        self.swinViT = SwinViT(
            in_chans=in_chans,
            embed_dim=feature_size,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            patch_size=patch_size,
            mixer=mixer,
            mixer_kwargs=mixer_kwargs,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
            spatial_dims=spatial_dims,
            downsample=downsample,
            use_v2=use_v2,
            normalize=normalize,
        )
        f, d = feature_size, dict(spatial_dims=spatial_dims)
        self.encoder1 = UnetrBasicBlock(**d, in_channels=in_chans, out_channels=f)
        self.encoder2 = UnetrBasicBlock(**d, in_channels=f, out_channels=f)
        self.encoder3 = UnetrBasicBlock(**d, in_channels=2 * f, out_channels=2 * f)
        self.encoder4 = UnetrBasicBlock(**d, in_channels=4 * f, out_channels=4 * f)
        self.encoder10 = UnetrBasicBlock(**d, in_channels=16 * f, out_channels=16 * f)
        self.decoder5 = UnetrUpBlock(**d, in_channels=16 * f, out_channels=8 * f)
        self.decoder4 = UnetrUpBlock(**d, in_channels=8 * f, out_channels=4 * f)
        self.decoder3 = UnetrUpBlock(**d, in_channels=4 * f, out_channels=2 * f)
        self.decoder2 = UnetrUpBlock(**d, in_channels=2 * f, out_channels=f)
        self.decoder1 = UnetrUpBlock(**d, in_channels=f, out_channels=f)
        self.out = UnetOutBlock(**d, in_channels=f, out_channels=num_classes)
        init_tree(self.swinViT, _init_linear)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The encoder's five channels-first maps (strides 2, 4, 8, 16, 32)."""
        weight = self.swinViT.patch_embed.proj.weight
        return self.swinViT(check_images(x, self.in_chans, weight, self.patch_size, self.spatial_dims))

    def forward(self, x: torch.Tensor, aux: bool = False) -> torch.Tensor | tuple[torch.Tensor, None]:
        """``(B, C_in, *spatial) -> (B, num_classes, *spatial)``; ``aux=True`` returns ``(logits, None)``, the
        segmentation task's contract for models with an auxiliary head (SwinUNETR has none)."""
        logits = self.segment(x)
        return (logits, None) if aux else logits

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.forward_features(x)
        if self.training and math.prod(hidden[4].shape[2:]) == 1:  # MONAI's blocks normalise per instance
            size = "x".join(map(str, x.shape[2:]))
            raise ShapeError(
                f"SwinUNETR's deepest map (stride 32) is one voxel at input {size}, and its instance norms need more "
                "than one to train; train on inputs larger than 32 on at least one axis (e.g. 64)"
            )
        enc0 = self.encoder1(x)
        enc1 = self.encoder2(hidden[0])
        enc2 = self.encoder3(hidden[1])
        enc3 = self.encoder4(hidden[2])
        dec4 = self.encoder10(hidden[4])
        dec3 = self.decoder5(dec4, hidden[3])
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        dec0 = self.decoder2(dec1, enc1)
        return self.out(self.decoder1(dec0, enc0))


def _init_linear(m: nn.Module) -> None:
    """MONAI's SwinViT init: trunc-normal(0.02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
