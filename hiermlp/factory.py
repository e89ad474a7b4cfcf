"""The model factory: the one place that turns a name and options (and weights) into a model.

* :func:`create_model`: a model of hiermlp's registry (``name`` or ``name.tag``), built the way timm builds its
  own: timm's ``build_model_with_cfg`` (cfg defaults, pretrained weights from the hub or a URL, ``in_chans``
  adaptation, ``features_only`` wrappers), timm's model kwargs translated (models/timm_kwargs.py), the
  speed layer applied (:func:`hiermlp.accel.accelerate`, unless ``HIERMLP_ACCEL=0``) and ``checkpoint_path``
  loaded in any layout hiermlp reads.
* The timm mirror: every registered model is also timm's ``hiermlp_<name>``, built by the same
  :func:`build_entry`, so ``timm.create_model("hiermlp_swin_tiny_patch4_window7_224.ms_in1k")`` works as
  ``timm.create_model("swin_tiny_patch4_window7_224.ms_in1k")`` does. The prefix keeps hiermlp's names from
  colliding with timm's own (``swin_tiny_patch4_window7_224`` stays timm's model in timm).
* :func:`create_any_model`: hiermlp's or timm's name (``hiermlp:`` / ``timm:`` picks one), for the trainer,
  benchmarks and export, which put both side by side.
* :func:`model_from_checkpoint`: any trained checkpoint (hiermlp's trainer, timm's train.py, Microsoft,
  mmpretrain, Hugging Face, bare state dicts, .safetensors) -> the model it was trained as, with its weights.

It sits above the registry (:mod:`hiermlp.models.registry`, data only), the weights (:mod:`hiermlp.weights`)
and the speed layer (:mod:`hiermlp.accel`), which do not know it.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
from pathlib import Path
from typing import Any

import timm
import timm.models
import torch
from torch import nn

from hiermlp import accel
from hiermlp.errors import CheckpointError, ConfigError, HiermlpError, NotFoundError, suggest
from hiermlp.models.features import HierFeatures, resolve_feature_cls
from hiermlp.models.network import HierNet
from hiermlp.models.registry import (
    ModelEntry,
    UnknownModelError,
    check_kwargs,
    get_entry,
    is_image_classifier,
    is_model,
    list_models,
    nominal_pool_size,
    on_register,
    resolve_cfg,
    split_tag,
)
from hiermlp.models.timm_kwargs import translate_timm_kwargs
from hiermlp.weights import convert_state_dict, load_checkpoint, read_checkpoint
from hiermlp.weights.load import checkpoint_filter_fn, convert_on_load, load_pretrained

__all__ = [
    "PREFIX",
    "build_entry",
    "create_any_model",
    "create_model",
    "model_from_checkpoint",
    "registered_cfg",
    "resolve_source",
    "source_config",
    "split_source",
    "translate_timm_kwargs",
]


# ---- building a registry entry ------------------------------------------------------------------------------
def create_model(
    name: str,
    *,
    pretrained: bool = False,
    checkpoint_path: str | Path | None = None,
    features_only: bool = False,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; keyword arguments override the variant's.

    Args:
        name: A registered name, e.g. ``"swin_tiny_patch4_window7_224"`` (see :func:`hiermlp.list_models`),
            optionally with a pretrained tag as in timm: ``"swin_tiny_patch4_window7_224.ms_in22k"``; or, as
            in timm, ``"hf-hub:ORG/REPO"`` / ``"local-dir:PATH"``: the model a config.json written by
            :func:`hiermlp.save_for_hf` (or timm's) describes, with the options it was built with.
        pretrained: Load the tag's weights: ``file`` if the cfg (overlay) names one, else ``hf_hub_id`` through
            huggingface_hub (its cache and ``HF_HUB_OFFLINE`` apply), else ``url``.
        checkpoint_path: Load a local checkpoint (reference, timm, mmpretrain, HF or hiermlp layout).
        features_only: Return a backbone yielding one map per feature level (stage; an isotropic model's
            block); ``out_indices`` (default all stages, or an isotropic model's last 3 blocks; an int n = the
            last n; negative from the end), ``output_fmt`` (``"NCHW"`` default, or ``"NHWC"``) and
            ``feature_cls`` (default :class:`~hiermlp.models.features.HierFeatures`; timm's ``"list"``,
            ``"dict"``, ``"hook"``, ``"getter"``, ``"fx"``) choose how.
        pretrained_cfg_overlay: Entries that override the pretrained cfg (e.g. another ``url`` or ``file``).
        **kwargs: Builder overrides: ``num_classes``, ``in_chans``, ``img_size``, ``window_size``, ``mixer``...,
            and timm's ``qkv_bias``, ``attn_drop_rate``, ``proj_drop_rate``, ``dynamic_img_size``, ...
    """
    source, model_id = split_source(name)
    if source is None:
        cfg = resolve_cfg(name)
        entry = get_entry(cfg["architecture"])
    else:  # a hub repo or a directory written by save_for_hf: its cfg, and the options it was built with
        cfg, arch, saved_args = source_config(source, model_id, cache_dir=kwargs.get("cache_dir"))
        bare = arch[len(PREFIX) :] if arch.startswith(PREFIX) else arch
        if not is_model(bare):
            raise UnknownModelError(
                f"{name}: its config.json names architecture {arch!r}, which is not a hiermlp model; "
                f"build it with timm.create_model({name!r})"
            )
        entry = get_entry(bare)
        cfg = {**cfg, "architecture": entry.name}
        kwargs = {**saved_args, **kwargs, "pretrained_model_args": dict(saved_args)}
    return build_entry(
        entry,
        entry.name,
        pretrained,
        pretrained_cfg=cfg,
        pretrained_cfg_overlay=pretrained_cfg_overlay,
        checkpoint_path=checkpoint_path,
        features_only=features_only,
        feature_defaults=dict(feature_cls="hiermlp", output_fmt="NCHW"),
        **kwargs,
    )


