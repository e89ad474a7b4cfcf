"""The mixer contract and the ``MIXERS`` registry.

A token mixer mixes tokens and nothing else: no norm, no residual (the block does both). Two kinds, told by
the class attribute ``kind``:

* ``kind = "window"`` (the default): it mixes the tokens *of one window*; the block owns the geometry
  (padding, shift, partition, masks). Built ``Mixer(dim, *, window_size, **options)``; ``forward(x, mask)``
  with ``x: (B*nW, N, C)``, ``N = wh*ww``, windows batch-major, and ``mask: (nW, N, N)`` bool (True where
  two tokens may interact) or None; returns ``(B*nW, N, C)``. ``window_size`` is ``(wh, ww)``, or None for
  a mixer whose class sets ``global_window = True`` (the window is then the whole map). Class attribute
  ``honours_mask``: True if the mixer applies the mask itself (attention as a logit mask, a linear token
  map by masking its weight); for one that cannot (a nonlinear token MLP) the block shifts by zero padding
  instead of a cyclic roll, so no mask is ever needed. Class attribute ``crop_modes`` (default ``()``, the
  safe choice): the shift modes (``"roll"``, ``"pad"``) in which the mixer may run on a window *smaller*
  than the one it was built for. When the map is smaller than the window on an axis, the block then
  partitions the map into windows of the map's size there and calls ``forward(x, mask, window_size=(h, w))``
  (the top-left part of the built window); the mixer must compute exactly what the built window computes
  on those tokens with the rest of it padded (masked out in roll mode, zeros in pad mode), e.g. with the
  sub-matrix of a position bias (:func:`hiermlp.ops.crop_tokens`). Otherwise (a token MLP whose every
  output depends on all N slots) the block pads the map up to the built window. Either way a map not
  larger than the window is not shifted on that axis (:func:`hiermlp.ops.actual_window`).
* ``kind = "map"``: it mixes the whole channels-last map, ``forward(x): (B, H, W, C) -> (B, H, W, C)``
  (cycle and axial shifts, depthwise convolutions, row/column MLPs: mixers whose reach crosses window
  borders). Built ``Mixer(dim, **options)``.

Class attribute ``spatial_dims`` (default ``(1, 2, 3)`` for window mixers, ``(2,)`` for map mixers): the
numbers of spatial axes a mixer runs on. A window mixer's ``window_size`` then has one entry per axis and
``N = prod(window_size)`` (a video window ``(wt, wh, ww)``, a sequence window ``(wl,)``); the block refuses a
mixer in a dimension it does not declare with a ConfigError.

The block offers ``num_heads``, ``window_size`` and ``feat_size`` (the stage's nominal map size, for
resolution-tied mixers) and passes each only to a constructor that declares it. Unknown options are an
error (no ``**kwargs`` swallowing). Initialisation: a mixer (or any module) with an ``init_weights()``
method initialises itself; the network's generic init skips it (see :func:`hiermlp.models.network.init_tree`).
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

    A registered class's constructor checks its arguments against its annotations
    (:func:`hiermlp.schema.check_arguments`), however it is called: ``qkv_bias="False"`` is a
    :class:`~hiermlp.errors.ConfigError`, not a truthy string.
    """

    def add(cls: MixerFactory) -> MixerFactory:
        if not callable(cls):
            raise ConfigError(f"register_mixer({name!r}): expected a class or factory, got {cls!r}")
        if name in MIXERS and MIXERS[name] is not cls and not overwrite:
            raise ConfigError(f"a mixer named {name!r} is already registered; pass overwrite=True to replace it")
        if isinstance(cls, type):
            typed_init(cls, f"mixer {name!r}")
        MIXERS[name] = cls
        return cls

    return add(mixer) if mixer is not None else add


def typed_init(cls: type, what: str) -> None:
    """Make ``cls``'s own ``__init__`` check its arguments' types first (once; subclasses inherit it)."""
    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_typed", False):
        return
    signature = inspect.signature(init)

    @functools.wraps(init)
    def checked(self: Any, *args: Any, **kwargs: Any) -> None:
        from hiermlp.schema import check_arguments  # pydantic loads on first construction, not with hiermlp

        try:
            bound = signature.bind(self, *args, **kwargs).arguments
        except TypeError:  # a missing or extra argument: the constructor's own error says which
            bound = {}
        plain = {k: v for k, v in bound.items() if signature.parameters[k].kind not in _VARIADIC and k != "self"}
        check_arguments(init, plain, what=what)
        init(self, *args, **kwargs)

    checked._typed = True  # type: ignore[attr-defined]
    cls.__init__ = checked  # type: ignore[misc]


