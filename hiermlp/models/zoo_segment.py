"""The segmentation rows of the zoo: UPerNet and Semantic FPN on hiermlp backbones, and two baselines.

The UPerNet rows are the Swin paper's ADE20K models as mmsegmentation configures them (150 classes, 512x512
crops, drop path 0.3, UPerHead at 512 channels with the FCN auxiliary head on stage 3 at 256): Swin-T has
59.94M parameters (the paper's 60M), Swin-S 81.26M (81M), Swin-B 121.28M (121M); tests/test_segment.py checks
the counts against an independent formulation of mmseg's heads. ``url`` points to OpenMMLab's released
checkpoints (mmseg's layout, which the loader converts). Other families take the same heads (the Swin-MLP row,
or any backbone option: ``create_model("upernet_swin_tiny_patch4_window7_512", mixer="spatial_mlp")``). The
micro rows are what ``hiermlp compare dense`` trains on 64x64 scenes.
"""

from __future__ import annotations

from typing import Any

from hiermlp.models.registry import register_model
from hiermlp.models.segment import ConvEncoderDecoder, HierSegmentor, PixelLinear
from hiermlp.models.zoo import SWIN_B, SWIN_S, SWIN_T, cfg

_MMSEG = "https://download.openmmlab.com/mmsegmentation/v0.5/swin"


def seg_cfg(url: str = "", *, num_classes: int = 150, img_size: int = 512, **kwargs: Any) -> dict[str, Any]:
    """A pretrained cfg for a segmentor: its classifiers are the decode and auxiliary heads' ``conv_seg`` (the
    class-count-tied layers, the decode head's first), its first conv the backbone's stem."""
    base = cfg(url, img_size=img_size, num_classes=num_classes) | dict(crop_pct=1.0, license="apache-2.0")
    heads = ("decode_head.conv_seg", "auxiliary_head.conv_seg")
    return base | dict(classifier=heads, first_conv="backbone.patch_embed.proj") | kwargs


def _mmseg(arch: str, pretrain: str, stamp: str) -> str:
    """OpenMMLab's ADE20K release of ``upernet_swin_<arch>``, 160k iterations at 512x512."""
    name = f"upernet_swin_{arch}_512x512_160k_ade20k_pretrain_{pretrain}"
    return f"{_MMSEG}/{name}/{name}_{stamp}.pth"


UPERNET = dict(head="upernet", channels=512, aux_channels=256, num_classes=150, img_size=512, drop_path_rate=0.3)
SEG_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # name: (builder kwargs, pretrained cfg, note)
    "upernet_swin_tiny_patch4_window7_512": (
        UPERNET | SWIN_T | dict(window_size=7),
        seg_cfg(_mmseg("tiny_patch4_window7", "224x224_1K", "20210531_112542-e380ad3e")),
        "UPerNet Swin-T, ADE20K 512x512 (paper: 60M, 44.5 mIoU; mmseg 44.41); 59.94M",
    ),
    "upernet_swin_small_patch4_window7_512": (
        UPERNET | SWIN_S | dict(window_size=7),
        seg_cfg(_mmseg("small_patch4_window7", "224x224_1K", "20210526_192015-ee2fff1c")),
        "UPerNet Swin-S, ADE20K 512x512 (paper: 81M, 47.6 mIoU); 81.26M",
    ),
    "upernet_swin_base_patch4_window7_512": (
        UPERNET | SWIN_B | dict(window_size=7),
        seg_cfg(_mmseg("base_patch4_window7", "224x224_1K", "20210526_192340-593b0e13")),
        "UPerNet Swin-B (IN-1K pretrained), ADE20K 512x512 (paper: 121M, 48.1 mIoU); 121.28M",
    ),
    "upernet_swin_base_patch4_window12_512": (
        UPERNET | SWIN_B | dict(window_size=12),
        seg_cfg(_mmseg("base_patch4_window12", "384x384_22K", "20210531_125459-429057bf")),
        "UPerNet Swin-B window 12 (IN-22K 384 pretrained: mmseg's release, not a paper row), ADE20K 512x512; 121.42M",
    ),
    "upernet_swin_mlp_tiny_c24_patch4_window8_512": (
        UPERNET | SWIN_T | dict(num_heads=(4, 8, 16, 32), window_size=8, mixer="spatial_mlp"),
        seg_cfg(),
        "UPerNet on Swin-MLP-T/C24 (no released weights)",
    ),
    "fpn_swin_tiny_patch4_window7_512": (
        dict(head="fpn", channels=128, neck_channels=256, aux_channels=0, num_classes=150, img_size=512)
        | SWIN_T
        | dict(window_size=7, drop_path_rate=0.3),
        seg_cfg(),
        "Semantic FPN on Swin-T (neck 256, head 128 channels, no auxiliary head; no released weights)",
    ),
}

# the micro segmentors of `hiermlp compare dense` (64x64 gray scenes, 11 classes): a 7x7/4 overlapping conv stem
# (16x16 tokens), three stages of two blocks at 32-64-128 channels, window 4 (the last stage is one window);
# Semantic FPN at 32 channels without dropout (a 32-channel map loses a tenth of itself to channel dropout)
MICRO = dict(
    stem="conv_overlap", stem_kwargs=dict(kernel_size=7, stride=4, padding=2), embed_dim=32, depths=(2, 2, 2),
    num_heads=(2, 4, 8), window_size=4, num_classes=11, in_chans=1, img_size=64, drop_path_rate=0.0, dropout=0.0,
)  # fmt: skip
SEG_VARIANTS |= {
    "fpn_swin_micro_window4_64": (
        MICRO | dict(head="fpn", channels=32, neck_channels=32, aux_channels=0),
        seg_cfg(num_classes=11, img_size=64) | dict(input_size=(1, 64, 64), mean=(0.1356,), std=(0.2826,)),
        "Semantic FPN (32 channels) on a micro Swin for the 64x64 embedded scenes (hiermlp compare dense); 0.64M",
    ),
    "upernet_swin_micro_window4_64": (
        MICRO | dict(head="upernet", channels=32, aux_channels=16, aux_index=1),
        seg_cfg(num_classes=11, img_size=64) | dict(input_size=(1, 64, 64), mean=(0.1356,), std=(0.2826,)),
        "UPerNet (32 channels, auxiliary head on stage 2) on the micro Swin, for the embedded scenes",
    ),
}

for _name, (_kwargs, _cfg, _note) in SEG_VARIANTS.items():
    register_model(
        _name, pretrained_cfg=_cfg, family="upernet" if _kwargs["head"] == "upernet" else "semantic_fpn",
        builder=HierSegmentor, notes=_note, task="segment", **_kwargs,
    )  # fmt: skip


# ---- baselines: what needs no context (a pixel's own value) and a standard CNN encoder-decoder ------------------
register_model(
    "pixel_linear",
    pretrained_cfg=seg_cfg(num_classes=11, img_size=64) | dict(classifier="classifier", first_conv="classifier"),
    family="baseline",
    builder=PixelLinear,
    notes="per-pixel linear classifier (a 1x1 conv): no context at all",
    task="segment",
    num_classes=11,
)
register_model(
    "unet_micro",
    pretrained_cfg=seg_cfg(num_classes=11, img_size=64) | dict(classifier="classifier", first_conv="down.0.0"),
    family="baseline",
    builder=ConvEncoderDecoder,
    notes="a small U-Net: 3 levels of double 3x3 convs (16-32-64 channels), skips, bilinear upsampling",
    task="segment",
    num_classes=11,
    widths=(16, 32, 64),
)
