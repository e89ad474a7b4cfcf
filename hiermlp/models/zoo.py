"""The variant table: every named model is one row of builder arguments plus its pretrained cfg.

Swin rows reproduce the Microsoft reference models (params exactly, see tests/test_zoo.py). Pretrained cfgs are
keyed by timm's tags (``ms_in1k``, ``ms_in22k``, ``ms_in22k_ft_in1k``, in timm's order: the default first):
URLs are the official release files (Microsoft's layout), ``hf_hub_id`` names timm's copy (timm's layout);
the loader converts both.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from hiermlp.models.registry import register_model

_RELEASE = "https://github.com/SwinTransformer/storage/releases/download"


def cfg(
    url: str = "", *, img_size: int = 224, hf_hub_id: str | None = None, num_classes: int = 1000, **kwargs: Any
) -> dict[str, Any]:
    """A pretrained cfg with every field timm's own cfgs carry (``pool_size`` is derived per row on registration).

    ``fixed_input_size=False``: hierarchical models run at any size (maps are padded per block), so timm's
    builder does not pin ``img_size`` from the cfg. ``hf_hub_id`` names timm's hub copy (timm's layout, which
    the loader converts); ``url`` the original release (Microsoft's layout).
    """
    return dict(
        url=url,
        hf_hub_id=hf_hub_id,
        custom_load=False,
        num_classes=num_classes,
        input_size=(3, img_size, img_size),
        pool_size=None,
        fixed_input_size=False,
        interpolation="bicubic",
        crop_pct=0.9 if img_size == 224 else 1.0,
        crop_mode="center",
        mean=IMAGENET_DEFAULT_MEAN,
        std=IMAGENET_DEFAULT_STD,
        first_conv="patch_embed.proj",
        classifier="head.fc",
        license="mit",
        **kwargs,
    )


def ms_cfgs(name: str, tags: dict[str, str], img_size: int = 224) -> dict[str, dict[str, Any]]:
    """The Microsoft releases of a Swin as timm tags them: ``{tag: release path}`` -> ``{tag: cfg}``, in
    timm's order (its default first). ``ms_in22k`` heads have 21,841 classes."""
    return {
        tag: cfg(
            f"{_RELEASE}/{path}",
            img_size=img_size,
            hf_hub_id=f"timm/{name}.{tag}",
            num_classes=21841 if tag == "ms_in22k" else 1000,
        )
        for tag, path in tags.items()
    }


# ---- Swin Transformer (V1) --------------------------------------------------------------------------
SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
SWIN_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
SWIN_L = dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48))

