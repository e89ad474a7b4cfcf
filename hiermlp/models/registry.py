"""The model registry: reference names -> (variant kwargs, pretrained cfgs by tag), ``create_model``, ``list_models``.

Variants are data, not functions: each is a row of keyword arguments for one builder (``HierNet`` unless a
row says otherwise) and its pretrained cfgs keyed by timm's tags, registered by :func:`register_model`. The zoo
(:mod:`hiermlp.models.zoo`) fills it; :mod:`hiermlp.models.timm_mirror` mirrors every entry into timm's
registry as ``hiermlp_<name>``. Both registries build through :func:`build_model`, i.e. timm's
``build_model_with_cfg``, so pretrained loading and ``features_only`` behave as for timm's own models.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import inspect
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timm.models import PretrainedCfg
from torch import nn

from hiermlp.errors import ConfigError, UnknownNameError, suggest
from hiermlp.models.network import HierNet

_logger = logging.getLogger(__name__)


class UnknownModelError(UnknownNameError, ConfigError):
    """A model name no registry knows (a KeyError for lookups, a ConfigError for configs)."""


class UnknownTagError(UnknownModelError, RuntimeError):
    """A pretrained tag the architecture does not have (timm raises a RuntimeError for it, so this is one)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kwargs: dict[str, Any]  # builder arguments of this variant
    pretrained_cfg: dict[str, Any]  # the default tag's cfg (timm's fields: url, hf_hub_id, input_size, pool_size, ...)
    family: str = ""  # e.g. "swin", "swin_mlp": for listing and docs
    builder: Callable[..., nn.Module] = HierNet
    notes: str = ""  # one line for the zoo table
    pretrained_cfgs: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag -> cfg, the default first

    @property
    def tags(self) -> tuple[str, ...]:
        """Pretrained tags, the default first (``""`` for an untagged cfg), as ``arch.tag`` keys in timm."""
        return tuple(self.pretrained_cfgs)


_MODELS: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}  # other names of a registered model (e.g. the Microsoft config names of Swin V2)
_listeners: list[Callable[[ModelEntry], None]] = []


def nominal_pool_size(kwargs: dict[str, Any], input_size: Sequence[int]) -> tuple[int, int] | None:
    """The unpooled last-stage map ``(h, w)`` of a :class:`HierNet` row at ``input_size`` (C, H, W).

    The stem's stride (``patch_size``, or ``stem_kwargs["stride"]``) times 2 per downsampling stage, each
    step rounding up as the padded stem and merging do. tests/test_timm_citizen.py checks it against the
    built models.
    """
    depths = kwargs.get("depths", (2, 2, 6, 2))
    stride = (kwargs.get("stem_kwargs") or {}).get("stride", kwargs.get("patch_size", 4))
    size = [math.ceil(s / stride) for s in input_size[-2:]]
    for _ in range(len(depths) - 1 if kwargs.get("downsample", True) else 0):
        size = [math.ceil(s / 2) for s in size]
    return tuple(size)


def _complete_cfg(cfg: dict[str, Any], kwargs: dict[str, Any], builder: Callable[..., nn.Module]) -> dict[str, Any]:
    """Every field of timm's ``PretrainedCfg`` (unknown keys are an error), with this row's real ``pool_size``."""
    try:
        full = PretrainedCfg(**cfg).to_dict(remove_null=False)
    except TypeError as e:
        raise ConfigError(f"pretrained cfg: {e}; the fields are timm.models.PretrainedCfg's") from None
    if full.get("pool_size") is None and isinstance(builder, type) and issubclass(builder, HierNet):
        full["pool_size"] = nominal_pool_size(kwargs, full["input_size"])
    return {k: v for k, v in full.items() if v is not None or k in _KEEP_NULL}


def _hub_tag(name: str, cfg: dict[str, Any]) -> str:
    """The tag an untagged cfg's timm hub copy names (``timm/<name>.<tag>``), else ``""``."""
    arch, _, tag = str(cfg.get("hf_hub_id") or "").removeprefix("timm/").partition(".")
    return tag if arch == name else ""


