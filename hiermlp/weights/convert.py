"""Checkpoint layouts -> hiermlp's layout.

hiermlp's names follow timm's Swin with two changes that make them mixer-generic: ``layers.i`` ->
``stages.i`` and ``blocks.j.attn`` -> ``blocks.j.mixer`` (the position table lives in
``mixer.rel_pos.relative_position_bias_table``). Each known layout is a :class:`Converter`, tried in
registration order; the first whose ``detect`` accepts the state dict converts it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

StateDict = dict[str, torch.Tensor]

# buffers that reference checkpoints carry but hiermlp rebuilds per feature size
DROPPED_BUFFERS = ("relative_position_index", "attn_mask", "relative_coords_table")


@dataclass(frozen=True)
class Converter:
    name: str
    detect: Callable[[StateDict], bool]
    convert: Callable[[StateDict], StateDict]


CONVERTERS: list[Converter] = []


def register_converter(name: str, detect: Callable[[StateDict], bool], *, first: bool = False):
    """Decorator: ``@register_converter("timm_mixer", detect_fn)`` on a ``convert(sd) -> sd`` function."""

    def add(fn: Callable[[StateDict], StateDict]) -> Callable[[StateDict], StateDict]:
        conv = Converter(name, detect, fn)
        CONVERTERS.insert(0, conv) if first else CONVERTERS.append(conv)
        return fn

    return add


def drop_buffers(sd: StateDict) -> StateDict:
    return {k: v for k, v in sd.items() if not any(k.endswith(b) for b in DROPPED_BUFFERS)}


def rename(sd: StateDict, rules: list[tuple[str, str]]) -> StateDict:
    """Apply regex substitutions, in order, to every key."""
    out = {}
    for k, v in sd.items():
        for pattern, repl in rules:
            k = re.sub(pattern, repl, k)
        out[k] = v
    return out


def _is_hiermlp(sd: StateDict) -> bool:
    return any(k.startswith("stages.") for k in sd) and not any(k.startswith("layers.") for k in sd)


def _is_microsoft_swin(sd: StateDict) -> bool:
    # the reference merges at the END of stages 0-2, so stage 0 owns a downsample; timm's stage 0 never does
    return "layers.0.downsample.reduction.weight" in sd


def _is_timm_swin(sd: StateDict) -> bool:
    return any(k.startswith("layers.") and ".blocks." in k for k in sd)


TIMM_SWIN_RULES = [
    (r"^layers\.", "stages."),
    (r"\.attn\.relative_position_bias_table$", ".mixer.rel_pos.relative_position_bias_table"),
    (r"\.attn\.", ".mixer."),
]


@register_converter("hiermlp", _is_hiermlp)
def convert_hiermlp(sd: StateDict) -> StateDict:
    return drop_buffers(sd)


@register_converter("microsoft_swin", _is_microsoft_swin)
def convert_microsoft_swin(sd: StateDict) -> StateDict:
    """Reference layout (``{'model': sd}``, merging at stage ends, ``head.*``) -> hiermlp."""
    sd = rename(
        drop_buffers(sd),
        [
            (r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample"),
            (r"^head\.", "head.fc."),
        ],
    )
    return rename(sd, TIMM_SWIN_RULES)


@register_converter("timm_swin", _is_timm_swin)
def convert_timm_swin(sd: StateDict) -> StateDict:
    """timm's ``SwinTransformer`` layout (merging at stage starts, ``head.fc.*``) -> hiermlp."""
    return rename(drop_buffers(sd), TIMM_SWIN_RULES)


def convert_state_dict(sd: StateDict) -> tuple[str, StateDict]:
    """Detect the layout and convert; returns ``(layout name, state dict)``."""
    for conv in CONVERTERS:
        if conv.detect(sd):
            return conv.name, conv.convert(sd)
    return "unknown", sd


# ---- MLP families ------------------------------------------------------------------------------------
def _is_microsoft_swin_mlp(sd: StateDict) -> bool:
    return _is_microsoft_swin(sd) and any(k.endswith(".spatial_mlp.weight") for k in sd)


@register_converter("microsoft_swin_mlp", _is_microsoft_swin_mlp, first=True)
def convert_microsoft_swin_mlp(sd: StateDict) -> StateDict:
    """Reference Swin-MLP (Microsoft layout) -> hiermlp's ``spatial_mlp`` mixer.

    The grouped ``Conv1d`` weight ``(heads*N, N, 1)`` is the ``(heads, N, N)`` einsum weight (row
    ``head*N + n``, column ``m``), and the bias ``(heads*N,)`` is ``(heads, N)``.
    """
    sd = rename(convert_microsoft_swin(sd), [(r"\.spatial_mlp\.", ".mixer.")])
    for k in [k for k in sd if k.endswith(".mixer.weight") and sd[k].ndim == 3 and sd[k].shape[-1] == 1]:
        n = sd[k].shape[1]
        sd[k] = sd[k].reshape(-1, n, n)
        bias = k[: -len("weight")] + "bias"
        if bias in sd:
            sd[bias] = sd[bias].reshape(-1, n)
    return sd


def _is_timm_mixer(sd: StateDict) -> bool:
    return "stem.proj.weight" in sd and any(".mlp_tokens.fc1." in k for k in sd)


def _is_timm_gmlp(sd: StateDict) -> bool:
    return "stem.proj.weight" in sd and any(".mlp_channels.gate.proj." in k for k in sd)


# timm's isotropic MlpMixer: one stage of blocks, stem ``stem.proj``, classifier ``head``
_TIMM_ISOTROPIC_RULES = [
    (r"^stem\.proj\.", "patch_embed.proj."),
    (r"^blocks\.", "stages.0.blocks."),
    (r"^head\.", "head.fc."),
]


@register_converter("timm_mixer", _is_timm_mixer)
def convert_timm_mixer(sd: StateDict) -> StateDict:
    """timm ``MlpMixer`` with ``MixerBlock`` (e.g. ``mixer_b16_224``) -> one-stage hiermlp ``token_mlp``."""
    return rename(
        sd,
        [*_TIMM_ISOTROPIC_RULES, (r"\.mlp_tokens\.", ".mixer."), (r"\.mlp_channels\.", ".mlp.")],
    )


@register_converter("timm_gmlp", _is_timm_gmlp)
def convert_timm_gmlp(sd: StateDict) -> StateDict:
    """timm ``MlpMixer`` with ``SpatialGatingBlock`` (e.g. ``gmlp_s16_224``) -> one-stage hiermlp ``gmlp``.

    The block's single norm is ``norm1``; the gate's ``proj`` (``Linear(N, N)``) becomes the one-head
    ``gate.weight (1, N, N)`` and ``gate.bias (1, N)``.
    """
    sd = rename(
        sd,
        [
            *_TIMM_ISOTROPIC_RULES,
            (r"(\.blocks\.\d+)\.norm\.", r"\1.norm1."),
            (r"\.mlp_channels\.gate\.proj\.", ".mixer.gate."),
            (r"\.mlp_channels\.", ".mixer."),
        ],
    )
    return {k: v[None] if re.search(r"\.mixer\.gate\.(weight|bias)$", k) else v for k, v in sd.items()}
