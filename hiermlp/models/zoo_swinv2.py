"""Swin Transformer V2 (Liu et al. 2022) as rows of the general stack: no model file of its own.

A V2 network is ``HierNet`` with the ``cosine_attention`` mixer (scaled cosine attention, log-spaced
continuous position bias), res-post-norm blocks and V2 patch merging (reduce, then norm). Rows carry timm's
names; :data:`SWINV2_ALIASES` maps the Microsoft config names to them. The window rule is timm's and the
reference's: each stage's window is clamped to its map where the map is not larger, and such a stage does
not shift. ``pretrained_window_size`` per stage normalises the position-bias coordinates: the "12to16" and
"12to24" rows were fine-tuned from window-12 weights at 192 px, whose last stage was a 6x6 map, hence
``(12, 12, 12, 6)``. Params equal timm 1.0.31's with their own heads (tests/test_swinv2.py); drop-path rates
are the reference configs' (configs/swinv2/*.yaml). URLs are the official release files; ``hf_hub_id``
names timm's copy (timm layout, also loadable).
"""

from __future__ import annotations

from typing import Any

from hiermlp.models.registry import register_alias, register_model
from hiermlp.models.zoo import cfg

_RELEASE = "https://github.com/SwinTransformer/storage/releases/download/v2.0.0"

# what makes a HierNet a Swin V2
V2 = dict(mixer="cosine_attention", norm_placement="res_post", downsample="patch_merging_v2")

V2_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
V2_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
V2_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
V2_L = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))

# fine-tuned from window 12 at 192 px: stages 1-3 had window 12, stage 4 a 6x6 map
FROM_WINDOW12 = tuple(dict(pretrained_window_size=p) for p in (12, 12, 12, 6))


def _cfg(file: str, hf_tag: str, *, img_size: int, num_classes: int = 1000) -> dict[str, Any]:
    # timm's V2 crop: 0.9 at 192 and 256, 1.0 at 384
    crop_pct = 1.0 if img_size == 384 else 0.9
    return cfg(f"{_RELEASE}/{file}.pth", img_size=img_size, hf_hub_id=f"timm/{hf_tag}") | dict(
        num_classes=num_classes, crop_pct=crop_pct
    )


