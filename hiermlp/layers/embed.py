"""Stems and downsamplers, channels-last, chosen by name like mixers (``STEMS``, ``DOWNSAMPLERS``).

Contracts:

* a stem is built ``Stem(*, in_chans, embed_dim, norm_layer, **options)``, maps ``(B, C_in, H, W) ->
  (B, H', W', C)`` and has an attribute ``reduction`` (its stride);
* a downsampler is built ``Down(*, dim, out_dim, norm_layer, **options)`` and maps ``(B, H, W, C) ->
  (B, H', W', out_dim)``, halving the map.

Stems and downsamplers that take ``spatial_dims`` (``patch_embed``, ``conv_overlap``, ``patch_merging``,
``patch_merging_v2``) also run on sequences ``(B, C, L)`` and videos/volumes ``(B, C, T, H, W)``, with per-axis
patches or strides (``strides``) and per-axis merging ``factors``; the others are 2-D.

Sizes that do not divide evenly are zero-padded bottom/right first (what the reference detection code does),
so any input size runs.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError, ShapeError, UnknownNameError, suggest
from hiermlp.ops import axis_names, pad_to_multiple, padding_for

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("rearrange")
torch.fx.wrap("pad_to_multiple")
torch.fx.wrap("_pad_image")
torch.fx.wrap("check_image_size")

NormFactory = Callable[[int], nn.Module]

STEMS: dict[str, Callable[..., nn.Module]] = {}
DOWNSAMPLERS: dict[str, Callable[..., nn.Module]] = {}


def _register(table: dict, kind: str, name: str, cls: Callable[..., nn.Module] | None, overwrite: bool):
    def add(c: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in table and table[name] is not c and not overwrite:
            raise ConfigError(f"a {kind} named {name!r} is already registered; pass overwrite=True to replace it")
        table[name] = c
        return c

    return add(cls) if cls is not None else add


def register_stem(name: str, cls: Callable[..., nn.Module] | None = None, *, overwrite: bool = False):
    """Register a stem under ``name`` (usable as ``HierNet(stem=name)``); a call or a class decorator."""
    return _register(STEMS, "stem", name, cls, overwrite)


def register_downsample(name: str, cls: Callable[..., nn.Module] | None = None, *, overwrite: bool = False):
    """Register a downsampler under ``name`` (usable as ``HierNet(downsample=name)``)."""
    return _register(DOWNSAMPLERS, "downsampler", name, cls, overwrite)


def build_layer(table: dict, kind: str, spec: str | Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    """Build a registered stem/downsampler by name (or call a class), unknown options named in the error."""
    if isinstance(spec, str):
        if spec not in table:
            raise UnknownNameError(
                f"unknown {kind} {spec!r}.{suggest(spec, table)} Known: {', '.join(sorted(table))}; "
                f"register your own with hiermlp.layers.register_{'stem' if kind == 'stem' else 'downsample'}"
            )
        factory = table[spec]
    elif callable(spec):
        factory = spec
    else:
        raise ConfigError(f"a {kind} is a registered name or a class, got {spec!r}")
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            valid = sorted(set(params) - set(kwargs) - {"self"})
            raise ConfigError(f"unknown option(s) {unknown} for {kind} {spec!r}.{suggest(unknown[0], valid)}")
    from hiermlp.schema import check_arguments  # pydantic loads on first construction, not with hiermlp

    check_arguments(
        factory, kwargs, what=f"{kind} {spec if isinstance(spec, str) else getattr(spec, '__name__', spec)!r}"
    )
    return factory(**kwargs)


def _pad_image(x: torch.Tensor, multiple: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad a channels-first input at the end of each spatial axis up to a multiple (by zero where it
    already is one)."""
    pads: list[int] = []
    for p in reversed(padding_for(x.shape[2:], multiple)):
        pads += [0, p]
    return F.pad(x, tuple(pads))