# ---- hub repos and local directories (timm's "hf-hub:" and "local-dir:" names) ---------------------------
SOURCES = ("hf-hub", "local-dir")


def split_source(name: str) -> tuple[str | None, str]:
    """``"hf-hub:org/repo"`` -> ``("hf-hub", "org/repo")``, ``"local-dir:PATH"`` likewise; a registry name ->
    ``(None, name)``. timm's spelling ``hf_hub:`` is accepted too."""
    source, sep, rest = name.partition(":")
    source = source.lower().replace("_", "-")
    if not sep or source not in SOURCES:
        return None, name
    if not rest:
        raise ConfigError(f"{name!r} names no repo or directory after {source}:; e.g. {source}:org/name")
    return source, rest


def source_config(source: str, model_id: str, *, cache_dir: Any = None) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """``(pretrained cfg, architecture, model args)`` of the config.json of a hub repo (``hf-hub``, through
    huggingface_hub: its cache and ``HF_HUB_OFFLINE`` apply) or a directory (``local-dir``), as timm's
    ``save_for_hf`` writes it. The cfg points at the weights beside it (``hf_hub_id`` or ``file``)."""
    if source == "hf-hub":
        found = timm.models.load_model_config_from_hf(model_id, **({"cache_dir": cache_dir} if cache_dir else {}))
        cfg, arch, *rest = found  # older timm returns no model args
        return dict(cfg), arch, dict(rest[0] if rest else {})
    path = Path(model_id) / "config.json"
    if not path.is_file():
        raise NotFoundError(
            f"local-dir:{model_id} has no config.json; write one with hiermlp.save_for_hf(model, {model_id!r}) "
            "(or timm.models.save_for_hf)"
        )
    data = json.loads(path.read_text())
    if "pretrained_cfg" not in data:  # timm's older single-dict layout
        data = {"architecture": data.pop("architecture"), "pretrained_cfg": data}
    cfg = dict(data["pretrained_cfg"], file=str(Path(model_id)), source="local-dir")
    for key in ("num_classes", "label_names", "label_descriptions"):
        if key in data:
            cfg[key] = data[key]
    args = dict(data.get("model_args") or {})
    if args.get("in_chans") is not None and cfg.get("input_size"):
        cfg["input_size"] = (args["in_chans"], *cfg["input_size"][1:])
    return cfg, data["architecture"], args


