"""Checkpoint layouts both ways: save a hiermlp model as timm or the reference code stores it, and read
mmpretrain's and Hugging Face transformers' Swin layouts.

``save_checkpoint(model, path, layout=...)`` writes

* ``"hiermlp"``: the model's own state dict (every family);
* ``"timm"``: the state dict of timm's class for the same architecture: ``SwinTransformer`` (Swin), ``MlpMixer``
  (``mixer_b16_224``-style token-MLP and ``gmlp_s16_224``-style gMLP isotropic models);
* ``"microsoft"``: the reference repository's layout, ``{"model": state_dict}`` with patch merging at the end
  of stages 0-2, ``head.*``, and the buffers the reference registers (``relative_position_index``, the shifted
  blocks' ``attn_mask`` at the nominal input size), so the reference class loads it strictly: Swin, Swin-MLP.

Every export is checked before anything is written: converting it back with hiermlp's own layout detection
must give the model's state dict exactly, tensor for tensor. A family without the asked layout is a
:class:`~hiermlp.errors.ConfigError` naming the layouts it has.

Reading: :mod:`hiermlp.weights.convert` tries converters in order; the two registered here recognise keys only
those layouts have (``attn.w_msa.`` / ``patch_embed.projection.`` for mmpretrain, ``embeddings.patch_embeddings.``
for transformers), so hiermlp's own files (``stages.i.blocks.j.mixer.*``) are never taken for them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.io import atomic_save
from hiermlp.weights.convert import (
    TIMM_SWIN_RULES,
    StateDict,
    convert_microsoft_swin,
    convert_state_dict,
    drop_buffers,
    register_converter,
    rename,
)
from hiermlp.weights.load import save_weights

LAYOUTS = ("hiermlp", "timm", "microsoft")


# ---- which family a model is ------------------------------------------------------------------------------
def model_family(model: nn.Module) -> str:
    """``"swin"`` | ``"swin_mlp"`` | ``"timm_mixer"`` | ``"timm_gmlp"`` | ``"other"``, from the modules themselves.

    Only structures whose reference layouts hiermlp writes get a family: Swin's patch embed and merging around
    one mixer type in every block (window attention with a position table, or the Swin-MLP spatial map), or
    one unmerged stage of token-MLP / gMLP blocks (timm's isotropic ``MlpMixer``).
    """
    from hiermlp.layers import PatchEmbed, PatchMerging
    from hiermlp.mixers import MIXERS

    stages = getattr(model, "stages", None)
    if stages is None or not isinstance(getattr(model, "patch_embed", None), PatchEmbed):
        return "other"
    kinds = {registered_mixer(type(b.mixer)) for s in stages for b in s.blocks}
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    if not _reference_blocks(model):
        return "other"
    if len(stages) == 1 and kind is not None and kind in (MIXERS["token_mlp"], MIXERS["gmlp"]):
        return "timm_mixer" if kind is MIXERS["token_mlp"] else "timm_gmlp"
    if not all(isinstance(s.downsample, PatchMerging) for s in list(stages)[1:]):
        return "other"
    if kind is MIXERS["attention"] and all(b.mixer.rel_pos is not None for s in stages for b in s.blocks):
        return "swin"
    if kind is MIXERS["spatial_mlp"]:
        return "swin_mlp"
    return "other"


def registered_mixer(cls: type) -> type | None:
    """The nearest class in ``cls``'s MRO that is a registered mixer (None if there is none).

    A sped-up twin subclasses the plain mixer it computes (``FastWindowAttention`` -> ``WindowAttention``), so it
    counts as that mixer; a registered subclass (``GlobalAttention``, registered as ``global_attention``) is its
    own architecture and counts as itself.
    """
    from hiermlp.mixers import MIXERS

    registered = {id(c) for c in MIXERS.values()}
    return next((c for c in cls.__mro__ if id(c) in registered), None)


def _reference_blocks(model: nn.Module) -> bool:
    """The blocks the reference classes compute: pre-norm LayerNorms, no layer scale, a GELU channel MLP."""
    from timm.layers import Mlp

    norms = [model.patch_embed.norm, model.norm] + [m for s in model.stages for m in (s.downsample,)]
    for stage in model.stages:
        for b in stage.blocks:
            if b.norm_placement != "pre" or not isinstance(b.ls1, nn.Identity) or not isinstance(b.norm1, nn.LayerNorm):
                return False
            if b.mlp is not None and not (isinstance(b.mlp, Mlp) and _is_exact_gelu(b.mlp.act)):
                return False
    return all(isinstance(getattr(n, "norm", n), (nn.LayerNorm, nn.Identity)) for n in norms)


def _is_exact_gelu(act: nn.Module) -> bool:  # torch's or timm's GELU, erf form (the reference's)
    return type(act).__name__ == "GELU" and getattr(act, "approximate", "none") == "none"


# ---- hiermlp -> timm ---------------------------------------------------------------------------------------
def to_timm_swin(sd: StateDict) -> StateDict:
    """hiermlp Swin -> timm ``SwinTransformer`` (``layers.i``, ``blocks.j.attn.*``, ``head.fc.*``)."""
    return rename(
        sd,
        [
            (r"^stages\.", "layers."),
            (r"\.mixer\.rel_pos\.relative_position_bias_table$", ".attn.relative_position_bias_table"),
            (r"\.mixer\.", ".attn."),
        ],
    )


_TO_TIMM_ISOTROPIC = [
    (r"^patch_embed\.proj\.", "stem.proj."),
    (r"^stages\.0\.blocks\.", "blocks."),
    (r"^head\.fc\.", "head."),
]


def to_timm_mixer(sd: StateDict) -> StateDict:
    """hiermlp one-stage token MLP -> timm ``MlpMixer`` with ``MixerBlock`` (``mlp_tokens``, ``mlp_channels``)."""
    return rename(sd, [*_TO_TIMM_ISOTROPIC, (r"\.mixer\.", ".mlp_tokens."), (r"\.mlp\.", ".mlp_channels.")])


def to_timm_gmlp(sd: StateDict) -> StateDict:
    """hiermlp one-stage gMLP -> timm ``MlpMixer`` with ``SpatialGatingBlock`` (one-head gate ``Linear(N, N)``)."""
    out = {}
    for k, v in rename(sd, _TO_TIMM_ISOTROPIC).items():
        if re.search(r"\.mixer\.gate\.(weight|bias)$", k):
            k, v = k.replace(".mixer.gate.", ".mlp_channels.gate.proj."), v[0]
        out[re.sub(r"^(blocks\.\d+)\.norm1\.", r"\1.norm.", k.replace(".mixer.", ".mlp_channels."))] = v
    return out


# ---- hiermlp -> Microsoft ----------------------------------------------------------------------------------
def reference_relative_position_index(wh: int, ww: int) -> torch.Tensor:
    """The reference ``relative_position_index`` buffer ``(N, N)`` of a ``wh x ww`` window (swin_transformer.py)."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)  # (2, N)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()  # (N, N, 2)
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1)


