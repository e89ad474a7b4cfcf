"""Window geometry as pure tensor functions on channels-last maps ``(B, H, W, C)``.

Everything here is stateless and shape-generic, written with einops so that the pattern is the shape
documentation. The block composes these; mixers never see them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from hiermlp.errors import ShapeError
from hiermlp.ops.cache import geometry_cache

Size2 = tuple[int, int]


def window_partition(x: torch.Tensor, window_size: Size2) -> torch.Tensor:
    """Cut a map into non-overlapping windows, ``(B, H, W, C) -> (B*nW, wh*ww, C)``.

    Windows are ordered batch-major, then row-major over the grid (the reference order), tokens inside a
    window row-major. ``H`` and ``W`` must be multiples of the window: pad first (:func:`pad_to_multiple`).
    """
    wh, ww = window_size
    _, h, w, _ = x.shape
    if h % wh or w % ww:
        raise ShapeError(
            f"window_partition: map {h}x{w} is not a multiple of the window {wh}x{ww}; pad it first "
            "with hiermlp.ops.pad_to_multiple"
        )
    return rearrange(x, "b (gh wh) (gw ww) c -> (b gh gw) (wh ww) c", wh=wh, ww=ww)


def window_merge(windows: torch.Tensor, window_size: Size2, grid_size: Size2) -> torch.Tensor:
    """Inverse of :func:`window_partition`, ``(B*nW, wh*ww, C) -> (B, gh*wh, gw*ww, C)``."""
    wh, ww = window_size
    gh, gw = grid_size
    return rearrange(windows, "(b gh gw) (wh ww) c -> b (gh wh) (gw ww) c", gh=gh, gw=gw, wh=wh, ww=ww)


def cyclic_shift(x: torch.Tensor, shift: Size2) -> torch.Tensor:
    """Roll a map up-left by ``shift`` (negative to undo), ``(B, H, W, C) -> (B, H, W, C)``.

    Matches the reference ``torch.roll(x, (-s, -s), dims=(1, 2))`` before partition.
    """
    if not any(shift):
        return x
    return torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))


def is_symbolic(*sizes: int) -> bool:
    """True when a size is symbolic (``torch.export`` / ``torch.compile`` with dynamic H, W).

    Geometry then takes its branch-free path (pad by a possibly-zero amount, crop by a gather):
    branching on a symbolic size would specialise the traced graph to the example input's size.
    """
    return any(isinstance(s, torch.SymInt) for s in sizes)


def padding_for(size: Size2, multiple: Size2) -> Size2:
    """Bottom/right padding that brings ``size`` up to a multiple of ``multiple``.

    Written as ``ceil(size / m) * m - size`` rather than ``-size % m`` (equal for ints): with a symbolic size
    the padded size is then visibly a multiple of ``m``, so the window reshapes export without guards.
    """
    return tuple((s + m - 1) // m * m - s for s, m in zip(size, multiple))


def pad_to_multiple(x: torch.Tensor, multiple: Size2) -> torch.Tensor:
    """Zero-pad bottom and right up to a multiple, ``(B, H, W, C) -> (B, H', W', C)``."""
    ph, pw = padding_for((x.shape[1], x.shape[2]), multiple)
    if is_symbolic(ph, pw) or ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    return x


def pad_shift(x: torch.Tensor, window_size: Size2, shift: Size2) -> torch.Tensor:
    """The reference Swin-MLP shift: zero-pad so that windows start ``shift`` tokens up-left.

    ``(B, H, W, C) -> (B, H + wh, W + ww, C)`` padding (top, bottom) = (wh - s_h, s_h) and
    (left, right) = (ww - s_w, s_w) on each shifted axis. ``H`` and ``W`` must already be window multiples.
    Window boundaries and in-window positions equal those of :func:`cyclic_shift` by ``shift``, but no token
    wraps around.
    An axis with no shift is not padded (the reference's pad there would add one row of windows of zeros
    only, whose outputs are cropped), so a zero shift returns ``x`` itself.
    """
    (wh, ww), (sh, sw) = window_size, shift
    if not sh and not sw:
        return x
    return F.pad(x, (0, 0, ww - sw if sw else 0, sw, wh - sh if sh else 0, sh))


def unpad_shift(x: torch.Tensor, window_size: Size2, shift: Size2) -> torch.Tensor:
    """Inverse crop of :func:`pad_shift`, ``(B, H + wh, W + ww, C) -> (B, H, W, C)``."""
    (wh, ww), (sh, sw) = window_size, shift
    top, left = (wh - sh if sh else 0), (ww - sw if sw else 0)
    return x[:, top : x.shape[1] - sh, left : x.shape[2] - sw]


def actual_window(size: Size2, window_size: Size2, shift: Size2, crop: bool) -> tuple[Size2, Size2]:
    """The window rule applied to the actual map ``size``: ``-> (window, shift)`` for this forward.

    Per axis (the reference rule, timm's and Microsoft's, at the real size instead of the nominal one): a map
    not larger than the window is one window on that axis and is not shifted there; when ``crop``, that
    window is the map's own size (the mixer runs on a sub-window, see the mixers' ``crop_modes``), else it
    stays the configured window and the map is padded up to it. A larger map keeps the configured window
    and shift. A symbolic size (dynamic-size export) is never cropped: the padded window computes the same
    function for a mixer that can crop, and cropping would make the window itself symbolic.
    """
    crop = crop and not is_symbolic(*size)
    fits = tuple(s <= w for s, w in zip(size, window_size))
    ws = tuple(s if (crop and f) else w for s, w, f in zip(size, window_size, fits))
    ss = tuple(0 if f else s for s, f in zip(shift, fits))
    return (ws[0], ws[1]), (ss[0], ss[1])


def sub_window_tokens(
    window_size: Size2, sub_window: Size2, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Positions of the top-left ``sub_window`` tokens among a window's row-major tokens, ``-> (h*w,)`` long."""
    (h, w), ww = sub_window, window_size[1]
    return (torch.arange(h, device=device)[:, None] * ww + torch.arange(w, device=device)[None, :]).flatten()


