"""Small rows by name: the micro models of the compare presets and the training demos, and sizes between them
and the tiny models.

* ``*_micro_*`` (32x32 input): three stages of two blocks on an 8x8 first map (a 16x16 one for the demos'
  2x2 patches), window 4, each family's own stem and downsampler. They are the ``model_kwargs`` of
  ``configs/compare/literature.yaml`` (patch 4), ``configs/compare/default.yaml`` (CycleMLP's overlapping
  7x7/4 conv stem, ``_conv_``) and ``configs/train/fmnist_*_micro.yaml`` (patch 2) under a name, so a quick
  run needs no model options: ``hiermlp train model=swin_micro_patch4_window4_32``,
  ``python train.py --model hiermlp_swin_micro_patch4_window4_32`` (timm). Every family has one, so tests and
  round trips cover every family at a size that runs in milliseconds.
* ``*_pico_*``, ``*_nano_*`` (224x224): Swin and Swin-MLP between the micro and the tiny rows, on timm's
  size ladder (ConvNeXt's atto < femto < pico < nano < tiny).

Their cfgs describe how they are evaluated: the micro rows as the small-data recipe of the presets does it
(bilinear resize, no crop, ``crop_pct`` 1.0), the 224 rows as the tiny rows (bicubic, 0.9). Params in the
notes count a 1000-class head and 3 input channels; GMACs are :func:`hiermlp.bench.count_gmacs` at the
row's input size (tests/test_zoo_micro.py checks both).
"""

from __future__ import annotations

from typing import Any

from hiermlp.models import zoo_literature as _zoo_literature  # noqa: F401  (registers rows shrunk here)
from hiermlp.models import zoo_swinv2 as _zoo_swinv2  # noqa: F401  (registers rows shrunk here)
from hiermlp.models.registry import get_entry, register_model
from hiermlp.models.zoo import cfg

# the micro geometry of the presets: 3 stages of 2 blocks, window 4, 32x32 input
_MICRO = dict(depths=(2, 2, 2), window_size=4, img_size=32, drop_path_rate=0.0)
_PATCH4 = dict(_MICRO, patch_size=4, embed_dim=64, num_heads=(2, 4, 8))
_CONV_STEM = dict(_PATCH4, stem="conv_overlap", stem_kwargs=dict(kernel_size=7, stride=4, padding=2))
_DEMO = dict(_MICRO, patch_size=2, embed_dim=32, num_heads=(2, 4, 8))

