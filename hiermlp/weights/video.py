"""Video Swin checkpoints -> hiermlp: torchvision's ``swin3d_*`` and the official Video Swin / mmaction layout.

torchvision (``SwinTransformer3d``): ``patch_embed.*``, ``features.{2i}.{j}.*`` the blocks of stage i,
``features.{2i+1}.*`` the patch merging after it, ``mlp.0`` / ``mlp.3`` the channel MLP, ``norm``, ``head``.
Official (SwinTransformer/Video-Swin-Transformer, mmaction2 recognizers): ``backbone.*`` in the reference
Swin layout (merging at the end of stages 0-2, ``mlp.fc1`` / ``mlp.fc2``) and the classifier
``cls_head.fc_cls.*``. Both keep ``relative_position_index`` buffers, which hiermlp rebuilds.
"""

from __future__ import annotations

import re

from hiermlp.weights.convert import (
    StateDict,
    convert_microsoft_swin,
    drop_buffers,
    register_converter,
    rename,
)


def _is_torchvision_video_swin(sd: StateDict) -> bool:
    # torchvision's 2-D Swin has its stem inside ``features.0``; the 3-D one has a separate ``patch_embed``
    return "patch_embed.proj.weight" in sd and any(k.startswith("features.") for k in sd)


def _is_mmaction_video_swin(sd: StateDict) -> bool:
    return any(k.startswith("backbone.layers.") for k in sd)


@register_converter("torchvision_video_swin", _is_torchvision_video_swin, first=True)
def convert_torchvision_video_swin(sd: StateDict) -> StateDict:
    """torchvision ``swin3d_t/s/b`` -> hiermlp (``features.{2i}`` blocks, ``features.{2i+1}`` merging)."""

    def features(m: re.Match) -> str:
        i = int(m.group(1))
        return f"stages.{i // 2}.blocks." if i % 2 == 0 else f"stages.{i // 2 + 1}.downsample."

    return rename(
        drop_buffers(sd),
        [
            (r"^features\.(\d+)\.", features),
            (r"\.attn\.relative_position_bias_table$", ".mixer.rel_pos.relative_position_bias_table"),
            (r"\.attn\.", ".mixer."),
            (r"\.mlp\.0\.", ".mlp.fc1."),
            (r"\.mlp\.3\.", ".mlp.fc2."),
            (r"^head\.", "head.fc."),
        ],
    )


@register_converter("mmaction_video_swin", _is_mmaction_video_swin, first=True)
def convert_mmaction_video_swin(sd: StateDict) -> StateDict:
    """Official Video Swin (mmaction: ``backbone.*``, ``cls_head.fc_cls.*``) -> hiermlp, through the reference
    Swin layout the backbone uses."""
    sd = rename(sd, [(r"^backbone\.", ""), (r"^cls_head\.fc_cls\.", "head.")])
    return convert_microsoft_swin({k: v for k, v in sd.items() if not k.startswith("cls_head.")})