# sub-window positions depend on sizes only (see hiermlp.ops.cache)
cached_sub_window_tokens = geometry_cache(sub_window_tokens)


def crop_tokens(t: torch.Tensor, window_size: Size2, sub_window: Size2 | None, dims: tuple[int, ...]) -> torch.Tensor:
    """``t`` restricted, along each of ``dims`` (a window's ``wh*ww`` tokens, row-major), to the tokens of the
    top-left ``sub_window`` (``None`` or the window itself: ``t`` unchanged).

    A window mixer that can crop (``crop_modes``) uses this on its per-token parameters: the position bias
    of a sub-window is the sub-matrix of the window's, a token map's weight its rows and columns.
    """
    if sub_window is None or tuple(sub_window) == tuple(window_size):
        return t
    if any(s < 1 or s > w for s, w in zip(sub_window, window_size)):
        raise ShapeError(f"a sub-window {tuple(sub_window)} must lie inside the window {tuple(window_size)}")
    index = cached_sub_window_tokens(tuple(window_size), tuple(sub_window), device=t.device)
    for d in dims:
        t = t.index_select(d, index)
    return t


def region_labels(
    padded_size: Size2,
    window_size: Size2,
    shift: Size2,
    valid_size: Size2 | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Region label of every token of a padded map after a cyclic shift, ``-> (Hp, Wp)`` long.

    Tokens may interact only when their labels are equal. Along each axis the shifted map has three
    regions, the reference slices ``(0, -ws)``, ``(-ws, -s)``, ``(-s, None)``; tokens that wrapped around
    the border land in the last one. When ``valid_size`` is smaller than ``padded_size`` (a map padded up
    to a window multiple *before* the roll), padding tokens get their own label ``-1``, so real tokens never
    mix with padding and never with tokens from across the border.

    Computed with comparisons on ``arange`` rather than slicing loops, so it traces for export.
    """
    hp, wp = padded_size
    (wh, ww), (sh, sw) = window_size, shift

    def axis(n: int, w: int, s: int, valid: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.arange(n, device=device)
        label = (i >= n - w).long() + (i >= n - s).long() if s else torch.zeros_like(i)
        j = i + s  # position i holds original index (i + s) mod n; 0 <= i + s < 2n, so one subtraction does it
        is_pad = torch.where(j >= n, j - n, j) >= valid  # (no `% n`: ONNX cannot take a symbolic modulus)
        return label, is_pad

    vh, vw = valid_size if valid_size is not None else padded_size
    lh, ph = axis(hp, wh, sh, vh)
    lw, pw = axis(wp, ww, sw, vw)
    labels = lh[:, None] * 3 + lw[None, :]
    return torch.where(ph[:, None] | pw[None, :], torch.full_like(labels, -1), labels)


def window_mask(
    padded_size: Size2,
    window_size: Size2,
    shift: Size2,
    valid_size: Size2 | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Which tokens of each window may interact, ``-> (nW, N, N)`` bool, True where allowed.

    This is the shifted-window mask of Swin (the reference adds -100 where this is False), extended so
    that padding tokens form a region of their own (see :func:`region_labels`).
    """
    labels = region_labels(padded_size, window_size, shift, valid_size, device=device)
    lw = rearrange(labels, "(gh wh) (gw ww) -> (gh gw) (wh ww)", wh=window_size[0], ww=window_size[1])
    return lw[:, :, None] == lw[:, None, :]


def relative_position_index(window_size: Size2, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Index into a ``((2wh-1)*(2ww-1), heads)`` bias table for every token pair, ``-> (N, N)`` long.

    The reference construction: relative coordinates shifted to start at 0, row offset times ``2ww-1``.
    """
    wh, ww = window_size
    coords = torch.stack(
        torch.meshgrid(torch.arange(wh, device=device), torch.arange(ww, device=device), indexing="ij")
    ).flatten(1)  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N)
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)


# window masks depend on sizes only: one bounded LRU shared by every block (see hiermlp.ops.cache)
cached_window_mask = geometry_cache(window_mask)


def crop_to(x: torch.Tensor, size: Size2) -> torch.Tensor:
    """Crop bottom/right padding, ``(B, H', W', C) -> (B, H, W, C)`` with ``size = (H, W)``.

    A symbolic (dynamic-size export) map is cropped by a gather, not a slice: a slice's strides depend on
    whether padding happened, which a graph exported for all sizes cannot know.
    """
    h, w = size
    if is_symbolic(h, w):
        return x.index_select(1, torch.arange(h, device=x.device)).index_select(2, torch.arange(w, device=x.device))
    return x[:, :h, :w]


def resize_rel_pos_table(table: torch.Tensor, new_window: Size2) -> torch.Tensor:
    """Bicubically resize a ``((2M-1)^2, heads)`` bias table to ``((2wh-1)*(2ww-1), heads)``.

    The reference fine-tuning recipe: view as ``(1, heads, 2M-1, 2M-1)`` and ``F.interpolate``.
    """
    side = math.isqrt(table.shape[0])
    if side * side != table.shape[0]:
        raise ShapeError(f"cannot resize a non-square relative position table of {table.shape[0]} rows")
    heads = table.shape[1]
    grid = table.T.reshape(1, heads, side, side).float()
    size = (2 * new_window[0] - 1, 2 * new_window[1] - 1)
    out = F.interpolate(grid, size=size, mode="bicubic", align_corners=False)
    return out.reshape(heads, -1).T.contiguous().to(table.dtype)