# name: (the row it shrinks, builder overrides, note)
MICRO_VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "swin_micro_patch4_window4_32": (
        "swin_tiny_patch4_window7_224",
        _PATCH4,
        "micro Swin (literature preset): 2.50M, 0.021 GMACs at 32",
    ),
    "swin_micro_conv_window4_32": (
        "swin_tiny_patch4_window7_224",
        _CONV_STEM,
        "micro Swin, 7x7/4 conv stem (default preset): 2.51M, 0.021 GMACs at 32",
    ),
    "swin_micro_patch2_window4_32": (
        "swin_tiny_patch4_window7_224",
        _DEMO,
        "micro Swin, 2x2 patches (the training demo): 0.69M, 0.021 GMACs at 32",
    ),
    "swin_mlp_micro_patch4_window4_32": (
        "swin_mlp_tiny_c24_patch4_window8_256",
        dict(_PATCH4, embed_dim=80),
        "micro Swin-MLP (literature preset): 2.75M, 0.022 GMACs at 32",
    ),
    "swin_mlp_micro_conv_window4_32": (
        "swin_mlp_tiny_c24_patch4_window8_256",
        dict(_CONV_STEM, embed_dim=80),
        "micro Swin-MLP, 7x7/4 conv stem (default preset): 2.76M, 0.023 GMACs at 32",
    ),
    "swin_mlp_micro_patch2_window4_32": (
        "swin_mlp_tiny_c24_patch4_window8_256",
        _DEMO,
        "micro Swin-MLP, 2x2 patches (the training demo): 0.53M, 0.014 GMACs at 32",
    ),
    "swinv2_micro_window4_32": (
        "swinv2_tiny_window8_256",
        _PATCH4,
        "micro Swin V2 (literature preset): 2.52M, 0.021 GMACs at 32",
    ),
    "winmixer_micro_patch4_window4_32": (
        "winmixer_tiny_patch4_window7_224",
        dict(_PATCH4, num_heads=1),
        "micro window MLP-Mixer: 1.81M, 0.015 GMACs at 32",
    ),
    "wingmlp_micro_patch4_window4_32": (
        "wingmlp_tiny_patch4_window7_224",
        dict(_PATCH4, num_heads=1),
        "micro window gMLP: 1.99M, 0.016 GMACs at 32",
    ),
    "hybrid_micro_patch4_window4_32": (
        "hybrid_tiny_patch4_window7_224",
        dict(_PATCH4, mixer=("spatial_mlp", "attention", "attention")),
        "micro hybrid: Swin-MLP mixer in stage 1, attention in 2-3: 2.47M, 0.019 GMACs at 32",
    ),
    "winpool_micro_patch4_window4_32": (
        "winpool_tiny_patch4_window7_224",
        dict(_PATCH4, num_heads=1),
        "micro pool baseline: 1.81M, 0.014 GMACs at 32",
    ),
    "identity_micro_patch4_window4_32": (
        "identity_tiny_patch4_window7_224",
        dict(_PATCH4, num_heads=1),
        "micro no-mixing baseline: 1.81M, 0.014 GMACs at 32",
    ),
    "mixer_micro_p4_32": (
        "mixer_b16_224",
        dict(img_size=32, patch_size=4, window_size=8, embed_dim=96, depths=(4,), mixer_kwargs=dict(hidden_tokens=32)),
        "micro MLP-Mixer (isotropic, 8x8 tokens): 0.42M, 0.021 GMACs at 32",
    ),
    "gmlp_micro_p4_32": (
        "gmlp_s16_224",
        dict(img_size=32, patch_size=4, window_size=8, embed_dim=80, depths=(4,)),
        "micro gMLP (isotropic, 8x8 tokens): 0.34M, 0.019 GMACs at 32",
    ),
    "cyclemlp_micro": (
        "cyclemlp_b1",
        dict(img_size=32, depths=(2, 2, 2), embed_dim=(64, 128, 256), drop_path_rate=0.0),
        "micro CycleMLP (literature preset): 2.89M, 0.022 GMACs at 32",
    ),
    "asmlp_micro_patch4_shift5_32": (
        "asmlp_tiny_patch4_shift5_224",
        dict(img_size=32, depths=(2, 2, 2), embed_dim=64, drop_path_rate=0.0),
        "micro AS-MLP (literature preset): 2.51M, 0.020 GMACs at 32",
    ),
    "wavemlp_micro": (
        "wavemlp_t",
        dict(img_size=32, depths=(2, 2, 2), embed_dim=(58, 116, 232), drop_path_rate=0.0),
        "micro Wave-MLP (literature preset): 2.70M, 0.021 GMACs at 32",
    ),
    "smlpnet_micro": (
        "smlpnet_tiny",
        dict(img_size=32, depths=(2, 2, 2), embed_dim=72, drop_path_rate=0.0),
        "micro sMLPNet (literature preset, tied to 32x32): 2.48M, 0.020 GMACs at 32",
    ),
}

# between micro and tiny at 224: Swin-T's geometry with fewer channels (and blocks)
SMALL_VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "swin_pico_patch4_window7_224": (
        "swin_tiny_patch4_window7_224",
        dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16), drop_path_rate=0.1),
        "Swin-pico: 5.51M, 0.80 GMACs",
    ),
    "swin_nano_patch4_window7_224": (
        "swin_tiny_patch4_window7_224",
        dict(embed_dim=64, depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16), drop_path_rate=0.1),
        "Swin-nano: 12.76M, 2.03 GMACs",
    ),
    "swin_mlp_pico_patch4_window7_224": (
        "swin_mlp_base_patch4_window7_224",
        dict(embed_dim=48, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16), drop_path_rate=0.1),
        "Swin-MLP-pico (heads = C/24): 4.07M, 0.54 GMACs",
    ),
    "swin_mlp_nano_patch4_window7_224": (
        "swin_mlp_base_patch4_window7_224",
        dict(embed_dim=64, depths=(2, 2, 6, 2), num_heads=(2, 4, 8, 16), drop_path_rate=0.1),
        "Swin-MLP-nano (heads = C/32): 9.13M, 1.37 GMACs",
    ),
}


def _micro_cfg(base: dict[str, Any], img_size: int) -> dict[str, Any]:
    """The base row's cfg at ``img_size``, evaluated as the small-data recipe does (bilinear, no crop)."""
    keep = {k: base[k] for k in ("mean", "std", "license") if k in base}
    out = cfg(img_size=img_size) | keep | dict(interpolation="bilinear", crop_pct=1.0)
    if base.get("fixed_input_size"):
        out["fixed_input_size"] = True
    return out


for _name, (_base, _overrides, _note) in MICRO_VARIANTS.items():
    _entry = get_entry(_base)
    register_model(
        _name,
        pretrained_cfg=_micro_cfg(_entry.pretrained_cfg, _overrides["img_size"]),
        family=_entry.family,
        builder=_entry.builder,
        notes=_note,
        **{**_entry.kwargs, **_overrides},
    )

for _name, (_base, _overrides, _note) in SMALL_VARIANTS.items():
    _entry = get_entry(_base)
    register_model(
        _name,
        pretrained_cfg=cfg(),
        family=_entry.family,
        builder=_entry.builder,
        notes=_note,
        **{**_entry.kwargs, **_overrides},
    )
