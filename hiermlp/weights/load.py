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
# wrappers used by training scripts and the reference code; a file's EMA weights only when it has no others
# (timm's convention: EMA weights are asked for, see read_checkpoint)
_WRAPPER_KEYS = ("model", "state_dict", "module", "model_ema")


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
    return unwrap(_read_file(path), str(path))


def _read_file(path: str | os.PathLike) -> Any:
    """The object a checkpoint file holds, read without running code."""
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

            return load_file(str(path), device="cpu")
        # timm's train.py (Wave-MLP, CycleMLP releases) pickles its argparse.Namespace beside the weights: a
        # plain attribute container, allowed; anything else that is not a tensor or a container still fails
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or pickles arbitrary objects
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {type(e).__name__}: {str(e).splitlines()[0][:300]}. "
            "The file may be truncated or corrupt, or hold pickled code (hiermlp loads with weights_only=True)."
        ) from e


@dataclass(frozen=True)
class TrainedCheckpoint:
    """A checkpoint file's weights and what the file records about the model they belong to."""

    state_dict: StateDict  # unwrapped (no ``{'model': ...}``, no DDP ``module.``), in the file's own layout
    kind: str  # "hiermlp-train" | "timm-train" | "weights" (Microsoft, mmpretrain, HF, bare, .safetensors)
    model: str | None = None  # the model name the file records (a trainer's config, timm's ``args.model``)
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor options the file records
    img_size: Any = None  # a hiermlp trainer's input size: passed to models that take ``img_size``
    # the eval transform the file records (timm's data-config keys: input_size, interpolation, crop_pct,
    # crop_mode, mean, std), as far as it records one
    data_config: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()  # a hiermlp trainer's class names, in label order (the training split's)


def read_checkpoint(path: str | os.PathLike, *, ema: bool = False) -> TrainedCheckpoint:
    """Read any checkpoint file hiermlp knows, with the model name and options it records.

    * hiermlp's trainer (``{"model", "model_ema", "config": TrainConfig as a dict, ...}``): ``config["model"]``,
      its ``model_kwargs`` and ``in_chans``, and ``img_size``;
    * timm's train.py (``{"state_dict", "state_dict_ema", "arch", "args": argparse.Namespace, ...}``):
      ``args.model`` (else ``arch``), ``args.model_kwargs`` and ``args.in_chans``;
    * anything else hiermlp reads (Microsoft ``{"model": sd}``, mmpretrain ``{"state_dict": sd, "meta"}``,
      Hugging Face, a bare state dict, .safetensors): weights only, no model name.

    ``ema`` picks the EMA weights (``model_ema`` / ``state_dict_ema``); without it EMA weights are never picked.

    Raises:
        CheckpointError: missing, empty, unreadable, no weights, or ``ema`` asked of a file without EMA weights.
    """
    obj, source = _read_file(path), str(path)
    if isinstance(obj, dict) and isinstance(obj.get("config"), dict) and "model" in obj:
        config = obj["config"]
        kwargs = {k: _tuples(v) for k, v in (config.get("model_kwargs") or {}).items()}
        if config.get("in_chans") is not None and "in_chans" not in kwargs:
            kwargs["in_chans"] = config["in_chans"]
        weights = _pick(obj, ("model_ema",) if ema else ("model",), source)
        data = _tuples(obj.get("data_config")) if isinstance(obj.get("data_config"), dict) else _data_config(config)
        classes = tuple(str(c) for c in obj.get("classes") or ())
        return TrainedCheckpoint(
            weights,
            "hiermlp-train",
            config.get("model"),
            kwargs,
            _tuples(config.get("img_size")),
            data_config=data,
            classes=classes,
        )
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict) and ("args" in obj or "arch" in obj):
        args = vars(obj["args"]) if isinstance(obj.get("args"), argparse.Namespace) else {}
        kwargs = dict(args.get("model_kwargs") or {})
        if args.get("in_chans") is not None and "in_chans" not in kwargs:
            kwargs["in_chans"] = args["in_chans"]
        weights = _pick(obj, ("state_dict_ema",) if ema else ("state_dict",), source)
        model = args.get("model") or obj.get("arch")
        return TrainedCheckpoint(weights, "timm-train", model, kwargs, data_config=_data_config(args))
    if ema:
        return TrainedCheckpoint(_pick(obj, ("model_ema", "state_dict_ema"), source), "weights")
    if isinstance(obj, dict) and not _is_flat(obj):
        obj = _pick(obj, ("model", "state_dict", "module"), source)
    return TrainedCheckpoint(unwrap(obj, source), "weights")


