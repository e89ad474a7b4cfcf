"""Swin Transformer V2 checkpoints (timm's and the Microsoft reference layout) -> hiermlp.

A V2 state dict is told from V1 by its cosine attention (``*.attn.logit_scale``, ``*.attn.cpb_mlp.*``). Both
converters are registered ``first=True``, so they are tried before the V1 ones, whose detection (``layers.``
keys; a ``layers.0.downsample``) would otherwise also accept a V2 file. The names map one to one:
``layers.i`` -> ``stages.i``, ``blocks.j.attn`` -> ``blocks.j.mixer`` (``qkv``, ``q_bias``, ``v_bias``,
``logit_scale``, ``cpb_mlp.*``, ``proj``); block norms ``norm1``/``norm2`` are the res-post norms and
``downsample.reduction``/``downsample.norm`` the V2 merging. The derived buffers the files carry
(``relative_coords_table``, ``relative_position_index``, ``attn_mask``, and timm's all-zero ``k_bias``) are
dropped: hiermlp builds them per window.
"""

from __future__ import annotations

import re

from hiermlp.errors import CheckpointError
from hiermlp.weights.convert import StateDict, drop_buffers, register_converter, rename

V2_RULES = [
    (r"^layers\.", "stages."),
    (r"\.attn\.", ".mixer."),
]


def is_swinv2(sd: StateDict) -> bool:
    """A Swin V2 state dict in timm's or the reference layout (``layers.i.blocks.j.attn.logit_scale``)."""
    return any(re.match(r"layers\.\d+\.blocks\.\d+\.attn\.(logit_scale|cpb_mlp\.)", k) for k in sd)


def _is_microsoft_swinv2(sd: StateDict) -> bool:
    # the reference merges at the END of stages 0..n-2, so stage 0 owns a downsample; timm's stage 0 never does
    return is_swinv2(sd) and "layers.0.downsample.reduction.weight" in sd


def _is_timm_swinv2(sd: StateDict) -> bool:
    return is_swinv2(sd) and "layers.0.downsample.reduction.weight" not in sd


def _drop_v2_buffers(sd: StateDict) -> StateDict:
    out = {}
    for k, v in drop_buffers(sd).items():
        if k.endswith(".attn.k_bias"):
            if v.count_nonzero():  # timm's placeholder is all zeros; V2 has no key bias to load it into
                raise CheckpointError(f"{k} is non-zero, but Swin V2 attention has no key bias")
            continue
        out[k] = v
    return out


@register_converter("timm_swinv2", _is_timm_swinv2, first=True)
def convert_timm_swinv2(sd: StateDict) -> StateDict:
    """timm's ``SwinTransformerV2`` (merging at stage starts, ``head.fc.*``) -> hiermlp."""
    return rename(_drop_v2_buffers(sd), V2_RULES)


@register_converter("microsoft_swinv2", _is_microsoft_swinv2, first=True)
def convert_microsoft_swinv2(sd: StateDict) -> StateDict:
    """Reference V2 (``{'model': sd}``, merging at the end of stages, ``head.*``, buffers stored) -> hiermlp."""
    sd = rename(
        _drop_v2_buffers(sd),
        [
            (r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) + 1}.downsample."),
            (r"^head\.(?!fc\.)", "head.fc."),
        ],
    )
    return rename(sd, V2_RULES)
