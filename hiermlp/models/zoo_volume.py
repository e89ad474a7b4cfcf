"""SwinUNETR (3-D and 2-D segmentation) and 1-D hierarchies as rows of the registry.

SwinUNETR rows are MONAI's ``SwinUNETR`` (params exactly, logits within 1e-5: tests/test_swin_unetr.py) for
BTCV's 14 classes from 1-channel CT; ``_v2`` adds MONAI's conv block before each stage. The MLP rows swap the
encoder's attention for a window MLP with one argument (no released weights). The 1-D rows are the same
hierarchy on sequences ``(B, C, L)`` (audio frames, time series): patch 4, window 16, four stages.
"""

from __future__ import annotations

from typing import Any

from hiermlp.models.registry import register_model
from hiermlp.models.swin_unetr import SwinUNETR
from hiermlp.models.zoo import cfg

# MONAI's self-supervised SwinViT encoder (model_swinvit.pt, feature_size 48) loads into swin_unetr_base's
# encoder with hiermlp.load_checkpoint(model, path, strict=False): the decoder stays at its initialisation


def volume_cfg(url: str = "", *, size: int = 96, dims: int = 3, num_classes: int = 14) -> dict[str, Any]:
    """A segmentation cfg: 1-channel input of ``size`` per axis, classes per voxel, no classifier to swap."""
    return cfg(url, num_classes=num_classes) | dict(
        input_size=(1, *(size,) * dims),
        mean=(0.0,),
        std=(1.0,),
        crop_pct=1.0,
        first_conv="swinViT.patch_embed.proj",
        classifier="out.conv.conv",
        license="apache-2.0",
    )


SWIN_UNETR_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "swin_unetr_base": (
        dict(feature_size=48),
        volume_cfg(),
        "MONAI SwinUNETR, feature_size 48: 62,187,296 params; BTCV Dice 0.828 (MONAI model card)",
    ),
    "swin_unetr_small": (dict(feature_size=24), volume_cfg(), "MONAI SwinUNETR, feature_size 24: 15,703,304 params"),
    "swin_unetr_v2_base": (
        dict(feature_size=48, use_v2=True),
        volume_cfg(),
        "MONAI SwinUNETR-v2 (a conv block before each stage), feature_size 48: 72,762,656 params",
    ),
    "swin_unetr_v2_small": (
        dict(feature_size=24, use_v2=True),
        volume_cfg(),
        "MONAI SwinUNETR-v2, feature_size 24: 18,347,144 params",
    ),
    "swin_unetr_2d_small": (
        dict(feature_size=24, spatial_dims=2, img_size=224),
        volume_cfg(size=224, dims=2),
        "MONAI SwinUNETR on images (spatial_dims=2), feature_size 24",
    ),
    # hiermlp's own: SwinUNETR's encoder with window MLPs (one argument), no released weights
    "swin_unetr_mlp_small": (
        dict(feature_size=24, mixer="spatial_mlp"),
        volume_cfg(),
        "SwinUNETR with a Swin-MLP encoder (per-head token map over 7x7x7 windows), feature_size 24",
    ),
    "swin_unetr_winmixer_small": (
        dict(feature_size=24, mixer="token_mlp"),
        volume_cfg(),
        "SwinUNETR with a window MLP-Mixer encoder (token MLP 343->686->343, pad shift), feature_size 24",
    ),
    "swin_unetr_wingmlp_small": (
        dict(feature_size=24, mixer="gmlp", mlp_ratio=0.0),
        volume_cfg(),
        "SwinUNETR with a window gMLP encoder (one-head gate over 7x7x7 windows, masked roll), feature_size 24",
    ),
}

for _name, (_kwargs, _cfg, _note) in SWIN_UNETR_VARIANTS.items():
    register_model(_name, pretrained_cfg=_cfg, family="swin_unetr", builder=SwinUNETR, notes=_note, **_kwargs)


# ---- 1-D: the same hierarchy on sequences -------------------------------------------------------------------
SEQUENCE = dict(spatial_dims=1, img_size=1024, in_chans=1, patch_size=4, window_size=16, num_classes=10)


def sequence_cfg() -> dict[str, Any]:
    return cfg(num_classes=10) | dict(input_size=(1, 1024), mean=(0.0,), std=(1.0,), crop_pct=1.0)


register_model(
    "swin1d_tiny_patch4_window16",
    pretrained_cfg=sequence_cfg(),
    family="sequence",
    notes="1-D Swin-T on sequences (B, 1, 1024): attention over 16-token windows, shift 8, merging by 2",
    **SEQUENCE,
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
)
register_model(
    "swin_mlp1d_tiny_patch4_window16",
    pretrained_cfg=sequence_cfg(),
    family="sequence",
    notes="1-D Swin-MLP-T: a per-head 16x16 token map per window, the same hierarchy as swin1d_tiny",
    **SEQUENCE,
    mixer="spatial_mlp",
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(4, 8, 16, 32),
)
