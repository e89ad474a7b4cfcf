"""The model registry: reference names -> (variant kwargs, pretrained cfg), ``create_model``, ``list_models``.

Variants are data, not functions: each is a row of keyword arguments for one builder (``HierNet`` unless a
row says otherwise), registered by :func:`register_model`. The zoo (:mod:`hiermlp.models.zoo`) fills it;
:mod:`hiermlp.models.timm_mirror` mirrors every entry into timm's registry as ``hiermlp_<name>``.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from hiermlp.errors import ConfigError, UnknownNameError, suggest
from hiermlp.models.features import HierFeatures
from hiermlp.models.network import HierNet

_logger = logging.getLogger(__name__)


class UnknownModelError(UnknownNameError, ConfigError):
    """A model name no registry knows (a KeyError for lookups, a ConfigError for configs)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kwargs: dict[str, Any]  # builder arguments of this variant
    pretrained_cfg: dict[str, Any]  # timm-style cfg: url, hf_hub_id, input_size, mean/std, classifier, ...
    family: str = ""  # e.g. "swin", "swin_mlp": for listing and docs
    builder: Callable[..., nn.Module] = HierNet
    notes: str = ""  # one line for the zoo table
    tags: tuple[str, ...] = field(default_factory=tuple)


_MODELS: dict[str, ModelEntry] = {}
_listeners: list[Callable[[ModelEntry], None]] = []


def register_model(
    name: str,
    *,
    pretrained_cfg: dict[str, Any] | None = None,
    family: str = "",
    builder: Callable[..., nn.Module] = HierNet,
    notes: str = "",
    overwrite: bool = False,
    **kwargs: Any,
) -> ModelEntry:
    """Add a named variant: ``register_model("my_swin", embed_dim=64, depths=(2, 2, 2), ...)``.

    The name becomes available to :func:`create_model`, ``hiermlp list`` and, as ``hiermlp_<name>``, to
    ``timm.create_model``.
    """
    if name in _MODELS and not overwrite:
        raise ConfigError(f"a model named {name!r} is already registered; pass overwrite=True to replace it")
    check_kwargs(name, builder, kwargs)
    entry = ModelEntry(name, dict(kwargs), dict(pretrained_cfg or {}), family, builder, notes)
    _MODELS[name] = entry
    for listener in _listeners:
        listener(entry)
    return entry


def on_register(fn: Callable[[ModelEntry], None]) -> None:
    """Call ``fn`` for every registered entry, now and in future (used by the timm mirror)."""
    _listeners.append(fn)
    for entry in list(_MODELS.values()):
        fn(entry)


def is_model(name: str) -> bool:
    return name in _MODELS


def get_entry(name: str) -> ModelEntry:
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
        if source == "hiermlp" and bare not in _MODELS:
            raise UnknownModelError(f"unknown hiermlp model {bare!r}.{suggest(bare, _MODELS)}")
        return source, bare
    if name in _MODELS:
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


def create_model(
    name: str,
    *,
    pretrained: bool = False,
    checkpoint_path: str | Path | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    output_fmt: str = "NCHW",
    pretrained_cfg_overlay: dict[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model; keyword arguments override the variant's.

    Args:
        name: A registered name, e.g. ``"swin_tiny_patch4_window7_224"`` (see :func:`list_models`).
        pretrained: Download the reference weights from ``pretrained_cfg["url"]`` (needs internet).
        checkpoint_path: Load a local checkpoint (reference, timm or hiermlp format, .pth or .safetensors).
        features_only: Return a :class:`HierFeatures` backbone yielding one map per stage.
        out_indices: Stages to return with ``features_only`` (default: all).
        output_fmt: ``"NCHW"`` or ``"NHWC"`` for ``features_only``.
        pretrained_cfg_overlay: Entries that override the pretrained cfg (e.g. another ``url`` or ``file``).
        **kwargs: Builder overrides: ``num_classes``, ``in_chans``, ``img_size``, ``window_size``, ``mixer``...
    """
    entry = get_entry(name)
    args = {**entry.kwargs, **kwargs}
    check_kwargs(name, entry.builder, args)
    model = entry.builder(**args)
    from hiermlp import accel  # the speed layer sits beside the models: applied here, never imported by them

    if accel.settings.current().enabled:
        accel.accelerate(model)
    cfg = copy.deepcopy(entry.pretrained_cfg)
    cfg.update(pretrained_cfg_overlay or {})
    cfg.update(architecture=name, num_classes=getattr(model, "num_classes", cfg.get("num_classes")))
    if "img_size" in kwargs:
        size = kwargs["img_size"]
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        cfg["input_size"] = (args.get("in_chans", 3), *size)
    elif "in_chans" in kwargs and "input_size" in cfg:
        cfg["input_size"] = (kwargs["in_chans"], *cfg["input_size"][1:])
    model.pretrained_cfg = model.default_cfg = cfg
    if pretrained:
        from hiermlp.weights import load_pretrained

        load_pretrained(model, cfg)
    if checkpoint_path is not None:
        from hiermlp.weights import load_checkpoint

        load_checkpoint(model, checkpoint_path)
    if features_only:
        if not isinstance(model, HierNet):
            raise ConfigError(f"features_only is supported for hierarchical models; {name!r} is not one")
        model = HierFeatures(model, out_indices, output_fmt)
    elif out_indices is not None:
        raise ConfigError("out_indices is only meaningful with features_only=True")
    return model


def model_summary(name: str) -> dict[str, Any]:
    """Variant arguments and cfg of a registered model (a copy)."""
    e = get_entry(name)
    return dict(name=e.name, family=e.family, kwargs=copy.deepcopy(e.kwargs), pretrained_cfg=dict(e.pretrained_cfg))