SWIN_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]], str]] = {
    # name: (builder kwargs, {pretrained tag: cfg}, note)
    "swin_tiny_patch4_window7_224": (
        dict(**SWIN_T, window_size=7, img_size=224, drop_path_rate=0.2),
        ms_cfgs(
            "swin_tiny_patch4_window7_224",
            dict(
                ms_in1k="v1.0.0/swin_tiny_patch4_window7_224.pth",
                ms_in22k_ft_in1k="v1.0.8/swin_tiny_patch4_window7_224_22kto1k_finetune.pth",
                ms_in22k="v1.0.8/swin_tiny_patch4_window7_224_22k.pth",
            ),
        ),
        "Swin-T, IN-1K 81.2",
    ),
    "swin_small_patch4_window7_224": (
        dict(**SWIN_S, window_size=7, img_size=224, drop_path_rate=0.3),
        ms_cfgs(
            "swin_small_patch4_window7_224",
            dict(
                ms_in22k_ft_in1k="v1.0.8/swin_small_patch4_window7_224_22kto1k_finetune.pth",
                ms_in1k="v1.0.0/swin_small_patch4_window7_224.pth",
                ms_in22k="v1.0.8/swin_small_patch4_window7_224_22k.pth",
            ),
        ),
        "Swin-S, IN-22K -> 1K 83.2 (the default tag; ms_in1k: IN-1K 83.2)",
    ),
    "swin_base_patch4_window7_224": (
        dict(**SWIN_B, window_size=7, img_size=224, drop_path_rate=0.5),
        ms_cfgs(
            "swin_base_patch4_window7_224",
            dict(
                ms_in22k_ft_in1k="v1.0.0/swin_base_patch4_window7_224_22kto1k.pth",
                ms_in1k="v1.0.0/swin_base_patch4_window7_224.pth",
                ms_in22k="v1.0.0/swin_base_patch4_window7_224_22k.pth",
            ),
        ),
        "Swin-B, IN-22K -> 1K 85.2 (the default tag; ms_in1k: IN-1K 83.5)",
    ),
    "swin_base_patch4_window12_384": (
        dict(**SWIN_B, window_size=12, img_size=384, drop_path_rate=0.5),
        ms_cfgs(
            "swin_base_patch4_window12_384",
            dict(
                ms_in22k_ft_in1k="v1.0.0/swin_base_patch4_window12_384_22kto1k.pth",
                ms_in1k="v1.0.0/swin_base_patch4_window12_384.pth",
                ms_in22k="v1.0.0/swin_base_patch4_window12_384_22k.pth",
            ),
            img_size=384,
        ),
        "Swin-B 384, IN-22K -> 1K 86.4 (the default tag; ms_in1k: IN-1K 84.5)",
    ),
    "swin_large_patch4_window7_224": (
        dict(**SWIN_L, window_size=7, img_size=224, drop_path_rate=0.5),
        ms_cfgs(
            "swin_large_patch4_window7_224",
            dict(
                ms_in22k_ft_in1k="v1.0.0/swin_large_patch4_window7_224_22kto1k.pth",
                ms_in22k="v1.0.0/swin_large_patch4_window7_224_22k.pth",
            ),
        ),
        "Swin-L, IN-22K -> 1K 86.3",
    ),
    "swin_large_patch4_window12_384": (
        dict(**SWIN_L, window_size=12, img_size=384, drop_path_rate=0.5),
        ms_cfgs(
            "swin_large_patch4_window12_384",
            dict(
                ms_in22k_ft_in1k="v1.0.0/swin_large_patch4_window12_384_22kto1k.pth",
                ms_in22k="v1.0.0/swin_large_patch4_window12_384_22k.pth",
            ),
            img_size=384,
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
        {"ms_in1k": cfg(f"{_RELEASE}/v1.0.5/swin_tiny_c24_patch4_window8_256.pth", img_size=256)},
        "Swin-T/C24 at 256 (the Swin-MLP paper's attention control), IN-1K 81.6",
    ),
}

for _name, (_kwargs, _cfg, _note) in SWIN_VARIANTS.items():
    register_model(_name, pretrained_cfgs=_cfg, family="swin", notes=_note, **_kwargs)


# ---- Swin-MLP (reference "Swin-Mixer", microsoft models/swin_mlp.py) ----------------------------------
# heads = channels / 24, /12, /6 ("C24/C12/C6"). Params equal the reference exactly (tests/test_mlp_models.py).
# GMACs are torch.utils.flop_counter's (hiermlp.bench.count_gmacs) at the model's size: "roll" is hiermlp's
# cyclic shift + masked weight (auto), "pad" the reference zero-padding shift (shift_mode="pad", one more
# row and column of windows per shifted block, what the reference's own count assumes). Same function.
SWIN_MLP_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]], str]] = {
    "swin_mlp_tiny_c24_patch4_window8_256": (
        dict(**SWIN_T, window_size=8, img_size=256, drop_path_rate=0.2) | dict(num_heads=(4, 8, 16, 32)),
        {"ms_in1k": cfg(f"{_RELEASE}/v1.0.5/swin_mlp_tiny_c24_patch4_window8_256.pth", img_size=256)},
        "Swin-MLP-T/C24, 20.39M, 3.99 GMACs roll / 4.03 pad (ref 4.03), IN-1K 79.4",
    ),
    "swin_mlp_tiny_c12_patch4_window8_256": (
        dict(**SWIN_T, window_size=8, img_size=256, drop_path_rate=0.2) | dict(num_heads=(8, 16, 32, 64)),
        {"ms_in1k": cfg(f"{_RELEASE}/v1.0.5/swin_mlp_tiny_c12_patch4_window8_256.pth", img_size=256)},
        "Swin-MLP-T/C12, 21.15M, 3.99 GMACs roll / 4.03 pad (ref 4.03), IN-1K 79.6",
    ),
    "swin_mlp_tiny_c6_patch4_window8_256": (
        dict(**SWIN_T, window_size=8, img_size=256, drop_path_rate=0.2) | dict(num_heads=(16, 32, 64, 128)),
        {"ms_in1k": cfg(f"{_RELEASE}/v1.0.5/swin_mlp_tiny_c6_patch4_window8_256.pth", img_size=256)},
        "Swin-MLP-T/C6, 22.68M, 3.99 GMACs roll / 4.03 pad (ref 4.03), IN-1K 79.7",
    ),
    "swin_mlp_base_patch4_window7_224": (
        dict(**SWIN_B, window_size=7, img_size=224, drop_path_rate=0.5),
        {"ms_in1k": cfg(f"{_RELEASE}/v1.0.5/swin_mlp_base_patch4_window7_224.pth")},
        "Swin-MLP-B (heads = C/32), 60.66M, 10.35 GMACs roll / 10.41 pad (ref 10.42), IN-1K 81.3",
    ),
}