def _data_config(args: dict[str, Any]) -> dict[str, Any]:
    """The eval-transform settings a run's options (a hiermlp config, timm train.py's args) set explicitly;
    those left unset were the model's pretrained cfg's."""
    out: dict[str, Any] = {}
    side = args.get("img_size")
    if args.get("input_size"):
        out["input_size"] = tuple(args["input_size"])
    elif side:
        out["input_size"] = (args.get("in_chans") or 3, *((side, side) if isinstance(side, int) else side))
    for key in ("interpolation", "crop_pct", "crop_mode", "mean", "std"):
        if args.get(key):
            out[key] = tuple(args[key]) if isinstance(args[key], list | tuple) else args[key]
    return out


def _pick(obj: Any, keys: tuple[str, ...], source: str) -> StateDict:
    """The first of ``keys`` holding weights, unwrapped."""
    found = next((obj[k] for k in keys if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)
    if found is None:
        what = "EMA weights" if "ema" in keys[0] else "model weights"
        top = sorted(map(str, obj))[:8] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{source} has no {what} (none of {list(keys)}; top-level keys {top})")
    return unwrap(found, source)


def _tuples(v: Any) -> Any:
    """YAML/JSON lists -> tuples (model options such as depths are tuples)."""
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    if isinstance(v, dict):
        return {k: _tuples(x) for k, x in v.items()}
    return v


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


def prepare_state_dict(
    model: nn.Module, sd: StateDict, *, convert: bool = True, source: str = "state dict"
) -> tuple[str, StateDict, LoadResult]:
    """Detect and convert the layout (unless ``convert`` is off), check the values (:func:`check_values`),
    resize position tables, adapt the first conv to ``in_chans``."""
    layout, sd = convert_state_dict(sd) if convert else ("as saved", dict(sd))
    target = model.state_dict()
    check_values(sd, target, source)  # before resizing and adapting cast anything to the model's dtype
    result = LoadResult(layout)
    result.resized = _resize_tables(model, sd, target)
    adapted = adapt_first_conv(model, sd, target)
    if adapted:
        result.adapted.append(adapted)
    return layout, sd, result


def check_values(sd: StateDict, target: StateDict, source: str) -> None:
    """Refuse weights that cannot be what they claim: an integer (or bool) tensor where the model has a
    floating-point weight (``load_state_dict`` would silently cast it), or NaN/inf values (a diverged run, a
    corrupt file).

    Raises:
        CheckpointError: One line naming the first offending tensors and what is wrong with them.
    """
    ints = [
        f"{k} ({v.dtype})"
        for k, v in sd.items()
        if k in target and target[k].is_floating_point() and not (v.is_floating_point() or v.is_complex())
    ]
    if ints:
        raise CheckpointError(
            f"{source}: {len(ints)} tensor(s) hold integers where the model has floating-point weights: "
            f"{', '.join(ints[:3])}{' ...' if len(ints) > 3 else ''}; this is not a weights file of this model "
            "(or it was saved after a dtype conversion): save the float weights"
        )
    bad = []
    for k, v in sd.items():
        if v.is_floating_point() and v.numel() and not bool(torch.isfinite(v).all()):
            n_nan, n_inf = int(torch.isnan(v).sum()), int(torch.isinf(v).sum())
            bad.append(f"{k} ({n_nan} NaN, {n_inf} inf)")
    if bad:
        raise CheckpointError(
            f"{source}: {len(bad)} tensor(s) hold non-finite values: {', '.join(bad[:3])}"
            f"{' ...' if len(bad) > 3 else ''}; the weights are corrupt or from a diverged run: use an earlier "
            "checkpoint"
        )


def checkpoint_filter_fn(state_dict: StateDict, model: nn.Module) -> StateDict:
    """timm's ``pretrained_filter_fn`` for hiermlp models: any known layout -> the model's keys.

    timm's builder calls it on downloaded weights (hub, URL or ``file``) before it adapts the first conv
    and drops a classifier of another class count; any other missing, unexpected or mismatched key raises a
    :class:`~hiermlp.errors.CheckpointError` naming them (timm's own load would raise torch's multi-line error).
    """
    sd = unwrap(dict(state_dict), "pretrained weights")
    layout, sd, result = prepare_state_dict(model, sd, source="pretrained weights")
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


def convert_on_load(
    module: nn.Module,
    state_dict: dict[str, Any],
    prefix: str,
    local_metadata: dict[str, Any],
    strict: bool,
    missing_keys: list[str],
    unexpected_keys: list[str],
    error_msgs: list[str],
) -> None:
    """``load_state_dict`` pre-hook: the module's keys in any layout hiermlp detects -> its own, in place.

    The factory registers it on every model it builds, so timm's loaders, which call ``model.load_state_dict``
    on whatever the file holds (``timm.models.load_checkpoint``, ``create_model(checkpoint_path=...)``,
    validate.py ``--checkpoint``), read Microsoft, timm, mmpretrain and transformers files as
    :func:`load_checkpoint` does. Nothing else is relaxed: a key the converter does not map onto the model, or
    a shape that differs, still fails a strict load.
    """
    own = [k for k in state_dict if k.startswith(prefix)]
    layout, converted = convert_state_dict({k[len(prefix) :]: state_dict[k] for k in own})
    if layout in ("hiermlp", "unknown"):
        return
    for k in own:
        del state_dict[k]
    state_dict.update({prefix + k: v for k, v in converted.items()})


def load_checkpoint(
    model: nn.Module,
    checkpoint: str | os.PathLike | StateDict,
    strict: bool = True,
    *,
    new_head: bool = True,
    convert: bool = True,
) -> LoadResult:
    """Load reference Swin, timm, mmpretrain, HF transformers or hiermlp weights (.pth or .safetensors).

    The layout is detected and converted; relative-position tables are resized bicubically when the
    window differs; a 3-channel first conv is adapted to the model's ``in_chans`` (timm's
    ``adapt_input_conv``); a classifier with another number of classes is left at its initialisation (with a
    log message naming it). Integer tensors where the model has floating-point weights, and NaN/inf values, are
    a :class:`~hiermlp.errors.CheckpointError` (:func:`check_values`). With ``strict``, any other missing,
    unexpected or shape-mismatched key raises a :class:`~hiermlp.errors.CheckpointError` naming them; without
    it, what matches loads and every skipped key (missing, unexpected, shape-mismatched) is in the result and
    in one warning. Backbones
    (``features_only``) silently ignore the keys of the parts they dropped (final norm, head, later stages).

    ``new_head=False`` makes a classifier of another class count a shape mismatch like any other (evaluating
    trained weights); ``convert=False`` loads a state dict already in the model's own keys (a timm model's),
    with no layout detection.
    """
    sd = read_state_dict(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else unwrap(dict(checkpoint))
    source = f"checkpoint {os.fspath(checkpoint)!r}" if isinstance(checkpoint, (str, os.PathLike)) else "state dict"
    layout, sd, result = prepare_state_dict(model, sd, convert=convert, source=source)
    target = model.state_dict()

    head = _classifier_prefix(model)
    head_keys = [k for k in sd if k.startswith(head + ".")]
    other_head = any(k in target and sd[k].shape != target[k].shape for k in head_keys) or (
        head_keys and not any(k.startswith(head + ".") for k in target)
    )
    if new_head and other_head:
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