# timm name: (Microsoft name, builder kwargs, pretrained cfg, note)
SWINV2_VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any], str]] = {
    "swinv2_tiny_window8_256": (
        "swinv2_tiny_patch4_window8_256",
        dict(**V2_T, window_size=8, img_size=256, drop_path_rate=0.2),
        _cfg("swinv2_tiny_patch4_window8_256", "swinv2_tiny_window8_256.ms_in1k", img_size=256),
        "Swin V2-T, window 8, 28.35M, IN-1K 81.8",
    ),
    "swinv2_tiny_window16_256": (
        "swinv2_tiny_patch4_window16_256",
        dict(**V2_T, window_size=16, img_size=256, drop_path_rate=0.2),
        _cfg("swinv2_tiny_patch4_window16_256", "swinv2_tiny_window16_256.ms_in1k", img_size=256),
        "Swin V2-T, window 16, 28.35M, IN-1K 82.8",
    ),
    "swinv2_small_window8_256": (
        "swinv2_small_patch4_window8_256",
        dict(**V2_S, window_size=8, img_size=256, drop_path_rate=0.3),
        _cfg("swinv2_small_patch4_window8_256", "swinv2_small_window8_256.ms_in1k", img_size=256),
        "Swin V2-S, window 8, 49.73M, IN-1K 83.7",
    ),
    "swinv2_small_window16_256": (
        "swinv2_small_patch4_window16_256",
        dict(**V2_S, window_size=16, img_size=256, drop_path_rate=0.3),
        _cfg("swinv2_small_patch4_window16_256", "swinv2_small_window16_256.ms_in1k", img_size=256),
        "Swin V2-S, window 16, 49.73M, IN-1K 84.1",
    ),
    "swinv2_base_window8_256": (
        "swinv2_base_patch4_window8_256",
        dict(**V2_B, window_size=8, img_size=256, drop_path_rate=0.5),
        _cfg("swinv2_base_patch4_window8_256", "swinv2_base_window8_256.ms_in1k", img_size=256),
        "Swin V2-B, window 8, 87.92M, IN-1K 84.2",
    ),
    "swinv2_base_window16_256": (
        "swinv2_base_patch4_window16_256",
        dict(**V2_B, window_size=16, img_size=256, drop_path_rate=0.5),
        _cfg("swinv2_base_patch4_window16_256", "swinv2_base_window16_256.ms_in1k", img_size=256),
        "Swin V2-B, window 16, 87.92M, IN-1K 84.6",
    ),
    "swinv2_base_window12_192": (
        "swinv2_base_patch4_window12_192_22k",
        dict(**V2_B, window_size=12, img_size=192, num_classes=21841, drop_path_rate=0.2),
        _cfg(
            "swinv2_base_patch4_window12_192_22k", "swinv2_base_window12_192.ms_in22k", img_size=192, num_classes=21841
        ),
        "Swin V2-B, window 12 at 192, ImageNet-22K head (21,841 classes), 109.28M",
    ),
    "swinv2_base_window12to16_192to256": (
        "swinv2_base_patch4_window12to16_192to256_22kto1k_ft",
        dict(**V2_B, window_size=16, img_size=256, mixer_kwargs=FROM_WINDOW12, drop_path_rate=0.2),
        _cfg(
            "swinv2_base_patch4_window12to16_192to256_22kto1k_ft",
            "swinv2_base_window12to16_192to256.ms_in22k_ft_in1k",
            img_size=256,
        ),
        "Swin V2-B, window 12 at 192 (22K) fine-tuned to window 16 at 256 (1K), 87.92M",
    ),
    "swinv2_base_window12to24_192to384": (
        "swinv2_base_patch4_window12to24_192to384_22kto1k_ft",
        dict(**V2_B, window_size=24, img_size=384, mixer_kwargs=FROM_WINDOW12, drop_path_rate=0.2),
        _cfg(
            "swinv2_base_patch4_window12to24_192to384_22kto1k_ft",
            "swinv2_base_window12to24_192to384.ms_in22k_ft_in1k",
            img_size=384,
        ),
        "Swin V2-B, window 12 at 192 (22K) fine-tuned to window 24 at 384 (1K), 87.92M",
    ),
    "swinv2_large_window12_192": (
        "swinv2_large_patch4_window12_192_22k",
        dict(**V2_L, window_size=12, img_size=192, num_classes=21841, drop_path_rate=0.2),
        _cfg(
            "swinv2_large_patch4_window12_192_22k",
            "swinv2_large_window12_192.ms_in22k",
            img_size=192,
            num_classes=21841,
        ),
        "Swin V2-L, window 12 at 192, ImageNet-22K head (21,841 classes), 228.77M",
    ),
    "swinv2_large_window12to16_192to256": (
        "swinv2_large_patch4_window12to16_192to256_22kto1k_ft",
        dict(**V2_L, window_size=16, img_size=256, mixer_kwargs=FROM_WINDOW12, drop_path_rate=0.2),
        _cfg(
            "swinv2_large_patch4_window12to16_192to256_22kto1k_ft",
            "swinv2_large_window12to16_192to256.ms_in22k_ft_in1k",
            img_size=256,
        ),
        "Swin V2-L, window 12 at 192 (22K) fine-tuned to window 16 at 256 (1K), 196.74M",
    ),
    "swinv2_large_window12to24_192to384": (
        "swinv2_large_patch4_window12to24_192to384_22kto1k_ft",
        dict(**V2_L, window_size=24, img_size=384, mixer_kwargs=FROM_WINDOW12, drop_path_rate=0.2),
        _cfg(
            "swinv2_large_patch4_window12to24_192to384_22kto1k_ft",
            "swinv2_large_window12to24_192to384.ms_in22k_ft_in1k",
            img_size=384,
        ),
        "Swin V2-L, window 12 at 192 (22K) fine-tuned to window 24 at 384 (1K), 196.74M",
    ),
}

# Microsoft config name -> timm name
SWINV2_ALIASES: dict[str, str] = {ms: name for name, (ms, *_rest) in SWINV2_VARIANTS.items()}

for _name, (_ms, _kwargs, _cfg_row, _note) in SWINV2_VARIANTS.items():
    register_model(_name, pretrained_cfg=_cfg_row, family="swinv2", notes=_note, **V2, **_kwargs)

for _alias, _name in SWINV2_ALIASES.items():
    register_alias(_alias, _name)
