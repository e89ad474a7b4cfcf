"""The mixer contract and the ``MIXERS`` registry.

A token mixer mixes the tokens *of one window* and nothing else: the block owns the geometry (padding,
shift, partition, masks). Contract:

* built as ``Mixer(dim, *, window_size, num_heads, **options)``; ``window_size`` is ``(wh, ww)``, or None
  for a mixer whose class sets ``global_window = True`` (the window is then the whole feature map);
* ``forward(x, mask)``: ``x`` is ``(B*nW, N, C)`` with ``N = wh*ww``, windows batch-major; ``mask`` is
  ``(nW, N, N)`` bool (True where two tokens may interact) or None; returns ``(B*nW, N, C)``;
* no norm and no residual: the block does both;
* class attribute ``honours_mask``: True if the mixer applies the mask itself (attention as a logit mask, a
  linear token map by masking its weight). For a mixer that cannot (a nonlinear token MLP), the block
  shifts by zero padding instead of a cyclic roll, so no mask is ever needed;
* unknown options are an error (no ``**kwargs`` swallowing).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from hiermlp.errors import ConfigError, UnknownNameError, suggest

MixerFactory = Callable[..., nn.Module]

MIXERS: dict[str, MixerFactory] = {}


def register_mixer(name: str, mixer: MixerFactory | None = None, *, overwrite: bool = False):
    """Register a mixer class under ``name``, usable as ``mixer=name`` in any stage and config.

    Works as a call, ``register_mixer("mine", MyMixer)``, or as a class decorator,
    ``@register_mixer("mine")``. Re-registering a name raises unless ``overwrite=True``.
    """

    def add(cls: MixerFactory) -> MixerFactory:
        if not callable(cls):
            raise ConfigError(f"register_mixer({name!r}): expected a class or factory, got {cls!r}")
        if name in MIXERS and MIXERS[name] is not cls and not overwrite:
            raise ConfigError(f"a mixer named {name!r} is already registered; pass overwrite=True to replace it")
        MIXERS[name] = cls
        return cls

    return add(mixer) if mixer is not None else add


def get_mixer(spec: str | MixerFactory) -> MixerFactory:
    """Resolve a mixer name (or pass a class/partial through)."""
    if isinstance(spec, str):
        if spec not in MIXERS:
            raise UnknownNameError(
                f"unknown mixer {spec!r}.{suggest(spec, MIXERS)} Known mixers: {', '.join(sorted(MIXERS))}. "
                "Add your own with hiermlp.register_mixer(name, cls)."
            )
        return MIXERS[spec]
    if callable(spec):
        return spec
    raise ConfigError(f"a mixer is a registered name or a class, got {spec!r}")


def mixer_name(spec: str | MixerFactory) -> str:
    """A readable name for a mixer spec (for reprs, reports and errors)."""
    if isinstance(spec, str):
        return spec
    if isinstance(spec, functools.partial):
        return mixer_name(spec.func)
    return next((k for k, v in MIXERS.items() if v is spec), getattr(spec, "__name__", repr(spec)))


def mixer_attr(spec: str | MixerFactory, attr: str, default: Any) -> Any:
    """A class-level contract attribute (``honours_mask``, ``global_window``) of a mixer spec."""
    factory = get_mixer(spec)
    while isinstance(factory, functools.partial):
        factory = factory.func
    return getattr(factory, attr, default)


def build_mixer(
    spec: str | MixerFactory,
    *,
    dim: int,
    window_size: tuple[int, int] | None,
    num_heads: int,
    **options: Any,
) -> nn.Module:
    """Build a mixer on the contract, turning bad options into errors that name them."""
    factory = get_mixer(spec)
    name = mixer_name(spec)
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins / C extensions: let the call decide
        sig = None
    if sig is not None:
        params = sig.parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        missing = {"window_size", "num_heads"} - set(params)
        if missing and not takes_any:
            raise ConfigError(
                f"mixer {name!r} breaks the mixer contract: its constructor lacks {sorted(missing)}; "
                "a mixer is built as Mixer(dim, *, window_size, num_heads, **options)"
            )
        bound = {k for k, p in params.items() if p.kind is not p.VAR_POSITIONAL}
        unknown = sorted(set(options) - bound)
        if unknown and not takes_any:
            valid = sorted(bound - {"self", "dim", "window_size", "num_heads"})
            raise ConfigError(
                f"unknown option(s) {unknown} for mixer {name!r}.{suggest(unknown[0], valid)} "
                f"Valid options: {valid or 'none'}"
            )
    mixer = factory(dim, window_size=window_size, num_heads=num_heads, **options)
    if not isinstance(mixer, nn.Module):
        raise ConfigError(f"mixer {name!r} must build an nn.Module, got {type(mixer).__name__}")
    return mixer