for _name, (_kwargs, _cfg, _note) in SWIN_MLP_VARIANTS.items():
    register_model(_name, pretrained_cfgs=_cfg, family="swin_mlp", notes=_note, mixer="spatial_mlp", **_kwargs)


# ---- Window MLP-Mixer, window gMLP, hybrid and baselines (hiermlp's own; no released weights) ---------
# Sized to Swin-T/S/B compute at 224 (4.49/8.75/15.44 GMACs): a window token MLP (hidden 2N = 98) or a gMLP
# body (fc1 6C, gate over 49 tokens, fc2 3C -> C: 9C^2 per token) is cheaper than attention + channel MLP
# (12C^2 + 2NC), so the families buy the difference back with depth (tiny: 10 blocks in stage 3) or width
# (small/base: 112/152 and 108/144 channels with Swin-S/B depths). token_mlp cannot be masked and shifts by
# zero padding (GMACs counted that way); gmlp masks its spatial weight and rolls.
MLP_VARIANTS: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (builder kwargs, family, note)
    "winmixer_tiny_patch4_window7_224": (
        dict(embed_dim=96, depths=(2, 2, 10, 2), num_heads=1, mixer="token_mlp", drop_path_rate=0.2),
        "winmixer",
        "window MLP-Mixer-T: token MLP 49->98->49 per window, pad shift; 24.51M, 4.35 GMACs",
    ),
    "winmixer_small_patch4_window7_224": (
        dict(embed_dim=112, depths=(2, 2, 18, 2), num_heads=1, mixer="token_mlp", drop_path_rate=0.3),
        "winmixer",
        "window MLP-Mixer-S: Swin-S depths, width 112; 46.10M, 8.57 GMACs",
    ),
    "winmixer_base_patch4_window7_224": (
        dict(embed_dim=152, depths=(2, 2, 18, 2), num_heads=1, mixer="token_mlp", drop_path_rate=0.5),
        "winmixer",
        "window MLP-Mixer-B: Swin-B depths, width 152; 84.22M, 15.41 GMACs",
    ),
    "wingmlp_tiny_patch4_window7_224": (
        dict(embed_dim=96, depths=(2, 2, 10, 2), num_heads=1, mixer="gmlp", mlp_ratio=0.0, drop_path_rate=0.2),
        "wingmlp",
        "window gMLP-T: gMLP blocks (ffn 6C, one-head gate over the window, masked roll); 27.17M, 4.60 GMACs",
    ),
    "wingmlp_small_patch4_window7_224": (
        dict(embed_dim=108, depths=(2, 2, 18, 2), num_heads=1, mixer="gmlp", mlp_ratio=0.0, drop_path_rate=0.3),
        "wingmlp",
        "window gMLP-S: Swin-S depths, width 108; 47.77M, 8.52 GMACs",
    ),
    "wingmlp_base_patch4_window7_224": (
        dict(embed_dim=144, depths=(2, 2, 18, 2), num_heads=1, mixer="gmlp", mlp_ratio=0.0, drop_path_rate=0.5),
        "wingmlp",
        "window gMLP-B: Swin-B depths, width 144; 84.42M, 14.97 GMACs",
    ),
    "hybrid_tiny_patch4_window7_224": (
        dict(
            **SWIN_T,
            mixer=("spatial_mlp", "spatial_mlp", "attention", "attention"),
            drop_path_rate=0.2,
        )
        | dict(num_heads=(4, 8, 12, 24)),
        "hybrid",
        "Swin-T with Swin-MLP (C24) mixers in stages 1-2, attention in 3-4; 27.97M, 3.98 GMACs",
    ),
    "winpool_tiny_patch4_window7_224": (
        dict(**SWIN_T, mixer="pool", drop_path_rate=0.1) | dict(num_heads=1),
        "baseline",
        "PoolFormer-style baseline: window mean minus token (masked roll), no mixer params; 19.62M, 3.00 GMACs",
    ),
    "identity_tiny_patch4_window7_224": (
        dict(**SWIN_T, mixer="identity", drop_path_rate=0.1) | dict(num_heads=1),
        "baseline",
        "no token mixing (MetaFormer's lower bound): Swin-T stem/merging/channel MLPs only; 19.62M, 2.96 GMACs",
    ),
}

