"""The generic hierarchical block: the only place that knows window geometry and the residual structure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import torch
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

from hiermlp.errors import ConfigError, ShapeError
from hiermlp.mixers.base import (
    build_mixer,
    mixer_attr,
    mixer_crop_modes,
    mixer_kind,
    mixer_name,
    mixer_spatial_dims,
)
from hiermlp.ops import (
    actual_window,
    cached_window_mask,
    crop_to,
    cyclic_shift,
    pad_shift,
    pad_to_multiple,
    unpad_shift,
    window_merge,
    window_partition,
)

ShiftMode = Literal["auto", "roll", "pad"]
NormPlacement = Literal["pre", "res_post"]

# size-dependent geometry runs as opaque calls under torch.fx (timm's and torchvision's feature extractors):
# their Python control flow on sizes cannot be traced symbolically, and none of them holds parameters (the
# window rule itself depends on the map size: window and shift are traced values, so every function taking
# them is wrapped too). torch.fx.wrap patches the names of the module that calls it, so the wraps live here.
for _fn in (
    "actual_window",
    "cached_window_mask",
    "check_mixer_output",
    "crop_to",
    "cyclic_shift",
    "pad_shift",
    "pad_to_multiple",
    "unpad_shift",
    "window_merge",
    "window_partition",
):
    torch.fx.wrap(_fn)


class WindowLayout(NamedTuple):
    """How :meth:`HierBlock.to_windows` cut a map into windows: what :meth:`HierBlock.from_windows` needs.

    Every field has one entry per spatial axis."""

    size: tuple[int, ...]  # the map's spatial size before any padding
    window: tuple[int, ...]  # the window run (the configured one, or the map's size where the mixer crops)
    shift: tuple[int, ...]  # the shift run (0 on an axis the window covers)
    grid: tuple[int, ...]  # windows per axis of the padded (and pad-shifted) map


def check_mixer_output(out: torch.Tensor, x: torch.Tensor, mixer: str) -> torch.Tensor:
    """``out``, or a ShapeError naming the mixer if it broke the shape contract."""
    if out.shape != x.shape:
        raise ShapeError(
            f"mixer {mixer} broke the mixer contract: it returned {tuple(out.shape)} for input of shape "
            f"{tuple(x.shape)}; a mixer maps its input to the same shape"
        )
    return out


class HierBlock(nn.Module):
    """A residual block around any token mixer, ``(B, *spatial, C) -> (B, *spatial, C)`` (1, 2 or 3 axes).

    Norm placement ``pre`` (Swin V1, MetaFormer): ``x = x + drop_path(ls1(mix(norm1(x))))``; ``res_post``
    (Swin V2): ``x = x + drop_path(ls1(norm1(mix(x))))``. Then the channel MLP in the same form, unless
    ``mlp_ratio == 0`` (blocks such as gMLP carry their own channel projections). ``ls*`` is layer scale
    (timm's ``LayerScale``), present only when ``layer_scale_init`` is set.

    ``mix`` is the mixer itself for a map mixer. For a window mixer it pads the map to a window multiple,
    shifts, partitions, calls the mixer on the windows, merges, unshifts and crops. Two shift strategies:

    * ``roll`` (for mixers that honour masks): pad bottom/right, then cyclic roll by ``-shift``; the mask
      keeps the three regions per axis apart (the reference Swin scheme) and gives padding its own region.
      Padding *before* rolling means tokens that wrapped around the border never meet real neighbours, at
      any input size (timm 1.0.31 rolls before padding and mixes them at non-multiple sizes).
    * ``pad`` (the reference Swin-MLP scheme, for mixers that cannot be masked): zero-pad
      ``(ws - s, s)`` on each axis so windows start ``s`` tokens up-left, one more row/column of windows.

    ``auto`` picks ``roll`` when the mixer honours masks, else ``pad``. In ``roll`` mode the mask is always
    passed (all True for an unshifted window of an unpadded map), so the block has no branch on the input
    size and traces symbolically.

    ``forward`` is written once, in terms of narrow steps a subclass (the speed layer, :mod:`hiermlp.accel`)
    may override without restating the block: the window geometry (:meth:`to_windows`, :meth:`from_windows`),
    the mixer call (:meth:`mix_windows`) and the channel-MLP residual (:meth:`mlp_residual`). A change to the
    block's structure made here holds on both paths.

    The window rule follows the actual map (:func:`~hiermlp.ops.actual_window`): per axis, a map not larger
    than the window is not shifted there, and a mixer that can run on a smaller window in this shift mode
    (its ``crop_modes``) gets windows of the map's size there, with ``window_size=`` the window run; any
    other mixer gets the map padded up to its window. ``window_size``/``shift_size`` are the configured
    values (the stage's rule at its nominal size); a larger map uses them as they are.

    Args:
        dim: Channels C.
        mixer: Registered mixer name or class (see :mod:`hiermlp.mixers.base`); ``mixer_kwargs`` its options.
        num_heads: Heads, passed to mixers that declare them.
        window_size: One size per spatial axis (``(wh, ww)``, ``(wt, wh, ww)``) for window mixers (ignored for
            global-window and map mixers).
        shift_size: One shift per axis, 0 for an unshifted block; each must be < the window.
        spatial_dims: Spatial axes of the map (1, 2 or 3); a mixer declares the ones it supports
            (``spatial_dims``; map mixers are 2-D unless they say otherwise).
        feat_size: The stage's nominal map size, passed to mixers that declare it (resolution-tied mixers).
        mlp_ratio: Channel MLP hidden size / C; 0 disables the channel MLP.
        drop_path: Stochastic depth rate of both residual branches.
        norm_layer: Norm factory, ``norm_layer(dim)`` (channels-last; see :mod:`hiermlp.layers.norm`).
        mlp_norm_layer: Norm factory of the channel-MLP branch (``norm2``), if it differs (sMLPNet: BatchNorm
            before the token mixer, LayerNorm before the MLP); None: ``norm_layer``.
        act_layer: Activation class of the channel MLP.
        norm_placement: ``"pre"`` or ``"res_post"``.
        layer_scale_init: Initial layer-scale value, or None for no layer scale.
        shift_mode: ``"auto"``, ``"roll"`` or ``"pad"``.
    """

    def __init__(
        self,
        *,
        dim: int,
        mixer: Any = "attention",
        mixer_kwargs: dict[str, Any] | None = None,
        num_heads: int = 1,
        window_size: tuple[int, ...] = (7, 7),
        shift_size: tuple[int, ...] = (0, 0),
        feat_size: tuple[int, ...] | None = None,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        mlp_norm_layer: Callable[[int], nn.Module] | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        norm_placement: NormPlacement = "pre",
        layer_scale_init: float | None = None,
        shift_mode: ShiftMode = "auto",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.kind = mixer_kind(mixer)
        supported = mixer_spatial_dims(mixer)
        if spatial_dims not in supported:
            raise ConfigError(
                f"mixer {mixer_name(mixer)!r} works on {'/'.join(f'{d}-D' for d in supported)} maps only, not "
                f"{spatial_dims}-D; use a window mixer (attention, spatial_mlp, token_mlp, gmlp, pool, ...) there"
            )
        self.spatial_dims = spatial_dims
        self.global_window = self.kind == "window" and bool(mixer_attr(mixer, "global_window", False))
        honours_mask = bool(mixer_attr(mixer, "honours_mask", False))
        if self.kind == "map" or self.global_window:
            window_size, shift_size = None, (0,) * spatial_dims
        else:
            window_size, shift_size = tuple(window_size), tuple(shift_size)
            if len(window_size) != spatial_dims or len(shift_size) != spatial_dims or any(w < 1 for w in window_size):
                raise ConfigError(
                    f"window_size and shift_size must have one int (window >= 1) per spatial axis ({spatial_dims}), "
                    f"got {window_size} and {shift_size}"
                )
            if any(s < 0 or s >= w for s, w in zip(shift_size, window_size)):
                raise ConfigError(
                    f"shift {shift_size} cannot fit window {window_size}: each shift must be in [0, window)"
                )
        if shift_mode not in ("auto", "roll", "pad"):
            raise ConfigError(f"shift_mode must be 'auto', 'roll' or 'pad', got {shift_mode!r}")
        if shift_mode == "roll" and not honours_mask and self.kind == "window":
            raise ConfigError(
                f"mixer {mixer_name(mixer)!r} does not honour masks, so a cyclic roll would mix tokens from "
                "opposite borders; use shift_mode='pad' (or 'auto')"
            )
        if norm_placement not in ("pre", "res_post"):
            raise ConfigError(f"norm_placement must be 'pre' or 'res_post', got {norm_placement!r}")
        self.dim = dim
        self.window_size = window_size
        self.shift_size = shift_size
        self.shift_mode = ("roll" if honours_mask else "pad") if shift_mode == "auto" else shift_mode
        # run a map smaller than the window as a smaller window (the mixer declares it is the same function)
        self.crops = window_size is not None and self.shift_mode in mixer_crop_modes(mixer)
        self.norm_placement = norm_placement
        self.mixer_name = mixer_name(mixer)

        offered = dict(num_heads=num_heads, window_size=window_size, feat_size=feat_size)
        self.norm1 = norm_layer(dim)
        self.mixer = build_mixer(mixer, dim=dim, offered=offered, **(mixer_kwargs or {}))
        self.ls1 = LayerScale(dim, init_values=layer_scale_init) if layer_scale_init is not None else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = (mlp_norm_layer or norm_layer)(dim)
            self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer)
            self.ls2 = LayerScale(dim, init_values=layer_scale_init) if layer_scale_init is not None else nn.Identity()
            self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        else:
            self.norm2 = self.mlp = self.ls2 = self.drop_path2 = None

    # ---- the block, written once: the speed layer overrides the steps below, never this ----------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial, C) -> (B, *spatial, C)``: the token-mixing residual, then the channel-MLP residual."""
        if self.norm_placement == "pre":
            branch = self.mix_tokens(self.norm1(x))
        else:
            branch = self.norm1(self.mix_tokens(x))
        x = x + self.drop_path1(self.ls1(branch))
        if self.mlp is not None:
            x = self.mlp_residual(x)
        return x

    def mix_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial, C) -> same``: a map mixer on the map, a window mixer on its (shifted) windows."""
        if self.kind == "map":
            return check_mixer_output(self.mixer(x), x, self.mixer_name)
        windows, mask, layout = self.to_windows(x)
        return self.from_windows(self.mix_windows(windows, mask, layout.window), layout)

    def mlp_branch(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *spatial, C) -> same``: ``ls2(mlp(norm2(x)))`` (``pre``) or ``ls2(norm2(mlp(x)))``."""
        if self.norm_placement == "pre":
            return self.ls2(self.mlp(self.norm2(x)))
        return self.ls2(self.norm2(self.mlp(x)))

    # ---- the overridable steps ----------------------------------------------------------------------
    def to_windows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, WindowLayout]:
        """Pad, shift and partition a map, ``(B, *spatial, C) -> (windows (B*nW, N, C), mask (nW, N, N) | None,
        layout)``; a global-window mixer gets the whole map as one window and no mask."""
        axes = range(1, self.spatial_dims + 1)  # indexed, not iterated: sizes are proxies under torch.fx
        size = tuple(x.shape[i] for i in axes)
        if self.global_window:
            zeros, ones = (0,) * len(size), (1,) * len(size)
            return x.reshape(x.shape[0], -1, x.shape[-1]), None, WindowLayout(size, size, zeros, ones)
        ws, shift = actual_window(size, self.window_size, self.shift_size, self.crops)
        x = pad_to_multiple(x, ws)
        padded = tuple(x.shape[i] for i in axes)
        if self.shift_mode == "roll":
            # always a mask, all True for an unshifted window of an unpadded map: no branch on the size
            mask = cached_window_mask(padded, ws, shift, size, device=x.device)
            x = cyclic_shift(x, shift)
        else:
            mask = None
            x = pad_shift(x, ws, shift)  # the identity without a shift
        grid = tuple(x.shape[i] // ws[i - 1] for i in axes)
        return window_partition(x, ws), mask, WindowLayout(size, ws, shift, grid)

    def from_windows(self, windows: torch.Tensor, layout: WindowLayout) -> torch.Tensor:
        """Inverse of :meth:`to_windows`: merge, unshift and crop, ``(B*nW, N, C) -> (B, *spatial, C)``."""
        if self.global_window:
            return windows.reshape(-1, *layout.size, windows.shape[-1])
        x = window_merge(windows, layout.window, layout.grid)
        if self.shift_mode == "roll":
            x = cyclic_shift(x, tuple(-layout.shift[i] for i in range(self.spatial_dims)))
        else:
            x = unpad_shift(x, layout.window, layout.shift)
        return crop_to(x, layout.size)

    def mix_windows(self, windows: torch.Tensor, mask: torch.Tensor | None, window: tuple[int, ...]) -> torch.Tensor:
        """The window mixer on ``(B*nW, N, C)`` windows of size ``window`` (told to a mixer that crops)."""
        out = self.mixer(windows, mask, window_size=window) if self.crops else self.mixer(windows, mask)
        return check_mixer_output(out, windows, self.mixer_name)

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """The channel-MLP residual, ``x + drop_path2(mlp_branch(x))``."""
        return x + self.drop_path2(self.mlp_branch(x))

    def extra_repr(self) -> str:
        if self.kind == "map":
            return f"kind='map', norm_placement={self.norm_placement!r}"
        if self.global_window:
            return "global_window=True"
        return f"window_size={self.window_size}, shift_size={self.shift_size}, shift_mode={self.shift_mode!r}"