def spatial_pattern(spatial_dims: int) -> tuple[str, str]:
    """The channels-first and channels-last einops layouts of a map, e.g. ``("b c h w", "b h w c")``."""
    axes = " ".join(axis_names(spatial_dims))
    return f"b c {axes}", f"b {axes} c"


CONVS = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def _ntuple(v: int | tuple[int, ...], n: int, name: str) -> tuple[int, ...]:
    t = tuple(v) if isinstance(v, (list, tuple)) else (v,) * n
    if len(t) != n or any(not isinstance(i, int) or i < 1 for i in t):
        raise ConfigError(f"{name} must be an int >= 1 or one per spatial axis ({n}), got {v!r}")
    return t


@register_stem("patch_embed")
class PatchEmbed(nn.Module):
    """Input to patch tokens, ``(B, C_in, *spatial) -> (B, *ceil(spatial/p), C)``.

    A strided convolution (kernel = stride = patch, per axis: Video Swin's ``(2, 4, 4)`` Conv3d) then an
    optional norm, as in Swin. Sizes need not be multiples of the patch: the input is zero-padded at the end
    of each axis up to the next multiple (as torchvision's and MONAI's patch embeddings do).
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: NormFactory | None = nn.LayerNorm,
        patch_size: int | tuple[int, ...] = 4,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        axis_names(spatial_dims)
        self.patch_size = _ntuple(patch_size, spatial_dims, "patch_size")
        self.strides = self.patch_size
        self.reduction = self.patch_size[-1]
        self.in_chans = in_chans
        self.proj = CONVS[spatial_dims](in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        self._to_last = " -> ".join(spatial_pattern(spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.proj(_pad_image(x, self.patch_size)), self._to_last)
        return self.norm(x)


@register_stem("conv_overlap")
class ConvStem(nn.Module):
    """Overlapping convolutional stem, ``(B, C_in, *spatial) -> (B, *spatial', C)`` (CycleMLP, Wave-MLP, PVT).

    ``Conv(kernel, stride, padding)`` (default 7/4/2: ``H' = ceil(H/4)`` for H a multiple of 4), then an
    optional norm. In ``spatial_dims`` 1 or 3 each of kernel, stride and padding is an int or one per axis
    (a clip stem ``kernel_size=(3, 7, 7), stride=(2, 4, 4), padding=(1, 2, 2)`` halves time and quarters space).
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        embed_dim: int = 64,
        norm_layer: NormFactory | None = None,
        kernel_size: int | tuple[int, ...] = 7,
        stride: int | tuple[int, ...] = 4,
        padding: int | tuple[int, ...] = 2,
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        axis_names(spatial_dims)
        kernel = _ntuple(kernel_size, spatial_dims, "kernel_size")
        self.strides = _ntuple(stride, spatial_dims, "stride")
        pad = tuple(padding) if isinstance(padding, (list, tuple)) else (padding,) * spatial_dims
        if len(pad) != spatial_dims or any(not isinstance(p, int) or p < 0 for p in pad):
            raise ConfigError(f"padding must be an int >= 0 or one per spatial axis ({spatial_dims}), got {padding!r}")
        self.in_chans = in_chans
        self.reduction = self.strides[-1]
        self.proj = CONVS[spatial_dims](in_chans, embed_dim, kernel_size=kernel, stride=self.strides, padding=pad)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        self._to_last = " -> ".join(spatial_pattern(spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(rearrange(self.proj(x), self._to_last))


def merge_pattern(factors: tuple[int, ...], order: str = "swin") -> tuple[str, dict[str, int]]:
    """The einops pattern (and sizes) that concatenates each ``factors`` neighbourhood into the channels.

    ``order="swin"``: the reference channel order, the first axis's offset varying fastest (2-D:
    ``x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]``; an axis with factor 1 is kept as it is,
    Video Swin's time). ``order="product"``: the last axis's offset fastest (``itertools.product`` over the
    offsets, MONAI's ``PatchMergingV2``).
    """
    axes = axis_names(len(factors))
    merged = [x for x, f in zip(axes, factors) if f > 1]
    left = " ".join(f"({x} s{x})" if f > 1 else x for x, f in zip(axes, factors))
    offsets = merged[::-1] if order == "swin" else merged
    right = f"b {' '.join(axes)} ({' '.join('s' + x for x in offsets)} c)"
    return f"b {left} c -> {right}", {f"s{x}": f for x, f in zip(axes, factors) if f > 1}


MERGE_ORDERS = ("swin", "product", "monai")

# MONAI's PatchMerging (SwinUNETR's default "merging") concatenates the 8 offsets of a 2x2x2 cube in its own
# order; as positions in the product order (t offset slowest) of :func:`merge_pattern`
MONAI_MERGE_GROUPS = (0, 4, 2, 1, 6, 5, 3, 7)


class _Merging(nn.Module):
    """The concatenation of :class:`PatchMerging` and :class:`PatchMergingV2` (their norm placement differs)."""

    def _setup(self, dim: int, out_dim: int | None, factors: Any, spatial_dims: int, order: str) -> int:
        self.dim = dim
        self.out_dim = out_dim or 2 * dim
        self.factors = _ntuple(factors, spatial_dims, "factors")
        if order not in MERGE_ORDERS:
            raise ConfigError(f"patch merging order must be one of {', '.join(MERGE_ORDERS)}, got {order!r}")
        self.order = order
        # MONAI's order differs from the product order only for a 2x2x2 cube (its 2-D merging is Swin's)
        self._groups = MONAI_MERGE_GROUPS if order == "monai" and self.factors == (2, 2, 2) else None
        base = "swin" if order == "monai" and self._groups is None else ("product" if order == "monai" else order)
        self._pattern, self._sizes = merge_pattern(self.factors, base)
        return dim * math.prod(self.factors)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial, C) -> (B, *ceil(spatial / factors), prod(factors) * C)``, odd sizes zero-padded."""
        x = rearrange(pad_to_multiple(x, self.factors), self._pattern, **self._sizes)
        if self._groups is None:
            return x
        groups = x.unflatten(-1, (len(self._groups), -1))  # (..., 8, C) in the product order
        return groups[..., list(self._groups), :].flatten(-2)


@register_downsample("patch_merging")
class PatchMerging(_Merging):
    """Swin's 2x downsampling, ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim)`` (any number of axes).

    Concatenates each 2x2 neighbourhood in the reference channel order (x[0::2, 0::2], x[1::2, 0::2],
    x[0::2, 1::2], x[1::2, 1::2]), then the norm over 4C and a bias-free Linear(4C, out_dim). Odd sizes are
    zero-padded. ``factors`` per axis: Video Swin merges ``(1, 2, 2)`` (H and W only, 4C), SwinUNETR all
    three axes (8C); ``order`` the channel order (:func:`merge_pattern`).
    """

    def __init__(
        self,
        *,
        dim: int,
        out_dim: int | None = None,
        norm_layer: NormFactory = nn.LayerNorm,
        factors: int | tuple[int, ...] = 2,
        spatial_dims: int = 2,
        order: str = "swin",
    ) -> None:
        super().__init__()
        merged = self._setup(dim, out_dim, factors, spatial_dims, order)
        self.norm = norm_layer(merged)
        self.reduction = nn.Linear(merged, self.out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(self.merge(x)))


@register_downsample("patch_merging_v2")
class PatchMergingV2(_Merging):
    """Swin V2's downsampling, ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim)``: reduce, then norm.

    The same concatenation as :class:`PatchMerging` (same ``factors``, ``spatial_dims``, ``order``), then
    Linear(4C, out_dim, bias=False) and the norm over ``out_dim``.
    """

    def __init__(
        self,
        *,
        dim: int,
        out_dim: int | None = None,
        norm_layer: NormFactory = nn.LayerNorm,
        factors: int | tuple[int, ...] = 2,
        spatial_dims: int = 2,
        order: str = "swin",
    ) -> None:
        super().__init__()
        merged = self._setup(dim, out_dim, factors, spatial_dims, order)
        self.reduction = nn.Linear(merged, self.out_dim, bias=False)
        self.norm = norm_layer(self.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(self.merge(x)))


@register_downsample("conv")
class ConvDownsample(nn.Module):
    """Strided convolution downsampling, ``(B, H, W, C) -> (B, H', W', out_dim)`` (CycleMLP, Wave-MLP).

    ``Conv2d(kernel, stride, padding)`` (default 3/2/1: ``H' = ceil(H/2)``), then the norm unless
    ``norm=False``.
    """

    def __init__(
        self,
        *,
        dim: int,
        out_dim: int | None = None,
        norm_layer: NormFactory | None = None,
        norm: bool = True,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim or 2 * dim
        self.proj = nn.Conv2d(dim, self.out_dim, kernel_size=kernel_size, stride=stride, padding=padding)
        self.norm = norm_layer(self.out_dim) if norm and norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(self.proj(rearrange(x, "b h w c -> b c h w")), "b c h w -> b h w c")
        return self.norm(x)


# ---- sMLPNet's patch-conv stem and downsampler ----------------------------------------------------------
def check_image_size(x: torch.Tensor, fixed_size: tuple[int, int] | None) -> torch.Tensor:
    """``x`` (B, C, H, W), or a ShapeError naming the supported size if ``fixed_size`` is set and differs."""
    if fixed_size is not None and tuple(x.shape[-2:]) != fixed_size:
        h, w = fixed_size
        raise ShapeError(
            f"this sMLPNet is resolution-tied: its row/column MLPs are sized for {h}x{w} inputs, got "
            f"{x.shape[-2]}x{x.shape[-1]}; resize the images to {h}x{w}, or build the model with "
            f"img_size={x.shape[-2]} (new row/column weights: pretrained ones will not load)"
        )
    return x


@register_stem("patch_conv")
class PatchConvStem(nn.Module):
    """``(B, C_in, H, W) -> (B, H/p, W/p, C)``: a ``p x p`` stride-``p`` convolution, by default without bias
    (sMLPNet's ``to_patch_embedding.0``), then an optional norm. Sizes that are no multiple of ``p`` are
    zero-padded bottom/right (the official model takes multiples only).

    ``fixed_size`` (set by resolution-tied models such as :class:`SMLPNet`) makes any other input size an
    error that names the supported one, before any layer sees it.
    """

    def __init__(
        self,
        *,
        in_chans: int = 3,
        embed_dim: int = 80,
        norm_layer: Any = None,
        patch_size: int = 4,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.reduction = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size, bias=bias)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        self.fixed_size: tuple[int, int] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # bottom/right zero padding to a patch multiple, as the patch_embed stem does
        x = _pad_image(check_image_size(x, self.fixed_size), (self.reduction, self.reduction))
        return self.norm(rearrange(self.proj(x), "b c h w -> b h w c"))


@register_downsample("patch_conv")
class PatchConvDownsample(nn.Module):
    """``(B, H, W, C) -> (B, H/2, W/2, out_dim)``: a 2x2 stride-2 convolution, by default without bias and
    without a norm (sMLPNet's ``to_patch_embedding.i``); an odd map is zero-padded bottom/right first."""

    def __init__(
        self, *, dim: int, out_dim: int | None = None, norm_layer: Any = None, norm: bool = False, bias: bool = False
    ) -> None:
        super().__init__()
        self.out_dim = out_dim or 2 * dim
        self.proj = nn.Conv2d(dim, self.out_dim, 2, 2, bias=bias)
        self.norm = norm_layer(self.out_dim) if norm and norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, (2, 2))  # odd maps: zero-padded bottom/right, as patch merging does
        return self.norm(rearrange(self.proj(rearrange(x, "b h w c -> b c h w")), "b c h w -> b h w c"))
