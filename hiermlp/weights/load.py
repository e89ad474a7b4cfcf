"""Reading, converting, resizing and loading checkpoints. Loading a file never executes code."""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hiermlp.errors import CheckpointError
from hiermlp.io import atomic_save, atomic_write_bytes
from hiermlp.ops import resize_rel_pos_table
from hiermlp.weights.convert import StateDict, convert_state_dict

_logger = logging.getLogger("hiermlp")

RPB = "relative_position_bias_table"
# wrappers used by training scripts and the reference code, most specific first
_WRAPPER_KEYS = ("model_ema", "model", "state_dict", "module")


@dataclass
class LoadResult:
    layout: str  # detected checkpoint layout, e.g. "microsoft_swin"
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape vs model shape", not loaded
    resized: list[str] = field(default_factory=list)  # position tables interpolated to a new window
    reinitialized: list[str] = field(default_factory=list)  # head keys left at init (class count differs)
    adapted: list[str] = field(default_factory=list)  # first conv adapted to the model's in_chans


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """A flat ``{name: tensor}`` from a .pth/.pt/.bin (``weights_only=True``) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is empty (0 bytes): an interrupted save or download; save or fetch it again"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            # timm's train.py (Wave-MLP, CycleMLP releases) pickles its argparse.Namespace beside the weights: a
            # plain attribute container, allowed; anything else that is not a tensor or a container still fails
            with torch.serialization.safe_globals([argparse.Namespace]):
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or pickles arbitrary objects
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {type(e).__name__}: {str(e).splitlines()[0][:300]}. "
            "The file may be truncated or corrupt, or hold pickled code (hiermlp loads with weights_only=True)."
        ) from e
    return unwrap(obj, str(path))


def unwrap(obj: Any, source: str = "state dict") -> StateDict:
    """Strip ``{'model': ...}``-style wrappers and DDP's ``module.`` prefix."""
    while isinstance(obj, dict) and not _is_flat(obj):
        key = next((k for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None:
            raise CheckpointError(
                f"{source} is not a state dict: top-level keys {sorted(map(str, obj))[:8]} hold no tensors "
                f"and none of {_WRAPPER_KEYS}"
            )
        obj = obj[key]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{source} holds no weights")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return obj


def _is_flat(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _classifier_prefix(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("classifier") or "head.fc"


def _first_conv(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("first_conv") or "patch_embed.proj"


def _resize_tables(model: nn.Module, sd: StateDict, target: StateDict) -> list[str]:
    resized = []
    for k in list(sd):
        if k.endswith(RPB) and k in target and sd[k].shape != target[k].shape:
            window = model.get_submodule(k[: -len(RPB) - 1]).window_size
            sd[k] = resize_rel_pos_table(sd[k], window)
            resized.append(k)
    return resized


def adapt_first_conv(model: nn.Module, sd: StateDict, target: StateDict) -> str | None:
    """Adapt a checkpoint's first conv to the model's ``in_chans`` as timm's ``adapt_input_conv`` does.

    One channel: the RGB filters summed; more: the RGB filters repeated and scaled by ``3 / in_chans``.
    Returns the adapted key, or None when nothing needed adapting.
    """
    from timm.models import adapt_input_conv

    key = _first_conv(model) + ".weight"
    if key not in sd or key not in target or sd[key].ndim != 4 or sd[key].shape == target[key].shape:
        return None
    w, t = sd[key], target[key]
    if w.shape[0] != t.shape[0] or w.shape[2:] != t.shape[2:]:
        return None  # not a channel change: reported as a shape mismatch
    sd[key] = adapt_input_conv(t.shape[1], w.to(t.dtype))
    return key


def prepare_state_dict(model: nn.Module, sd: StateDict) -> tuple[str, StateDict, LoadResult]:
    """Detect and convert the layout, resize position tables, adapt the first conv to ``in_chans``."""
    layout, sd = convert_state_dict(sd)
    target = model.state_dict()
    result = LoadResult(layout)
    result.resized = _resize_tables(model, sd, target)
    adapted = adapt_first_conv(model, sd, target)
    if adapted:
        result.adapted.append(adapted)
    return layout, sd, result


def checkpoint_filter_fn(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ``pretrained_filter_fn`` for hiermlp models: any known layout -> the model's keys.

    timm's builder calls it on downloaded weights (hub, URL or ``file``) before it adapts the first conv
    and drops a classifier of another class count; any other missing, unexpected or mismatched key raises a
    :class:`~hiermlp.errors.CheckpointError` naming them (timm's own load would raise torch's multi-line error).
    """
    sd = unwrap(dict(state_dict), "pretrained weights")
    layout, sd, result = prepare_state_dict(model, sd)
    target = model.state_dict()
    head = _classifier_prefix(model) + "."
    conv = _first_conv(model) + ".weight"
    result.missing = [k for k in target if k not in sd and not k.startswith(head)]
    result.unexpected = [k for k in sd if k not in target and not k.startswith(head)]
    result.mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sd
        if k in target and sd[k].shape != target[k].shape and not k.startswith(head) and k != conv
    ]
    if result.missing or result.unexpected or result.mismatched:
        raise CheckpointError(_mismatch_message(model, layout, result))
    return sd


def load_checkpoint(
    model: nn.Module,
    checkpoint: str | os.PathLike | StateDict,
    strict: bool = True,
) -> LoadResult:
    """Load reference Swin, timm, mmpretrain, HF transformers or hiermlp weights (.pth or .safetensors).

    The layout is detected and converted; relative-position tables are resized bicubically when the
    window differs; a 3-channel first conv is adapted to the model's ``in_chans`` (timm's
    ``adapt_input_conv``); a classifier with another number of classes is left at its initialisation (with a
    log message naming it). With ``strict``, any other missing, unexpected or shape-mismatched key raises a
    :class:`~hiermlp.errors.CheckpointError` naming them; without it, what matches loads and every skipped key
    (missing, unexpected, shape-mismatched) is in the result and in one warning. Backbones
    (``features_only``) silently ignore the keys of the parts they dropped (final norm, head, later stages).
    """
    sd = read_state_dict(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else unwrap(dict(checkpoint))
    layout, sd, result = prepare_state_dict(model, sd)
    target = model.state_dict()

    head = _classifier_prefix(model)
    head_keys = [k for k in sd if k.startswith(head + ".")]
    if any(k in target and sd[k].shape != target[k].shape for k in head_keys) or (
        head_keys and not any(k.startswith(head + ".") for k in target)
    ):
        w = sd.get(head + ".weight")
        n_ckpt = w.shape[0] if w is not None else "?"
        for k in head_keys:
            del sd[k]
        result.reinitialized = [k for k in target if k.startswith(head + ".")]
        if result.reinitialized:
            _logger.warning(
                "checkpoint classifier (%s classes) does not match the model's %s: re-initialised %s",
                n_ckpt,
                getattr(model, "num_classes", "?"),
                ", ".join(result.reinitialized),
            )

    is_backbone = type(model).__name__ in ("HierFeatures", "HierBackbone")
    result.mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sd
        if k in target and sd[k].shape != target[k].shape
    ]
    result.missing = [k for k in target if k not in sd and k not in result.reinitialized]
    result.unexpected = [] if is_backbone else [k for k in sd if k not in target]
    if is_backbone:
        sd = {k: v for k, v in sd.items() if k in target}
    if strict and (result.missing or result.unexpected or result.mismatched):
        raise CheckpointError(_mismatch_message(model, layout, result))
    if result.missing or result.unexpected or result.mismatched:
        warnings.warn(_skipped_message(model, layout, result), stacklevel=2)
    for k in list(sd):
        if k in target and sd[k].shape != target[k].shape:
            del sd[k]
    model.load_state_dict(sd, strict=False)
    return result


def _arch(model: nn.Module) -> str:
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__


def _skipped_message(model: nn.Module, layout: str, r: LoadResult) -> str:
    parts = [
        f"{title} ({len(items)}): {', '.join(items)}"
        for title, items in (("missing", r.missing), ("unexpected", r.unexpected), ("shape mismatch", r.mismatched))
        if items
    ]
    return f"load_checkpoint(strict=False) into {_arch(model)} (layout {layout}) skipped " + "; ".join(parts)


def _mismatch_message(model: nn.Module, layout: str, r: LoadResult) -> str:
    def show(title: str, items: list[str]) -> str:
        more = f" ... and {len(items) - 10} more" if len(items) > 10 else ""
        return f"\n  {title} ({len(items)}): " + ", ".join(items[:10]) + more if items else ""

    return (
        f"checkpoint (detected layout: {layout}) does not match {_arch(model)}:"
        + show("missing", r.missing)
        + show("unexpected", r.unexpected)
        + show("shape mismatch", r.mismatched)
        + "\n  Check that the model name/variant (embed_dim, depths, heads, mixer) matches the checkpoint, "
        "or pass strict=False to load what matches."
    )


def load_pretrained(model: nn.Module, cfg: dict[str, Any] | None = None) -> LoadResult:
    """Load the weights a pretrained cfg points to, in timm's order: a local ``file``, else ``hf_hub_id``
    through huggingface_hub (its cache, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` apply), else ``url``.

    ``hiermlp.create_model(..., pretrained=True)`` and ``timm.create_model`` load through timm's builder
    instead (the same sources); this is the same for a model already built.
    """
    cfg = dict(cfg if cfg is not None else getattr(model, "pretrained_cfg", None) or {})
    if cfg.get("file"):
        return load_checkpoint(model, cfg["file"])
    hub, url = cfg.get("hf_hub_id"), cfg.get("url")
    if not hub and not url:
        raise CheckpointError(
            f"{cfg.get('architecture', 'this model')} has no released weights; pass checkpoint_path= instead"
        )
    try:
        if hub:
            from timm.models import load_state_dict_from_hf

            sd = load_state_dict_from_hf(hub, weights_only=True)
        else:
            sd = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True, check_hash=False)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(
            f"could not fetch {hub or url} ({type(e).__name__}: {first}); without internet, fill the Hugging Face "
            "cache (HF_HUB_CACHE) or download the file elsewhere and pass checkpoint_path="
        ) from e
    return load_checkpoint(model, sd)


def save_weights(model: nn.Module | StateDict, path: str | os.PathLike) -> Path:
    """Write a state dict atomically (:func:`hiermlp.io.atomic_write`) as .safetensors or .pth."""
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    sd = {k: v.detach().contiguous().cpu() for k, v in sd.items()}
    if Path(path).suffix == ".safetensors":
        from safetensors.torch import save

        return atomic_write_bytes(path, save(sd), what="weights file")
    return atomic_save(sd, path, what="weights file")