for _name, (_kwargs, _family, _note) in MLP_VARIANTS.items():
    register_model(_name, pretrained_cfg=cfg(), family=_family, notes=_note, **_kwargs)


# ---- Isotropic references from timm (one stage, patch 16, the 14x14 map is one window, no shift) ------
# Same functions as timm's models (logits within 1e-5 after conversion), so timm's weights load directly.
_TIMM_RELEASE = "https://github.com/rwightman/pytorch-image-models/releases/download"
ISOTROPIC = dict(
    img_size=224,
    patch_size=16,
    num_heads=1,
    window_size=14,
    shift=False,
    downsample=False,
    patch_norm=False,
    norm_eps=1e-6,
    drop_path_rate=0.0,
)


def _timm_cfg(url: str, hf_hub_id: str, num_classes: int = 1000, miil: bool = False) -> dict[str, Any]:
    # the token maps are sized for 196 tokens: other input sizes would re-window the map
    fixed = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.875, fixed_input_size=True)
    if miil:  # Alibaba MIIL's weights: unnormalised inputs, bilinear resize (as timm's cfgs)
        fixed |= dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear")
    return cfg(url, hf_hub_id=hf_hub_id, num_classes=num_classes) | fixed | dict(license="apache-2.0")


register_model(
    "mixer_b16_224",
    pretrained_cfgs={  # timm's tags, in timm's order
        "goog_in21k_ft_in1k": _timm_cfg(
            f"{_TIMM_RELEASE}/v0.1-vitjx/jx_mixer_b16_224-76587d61.pth", "timm/mixer_b16_224.goog_in21k_ft_in1k"
        ),
        "goog_in21k": _timm_cfg(
            f"{_TIMM_RELEASE}/v0.1-vitjx/jx_mixer_b16_224_in21k-617b3de2.pth", "timm/mixer_b16_224.goog_in21k", 21843
        ),
        "miil_in21k": _timm_cfg(
            f"{_TIMM_RELEASE}/v0.1-tresnet/mixer_b16_224_miil_in21k-2a558a71.pth",
            "timm/mixer_b16_224.miil_in21k",
            11221,
            miil=True,
        ),
        "miil_in21k_ft_in1k": _timm_cfg(
            f"{_TIMM_RELEASE}/v0.1-tresnet/mixer_b16_224_miil-9229a591.pth",
            "timm/mixer_b16_224.miil_in21k_ft_in1k",
            miil=True,
        ),
    },
    family="isotropic",
    notes="timm mixer_b16_224 (MLP-Mixer-B/16): token MLP 196->384->196, channel MLP 4C; 59.88M, 12.60 GMACs",
    **ISOTROPIC,
    embed_dim=768,
    depths=(12,),
    mixer="token_mlp",
    mixer_kwargs=dict(hidden_tokens=384),
)
register_model(
    "gmlp_s16_224",
    pretrained_cfgs={
        "ra3_in1k": _timm_cfg(
            f"{_TIMM_RELEASE}/v0.1-weights/gmlp_s16_224_raa-10536d42.pth", "timm/gmlp_s16_224.ra3_in1k"
        )
    },
    family="isotropic",
    notes="timm gmlp_s16_224 (gMLP-S): 30 gMLP blocks, ffn 6C, gate over 196 tokens; 19.42M, 4.39 GMACs",
    **ISOTROPIC,
    embed_dim=256,
    depths=(30,),
    mixer="gmlp",
    mixer_kwargs=dict(ffn_ratio=6.0),
    mlp_ratio=0.0,
)
