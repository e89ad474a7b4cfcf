"""The variant table: every named model is one row of builder arguments plus its pretrained cfg.

Swin rows reproduce the Microsoft reference models (params exactly, see tests/test_zoo.py). URLs are the
official release files; ``hf_hub_id`` names timm's copy (timm layout, also loadable).
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hiermlp.models.registry import register_model

_RELEASE = "https://github.com/SwinTransformer/storage/releases/download"


def cfg(url: str = "", *, img_size: int = 224, hf_hub_id: str = "", **kwargs: Any) -> dict[str, Any]:
    """A timm-style pretrained cfg."""
    return dict(
        url=url,
        hf_hub_id=hf_hub_id,
        num_classes=1000,
        input_size=(3, img_size, img_size),
        crop_pct=0.9 if img_size == 224 else 1.0,
        interpolation="bicubic",
        fixed_input_size=False,  # any size runs: maps are padded to window multiples per block
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="patch_embed.proj",
        classifier="head.fc",
        license="mit",
        **kwargs,
    )


# ---- Swin Transformer (V1) --------------------------------------------------------------------------
SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
SWIN_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
SWIN_L = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))

SWIN_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # name: (builder kwargs, pretrained cfg, note)
    "swin_tiny_patch4_window7_224": (
        dict(**SWIN_T, window_size=7, img_size=224, drop_path_rate=0.2),
        cfg(
            f"{_RELEASE}/v1.0.0/swin_tiny_patch4_window7_224.pth",
            hf_hub_id="timm/swin_tiny_patch4_window7_224.ms_in1k",
        ),
        "Swin-T, IN-1K 81.2",
    ),
    "swin_small_patch4_window7_224": (
        dict(**SWIN_S, window_size=7, img_size=224, drop_path_rate=0.3),
        cfg(
            f"{_RELEASE}/v1.0.0/swin_small_patch4_window7_224.pth",
            hf_hub_id="timm/swin_small_patch4_window7_224.ms_in1k",
        ),
        "Swin-S, IN-1K 83.2",
    ),
    "swin_base_patch4_window7_224": (
        dict(**SWIN_B, window_size=7, img_size=224, drop_path_rate=0.5),
        cfg(
            f"{_RELEASE}/v1.0.0/swin_base_patch4_window7_224.pth",
            hf_hub_id="timm/swin_base_patch4_window7_224.ms_in1k",
        ),
        "Swin-B, IN-1K 83.5",
    ),
    "swin_base_patch4_window12_384": (
        dict(**SWIN_B, window_size=12, img_size=384, drop_path_rate=0.5),
        cfg(
            f"{_RELEASE}/v1.0.0/swin_base_patch4_window12_384.pth",
            img_size=384,
            hf_hub_id="timm/swin_base_patch4_window12_384.ms_in1k",
        ),
        "Swin-B 384, IN-1K 84.5",
    ),
    "swin_large_patch4_window7_224": (
        dict(**SWIN_L, window_size=7, img_size=224, drop_path_rate=0.5),
        cfg(
            f"{_RELEASE}/v1.0.0/swin_large_patch4_window7_224_22kto1k.pth",
            hf_hub_id="timm/swin_large_patch4_window7_224.ms_in22k_ft_in1k",
        ),
        "Swin-L, IN-22K -> 1K 86.3",
    ),
    "swin_large_patch4_window12_384": (
        dict(**SWIN_L, window_size=12, img_size=384, drop_path_rate=0.5),
        cfg(
            f"{_RELEASE}/v1.0.0/swin_large_patch4_window12_384_22kto1k.pth",
            img_size=384,
            hf_hub_id="timm/swin_large_patch4_window12_384.ms_in22k_ft_in1k",
        ),
        "Swin-L 384, IN-22K -> 1K 87.3",
    ),
    "swin_tiny_c24_patch4_window8_256": (
        dict(
            embed_dim=96,
            depths=(2, 2, 6, 2),
            num_heads=(4, 8, 16, 32),
            window_size=8,
            img_size=256,
            drop_path_rate=0.2,
        ),
        cfg(f"{_RELEASE}/v1.0.5/swin_tiny_c24_patch4_window8_256.pth", img_size=256),
        "Swin-T/C24 at 256 (the Swin-MLP paper's attention control), IN-1K 81.6",
    ),
}

for _name, (_kwargs, _cfg, _note) in SWIN_VARIANTS.items():
    register_model(_name, pretrained_cfg=_cfg, family="swin", notes=_note, **_kwargs)
