"""The hierarchical MLPs of the literature as rows of the variant table: CycleMLP, AS-MLP, Wave-MLP, sMLPNet.

Every row is a :class:`~hiermlp.models.network.HierNet` configuration (mixer, norms, stem, downsampler) whose
parameters equal the official model's exactly (1000 classes; tests/test_literature.py counts every row) and
whose converted official weights give the official logits (``hiermlp.weights.literature``). GMACs are
``hiermlp.bench.count_gmacs`` at 224 (Cycle FC and axial shifts are exact reads: no multiply-adds; their
linear maps count as the official 1x1 convolutions do).

Official weights: CycleMLP and Wave-MLP on GitHub releases, sMLPNet-S/B on microsoft/SPACH's release (no
sMLPNet-T, no Wave-MLP-B released); AS-MLP's are OneDrive shares linked from svip-lab/AS-MLP's README (not
direct downloads: fetch them in a browser and pass ``checkpoint_path=``).
"""

from __future__ import annotations

from typing import Any

from hiermlp.models.network import HierNet
from hiermlp.models.registry import register_model
from hiermlp.models.zoo import cfg


class SMLPNet(HierNet):
    """A :class:`HierNet` whose stem (:class:`~hiermlp.layers.embed.PatchConvStem`) refuses input sizes other
    than ``img_size`` with an error naming it (the sparse MLPs are sized to the maps). Its rows set
    ``mlp_norm_layer="layernorm"`` while ``norm_layer`` (BatchNorm) serves the token mixers and the final norm,
    as in sMLPNet (``token_mix`` starts with a BatchNorm, ``channel_mix`` with a LayerNorm)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._tie_stem()

    def _tie_stem(self) -> None:
        if hasattr(self.patch_embed, "fixed_size"):
            self.patch_embed.fixed_size = tuple(self.img_size)

    def set_input_size(self, img_size: Any = None, window_size: Any = None) -> None:
        super().set_input_size(img_size, window_size)
        self._tie_stem()


# ---- the rows ---------------------------------------------------------------------------------------
_CYCLE = "https://github.com/ShoufaChen/CycleMLP/releases/download/v0.1"
_WAVE = "https://github.com/huawei-noah/CV-Backbones/releases/download/wavemlp"
_SPACH = "https://github.com/microsoft/SPACH/releases/download/v1.0"

# CycleMLP / Wave-MLP: overlapping 7x7/4 stem, 3x3/2 conv transitions, PVT-style widths. Drop-path rates are
# the training defaults of the official scripts (0.1: CycleMLP's DeiT-based main.py, Wave-MLP's README).
_PVT_DIMS = (64, 128, 320, 512)
_CYCLE_NET = dict(mixer="cycle", stem="conv_overlap", patch_norm=False, downsample="conv")
_CYCLE_NET |= dict(downsample_kwargs=dict(norm=False), norm_layer="layernorm", num_heads=1)

LITERATURE: dict[str, tuple[dict[str, Any], dict[str, Any], str, str]] = {
    # name: (builder kwargs, pretrained cfg, family, note)
    "cyclemlp_b1": (
        dict(_CYCLE_NET, embed_dim=_PVT_DIMS, depths=(2, 2, 4, 2), mlp_ratio=4.0, drop_path_rate=0.1),
        cfg(f"{_CYCLE}/CycleMLP_B1.pth"),
        "cyclemlp",
        "CycleMLP-B1: 15.16M, 2.12 GMACs (paper 2.1), IN-1K 78.9",
    ),
    "cyclemlp_b2": (
        dict(_CYCLE_NET, embed_dim=_PVT_DIMS, depths=(2, 3, 10, 3), mlp_ratio=4.0, drop_path_rate=0.1),
        cfg(f"{_CYCLE}/CycleMLP_B2.pth"),
        "cyclemlp",
        "CycleMLP-B2: 26.80M, 3.88 GMACs (paper 3.9), IN-1K 81.6",
    ),
    "cyclemlp_b3": (
        dict(_CYCLE_NET, embed_dim=_PVT_DIMS, depths=(3, 4, 18, 3), mlp_ratio=(8, 8, 4, 4), drop_path_rate=0.1),
        cfg(f"{_CYCLE}/CycleMLP_B3.pth"),
        "cyclemlp",
        "CycleMLP-B3: 38.39M, 6.83 GMACs (paper 6.9), IN-1K 82.4",
    ),
    "cyclemlp_b4": (
        dict(_CYCLE_NET, embed_dim=_PVT_DIMS, depths=(3, 8, 27, 3), mlp_ratio=(8, 8, 4, 4), drop_path_rate=0.1),
        cfg(f"{_CYCLE}/CycleMLP_B4.pth") | dict(crop_pct=0.875),
        "cyclemlp",
        "CycleMLP-B4: 51.80M, 10.03 GMACs (paper 10.1), IN-1K 83.0",
    ),
    "cyclemlp_b5": (
        dict(_CYCLE_NET, embed_dim=(96, 192, 384, 768), depths=(3, 4, 24, 3), mlp_ratio=4.0, drop_path_rate=0.1),
        cfg(f"{_CYCLE}/CycleMLP_B5.pth") | dict(crop_pct=0.875),
        "cyclemlp",
        "CycleMLP-B5: 75.75M, 12.23 GMACs (paper 12.3), IN-1K 83.2",
    ),
}

# AS-MLP: Swin's patch embed and merging, GroupNorm(1, C) everywhere, axial shift 5; Swin-T/S/B's drop-path rates
_AS_NET = dict(mixer="axial_shift", mixer_kwargs=dict(shift_size=5), norm_layer="groupnorm", num_heads=1)
for _name, _dims, _depths, _dpr, _note in (
    ("tiny", 96, (2, 2, 6, 2), 0.2, "AS-MLP-T: 28.28M, 4.35 GMACs (paper 4.4), IN-1K 81.3"),
    ("small", 96, (2, 2, 18, 2), 0.3, "AS-MLP-S: 49.59M, 8.51 GMACs (paper 8.5), IN-1K 83.1"),
    ("base", 128, (2, 2, 18, 2), 0.5, "AS-MLP-B: 87.75M, 15.13 GMACs (paper 15.2), IN-1K 83.3"),
):
    LITERATURE[f"asmlp_{_name}_patch4_shift5_224"] = (
        dict(_AS_NET, embed_dim=_dims, depths=_depths, drop_path_rate=_dpr),
        cfg() | dict(license=None),
        "asmlp",
        _note,
    )

# Wave-MLP: BatchNorm (T) or GroupNorm(1, C) (S/M/B) blocks; M/B without stem/transition norms
_WAVE_NET = dict(mixer="wave", stem="conv_overlap", downsample="conv", num_heads=1, drop_path_rate=0.1)
for _name, _kwargs, _url, _crop, _note in (
    (
        "t_dw",
        dict(depths=(2, 2, 4, 2), norm_layer="batchnorm", mixer_kwargs=dict(mode="depthwise")),
        "WaveMLP_T_dw.pth.tar",
        0.9,
        "Wave-MLP-T-dw: 15.29M, 2.16 GMACs (paper 2.1), IN-1K 80.1",
    ),
    (
        "t",
        dict(depths=(2, 2, 4, 2), norm_layer="batchnorm"),
        "WaveMLP_T.pth.tar",
        0.9,
        "Wave-MLP-T: 17.19M, 2.46 GMACs (paper 2.4), IN-1K 80.9",
    ),
    (
        "s",
        dict(depths=(2, 3, 10, 3), norm_layer="groupnorm"),
        "WaveMLP_S.pth.tar",
        0.9,
        "Wave-MLP-S: 30.71M, 4.52 GMACs (paper 4.5), IN-1K 82.9",
    ),
    (
        "m",
        dict(depths=(3, 4, 18, 3), mlp_ratio=(8, 8, 4, 4), norm_layer="groupnorm", patch_norm=False)
        | dict(downsample_kwargs=dict(norm=False)),
        "WaveMLP_M.pth.tar",
        0.9,
        "Wave-MLP-M: 44.06M, 7.87 GMACs (paper 7.9), IN-1K 83.3",
    ),
    (
        "b",
        dict(embed_dim=(96, 192, 384, 768), depths=(2, 2, 18, 2), norm_layer="groupnorm", patch_norm=False)
        | dict(downsample_kwargs=dict(norm=False)),
        "",
        0.875,
        "Wave-MLP-B: 63.59M, 10.22 GMACs (paper 10.2), no released weights",
    ),
):
    LITERATURE[f"wavemlp_{_name}"] = (
        dict(dict(_WAVE_NET, embed_dim=_PVT_DIMS, mlp_ratio=4.0), **_kwargs),
        cfg(f"{_WAVE}/{_url}" if _url else "") | dict(crop_pct=_crop, license=None),
        "wavemlp",
        _note,
    )

# sMLPNet: 4x4 patch conv, BatchNorm before the token mixer, LayerNorm before the channel MLP (ratio 3),
# 2x2 conv transitions, final BatchNorm; tied to 224 (the row/column MLPs are sized to the maps); drop-path
# rates of microsoft/SPACH's registry (dp_rate)
_SMLP_NET = dict(mixer="smlp", stem="patch_conv", patch_norm=False, downsample="patch_conv", mlp_ratio=3.0)
_SMLP_NET |= dict(norm_layer="batchnorm", mlp_norm_layer="layernorm", num_heads=1, img_size=224)
for _name, _dim, _depths, _dpr, _url, _note in (
    ("tiny", 80, (2, 8, 14, 2), 0.0, "", "sMLPNet-T: 24.12M, 4.99 GMACs (paper 5.0), IN-1K 81.9 (no released weights)"),
    ("small", 96, (2, 10, 24, 2), 0.2, "smlp_s.pth", "sMLPNet-S: 48.56M, 10.31 GMACs (paper 10.3), IN-1K 83.1"),
    ("base", 112, (2, 10, 24, 2), 0.3, "smlp_b.pth", "sMLPNet-B: 65.88M, 13.99 GMACs (paper 14.0), IN-1K 83.4"),
):
    LITERATURE[f"smlpnet_{_name}"] = (
        dict(_SMLP_NET, embed_dim=_dim, depths=_depths, drop_path_rate=_dpr),
        cfg(f"{_SPACH}/{_url}" if _url else "") | dict(crop_pct=0.875, fixed_input_size=True),
        "smlpnet",
        _note,
    )

for _name, (_kwargs, _cfg, _family, _note) in LITERATURE.items():
    register_model(
        _name,
        pretrained_cfg=_cfg,
        family=_family,
        notes=_note,
        builder=SMLPNet if _family == "smlpnet" else HierNet,
        **_kwargs,
    )