# timm keeps these even when None; "tag"/"architecture" are filled in when a model is built
_KEEP_NULL = ("pool_size", "first_conv", "classifier", "hf_hub_id", "url")


def register_model(
    name: str,
    *,
    pretrained_cfg: dict[str, Any] | None = None,
    pretrained_cfgs: dict[str, dict[str, Any]] | None = None,
    family: str = "",
    builder: Callable[..., nn.Module] = HierNet,
    notes: str = "",
    overwrite: bool = False,
    **kwargs: Any,
) -> ModelEntry:
    """Add a named variant: ``register_model("my_swin", embed_dim=64, depths=(2, 2, 2), ...)``.

    The name becomes available to :func:`create_model`, ``hiermlp list`` and, as ``hiermlp_<name>``, to
    ``timm.create_model``. ``pretrained_cfgs`` maps pretrained tags to cfgs (``{"ms_in1k": cfg(...), ...}``,
    the default first), as timm's ``arch.tag`` keys; ``pretrained_cfg`` is one untagged cfg.
    """
    if name in _MODELS and not overwrite:
        raise ConfigError(f"a model named {name!r} is already registered; pass overwrite=True to replace it")
    if "." in name:
        raise ConfigError(f"model name {name!r} may not contain '.': it separates the pretrained tag (arch.tag)")
    if pretrained_cfg is not None and pretrained_cfgs is not None:
        raise ConfigError("pass pretrained_cfg (one untagged cfg) or pretrained_cfgs (tag -> cfg), not both")
    check_kwargs(name, builder, kwargs)
    cfgs = (
        pretrained_cfgs if pretrained_cfgs is not None else {_hub_tag(name, pretrained_cfg or {}): pretrained_cfg or {}}
    )
    if not cfgs:
        cfgs = {"": {}}
    cfgs = {tag: _complete_cfg(dict(c), kwargs, builder) for tag, c in cfgs.items()}
    entry = ModelEntry(name, dict(kwargs), next(iter(cfgs.values())), family, builder, notes, cfgs)
    _MODELS[name] = entry
    for listener in _listeners:
        listener(entry)
    return entry


def on_register(fn: Callable[[ModelEntry], None]) -> None:
    """Call ``fn`` for every registered entry, now and in future (used by the timm mirror)."""
    _listeners.append(fn)
    for entry in list(_MODELS.values()):
        fn(entry)


def register_alias(alias: str, name: str) -> None:
    """Let ``alias`` build the registered model ``name`` (not listed by ``list_models``, not mirrored to timm)."""
    if name not in _MODELS:
        raise UnknownModelError(f"cannot alias {alias!r} to {name!r}: no such model")
    if alias in _MODELS or _ALIASES.get(alias, name) != name:
        raise ConfigError(f"{alias!r} already names a model; pick another alias")
    _ALIASES[alias] = name


def is_model(name: str) -> bool:
    return name in _MODELS or name in _ALIASES


def get_entry(name: str) -> ModelEntry:
    name = _ALIASES.get(name, name)
    if name not in _MODELS:
        hint = ""
        if name.startswith("hiermlp_") and name[8:] in _MODELS:
            hint = f" (in hiermlp's own registry the name has no prefix: {name[8:]!r})"
        raise UnknownModelError(
            f"unknown model {name!r}{hint}.{suggest(name, _MODELS)} See hiermlp.list_models() or `hiermlp list`."
        )
    return _MODELS[name]


