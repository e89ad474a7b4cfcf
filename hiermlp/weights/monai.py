"""MONAI SwinUNETR checkpoints -> hiermlp's :class:`~hiermlp.models.swin_unetr.SwinUNETR`.

MONAI's encoder is ``swinViT.layers{k}.0.blocks.{j}`` (attention ``attn.*``, channel MLP ``mlp.linear1/2``),
its merging ``swinViT.layers{k}.0.downsample`` and the v2 conv blocks ``swinViT.layers{k}c.0``; hiermlp's are
``swinViT.stages.{k-1}.blocks.{j}`` (``mixer.*``, ``mlp.fc1/2``), ``swinViT.merges.{k-1}`` and
``swinViT.convs.{k-1}``. The decoder keeps MONAI's names. The self-supervised SwinViT weights of the
SwinUNETR paper (``model_swinvit.pt``: ``module.layers{k}.0.*`` with ``mlp.fc1/2``, plus pre-training heads)
convert to the encoder's keys only; the heads are dropped.
"""

from __future__ import annotations

from hiermlp.weights.convert import StateDict, drop_buffers, register_converter, rename

ENCODER_RULES = [
    (r"^swinViT\.layers(\d)\.0\.blocks\.", lambda m: f"swinViT.stages.{int(m.group(1)) - 1}.blocks."),
    (r"^swinViT\.layers(\d)\.0\.downsample\.", lambda m: f"swinViT.merges.{int(m.group(1)) - 1}."),
    (r"^swinViT\.layers(\d)c\.0\.", lambda m: f"swinViT.convs.{int(m.group(1)) - 1}."),
    (r"\.attn\.relative_position_bias_table$", ".mixer.rel_pos.relative_position_bias_table"),
    (r"\.attn\.", ".mixer."),
    (r"\.mlp\.linear1\.", ".mlp.fc1."),
    (r"\.mlp\.linear2\.", ".mlp.fc2."),
]


def _is_monai_swin_unetr(sd: StateDict) -> bool:
    return any(k.startswith("swinViT.layers1.") for k in sd)


def _is_monai_ssl_swinvit(sd: StateDict) -> bool:
    # DistributedDataParallel's "module." prefix may already be stripped by the reader
    return any(k.startswith(("module.layers1.0.blocks.", "layers1.0.blocks.")) for k in sd)


@register_converter("monai_swin_unetr", _is_monai_swin_unetr, first=True)
def convert_monai_swin_unetr(sd: StateDict) -> StateDict:
    """MONAI ``SwinUNETR`` state dict -> hiermlp's (encoder renamed, decoder as it is)."""
    return rename(drop_buffers(sd), ENCODER_RULES)


@register_converter("monai_ssl_swinvit", _is_monai_ssl_swinvit, first=True)
def convert_monai_ssl_swinvit(sd: StateDict) -> StateDict:
    """The self-supervised SwinViT encoder (``module.patch_embed``, ``module.layers{k}.0``) -> hiermlp's encoder
    keys (``swinViT.*``); the pre-training heads and final norm, which SwinUNETR has no place for, are dropped."""
    bare = {k.removeprefix("module."): v for k, v in sd.items()}
    kept = {"swinViT." + k: v for k, v in bare.items() if k.startswith(("patch_embed.", "layers"))}
    return rename(drop_buffers(kept), ENCODER_RULES)
