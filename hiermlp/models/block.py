"""The generic hierarchical block: the only place that knows window geometry and the residual structure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from timm.layers import DropPath, LayerScale, Mlp
from torch import nn

from hiermlp.errors import ConfigError, ShapeError
from hiermlp.mixers.base import build_mixer, mixer_attr, mixer_crop_modes, mixer_kind, mixer_name
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
# their Python control flow on sizes cannot be traced symbolically, and none of them holds parameters
# (the window rule itself depends on the map size: the window and shift are traced values, so every function
# taking them is wrapped too)
for _fn in ("pad_to_multiple", "crop_to", "cached_window_mask", "window_partition", "window_merge", "pad_shift"):
    torch.fx.wrap(_fn)
torch.fx.wrap("unpad_shift")
torch.fx.wrap("actual_window")
torch.fx.wrap("cyclic_shift")
torch.fx.wrap("check_mixer_output")


def check_mixer_output(out: torch.Tensor, x: torch.Tensor, mixer: str) -> torch.Tensor:
    """``out``, or a ShapeError naming the mixer if it broke the shape contract."""
    if out.shape != x.shape:
        raise ShapeError(
            f"mixer {mixer} broke the mixer contract: it returned {tuple(out.shape)} for input of shape "
            f"{tuple(x.shape)}; a mixer maps its input to the same shape"
        )
    return out


class HierBlock(nn.Module):
    """A residual block around any token mixer, ``(B, H, W, C) -> (B, H, W, C)``.

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
    size and traces symbolically; the speed layer drops masks that allow everything.

    The window rule follows the actual map (:func:`~hiermlp.ops.actual_window`): per axis, a map not larger
    than the window is not shifted there, and a mixer that can run on a smaller window in this shift mode
    (its ``crop_modes``) gets windows of the map's size there, with ``window_size=`` the window run; any
    other mixer gets the map padded up to its window. ``window_size``/``shift_size`` are the configured
    values (the stage's rule at its nominal size); a larger map uses them as they are.

    Args:
        dim: Channels C.
        mixer: Registered mixer name or class (see :mod:`hiermlp.mixers.base`); ``mixer_kwargs`` its options.
        num_heads: Heads, passed to mixers that declare them.
        window_size: ``(wh, ww)`` for window mixers (ignored for global-window and map mixers).
        shift_size: ``(sh, sw)``, 0 for an unshifted block; each must be < the window.
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
        window_size: tuple[int, int] = (7, 7),
        shift_size: tuple[int, int] = (0, 0),
        feat_size: tuple[int, int] | None = None,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        mlp_norm_layer: Callable[[int], nn.Module] | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        norm_placement: NormPlacement = "pre",
        layer_scale_init: float | None = None,
        shift_mode: ShiftMode = "auto",
    ) -> None:
        super().__init__()
        self.kind = mixer_kind(mixer)
        self.global_window = self.kind == "window" and bool(mixer_attr(mixer, "global_window", False))
        honours_mask = bool(mixer_attr(mixer, "honours_mask", False))
        if self.kind == "map" or self.global_window:
            window_size, shift_size = None, (0, 0)
        else:
            window_size, shift_size = tuple(window_size), tuple(shift_size)
            if len(window_size) != 2 or any(w < 1 for w in window_size):
                raise ConfigError(f"window_size must be a pair of ints >= 1, got {window_size}")
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_placement == "pre":
            x = x + self.drop_path1(self.ls1(self.token_mix(self.norm1(x))))
            if self.mlp is not None:
                x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        else:
            x = x + self.drop_path1(self.ls1(self.norm1(self.token_mix(x))))
            if self.mlp is not None:
                x = x + self.drop_path2(self.ls2(self.norm2(self.mlp(x))))
        return x

    def token_mix(self, x: torch.Tensor) -> torch.Tensor:
        """Mix tokens: the map mixer, or the window mixer within (shifted) windows, ``(B, H, W, C) -> same``."""
        if self.kind == "map":
            return check_mixer_output(self.mixer(x), x, self.mixer_name)
        if self.global_window:
            b, h, w, c = x.shape
            tokens = x.reshape(b, h * w, c)
            return check_mixer_output(self.mixer(tokens, None), tokens, self.mixer_name).reshape(b, h, w, c)
        return self.window_mix(x)

    def window_mix(self, x: torch.Tensor) -> torch.Tensor:
        """Pad, roll (or pad-shift), partition, mix, merge, unroll, crop: ``(B, H, W, C) -> (B, H, W, C)``."""
        h, w = x.shape[1], x.shape[2]
        ws, shift = actual_window((h, w), self.window_size, self.shift_size, self.crops)
        x = pad_to_multiple(x, ws)
        if self.shift_mode == "roll":
            mask = cached_window_mask((x.shape[1], x.shape[2]), ws, shift, (h, w), device=x.device)
            x = cyclic_shift(x, shift)
            x = self.mix_windows(x, mask, ws)
            x = cyclic_shift(x, (-shift[0], -shift[1]))
        else:  # pad_shift and unpad_shift are the identity without a shift
            x = unpad_shift(self.mix_windows(pad_shift(x, ws, shift), None, ws), ws, shift)
        return crop_to(x, (h, w))

    def mix_windows(self, x: torch.Tensor, mask: torch.Tensor | None, ws: tuple[int, int]) -> torch.Tensor:
        """Partition a map into ``ws`` windows, call the mixer, merge back, ``(B, H, W, C) -> (B, H, W, C)``."""
        windows = window_partition(x, ws)
        out = self.call_mixer(windows, mask, ws)
        return window_merge(out, ws, (x.shape[1] // ws[0], x.shape[2] // ws[1]))

    def call_mixer(self, windows: torch.Tensor, mask: torch.Tensor | None, ws: tuple[int, int]) -> torch.Tensor:
        """The window mixer on ``(B*nW, N, C)`` windows of size ``ws`` (told to a mixer that crops)."""
        out = self.mixer(windows, mask, window_size=ws) if self.crops else self.mixer(windows, mask)
        return check_mixer_output(out, windows, self.mixer_name)

    def extra_repr(self) -> str:
        if self.kind == "map":
            return f"kind='map', norm_placement={self.norm_placement!r}"
        if self.global_window:
            return "global_window=True"
        return f"window_size={self.window_size}, shift_size={self.shift_size}, shift_mode={self.shift_mode!r}"