def resolve_source(name: str) -> tuple[str, str]:
    """Which registry builds ``name``: ``("hiermlp" | "timm", bare name)``.

    hiermlp's registry is asked first, then timm's; ``hiermlp:NAME`` or ``timm:NAME`` picks one (both have
    ``swin_tiny_patch4_window7_224``). The trainer, ``hiermlp bench`` and ``hiermlp export`` all resolve
    names here.

    Raises:
        UnknownModelError: neither registry has it; the message lists close names from both.
    """
    import timm

    source, sep, bare = name.partition(":")
    if sep and source in ("hiermlp", "timm"):
        if source == "timm" and not timm.is_model(bare):
            raise UnknownModelError(f"unknown timm model {bare!r}.{suggest(bare, timm.list_models())}")
        if source == "hiermlp" and split_tag(bare)[0] not in _MODELS:
            raise UnknownModelError(f"unknown hiermlp model {bare!r}.{suggest(bare, _MODELS)}")
        return source, bare
    if split_tag(name)[0] in _MODELS:  # "arch.tag" is hiermlp's arch with a pretrained tag
        return "hiermlp", name
    if timm.is_model(name):
        return "timm", name
    hints = suggest(name, _MODELS) or suggest(name, timm.list_models())
    raise UnknownModelError(
        f"unknown model {name!r}: neither hiermlp's registry nor timm's has it "
        f"(see `hiermlp list` and timm.list_models()).{hints}"
    )


def create_any_model(name: str, **kwargs: Any) -> nn.Module:
    """:func:`create_model` for hiermlp's names, ``timm.create_model`` for timm's (see :func:`resolve_source`)."""
    source, bare = resolve_source(name)
    if source == "hiermlp":
        return create_model(bare, **kwargs)
    import timm

    return timm.create_model(bare, **kwargs)


def list_models(pattern: str | Sequence[str] = "*", *, family: str | None = None) -> list[str]:
    """Registered names matching a shell-style pattern (or any of several), sorted."""
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted(
        n
        for n, e in _MODELS.items()
        if any(fnmatch.fnmatch(n, p) for p in patterns) and (family is None or e.family == family)
    )


