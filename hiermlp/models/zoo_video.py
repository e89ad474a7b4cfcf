"""Video Swin (3-D): torchvision's ``swin3d_t/s/b`` as rows of the one network, and their window-MLP variants.

``HierNet(spatial_dims=3)`` on clips ``(B, 3, T, H, W)``: patch ``(2, 4, 4)`` (a Conv3d), window ``(8, 7, 7)``
shifted by ``(4, 3, 3)`` in odd blocks, a ``(15 * 13 * 13, heads)`` relative bias table, patch merging over H
and W only (``factors=(1, 2, 2)``, time kept). The rows are torchvision's models (params exactly, logits and
stage maps within 1e-5: tests/test_video_swin.py); torchvision's weights and the official Video Swin / mmaction
checkpoints (``backbone.*``, ``cls_head.fc_cls.*``) convert on load (:mod:`hiermlp.weights.video`).

The nominal clip is 32 frames at 224 (the Kinetics-400 recipe: 16 time tokens), so the time shift is on in
every stage; shorter clips follow the window rule per axis at their own size.
"""

from __future__ import annotations

from typing import Any

from hiermlp.models.registry import register_model
from hiermlp.models.zoo import cfg

_TV = "https://download.pytorch.org/models"

# torchvision's KINETICS400_V1 weights (ImageNet-1k init): clips resized to 256 and cropped to 224
VIDEO = dict(
    spatial_dims=3,
    img_size=(32, 224, 224),
    patch_size=(2, 4, 4),
    window_size=(8, 7, 7),
    downsample_kwargs=dict(factors=(1, 2, 2)),
    num_classes=400,
    drop_path_rate=0.1,
)


def video_cfg(url: str = "") -> dict[str, Any]:
    """A Kinetics-400 cfg: 400 classes, ``input_size`` (3, 32, 224, 224), torchvision's crop 224 of 256."""
    return cfg(url, num_classes=400) | dict(
        input_size=(3, 32, 224, 224), crop_pct=224 / 256, interpolation="bilinear", first_conv="patch_embed.proj"
    )


VIDEO_SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
VIDEO_SWIN_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
VIDEO_SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))

VIDEO_SWIN_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, dict[str, Any]], str]] = {
    "swin3d_t": (
        VIDEO_SWIN_T,
        {"kinetics400_v1": video_cfg(f"{_TV}/swin3d_t-7615ae03.pth")},
        "Video Swin-T = torchvision swin3d_t: 28,158,070 params, Kinetics-400 77.7 (torchvision)",
    ),
    "swin3d_s": (
        VIDEO_SWIN_S,
        {"kinetics400_v1": video_cfg(f"{_TV}/swin3d_s-da41c237.pth")},
        "Video Swin-S = torchvision swin3d_s: 49,816,678 params, Kinetics-400 79.5 (torchvision)",
    ),
    "swin3d_b": (
        VIDEO_SWIN_B,
        {
            "kinetics400_v1": video_cfg(f"{_TV}/swin3d_b_1k-24f7c7c6.pth"),
            "kinetics400_imagenet22k_v1": video_cfg(f"{_TV}/swin3d_b_22k-7c6ae6fa.pth"),
        },
        "Video Swin-B = torchvision swin3d_b: 88,048,984 params, Kinetics-400 79.4 (IN-22K init: 81.6)",
    ),
}

for _name, (_kwargs, _cfgs, _note) in VIDEO_SWIN_VARIANTS.items():
    register_model(_name, pretrained_cfgs=_cfgs, family="video_swin", notes=_note, **VIDEO, **_kwargs)


# hiermlp's own: Video Swin with window MLPs, one argument each (no released weights)
VIDEO_MLP_VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "swin3d_mlp_t": (
        VIDEO_SWIN_T | dict(mixer="spatial_mlp", num_heads=(4, 8, 16, 32)),
        "Video Swin-MLP-T: a per-head token map over (8, 7, 7) windows (392 tokens), heads = C/24",
    ),
    "swin3d_winmixer_t": (
        VIDEO_SWIN_T | dict(mixer="token_mlp", num_heads=1),
        "Video window MLP-Mixer-T: token MLP 392->784->392 per window, pad shift",
    ),
    "swin3d_wingmlp_t": (
        VIDEO_SWIN_T | dict(mixer="gmlp", num_heads=1, mlp_ratio=0.0),
        "Video window gMLP-T: gMLP blocks (ffn 6C, one-head gate over the window, masked roll)",
    ),
}

for _name, (_kwargs, _note) in VIDEO_MLP_VARIANTS.items():
    register_model(_name, pretrained_cfg=video_cfg(), family="video_mlp", notes=_note, **(VIDEO | _kwargs))


# micro clips (the embedded clips of hiermlp.data.clips, 1 x 8 x 32 x 32; `hiermlp compare video`): a 3x7x7
# conv stem of stride (2, 4, 4) -> 4 x 8 x 8 tokens, windows (2, 4, 4), three stages of two blocks at 32-64-128
# channels merging H and W only (time kept, as Video Swin): stage 1 has 2 x 2 x 2 windows, stage 2 one window
# in space (shifted in time only, by the window rule per axis), stage 3 one window
MICRO_CLIP = dict(
    spatial_dims=3,
    img_size=(8, 32, 32),
    in_chans=1,
    num_classes=10,
    stem="conv_overlap",
    stem_kwargs=dict(kernel_size=(3, 7, 7), stride=(2, 4, 4), padding=(1, 2, 2)),
    window_size=(2, 4, 4),
    embed_dim=32,
    depths=(2, 2, 2),
    num_heads=(1, 2, 4),
    downsample_kwargs=dict(factors=(1, 2, 2)),
    drop_path_rate=0.0,
)


def clip_cfg() -> dict[str, Any]:
    """The embedded clips' cfg: 10 classes, ``input_size`` (1, 8, 32, 32), their own statistics, no crop."""
    return cfg(num_classes=10) | dict(
        input_size=(1, 8, 32, 32),
        mean=(0.0973,),
        std=(0.2363,),
        interpolation="bilinear",
        crop_pct=1.0,
        first_conv="patch_embed.proj",
    )


register_model(
    "swin3d_micro_conv_window2x4_8x32",
    pretrained_cfg=clip_cfg(),
    family="video_swin",
    notes="micro Video Swin for the embedded clips (compare video): 0.57M params",
    **MICRO_CLIP,
)
