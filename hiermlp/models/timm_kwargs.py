"""timm's model kwargs in hiermlp's terms: what ``timm.create_model("hiermlp_...", qkv_bias=..., ...)`` means
for a registered row (used by :func:`hiermlp.factory.build_entry`)."""

from __future__ import annotations

import inspect
from typing import Any

from hiermlp.errors import ConfigError
from hiermlp.models.registry import ModelEntry

__all__ = ["TIMM_MIXER_OPTIONS", "translate_timm_kwargs"]

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
    from hiermlp.schema import check_value

    kwargs = dict(kwargs)
    for key, tp in _TIMM_TYPES.items():  # timm's options hiermlp reads itself: typed like every other
        if key in kwargs:
            try:
                check_value(key, kwargs[key], tp)
            except ConfigError as e:
                raise ConfigError(f"{entry.name}: {e}") from None
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
        mixers = _per_stage(args.get("mixer", params["mixer"].default), n)
        stage_kwargs = [dict(d or {}) for d in _per_stage(args.get("mixer_kwargs"), n)]
        for timm_key, opt in TIMM_MIXER_OPTIONS.items():
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


# timm's model kwargs hiermlp translates (the others reach a constructor, whose annotations type them)
_TIMM_TYPES: dict[str, Any] = {
    "qkv_bias": bool,
    "attn_drop_rate": float,
    "proj_drop_rate": float,
    "dynamic_img_size": bool,
    "strict_img_size": bool,
    "weight_init": str | None,
}


def _per_stage(value: Any, n: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n