def check_kwargs(name: str, builder: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        valid = sorted(k for k in params if k != "self")
        raise ConfigError(
            f"unknown model option(s) {unknown} for {name!r}.{suggest(unknown[0], valid)} Valid options: {valid}"
        )


# timm's model kwargs that map onto a mixer option (in every stage whose mixer declares that option)
TIMM_MIXER_OPTIONS = {"qkv_bias": "qkv_bias", "attn_drop_rate": "attn_drop", "proj_drop_rate": "proj_drop"}


def translate_timm_kwargs(entry: ModelEntry, kwargs: dict[str, Any]) -> dict[str, Any]:
    """timm's model kwargs -> hiermlp's, or a :class:`ConfigError` naming one that means nothing here.

    * ``qkv_bias``, ``attn_drop_rate``, ``proj_drop_rate`` become the mixer options ``qkv_bias``, ``attn_drop``,
      ``proj_drop`` of every stage whose mixer declares them (attention). ``proj_drop_rate`` drops after the
      attention's output projection only: hiermlp's channel MLP has no dropout (timm's Swin drops there too).
    * ``dynamic_img_size=True`` / ``strict_img_size=False``: what hierarchical models always do (any input
      size runs, padded per block); ``dynamic_img_size=False`` / ``strict_img_size=True``: what fixed-size
      (isotropic) models do. The other combination cannot be honoured and is an error.
    * ``weight_init=""``: timm's default, which is hiermlp's (Swin's trunc-normal init). Other schemes are an error.
    """
    kwargs = dict(kwargs)
    args = {**entry.kwargs, **kwargs}
    params = inspect.signature(entry.builder).parameters
    fixed = bool(entry.pretrained_cfg.get("fixed_input_size"))
    for key, dynamic_value in (("dynamic_img_size", True), ("strict_img_size", False)):
        if key in kwargs and key not in params:
            value = kwargs.pop(key)
            if bool(value) == (dynamic_value if fixed else not dynamic_value):
                what = "only runs at its input_size (fixed_input_size)" if fixed else "accepts any input size"
                raise ConfigError(f"{key}={value!r} cannot be honoured: {entry.name} {what}; drop the option")
    if "weight_init" in kwargs and "weight_init" not in params and kwargs.pop("weight_init") not in ("", None):
        raise ConfigError(
            "weight_init: hiermlp models have one init (Swin's trunc-normal(0.02), timm's default ''); "
            "drop the option or load weights after building"
        )
    opts = {TIMM_MIXER_OPTIONS[k]: kwargs.pop(k) for k in list(kwargs) if k in TIMM_MIXER_OPTIONS}
    if opts and "mixer_kwargs" in params:
        from hiermlp.mixers.base import get_mixer, mixer_name

        n = len(args.get("depths", params["depths"].default))
        mixers = per_stage_value(args.get("mixer", params["mixer"].default), n)
        stage_kwargs = [dict(d or {}) for d in per_stage_value(args.get("mixer_kwargs"), n)]
        for timm_key, opt in ((k, TIMM_MIXER_OPTIONS[k]) for k in TIMM_MIXER_OPTIONS):
            if opt not in opts:
                continue
            takes = [opt in inspect.signature(get_mixer(m)).parameters for m in mixers]
            if not any(takes):
                names = sorted({mixer_name(m) for m in mixers})
                raise ConfigError(
                    f"{timm_key} means nothing for {entry.name}: none of its mixers ({', '.join(names)}) has a "
                    f"{opt!r} option"
                )
            for d, take in zip(stage_kwargs, takes):
                if take:
                    d[opt] = opts[opt]
        kwargs["mixer_kwargs"] = tuple(stage_kwargs)
    elif opts:
        raise ConfigError(f"{sorted(opts)} mean nothing for {entry.name} (its builder takes no mixer options)")
    return kwargs


def per_stage_value(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


def split_tag(name: str) -> tuple[str, str]:
    """``"arch.tag"`` -> ``("arch", "tag")``; no tag -> ``("arch", "")`` (timm's convention)."""
    arch, _, tag = name.partition(".")
    return _ALIASES.get(arch, arch), tag


def resolve_cfg(name: str) -> dict[str, Any]:
    """The pretrained cfg of ``"arch"`` (its default tag) or ``"arch.tag"``, with ``architecture`` and ``tag``.

    Raises:
        UnknownTagError: the architecture has no such tag (timm raises ``RuntimeError`` alike; this is one).
    """
    arch, tag = split_tag(name)
    entry = get_entry(arch)
    if tag and tag not in entry.pretrained_cfgs:
        known = ", ".join(t for t in entry.tags if t) or "none"
        raise UnknownTagError(f"Invalid pretrained tag ({tag}) for {arch}. Its tags: {known}.")
    tag = tag or entry.tags[0]
    return {**copy.deepcopy(entry.pretrained_cfgs[tag]), "architecture": arch, "tag": tag or None}


def _construct(
    builder: Callable[..., nn.Module], checkpoint_path: str | Path | None, cfg: dict[str, Any], **kwargs: Any
) -> nn.Module:
    """The builder, the speed layer, then ``checkpoint_path`` loaded (any known layout), before timm wraps
    features around it."""
    from hiermlp import accel  # the speed layer sits beside the models: applied here, never imported by them

    model = builder(**kwargs)
    if accel.settings.current().enabled:
        accel.accelerate(model)
    if checkpoint_path is not None:
        from hiermlp.weights import load_checkpoint

        model.pretrained_cfg = cfg
        load_checkpoint(model, checkpoint_path)
    return model


def build_model(
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
    """Build ``entry`` through timm's ``build_model_with_cfg``, the path timm's own models take.

    ``variant`` is the name the cfg is resolved under (``hiermlp_<name>`` in timm's registry; hiermlp's
    :func:`create_model` passes its resolved cfg as a dict). timm's builder then applies the cfg defaults
    (``num_classes``, ``in_chans``), loads pretrained weights (``file``, ``hf_hub_id`` through huggingface_hub,
    then ``url``) through :func:`hiermlp.weights.load.checkpoint_filter_fn` (any known layout), adapts the first
    conv to ``in_chans``, drops a classifier of another class count, and wraps ``features_only`` models in the
    ``feature_cls`` asked for (:mod:`hiermlp.models.features`), the cfg attached.
    """
    from timm.models import build_model_with_cfg

    from hiermlp.errors import CheckpointError, HiermlpError
    from hiermlp.models.features import resolve_feature_cls
    from hiermlp.weights.load import checkpoint_filter_fn

    if pretrained and checkpoint_path is not None:
        raise ConfigError("pass pretrained=True or checkpoint_path=, not both: the checkpoint would replace them")
    kwargs = translate_timm_kwargs(entry, kwargs)
    feature_keys = ("out_indices", "feature_cls", "output_fmt")
    feature_args = {k: kwargs.pop(k) for k in feature_keys if k in kwargs}
    if feature_args and not features_only:
        raise ConfigError(f"{sorted(feature_args)} only mean something with features_only=True")
    check_kwargs(entry.name, entry.builder, {**entry.kwargs, **kwargs})
    feature_cfg = None
    if features_only:
        if not (isinstance(entry.builder, type) and issubclass(entry.builder, HierNet)):
            raise ConfigError(f"features_only is supported for hierarchical models; {entry.name!r} is not one")
        n = len({**entry.kwargs, **kwargs}.get("depths", (2, 2, 6, 2)))
        feature_cfg = dict(flatten_sequential=True, out_indices=tuple(range(n)), **(feature_defaults or {}))
        feature_cfg.update(feature_args)
        feature_cfg["feature_cls"] = resolve_feature_cls(feature_cfg.get("feature_cls"))
        kwargs.update(features_only=True, feature_cls=feature_cfg.pop("feature_cls"))
        kwargs["out_indices"] = feature_cfg.pop("out_indices")
    resolved = pretrained_cfg if isinstance(pretrained_cfg, dict) else None
    model_cls = functools.partial(_construct, entry.builder, checkpoint_path, resolved or {})
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
    return model


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
        name: A registered name, e.g. ``"swin_tiny_patch4_window7_224"`` (see :func:`list_models`), optionally
            with a pretrained tag as in timm: ``"swin_tiny_patch4_window7_224.ms_in22k"``.
        pretrained: Load the tag's weights: ``file`` if the cfg (overlay) names one, else ``hf_hub_id`` through
            huggingface_hub (its cache and ``HF_HUB_OFFLINE`` apply), else ``url``.
        checkpoint_path: Load a local checkpoint (reference, timm, mmpretrain, HF or hiermlp layout).
        features_only: Return a backbone yielding one map per stage; ``out_indices`` (default all stages; an
            int n = the last n; negative from the end), ``output_fmt`` (``"NCHW"`` default, or ``"NHWC"``) and
            ``feature_cls`` (default :class:`HierFeatures`; timm's ``"list"``, ``"dict"``, ``"hook"``,
            ``"getter"``, ``"fx"``) choose how.
        pretrained_cfg_overlay: Entries that override the pretrained cfg (e.g. another ``url`` or ``file``).
        **kwargs: Builder overrides: ``num_classes``, ``in_chans``, ``img_size``, ``window_size``, ``mixer``...,
            and timm's ``qkv_bias``, ``attn_drop_rate``, ``proj_drop_rate``, ``dynamic_img_size``, ...
    """
    cfg = resolve_cfg(name)
    entry = get_entry(cfg["architecture"])
    return build_model(
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


def model_summary(name: str) -> dict[str, Any]:
    """Variant arguments and cfg of a registered model (a copy)."""
    e = get_entry(name)
    return dict(name=e.name, family=e.family, kwargs=copy.deepcopy(e.kwargs), pretrained_cfg=dict(e.pretrained_cfg))
