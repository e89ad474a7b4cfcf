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

import torch
from einops import rearrange
from torch import nn

from hiermlp.errors import ShapeError
from hiermlp.layers import register_downsample, register_stem
from hiermlp.layers.embed import _pad_image
from hiermlp.models.network import HierNet
from hiermlp.models.registry import register_model
from hiermlp.models.zoo import cfg
from hiermlp.ops import pad_to_multiple

# size checks and padding compare traced sizes, einops does not know fx proxies: opaque calls under torch.fx
# (timm's and torchvision's feature extractors)
for _fn in ("check_image_size", "_pad_image", "pad_to_multiple", "rearrange"):
    torch.fx.wrap(_fn)


# ---- sMLPNet's own stem, downsampler and channel-MLP norm ---------------------------------------------
def check_image_size(x: torch.Tensor, fixed_size: tuple[int, int] | None) -> torch.Tensor:
    """``x`` (B, C, H, W), or a ShapeError naming the supported size if ``fixed_size`` is set and differs."""
    if fixed_size is not None and tuple(x.shape[-2:]) != fixed_size:
        h, w = fixed_size
        raise ShapeError(
            f"this sMLPNet is resolution-tied: its row/column MLPs are sized for {h}x{w} inputs, got "
            f"{x.shape[-2]}x{x.shape[-1]}; resize the images to {h}x{w}, or build the model with "
            f"img_size={x.shape[-2]} (new row/column weights: pretrained ones will not load)"
        )
    return x


@register_stem("patch_conv")
class PatchConvStem(nn.Module):
    """``(B, C_in, H, W) -> (B, H/p, W/p, C)``: a ``p x p`` stride-``p`` convolution, by default without bias
    (sMLPNet's ``to_patch_embedding.0``), then an optional norm. Sizes that are no multiple of ``p`` are
    zero-padded bottom/right (the official model takes multiples only).

    ``fixed_size`` (set by resolution-tied models such as :class:`SMLPNet`) makes any other input size an
    error that names the supported one, before any layer sees it.
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        embed_dim: int = 80,
        norm_layer: Any = None,
        patch_size: int = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.reduction = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size, bias=bias)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        self.fixed_size: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bottom/right zero padding to a patch multiple, as the patch_embed stem does
        x = _pad_image(check_image_size(x, self.fixed_size), (self.reduction, self.reduction))
        return self.norm(rearrange(self.proj(x), "b c h w -> b h w c"))


@register_downsample("patch_conv")
class PatchConvDownsample(nn.Module):
    """``(B, H, W, C) -> (B, H/2, W/2, out_dim)``: a 2x2 stride-2 convolution, by default without bias and
    without a norm (sMLPNet's ``to_patch_embedding.i``); an odd map is zero-padded bottom/right first."""

    def __init__(
        self, *, dim: int, out_dim: int | None = None, norm_layer: Any = None, norm: bool = False, bias: bool = False
    ) -> None:
        super().__init__()
        self.out_dim = out_dim or 2 * dim
        self.proj = nn.Conv2d(dim, self.out_dim, 2, 2, bias=bias)
        self.norm = norm_layer(self.out_dim) if norm and norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, (2, 2))  # odd maps: zero-padded bottom/right, as patch merging does
        return self.norm(rearrange(self.proj(rearrange(x, "b h w c -> b c h w")), "b c h w -> b h w c"))


class SMLPNet(HierNet):
    """A :class:`HierNet` whose stem refuses input sizes other than ``img_size`` with an error naming it (the
    sparse MLPs are sized to the maps). Its rows set ``mlp_norm_layer="layernorm"`` while ``norm_layer``
    (BatchNorm) serves the token mixers and the final norm, as in sMLPNet (``token_mix`` starts with a
    BatchNorm, ``channel_mix`` with a LayerNorm)."""

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
