"""Reading, converting, resizing and loading checkpoints. Loading a file never executes code."""

from __future__ import annotations

import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hiermlp.errors import CheckpointError
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
    resized: list[str] = field(default_factory=list)  # position tables interpolated to a new window
    reinitialized: list[str] = field(default_factory=list)  # head keys left at init (class count differs)


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """A flat ``{name: tensor}`` from a .pth/.pt/.bin (``weights_only=True``) or .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
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


def resize_rel_pos_table(table: torch.Tensor, new_window: tuple[int, int]) -> torch.Tensor:
    """Bicubically resize a ``((2M-1)^2, heads)`` bias table to ``((2wh-1)*(2ww-1), heads)``.

    The reference fine-tuning recipe: view as ``(1, heads, 2M-1, 2M-1)`` and ``F.interpolate``.
    """
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
        raise CheckpointError(f"cannot resize a non-square relative position table of {table.shape[0]} rows")
    heads = table.shape[1]
    grid = table.T.reshape(1, heads, side, side).float()
    size = (2 * new_window[0] - 1, 2 * new_window[1] - 1)
    out = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
    return out.reshape(heads, -1).T.contiguous().to(table.dtype)


def _classifier_prefix(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("classifier", "head.fc")


def load_checkpoint(
    model: nn.Module,
    checkpoint: str | os.PathLike | StateDict,
    strict: bool = True,
) -> LoadResult:
    """Load reference Swin, timm or hiermlp weights (.pth or .safetensors) into ``model``.

    The layout is detected and converted; relative-position tables are resized bicubically when the
    window differs; a classifier with another number of classes is left at its initialisation (with a log
    message naming it). With ``strict``, any other missing, unexpected or shape-mismatched key raises a
    :class:`~hiermlp.errors.CheckpointError` naming them. Backbones (``features_only``) silently ignore the
    keys of the parts they dropped (final norm, head, later stages).
    """
    sd = read_state_dict(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else unwrap(dict(checkpoint))
    layout, sd = convert_state_dict(sd)
    target = model.state_dict()
    result = LoadResult(layout)

    for k in list(sd):
        if k.endswith(RPB) and k in target and sd[k].shape != target[k].shape:
            window = model.get_submodule(k[: -len(RPB) - 1]).window_size
            sd[k] = resize_rel_pos_table(sd[k], window)
            result.resized.append(k)

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

    is_backbone = type(model).__name__ == "HierFeatures"
    mismatched = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
        for k in sd
        if k in target and sd[k].shape != target[k].shape
    ]
    result.missing = [k for k in target if k not in sd and k not in result.reinitialized]
    result.unexpected = [] if is_backbone else [k for k in sd if k not in target]
    if is_backbone:
        sd = {k: v for k, v in sd.items() if k in target}
    if strict and (result.missing or result.unexpected or mismatched):
        raise CheckpointError(_mismatch_message(model, layout, result, mismatched))
    for k in list(sd):
        if k in target and sd[k].shape != target[k].shape:
            del sd[k]
    model.load_state_dict(sd, strict=False)
    return result


def _mismatch_message(model: nn.Module, layout: str, r: LoadResult, mismatched: list[str]) -> str:
    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture", type(model).__name__)

    def show(title: str, items: list[str]) -> str:
        more = f" ... and {len(items) - 10} more" if len(items) > 10 else ""
        return f"\n  {title} ({len(items)}): " + ", ".join(items[:10]) + more if items else ""

    return (
        f"checkpoint (detected layout: {layout}) does not match {arch}:"
        + show("missing", r.missing)
        + show("unexpected", r.unexpected)
        + show("shape mismatch", mismatched)
        + "\n  Check that the model name/variant (embed_dim, depths, heads, mixer) matches the checkpoint, "
        "or pass strict=False to load what matches."
    )


def load_pretrained(model: nn.Module, cfg: dict[str, Any]) -> LoadResult:
    """Load the weights a pretrained cfg points to: a local ``file`` or a ``url`` (downloaded, cached)."""
    if cfg.get("file"):
        return load_checkpoint(model, cfg["file"])
    url = cfg.get("url")
    if not url:
        raise CheckpointError(
            f"{cfg.get('architecture', 'this model')} has no released weights; pass checkpoint_path= instead"
        )
    try:
        sd = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True, check_hash=False)
    except Exception as e:
        raise CheckpointError(
            f"could not download {url} ({type(e).__name__}: {e}); without internet, download the file "
            "elsewhere and pass checkpoint_path="
        ) from e
    return load_checkpoint(model, sd)


def save_weights(model: nn.Module | StateDict, path: str | os.PathLike) -> Path:
    """Write a state dict atomically (temp file, fsync, rename) as .safetensors or .pth."""
    path = Path(path)
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    sd = {k: v.detach().contiguous().cpu() for k, v in sd.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(sd, tmp)
        else:
            torch.save(sd, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