def build_entry(
    entry: ModelEntry,
    variant: str,
    pretrained: bool = False,
    *,
    pretrained_cfg: str | dict[str, Any] | None = None,
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    checkpoint_path: str | Path | None = None,
    cache_dir: str | Path | None = None,
    features_only: bool = False,
    feature_defaults: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registry entry through timm's ``build_model_with_cfg``, the path timm's own models take.

    ``variant`` is the name the cfg is resolved under (``hiermlp_<name>`` in timm's registry; hiermlp's
    :func:`create_model` passes its resolved cfg as a dict). timm's builder then applies the cfg defaults
    (``num_classes``, ``in_chans``), loads pretrained weights (``file``, ``hf_hub_id`` through huggingface_hub,
    then ``url``) through :func:`hiermlp.weights.load.checkpoint_filter_fn` (any known layout), adapts the first
    conv to ``in_chans``, drops a classifier of another class count, and wraps ``features_only`` models in the
    ``feature_cls`` asked for (:mod:`hiermlp.models.features`), the cfg attached.
    """
    from timm.models import build_model_with_cfg

    from hiermlp.schema import check_arguments

    check_arguments(
        build_entry,
        {"pretrained": pretrained, "features_only": features_only, "checkpoint_path": checkpoint_path},
        what=entry.name,
    )
    if pretrained and checkpoint_path is not None:
        raise ConfigError("pass pretrained=True or checkpoint_path=, not both: the checkpoint would replace them")
    kwargs = {k: v for k, v in kwargs.items() if not (k in _NONE_MEANS_DEFAULT and v is None)}
    placement = {k: kwargs.pop(k) for k in PLACEMENT_ARGS if k in kwargs}
    builder_args = {k: kwargs.pop(k) for k in TIMM_BUILDER_ARGS if k in kwargs}
    builder_args = {k: v for k, v in builder_args.items() if k in inspect.signature(build_model_with_cfg).parameters}
    recorded = {k: v for k, v in kwargs.items() if k not in ("out_indices", "feature_cls", "output_fmt")}
    kwargs = translate_timm_kwargs(entry, kwargs)
    feature_keys = ("out_indices", "feature_cls", "output_fmt")
    feature_args = {k: kwargs.pop(k) for k in feature_keys if k in kwargs}
    if feature_args and not features_only:
        raise ConfigError(f"{sorted(feature_args)} only mean something with features_only=True")
    check_kwargs(entry.name, entry.builder, {**entry.kwargs, **kwargs})
    check_arguments(entry.builder, {**entry.kwargs, **kwargs}, what=entry.name)  # shift="False" is no bool
    if not is_image_classifier(entry, kwargs):
        cfg = {**(pretrained_cfg if isinstance(pretrained_cfg, dict) else resolve_cfg(entry.name))}
        features = feature_args if features_only else None
        return _build_spatial(
            entry, pretrained, cfg | (pretrained_cfg_overlay or {}), checkpoint_path, placement, kwargs, features
        )
    feature_cfg = None
    if features_only:
        if not (isinstance(entry.builder, type) and issubclass(entry.builder, HierNet)):
            raise ConfigError(f"features_only is supported for hierarchical models; {entry.name!r} is not one")
        depths = tuple({**entry.kwargs, **kwargs}.get("depths", (2, 2, 6, 2)))
        if len(depths) == 1:  # isotropic: the last 3 blocks through forward_intermediates, as timm's MlpMixer
            defaults = dict(out_indices=min(3, depths[0]), feature_cls="getter")
            if str(feature_args.get("feature_cls", "")).lower() in ("list", "dict"):
                raise ConfigError(
                    f"{entry.name} is isotropic: its feature levels are blocks, which feature_cls="
                    f"{feature_args['feature_cls']!r} cannot reach; use 'getter', 'hook', 'fx' or 'hiermlp'"
                )
        else:
            defaults = dict(out_indices=tuple(range(len(depths))))
        feature_cfg = dict(flatten_sequential=True, **defaults) | (feature_defaults or {}) | feature_args
        feature_cfg["feature_cls"] = resolve_feature_cls(feature_cfg.get("feature_cls"))
        kwargs.update(features_only=True, feature_cls=feature_cfg.pop("feature_cls"))
        kwargs["out_indices"] = feature_cfg.pop("out_indices")
    resolved = pretrained_cfg if isinstance(pretrained_cfg, dict) else None
    model_cls = functools.partial(_construct, entry.builder, checkpoint_path, resolved or {}, placement)
    try:
        model = build_model_with_cfg(
            model_cls,
            variant,
            pretrained,
            pretrained_cfg=pretrained_cfg,
            pretrained_cfg_overlay=pretrained_cfg_overlay,
            pretrained_filter_fn=checkpoint_filter_fn,
            feature_cfg=feature_cfg,
            cache_dir=cache_dir,
            **builder_args,
            **{**entry.kwargs, **kwargs},
        )
    except HiermlpError:
        raise
    except Exception as e:
        if not pretrained:
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(
            f"could not load pretrained weights for {variant} ({type(e).__name__}: {first}); without internet, "
            "fill the Hugging Face cache (HF_HUB_CACHE) or pass pretrained_cfg_overlay=dict(file=PATH) or "
            "checkpoint_path=PATH"
        ) from e
    # the cfg describes the model as built (after loading, which reads the source's class count and channels)
    built = model.pretrained_cfg
    if not features_only:
        built["num_classes"] = getattr(model, "num_classes", built.get("num_classes"))
    if "img_size" in kwargs:
        size = kwargs["img_size"]
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        built["input_size"] = (kwargs.get("in_chans", 3), *size)
        built["pool_size"] = nominal_pool_size({**entry.kwargs, **kwargs}, built["input_size"])
    elif "in_chans" in kwargs and "input_size" in built:
        built["input_size"] = (kwargs["in_chans"], *built["input_size"][1:])
    # the options it was built with over the row's, as timm's create_model records them: what save_for_hf writes
    # into config.json so the hub and local-dir copies rebuild this very architecture
    model._model_args = {**getattr(model, "_model_args", {}), **recorded}
    return model


def _build_spatial(
    entry: ModelEntry, pretrained: bool, cfg: dict, path: Any, placement: dict, kwargs: dict, features: Any
):
    """A video/volume/sequence row or a segmentation network, built by hiermlp itself (timm's builder asserts a
    ``(C, H, W)`` image): the builder, the speed layer, the checkpoint or pretrained weights, ``HierFeatures``."""
    model = _construct(entry.builder, path, cfg, placement, **{**entry.kwargs, **kwargs})
    model.pretrained_cfg = cfg
    if pretrained:
        load_pretrained(model, cfg)
    if features is None:
        return model
    if not isinstance(model, HierNet) or features.get("feature_cls", "hiermlp") not in ("hiermlp", None):
        raise ConfigError(f"{entry.name}: features_only takes feature_cls='hiermlp' and a hierarchical classifier")
    return HierFeatures(model, features.get("out_indices"), features.get("output_fmt", "NCHW"))


# what timm's create_model passes besides model options: the device and dtype to build on (timm's models take
# them), and the reconstruction arguments of a hub or local-dir source (for its builder)
PLACEMENT_ARGS = ("device", "dtype")
TIMM_BUILDER_ARGS = ("pretrained_model_args",)
_NONE_MEANS_DEFAULT = PLACEMENT_ARGS  # timm drops None kwargs; hiermlp's own callers may pass device=None


def _construct(
    builder: Any, checkpoint_path: str | Path | None, cfg: dict[str, Any], placement: dict[str, Any], **kwargs: Any
) -> nn.Module:
    """The builder (on ``placement``'s device, in its dtype), the speed layer, the layout converter of
    ``load_state_dict``, then ``checkpoint_path`` loaded (any known layout), before timm wraps features around it."""
    device, dtype = placement.get("device"), placement.get("dtype")
    if isinstance(dtype, str):  # "bfloat16" or "torch.bfloat16", as configs spell it
        dtype = getattr(torch, dtype.removeprefix("torch."), dtype)
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise ConfigError(f"dtype={dtype!r} is not a torch dtype; e.g. dtype=torch.bfloat16 or dtype='float32'")
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = builder(**kwargs)
    if dtype is not None:
        model.to(dtype=dtype)
    # timm's loaders (load_checkpoint, create_model(checkpoint_path=...), validate.py --checkpoint) call
    # load_state_dict directly: the hook converts every layout hiermlp detects on the way in
    model.register_load_state_dict_pre_hook(convert_on_load)
    if accel.settings.current().enabled:
        accel.accelerate(model)
    if checkpoint_path is not None:
        model.pretrained_cfg = cfg
        load_checkpoint(model, checkpoint_path)
    return model


# ---- the timm mirror ---------------------------------------------------------------------------------------
PREFIX = "hiermlp_"
default_cfgs: dict[str, Any] = {}  # read by timm's register_model: one DefaultCfg (all tags) per architecture


def _mirror(entry: ModelEntry) -> None:
    """Register ``entry`` in timm's registry as ``hiermlp_<name>``, its cfgs through ``generate_default_cfgs``;
    image classifiers only (timm's builder, data config, wrappers and tests take (B, C, H, W) to class logits)."""
    if not is_image_classifier(entry):
        return
    timm_name = PREFIX + entry.name

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return build_entry(entry, timm_name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = timm_name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"hiermlp's {entry.name} ({entry.notes or entry.family})."
    keyed = {f"{timm_name}.{tag}" if tag else timm_name: cfg for tag, cfg in entry.pretrained_cfgs.items()}
    default_cfgs.update(timm.models.generate_default_cfgs(keyed))
    timm.models.register_model(entrypoint)


on_register(_mirror)


# ---- hiermlp's or timm's names -----------------------------------------------------------------------------
def resolve_source(name: str) -> tuple[str, str]:
    """Which registry builds ``name``: ``("hiermlp" | "timm", bare name)``.

    hiermlp's registry is asked first, then timm's; ``hiermlp:NAME`` or ``timm:NAME`` picks one (both have
    ``swin_tiny_patch4_window7_224``). The trainer, ``hiermlp bench`` and ``hiermlp export`` all resolve
    names here.

    Raises:
        UnknownModelError: neither registry has it; the message lists close names from both.
    """
    source, sep, bare = name.partition(":")
    if sep and source in ("hiermlp", "timm"):
        if source == "timm" and not timm.is_model(bare):
            raise UnknownModelError(f"unknown timm model {bare!r}.{suggest(bare, timm.list_models())}")
        if source == "hiermlp" and not is_model(split_tag(bare)[0]):
            raise UnknownModelError(f"unknown hiermlp model {bare!r}.{suggest(bare, list_models(task=None))}")
        return source, bare
    if is_model(split_tag(name)[0]):  # "arch.tag" is hiermlp's arch with a pretrained tag
        return "hiermlp", name
    if timm.is_model(name):
        return "timm", name
    hints = suggest(name, list_models(task=None)) or suggest(name, timm.list_models())
    raise UnknownModelError(
        f"unknown model {name!r}: neither hiermlp's registry nor timm's has it "
        f"(see `hiermlp list` and timm.list_models()).{hints}"
    )


def create_any_model(name: str, **kwargs: Any) -> nn.Module:
    """:func:`create_model` for hiermlp's names, ``timm.create_model`` for timm's (see :func:`resolve_source`)."""
    source, bare = resolve_source(name)
    if source == "hiermlp":
        return create_model(bare, **kwargs)
    return timm.create_model(bare, **kwargs)


# ---- trained checkpoints -----------------------------------------------------------------------------------
def model_from_checkpoint(
    checkpoint: str | os.PathLike,
    name: str | None = None,
    *,
    ema: bool = False,
    finetune: bool = False,
    strict: bool = True,
    **overrides: Any,
) -> nn.Module:
    """The model a checkpoint was trained as, with its weights (in training mode, as :func:`create_model` gives).

    Reads every checkpoint :func:`hiermlp.load_checkpoint` reads (:func:`hiermlp.weights.read_checkpoint`):

    * hiermlp's trainer: the model name and options of its stored config (``model``, ``model_kwargs``,
      ``in_chans``, ``img_size``), so the trained architecture is rebuilt;
    * timm's train.py: ``args.model`` (else ``arch``), ``args.model_kwargs``, ``args.in_chans``;
    * Microsoft (``{"model": sd}``), mmpretrain, Hugging Face, bare state dicts, .safetensors: weights only,
      so ``name`` is required.

    The class count and input channels are read from the weights (classifier rows, first conv) unless given.
    Weights of a hiermlp model load in any layout hiermlp converts; a timm model's load as saved. The eval
    transform a trainer checkpoint records (``data_config``: interpolation, crop_pct, mean, std, input size)
    goes into the model's ``pretrained_cfg`` (unless ``finetune``), so timm's ``resolve_data_config`` and
    ``hiermlp eval`` evaluate it as the trainer did.

    Args:
        checkpoint: The file (.pth/.pt/.bin or .safetensors).
        name: The model (hiermlp's or timm's, ``hiermlp:``/``timm:`` prefixes as :func:`resolve_source`). None:
            the one the checkpoint records. The stored options apply when ``name`` is None or the stored name.
        ema: Take the checkpoint's EMA weights (``model_ema`` / ``state_dict_ema``).
        finetune: Build the model from ``name`` and ``overrides`` alone (the stored options are not read), and
            leave a classifier of another class count at its initialisation (a new task). Without it a
            classifier that does not match is an error, as any other mismatch.
        strict: Any missing, unexpected or mismatched key is an error (else skipped, with a warning).
        **overrides: Model options over the stored and inferred ones (``num_classes``, ``img_size``, ...).

    Raises:
        ConfigError: no model name given or recorded, or the options do not build.
        UnknownModelError: the name (given or recorded) is in neither registry.
        CheckpointError: the file is missing, unreadable, or does not match the model.
    """
    ckpt = read_checkpoint(checkpoint, ema=ema)
    target = name or ckpt.model
    if not target:
        raise ConfigError(
            f"{os.fspath(checkpoint)!r} holds weights but no model name (only trainer checkpoints record one); "
            "pass the model it belongs to (name=NAME, or --model NAME on the command line; see `hiermlp list`)"
        )
    try:
        source, bare = _hiermlp_first(target)
    except UnknownModelError as e:
        if name is not None:
            raise
        raise UnknownModelError(f"{os.fspath(checkpoint)!r} was saved for model {target!r}: {e}") from None
    stored = not finetune and (name is None or _same_model(name, ckpt.model))
    kwargs = dict(ckpt.model_kwargs) if stored else {}
    # hiermlp's models read every layout hiermlp converts; a timm model's weights are in its own keys
    convert = source == "hiermlp"
    sd = convert_state_dict(dict(ckpt.state_dict))[1] if convert else ckpt.state_dict
    # a segmentor fine-tuned from a classifier (ImageNet weights, the Swin recipe): the weights fill its backbone
    into_backbone = finetune and convert and get_entry(split_tag(bare)[0]).task == "segment"
    into_backbone = into_backbone and not any(k.startswith("backbone.") for k in sd)
    if into_backbone:
        kwargs.update({k: v for k, v in _shape_kwargs(sd, "head.fc", "patch_embed.proj").items() if k == "in_chans"})
    else:
        kwargs.update(_shape_kwargs(sd, *_head_and_stem(source, bare)))
    kwargs.update(overrides)
    img_size = ckpt.img_size if stored and "img_size" not in kwargs else None
    model = _create_sized(f"{source}:{bare}", kwargs, img_size)
    if into_backbone:
        _load_backbone(model, ckpt.state_dict, os.fspath(checkpoint))
    else:
        load_checkpoint(model, ckpt.state_dict, strict=strict, new_head=finetune, convert=convert)
    if not finetune:
        # evaluated as it was trained: timm's resolve_data_config(model=...) gives the trainer's eval transform,
        # and the trained head's class names travel under timm's cfg key for eval and export
        cfg = {**(getattr(model, "pretrained_cfg", None) or {}), **ckpt.data_config}
        if ckpt.classes and len(ckpt.classes) == getattr(model, "num_classes", None):
            cfg["label_names"] = list(ckpt.classes)
        model.pretrained_cfg = cfg
    return model


def _load_backbone(model: nn.Module, state_dict: dict[str, Any], source: str) -> None:
    """A classifier's weights into a segmentor's backbone: every stem and stage tensor must load; the output norms
    (``norm0`` ...) and the heads stay at their initialisation, as mmseg's ImageNet-initialised backbones do."""
    import re
    import warnings

    with warnings.catch_warnings():  # the skipped classifier head and the new output norms are expected
        warnings.simplefilter("ignore")
        result = load_checkpoint(model.backbone, state_dict, strict=False)
    missing = [k for k in result.missing if not re.match(r"norm\d+\.", k)]
    if missing or result.mismatched:
        bad = (missing + result.mismatched)[:5]
        raise CheckpointError(
            f"{source}: the classifier's weights do not fit this segmentor's backbone ({bad}); build the segmentor "
            "with the classifier's backbone options (embed_dim, depths, num_heads, mixer, ...)"
        )


def _hiermlp_first(name: str) -> tuple[str, str]:
    """:func:`resolve_source`, with timm's ``hiermlp_<name>`` (a checkpoint of timm's train.py) as hiermlp's."""
    source, bare = resolve_source(name)
    if source == "timm" and bare.startswith(PREFIX) and is_model(split_tag(bare[len(PREFIX) :])[0]):
        return "hiermlp", bare[len(PREFIX) :]
    return source, bare


def _same_model(name: str, stored: str | None) -> bool:
    if stored is None:
        return False
    try:
        return _hiermlp_first(name) == _hiermlp_first(stored)
    except UnknownModelError:
        return False


def registered_cfg(name: str) -> dict[str, Any]:
    """The pretrained cfg a name builds with (hiermlp's or timm's, as :func:`resolve_source` picks; ``{}`` for a
    name neither registry has, whose build reports it), read from the registry without building anything."""
    try:
        source, bare = _hiermlp_first(name)
        if source == "hiermlp":
            return resolve_cfg(bare)
    except UnknownModelError:  # also an unknown tag
        return {}
    found = timm.models.get_pretrained_cfg(bare)
    return found.to_dict() if found is not None else {}


def _head_and_stem(source: str, name: str) -> tuple[str, str]:
    """The classifier and first-conv module names of a model, from its pretrained cfg."""
    cfg = registered_cfg(f"{source}:{name}")
    classifier, first_conv = cfg.get("classifier") or "head.fc", cfg.get("first_conv") or "patch_embed.proj"
    # a distilled model names two classifiers; the first is the class token's
    return next(iter(classifier)) if isinstance(classifier, (list, tuple)) else classifier, str(first_conv)


def _shape_kwargs(sd: dict[str, Any], classifier: str, first_conv: str) -> dict[str, int]:
    """``num_classes`` (classifier rows; 0 without a classifier) and ``in_chans`` (first conv) of the weights."""
    out = {}
    head = sd.get(f"{classifier}.weight")
    out["num_classes"] = int(head.shape[0]) if head is not None else 0
    stem = sd.get(f"{first_conv}.weight")
    if stem is not None and stem.ndim >= 2:
        out["in_chans"] = int(stem.shape[1])
    return out


def _create_sized(target: str, kwargs: dict[str, Any], img_size: Any) -> nn.Module:
    """``create_any_model(target, **kwargs)``, with a trainer's ``img_size`` for models that take one (timm's
    CNNs take any size and have no such argument)."""
    if img_size is None:
        return create_any_model(target, **kwargs)
    try:
        return create_any_model(target, img_size=img_size, **kwargs)
    except TypeError as e:
        if "img_size" not in str(e):
            raise
        return create_any_model(target, **kwargs)
