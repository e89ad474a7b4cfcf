"""The generic hierarchical block: the only place that knows window geometry."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from hiermlp.errors import ConfigError, ShapeError
from hiermlp.layers import DropPath, Mlp
from hiermlp.mixers.base import build_mixer, mixer_attr, mixer_name
from hiermlp.ops import (
    cyclic_shift,
    is_exporting,
    is_symbolic,
    is_tracing,
    pad_shift,
    pad_to_multiple,
    unpad_shift,
    window_mask,
    window_merge,
    window_partition,
)
from hiermlp.ops.cache import cache_context
from hiermlp.ops.gather import gather_windows, scatter_windows, window_index

ShiftMode = Literal["auto", "roll", "pad"]

# CPU inference without autograd runs a block on at most this many tokens at a time (whole images; 0 = never
# split). Per-image work is independent, so the result is the same; smaller intermediates stay in cache and
# reuse allocator memory instead of faulting in fresh pages. 12544 = four 56x56 maps (Swin stage 1 at 224).
INFERENCE_CHUNK_TOKENS = 12544


def drops_paths(drop: nn.Module) -> bool:
    """Whether ``drop`` is a ``DropPath`` that currently drops anything (training, with a rate above 0)."""
    return isinstance(drop, DropPath) and drop.training and drop.drop_prob > 0.0


def add_drop_path(x: torch.Tensor, y: torch.Tensor, drop: nn.Module) -> torch.Tensor:
    """``x + drop(y)`` where ``drop`` is timm's ``DropPath`` (or ``nn.Identity``), in one pass when training.

    Same distribution as ``DropPath``: each sample's branch is kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)``; ``addcmul`` applies the per-sample factor and the residual add together, where
    ``DropPath`` then ``+`` take three passes over the activations (and two more in backward).
    """
    if not isinstance(drop, DropPath):
        return x + drop(y)
    if not drops_paths(drop):
        return x + y
    keep = 1.0 - drop.drop_prob
    factor = y.new_empty((y.shape[0],) + (1,) * (y.ndim - 1)).bernoulli_(keep)
    if keep > 0.0 and drop.scale_by_keep:
        factor.div_(keep)
    return torch.addcmul(x, y, factor)


class HierBlock(nn.Module):
    """Pre-norm block around any token mixer, ``(B, H, W, C) -> (B, H, W, C)``.

    ``x = x + drop_path(window_mix(norm1(x)))`` then, unless ``mlp_ratio == 0`` (blocks such as gMLP that
    carry their own channel projections), ``x = x + drop_path(mlp(norm2(x)))``.

    ``window_mix`` pads the map to a window multiple, shifts, partitions, calls the mixer, merges, unshifts
    and crops. Two shift strategies compute the same windows:

    * ``roll`` (for mixers that honour masks): pad bottom/right, then cyclic roll by ``-shift``; the mask
      keeps the three regions per axis apart (the reference Swin scheme) and gives padding its own region.
      Padding *before* rolling means tokens that wrapped around the border never meet real neighbours, at
      any input size (timm 1.0.31 rolls before padding and mixes them at non-multiple sizes).
    * ``pad`` (the reference Swin-MLP scheme, for mixers that cannot be masked): zero-pad
      ``(ws - s, s)`` on each axis so windows start ``s`` tokens up-left, one more row/column of windows.

    ``auto`` picks ``roll`` when the mixer honours masks, else ``pad``.

    Args:
        dim: Channels C.
        num_heads: Heads passed to the mixer.
        window_size: ``(wh, ww)``; ignored for global-window mixers.
        shift_size: ``(sh, sw)``, 0 for an unshifted block; each must be < the window.
        mixer: Registered mixer name or class (see :mod:`hiermlp.mixers.base`).
        mixer_kwargs: The mixer's own options.
        mlp_ratio: Channel MLP hidden size / C; 0 disables the channel MLP.
        drop_path: Stochastic depth rate of both residual branches.
        norm_layer: Norm class, called as ``norm_layer(dim)``.
        act_layer: Activation of the channel MLP.
        shift_mode: ``"auto"``, ``"roll"`` or ``"pad"``.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: tuple[int, int],
        shift_size: tuple[int, int] = (0, 0),
        mixer: Any = "attention",
        mixer_kwargs: dict[str, Any] | None = None,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
        act_layer: type[nn.Module] = nn.GELU,
        shift_mode: ShiftMode = "auto",
    ) -> None:
        super().__init__()
        self.global_window = bool(mixer_attr(mixer, "global_window", False))
        honours_mask = bool(mixer_attr(mixer, "honours_mask", False))
        if self.global_window:
            window_size, shift_size = None, (0, 0)
        else:
            if any(w < 1 for w in window_size):
                raise ConfigError(f"window_size must be >= 1, got {window_size}")
            if any(s < 0 or s >= w for s, w in zip(shift_size, window_size)):
                raise ConfigError(
                    f"shift {shift_size} cannot fit window {window_size}: each shift must be in [0, window)"
                )
        if shift_mode not in ("auto", "roll", "pad"):
            raise ConfigError(f"shift_mode must be 'auto', 'roll' or 'pad', got {shift_mode!r}")
        if shift_mode == "roll" and not honours_mask:
            raise ConfigError(
                f"mixer {mixer_name(mixer)!r} does not honour masks, so a cyclic roll would mix tokens from "
                "opposite borders; use shift_mode='pad' (or 'auto')"
            )
        self.dim = dim
        self.window_size = window_size
        self.shift_size = tuple(shift_size)
        self.shift_mode = ("roll" if honours_mask else "pad") if shift_mode == "auto" else shift_mode
        self.honours_mask = honours_mask

        self.norm1 = norm_layer(dim)
        self.mixer = build_mixer(mixer, dim=dim, window_size=window_size, num_heads=num_heads, **(mixer_kwargs or {}))
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = norm_layer(dim)
            self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=act_layer)
            self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        else:
            self.norm2 = self.mlp = self.drop_path2 = None
        self._mask_cache: dict[tuple, torch.Tensor] = {}
        self._geometry_cache: dict[tuple, tuple] = {}
        self.fast_path = True  # False: always take window_mix_reference (for checking and debugging)
        self.inference_chunk_tokens = INFERENCE_CHUNK_TOKENS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        chunk = self.inference_chunk_tokens
        inference = not self.training and not torch.is_grad_enabled() and not is_exporting()
        if inference and chunk and b > 1 and x.device.type == "cpu" and not is_symbolic(b, h, w) and b * h * w > chunk:
            # every block is independent per image: a few images at a time keep qkv, the logits and the 4C
            # hidden activations small and cache-resident (benchmarks/results/perf_cpu). CPU only: on a GPU
            # smaller launches would cost occupancy, and that has not been measured
            return torch.cat([self._forward(part) for part in x.split(max(1, chunk // (h * w)))])
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = add_drop_path(x, self.window_mix(self.norm1(x)), self.drop_path1)
        if self.mlp is not None:
            if drops_paths(self.drop_path2):
                x = add_drop_path(x, self.mlp(self.norm2(x)), self.drop_path2)
            else:  # the residual add runs inside fc2's kernel where it can (hiermlp.layers.linear)
                x = self.mlp.forward_residual(self.norm2(x), x)
        return x

    def window_mix(self, x: torch.Tensor) -> torch.Tensor:
        """Mix tokens within (shifted) windows, ``(B, H, W, C) -> (B, H, W, C)``.

        Eager mode takes the gather fast path (one indexed copy in, one out, indices cached per map size);
        traced code (``torch.compile``, ``torch.export``, ONNX) takes :meth:`window_mix_reference`, the
        straightforward pad/roll/partition composition that compilers fuse themselves. Both compute the same
        function (tests/test_fast_paths.py).
        """
        b, h, w, c = x.shape
        if self.global_window:
            return self._call_mixer(x.reshape(b, h * w, c), None).view_as(x)
        if not self.fast_path or is_tracing() or is_symbolic(h, w):
            return self.window_mix_reference(x)
        fwd, inv, mask = self._geometry((h, w), x.device)
        if fwd is None:  # one window covering the whole map, unshifted (isotropic models): no copy at all
            return self._call_mixer(x.reshape(b, h * w, c), None).view_as(x)
        windows = gather_windows(x, fwd, self.window_size[0] * self.window_size[1], padded=fwd.numel() != h * w)
        return scatter_windows(self._call_mixer(windows, mask), inv, b, (h, w))

    def _geometry(
        self, size: tuple[int, int], device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Gather indices and mask for a map size, computed once per size and device (never in state dicts)."""
        key = (*size, str(device))
        geo = self._geometry_cache.get(key)
        if geo is None:
            ws, shift = self.window_size, self.shift_size
            with cache_context():
                fwd, inv, padded_size, padded = window_index(size, ws, shift, self.shift_mode, device=device)
                mask = None
                if self.shift_mode == "roll" and (any(shift) or padded):
                    mask = window_mask(padded_size, ws, shift, size, device=device)
            if tuple(size) == tuple(ws) and not any(shift):
                fwd = inv = None  # the single window is the map itself, tokens in row-major order
            geo = self._geometry_cache[key] = (fwd, inv, mask)
        return geo

    def window_mix_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The straightforward composition: pad, roll (or pad-shift), partition, mix, merge, unroll, crop."""
        h, w = x.shape[1], x.shape[2]
        ws, shift = self.window_size, self.shift_size
        x = pad_to_multiple(x, ws)
        hp, wp = x.shape[1], x.shape[2]
        # a symbolic (dynamic-size export) map may or may not be padded: no branch on it, so always crop/mask
        padded = is_symbolic(h, w) or (hp, wp) != (h, w)
        if self.shift_mode == "roll":
            mask = self.mask_for((hp, wp), (h, w), x.device) if (any(shift) or padded) else None
            x = cyclic_shift(x, shift)
            x = self._mix_windows(x, mask)
            x = cyclic_shift(x, (-shift[0], -shift[1]))
        elif any(shift):
            x = unpad_shift(self._mix_windows(pad_shift(x, ws, shift), None), ws, shift)
        else:
            x = self._mix_windows(x, None)
        if is_symbolic(h, w):  # a gather, not a slice: a slice's strides depend on whether padding happened
            return x.index_select(1, torch.arange(h, device=x.device)).index_select(2, torch.arange(w, device=x.device))
        return x[:, :h, :w] if padded else x

    def _mix_windows(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        ws = self.window_size
        grid = (x.shape[1] // ws[0], x.shape[2] // ws[1])
        return window_merge(self._call_mixer(window_partition(x, ws), mask), ws, grid)

    def _call_mixer(self, windows: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        out = self.mixer(windows, mask)
        if out.shape != windows.shape:
            raise ShapeError(
                f"mixer {type(self.mixer).__name__} broke the mixer contract: it returned {tuple(out.shape)} for "
                f"windows of shape {tuple(windows.shape)}; a mixer maps (B*nW, N, C) to the same shape"
            )
        return out

    def mask_for(self, padded_size: tuple[int, int], valid_size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """The ``(nW, N, N)`` bool mask for a padded map, cached per size and device (never in state dicts)."""
        if torch.compiler.is_compiling():  # traced graphs build it from (possibly symbolic) sizes
            return window_mask(padded_size, self.window_size, self.shift_size, valid_size, device=device)
        key = (*padded_size, *valid_size, str(device))
        mask = self._mask_cache.get(key)
        if mask is None:
            with cache_context():
                mask = window_mask(padded_size, self.window_size, self.shift_size, valid_size, device=device)
            self._mask_cache[key] = mask
        return mask

    def extra_repr(self) -> str:
        return (
            f"window_size={self.window_size}, shift_size={self.shift_size}, shift_mode={self.shift_mode!r}"
            if not self.global_window
            else "global_window=True"
        )