_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


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
    """A class-level contract attribute (``kind``, ``honours_mask``, ``global_window``, ``crop_modes``) of a
    mixer spec."""
    factory = get_mixer(spec)
    while isinstance(factory, functools.partial):
        factory = factory.func
    return getattr(factory, attr, default)


MIXER_KINDS = ("window", "map")
SHIFT_MODES = ("roll", "pad")
# what the block can tell a mixer; each is passed only to constructors that declare it
OFFERED = ("window_size", "num_heads", "feat_size")


def mixer_kind(spec: str | MixerFactory) -> str:
    """``"window"`` or ``"map"`` (see the module docstring)."""
    kind = mixer_attr(spec, "kind", "window")
    if kind not in MIXER_KINDS:
        raise ConfigError(f"mixer {mixer_name(spec)!r} has kind={kind!r}; a mixer's kind is 'window' or 'map'")
    return kind


def mixer_crop_modes(spec: str | MixerFactory) -> tuple[str, ...]:
    """The shift modes in which a window mixer runs on windows smaller than built (``crop_modes``)."""
    modes = tuple(mixer_attr(spec, "crop_modes", ()))
    if any(m not in SHIFT_MODES for m in modes):
        raise ConfigError(
            f"mixer {mixer_name(spec)!r} has crop_modes={modes!r}; each must be one of {', '.join(SHIFT_MODES)}"
        )
    return modes


def mixer_spatial_dims(spec: str | MixerFactory) -> tuple[int, ...]:
    """The numbers of spatial axes a mixer runs on (class attribute ``spatial_dims``).

    A window mixer sees only the tokens of a window, so by default it runs in 1, 2 and 3 dims; a map mixer
    sees the map, and its shifts and convolutions are written for images, so by default it is 2-D only.
    """
    default = (1, 2, 3) if mixer_kind(spec) == "window" else (2,)
    dims = tuple(mixer_attr(spec, "spatial_dims", default))
    if not dims or any(d not in (1, 2, 3) for d in dims):
        raise ConfigError(f"mixer {mixer_name(spec)!r} has spatial_dims={dims!r}; each must be 1, 2 or 3")
    return dims


def build_mixer(
    spec: str | MixerFactory, *, dim: int, offered: dict[str, Any] | None = None, **options: Any
) -> nn.Module:
    """Build a mixer on the contract, turning bad options into errors that name them.

    ``offered`` (or the keywords ``window_size``, ``num_heads``, ``feat_size`` given directly) are what the
    stage knows; each is passed only to a constructor that declares it. Everything else is the mixer's own
    options, checked against its signature.
    """
    offered = dict(offered or {})
    if offered:
        clash = sorted(set(options) & set(OFFERED))
        if clash:
            raise ConfigError(
                f"mixer option(s) {clash} for {mixer_name(spec)!r} are set by the stage (window_size, num_heads "
                "per stage), not in mixer_kwargs"
            )
    else:
        offered = {k: options.pop(k) for k in OFFERED if k in options}
    factory = get_mixer(spec)
    name = mixer_name(spec)
    kind = mixer_kind(spec)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins / C extensions: let the call decide
        params = None
    if params is None:
        return _checked(factory(dim, **offered, **options), name)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    if kind == "window" and "window_size" not in params and not takes_any:
        raise ConfigError(
            f"mixer {name!r} breaks the window-mixer contract: its constructor lacks window_size; a window mixer is "
            "built as Mixer(dim, *, window_size, **options) (or set kind = 'map' for a mixer of whole maps)"
        )
    bound = {k for k, p in params.items() if p.kind is not p.VAR_POSITIONAL}
    unknown = sorted(set(options) - bound)
    if unknown and not takes_any:
        valid = sorted(bound - {"self", "dim", *OFFERED})
        raise ConfigError(
            f"unknown option(s) {unknown} for mixer {name!r}.{suggest(unknown[0], valid)} "
            f"Valid options: {valid or 'none'}"
        )
    passed = {k: v for k, v in offered.items() if k in params or takes_any}
    if not getattr(getattr(factory, "__init__", None), "_typed", False):  # a class given directly, a function
        from hiermlp.schema import check_arguments

        check_arguments(
            factory.func if isinstance(factory, functools.partial) else factory, options, what=f"mixer {name!r}"
        )
    return _checked(factory(dim, **passed, **options), name)


def _checked(mixer: Any, name: str) -> nn.Module:
    if not isinstance(mixer, nn.Module):
        raise ConfigError(f"mixer {name!r} must build an nn.Module, got {type(mixer).__name__}")
    return mixer