def reference_attn_mask(h: int, w: int, window: int, shift: int) -> torch.Tensor:
    """The reference ``attn_mask`` buffer ``(nW, N, N)`` of a shifted block on an ``h x w`` map (0 / -100)."""
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for ws in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    win = img.view(1, h // window, window, w // window, window, 1).permute(0, 1, 3, 2, 4, 5)
    win = win.reshape(-1, window * window)
    mask = win.unsqueeze(1) - win.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def _reference_buffers(model: nn.Module) -> StateDict:
    """The buffers the reference Swin registers, at the model's nominal size (its ``img_size``)."""
    ph, pw = model.patch_embed.patch_size
    size = (model.img_size[0] // ph, model.img_size[1] // pw)
    out: StateDict = {}
    for i, stage in enumerate(model.stages):
        if i > 0:
            size = (size[0] // 2, size[1] // 2)
        for j, block in enumerate(stage.blocks):
            wh, ww = block.window_size
            out[f"layers.{i}.blocks.{j}.attn.relative_position_index"] = reference_relative_position_index(wh, ww)
            if any(block.shift_size):
                if wh != ww or len(set(block.shift_size)) != 1:
                    raise ConfigError("the Microsoft layout has square windows and shifts only")
                out[f"layers.{i}.blocks.{j}.attn_mask"] = reference_attn_mask(*size, wh, block.shift_size[0])
    return out


def _microsoft_layers(sd: StateDict) -> StateDict:
    # merging moves from the start of stage i (hiermlp, timm) to the end of stage i - 1 (reference)
    return rename(
        to_timm_swin(sd),
        [
            (r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample"),
            (r"^head\.fc\.", "head."),
        ],
    )


def to_microsoft_swin(sd: StateDict, model: nn.Module) -> StateDict:
    """hiermlp Swin -> the reference ``SwinTransformer``'s state dict (buffers included)."""
    return {**_microsoft_layers(sd), **_reference_buffers(model)}


def to_microsoft_swin_mlp(sd: StateDict, model: nn.Module) -> StateDict:
    """hiermlp Swin-MLP -> the reference ``SwinMLP``: ``spatial_mlp`` a grouped ``Conv1d`` ``(heads*N, N, 1)``."""
    out = {}
    for k, v in _microsoft_layers(sd).items():
        if k.endswith(".attn.weight"):
            v = v.reshape(-1, v.shape[-1], 1)
        elif k.endswith(".attn.bias"):
            v = v.reshape(-1)
        out[k.replace(".attn.", ".spatial_mlp.")] = v
    return out


# (family, layout) -> converter of the model's state dict
_EXPORTS: dict[tuple[str, str], Callable[[StateDict, nn.Module], StateDict]] = {
    ("swin", "timm"): lambda sd, m: to_timm_swin(sd),
    ("swin", "microsoft"): to_microsoft_swin,
    ("swin_mlp", "microsoft"): to_microsoft_swin_mlp,
    ("timm_mixer", "timm"): lambda sd, m: to_timm_mixer(sd),
    ("timm_gmlp", "timm"): lambda sd, m: to_timm_gmlp(sd),
}


def export_state_dict(model: nn.Module, layout: str = "hiermlp") -> StateDict:
    """The model's weights in ``layout`` (see the module doc), checked to convert back exactly."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown checkpoint layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if layout == "hiermlp":
        return sd
    family = model_family(model)
    fn = _EXPORTS.get((family, layout))
    if fn is None:
        has = ["hiermlp"] + [lay for fam, lay in _EXPORTS if fam == family]
        raise ConfigError(
            f"{type(model).__name__} ({family} family) has no {layout!r} layout: its reference code stores no such "
            f"architecture; layouts for it: {', '.join(has)}"
        )
    out = fn(sd, model)
    _check_round_trip(sd, out, layout)
    return out


def _check_round_trip(sd: StateDict, exported: StateDict, layout: str) -> None:
    _, back = convert_state_dict(dict(exported))
    if back.keys() != sd.keys() or any(not torch.equal(back[k], sd[k]) for k in sd):
        diff = sorted(set(back) ^ set(sd))[:5] or [k for k in sd if not torch.equal(back[k], sd[k])][:5]
        raise ConfigError(f"the {layout!r} export does not convert back to the model's weights (first keys: {diff})")


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, layout: str = "hiermlp") -> Path:
    """Save ``model`` atomically in ``layout`` (``"hiermlp"``, ``"timm"`` or ``"microsoft"``), .pth or .safetensors.

    ``"timm"`` files load with ``timm.create_model(NAME).load_state_dict(...)`` (Swin: ``swin_*``, isotropic:
    ``mixer_*``/``gmlp_*``); ``"microsoft"`` files are ``{"model": state_dict}`` as the reference repository's
    loaders read them (a .safetensors file holds the flat state dict).
    """
    sd = export_state_dict(model, layout)
    path = Path(path)
    if layout == "microsoft" and path.suffix != ".safetensors":
        return _save_wrapped(sd, path)
    return save_weights(sd, path)


def _save_wrapped(sd: StateDict, path: Path) -> Path:
    return atomic_save({"model": {k: v.detach().contiguous().cpu() for k, v in sd.items()}}, path)


# ---- reading mmpretrain's and transformers' Swin -----------------------------------------------------------
def _strip(sd: StateDict, prefix: str) -> StateDict:
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in sd.items()}


# Swin V2's cosine attention (mmpretrain ``logit_scale``/``cpb_mlp``, transformers ``continuous_position_bias_mlp``):
# not the V1 layouts these readers convert
_V2_KEYS = (".logit_scale", ".cpb_mlp.", ".continuous_position_bias_mlp.")


def _is_v2(sd: StateDict) -> bool:
    return any(p in k for k in sd for p in _V2_KEYS)


def _is_mmpretrain_swin(sd: StateDict) -> bool:
    has = any(".attn.w_msa." in k for k in sd) and any("patch_embed.projection." in k for k in sd)
    return has and not _is_v2(sd)


def _unfold_to_swin_order(w: torch.Tensor) -> torch.Tensor:
    """mmcv's ``PatchMerging`` (``nn.Unfold``: channel-major, positions (0,0),(0,1),(1,0),(1,1)) -> Swin's concat
    order (position-major: x[0::2,0::2], x[1::2,0::2], x[0::2,1::2], x[1::2,1::2]) along the last axis; the
    inverse of mmseg's ``correct_unfold_reduction_order`` / ``correct_unfold_norm_order``."""
    lead, c4 = w.shape[:-1], w.shape[-1]
    t = w.reshape(*lead, c4 // 4, 4).transpose(-1, -2)  # (..., 4 positions in unfold order, C)
    return t[..., [0, 2, 1, 3], :].reshape(*lead, c4)


@register_converter("mmpretrain_swin", _is_mmpretrain_swin, first=True)
def convert_mmpretrain_swin(sd: StateDict) -> StateDict:
    """mmpretrain / mmdet / mmseg ``SwinTransformer`` (``backbone.stages.i.blocks.j.attn.w_msa.*``, ``ffn``,
    merging at stage ends through ``nn.Unfold``) -> hiermlp. A classifier's ``norm3`` is the final ``norm``; a
    detector's ``norm0``..``norm3`` stay, the output norms of :class:`hiermlp.detection.HierBackbone`; necks and
    heads of detectors and segmentors are dropped."""
    sd = drop_buffers(sd)
    if any(k.startswith("backbone.") for k in sd):  # a whole mm model: keep the backbone and a classifier head
        sd = {k[len("backbone.") :] if k.startswith("backbone.") else k: v for k, v in sd.items()}
        sd = {k: v for k, v in sd.items() if not k.startswith(("neck.", "rpn_head.", "roi_head.", "decode_head."))}
    # a classifier has one output norm (norm3, the final norm); a detection backbone one per output (norm0..3)
    final_only = not any(re.match(r"^norm[0-2]\.", k) for k in sd)
    out = {}
    for k, v in sd.items():
        if re.match(r"^stages\.\d+\.downsample\.(reduction\.weight|norm\.(weight|bias))$", k):
            v = _unfold_to_swin_order(v)
        k = re.sub(r"^stages\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", k)
        k = re.sub(r"^stages\.", "layers.", k)
        k = k.replace("patch_embed.projection.", "patch_embed.proj.").replace(".attn.w_msa.", ".attn.")
        k = k.replace(".ffn.layers.0.0.", ".mlp.fc1.").replace(".ffn.layers.1.", ".mlp.fc2.")
        if final_only:
            k = re.sub(r"^norm3\.", "norm.", k)
        out[k] = v
    return rename(out, TIMM_SWIN_RULES)


def _is_hf_swin(sd: StateDict) -> bool:
    has = any(k.startswith(("swin.embeddings.patch_embeddings.", "embeddings.patch_embeddings.")) for k in sd)
    return has and not _is_v2(sd)


@register_converter("hf_swin", _is_hf_swin, first=True)
def convert_hf_swin(sd: StateDict) -> StateDict:
    """Hugging Face transformers ``SwinModel`` / ``SwinForImageClassification`` -> hiermlp.

    Separate ``query``/``key``/``value`` projections become one ``qkv`` (rows q, k, v: the same head order);
    merging sits at stage ends with the reference concat order; ``classifier`` is the head.
    """
    sd = _strip(drop_buffers(sd), "swin.")
    out: StateDict = {}
    for k, v in sd.items():
        k = k.replace("embeddings.patch_embeddings.projection.", "patch_embed.proj.")
        k = re.sub(r"^embeddings\.norm\.", "patch_embed.norm.", k)
        k = re.sub(r"^encoder\.layers\.", "layers.", k)
        k = k.replace(".layernorm_before.", ".norm1.").replace(".layernorm_after.", ".norm2.")
        k = k.replace(".attention.output.dense.", ".attn.proj.").replace(".intermediate.dense.", ".mlp.fc1.")
        k = k.replace(".output.dense.", ".mlp.fc2.").replace(
            ".attention.self.relative_position", ".attn.relative_position"
        )
        k = re.sub(r"^layernorm\.", "norm.", k)
        k = re.sub(r"^classifier\.", "head.", k)
        out[k] = v
    for q in [k for k in out if ".attention.self.query." in k]:
        base, kind = q.split(".attention.self.query.")
        parts = [out.pop(f"{base}.attention.self.{p}.{kind}") for p in ("query", "key", "value")]
        out[f"{base}.attn.qkv.{kind}"] = torch.cat(parts, 0)
    if any(k.startswith("pooler.") for k in out):
        out = {k: v for k, v in out.items() if not k.startswith("pooler.")}
    return convert_microsoft_swin(out) if any(".downsample." in k for k in out) else rename(out, TIMM_SWIN_RULES)
