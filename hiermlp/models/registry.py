"""The model registry, data only: reference names -> (variant kwargs, pretrained cfgs by tag), and lookups.

Variants are data, not functions: each is a row of keyword arguments for one builder (``HierNet`` unless a
row says otherwise) and its pretrained cfgs keyed by timm's tags, registered by :func:`register_model`. The zoo
(:mod:`hiermlp.models.zoo`) fills it. Building a model from a row (timm's ``build_model_with_cfg``, weights,
the speed layer) and mirroring every row into timm's registry as ``hiermlp_<name>`` is the factory's job
(:mod:`hiermlp.factory`), which sits above this module, the weights and the speed layer.
"""

from __future__ import annotations

import copy
import fnmatch
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from timm.models import PretrainedCfg
from torch import nn

from hiermlp.errors import ConfigError, UnknownNameError, suggest
from hiermlp.models.network import HierNet


class UnknownModelError(UnknownNameError, ConfigError):
    """A model name no registry knows (a KeyError for lookups, a ConfigError for configs)."""


class UnknownTagError(UnknownModelError, RuntimeError):
    """A pretrained tag the architecture does not have (timm raises a RuntimeError for it, so this is one)."""


class UnknownOptionError(ConfigError, TypeError):
    """A model option the builder does not take (Python and timm raise a TypeError for one, so this is one)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kwargs: dict[str, Any]  # builder arguments of this variant
    pretrained_cfg: dict[str, Any]  # the default tag's cfg (timm's fields: url, hf_hub_id, input_size, pool_size, ...)
    family: str = ""  # e.g. "swin", "swin_mlp": for listing and docs
    builder: Callable[..., nn.Module] = HierNet
    notes: str = ""  # one line for the zoo table
    pretrained_cfgs: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag -> cfg, the default first
    task: str = "classify"  # what the model's output is: "classify" (B, classes) or "segment" (B, classes, H, W)

    @property
    def tags(self) -> tuple[str, ...]:
        """Pretrained tags, the default first (``""`` for an untagged cfg), as ``arch.tag`` keys in timm."""
        return tuple(self.pretrained_cfgs)


TASKS = ("classify", "segment")
_MODELS: dict[str, ModelEntry] = {}
_ALIASES: dict[str, str] = {}  # other names of a registered model (e.g. the Microsoft config names of Swin V2)
_listeners: list[Callable[[ModelEntry], None]] = []


def nominal_pool_size(kwargs: dict[str, Any], input_size: Sequence[int]) -> tuple[int, ...] | None:
    """The unpooled last-stage map ``(h, w)`` of a :class:`HierNet` row at ``input_size`` (C, H, W); one size
    per spatial axis for a row with ``spatial_dims`` 1 or 3 (``input_size`` (C, T, H, W)).

    The stem's stride (``patch_size``, or ``stem_kwargs["stride"]``) times the downsampling factors (2, or
    ``downsample_kwargs["factors"]``) per downsampling stage, each step rounding up as the padded stem and
    merging do. tests/test_timm_citizen.py checks it against the built models.
    """
    d = kwargs.get("spatial_dims", 2)
    depths = kwargs.get("depths", (2, 2, 6, 2))
    stride = (kwargs.get("stem_kwargs") or {}).get("stride", kwargs.get("patch_size", 4))
    strides = tuple(stride) if isinstance(stride, (list, tuple)) else (stride,) * d
    factors = (kwargs.get("downsample_kwargs") or {}).get("factors", 2)
    factors = tuple(factors) if isinstance(factors, (list, tuple)) else (factors,) * d
    size = [math.ceil(s / r) for s, r in zip(input_size[-d:], strides)]
    for _ in range(len(depths) - 1 if kwargs.get("downsample", True) else 0):
        size = [math.ceil(s / f) for s, f in zip(size, factors)]
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
    task: str | None = None,
    **kwargs: Any,
) -> ModelEntry:
    """Add a named variant: ``register_model("my_swin", embed_dim=64, depths=(2, 2, 2), ...)``.

    The name becomes available to :func:`hiermlp.create_model`, ``hiermlp list`` and, for classifiers, as
    ``hiermlp_<name>`` to ``timm.create_model``. ``pretrained_cfgs`` maps pretrained tags to cfgs
    (``{"ms_in1k": cfg(...), ...}``, the default first), as timm's ``arch.tag`` keys; ``pretrained_cfg`` is one
    untagged cfg. ``task`` is ``"classify"`` or ``"segment"`` (per-pixel logits; not mirrored into timm, whose
    registry and model tests are for classifiers); by default the builder's class attribute ``task``, else
    ``"classify"``.
    """
    task = task or getattr(builder, "task", "classify")
    if task not in TASKS:
        raise ConfigError(f"task={task!r} is unknown; use one of {', '.join(TASKS)}")
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
    entry = ModelEntry(name, dict(kwargs), next(iter(cfgs.values())), family, builder, notes, cfgs, task)
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


def is_image_classifier(entry: ModelEntry, overrides: dict[str, Any] | None = None) -> bool:
    """Whether a row builds a 2-D image classifier (not a video/volume/sequence model, nor a segmentation
    network), the kind timm's registry and builder take."""
    spatial_dims = {**entry.kwargs, **(overrides or {})}.get("spatial_dims", 2)
    return spatial_dims == 2 and entry.task == "classify"


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


def list_models(
    pattern: str | Sequence[str] = "*", *, family: str | None = None, task: str | None = "classify"
) -> list[str]:
    """Registered names matching a shell-style pattern (or any of several), sorted.

    ``task``: the classifiers by default (the models timm's registry mirrors); ``"segment"`` for the
    segmentation models, None for every model.
    """
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted(
        n
        for n, e in _MODELS.items()
        if any(fnmatch.fnmatch(n, p) for p in patterns)
        and (family is None or e.family == family)
        and (task is None or e.task == task)
    )


def check_kwargs(name: str, builder: Callable[..., nn.Module], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        valid = sorted(k for k in params if k != "self")
        raise UnknownOptionError(
            f"unknown model option(s) {unknown} for {name!r}.{suggest(unknown[0], valid)} Valid options: {valid}"
        )


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


def model_summary(name: str) -> dict[str, Any]:
    """Variant arguments and cfg of a registered model (a copy)."""
    e = get_entry(name)
    return dict(name=e.name, family=e.family, kwargs=copy.deepcopy(e.kwargs), pretrained_cfg=dict(e.pretrained_cfg))
