"""Window geometry as pure tensor functions on channels-last maps ``(B, *spatial, C)``, for 1, 2 or 3 axes.

Everything here is stateless and shape-generic, written with einops so that the pattern is the shape
documentation: the patterns are generated per number of axes (:func:`axis_names`), so the 2-D pattern is
``b (gh wh) (gw ww) c -> (b gh gw) (wh ww) c`` and the 3-D one adds a time axis ``t`` in front. Sizes,
windows and shifts are tuples with one entry per axis. The block composes these; mixers never see them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from hiermlp.errors import ShapeError
from hiermlp.ops.cache import geometry_cache

Size = tuple[int, ...]

# einops letters of the spatial axes for 1, 2 and 3 dims: a sequence (l), an image (h w), a video or volume (t h w)
AXES = {1: ("l",), 2: ("h", "w"), 3: ("t", "h", "w")}


def axis_names(ndim: int) -> tuple[str, ...]:
    """The einops letters of ``ndim`` spatial axes (``("t", "h", "w")`` for 3), or a ShapeError."""
    if ndim not in AXES:
        raise ShapeError(f"hiermlp maps have 1, 2 or 3 spatial axes, got {ndim}")
    return AXES[ndim]


def _partition_pattern(axes: tuple[str, ...]) -> str:
    grouped = " ".join(f"(g{x} w{x})" for x in axes)
    return f"b {grouped} c -> (b {' '.join('g' + x for x in axes)}) ({' '.join('w' + x for x in axes)}) c"


# built once per number of axes (a plain dict: torch.compile traces through it without a cache wrapper)
PARTITION_PATTERNS = {ndim: _partition_pattern(axes) for ndim, axes in AXES.items()}


def partition_pattern(ndim: int) -> str:
    """The window partition pattern for ``ndim`` axes, e.g. ``b (gh wh) (gw ww) c -> (b gh gw) (wh ww) c``."""
    axis_names(ndim)
    return PARTITION_PATTERNS[ndim]


def _window_kwargs(window_size: Size) -> dict[str, int]:
    return {f"w{x}": w for x, w in zip(axis_names(len(window_size)), window_size)}


def window_partition(x: torch.Tensor, window_size: Size) -> torch.Tensor:
    """Cut a map into non-overlapping windows, ``(B, *spatial, C) -> (B*nW, prod(window), C)``.

    Windows are ordered batch-major, then row-major over the grid (the reference order), tokens inside a
    window row-major. Every spatial size must be a multiple of the window: pad first (:func:`pad_to_multiple`).
    """
    spatial = tuple(x.shape[1:-1])
    if len(spatial) != len(window_size):
        raise ShapeError(f"window_partition: a {len(window_size)}-D window for a map of {len(spatial)} axes")
    if any(s % w for s, w in zip(spatial, window_size)):
        raise ShapeError(
            f"window_partition: map {'x'.join(map(str, spatial))} is not a multiple of the window "
            f"{'x'.join(map(str, window_size))}; pad it first with hiermlp.ops.pad_to_multiple"
        )
    return rearrange(x, partition_pattern(len(window_size)), **_window_kwargs(window_size))


def window_merge(windows: torch.Tensor, window_size: Size, grid_size: Size) -> torch.Tensor:
    """Inverse of :func:`window_partition`, ``(B*nW, prod(window), C) -> (B, *(grid * window), C)``."""
    src, dst = partition_pattern(len(window_size)).split(" -> ")
    grid = {f"g{x}": g for x, g in zip(axis_names(len(grid_size)), grid_size)}
    return rearrange(windows, f"{dst} -> {src}", **grid, **_window_kwargs(window_size))


def cyclic_shift(x: torch.Tensor, shift: Size) -> torch.Tensor:
    """Roll a map towards the origin by ``shift`` (negative to undo), ``(B, *spatial, C) -> same``.

    Matches the reference ``torch.roll(x, (-s, -s), dims=(1, 2))`` before partition (and Video Swin's three
    axes).
    """
    if not any(shift):
        return x
    return torch.roll(x, shifts=tuple(-s for s in shift), dims=tuple(range(1, len(shift) + 1)))


def is_symbolic(*sizes: int) -> bool:
    """True when a size is symbolic (``torch.export`` with dynamic sizes, ``make_fx``).

    Geometry then takes its branch-free path (pad by a possibly-zero amount, crop by a gather):
    branching on a symbolic size would specialise the traced graph to the example input's size. Under
    ``torch.compile`` dynamo answers ``isinstance(size, torch.SymInt)`` with False even for a symbolic size:
    code that must not branch on the batch there asks ``torch.compiler.is_compiling()`` too.
    """
    return any(isinstance(s, torch.SymInt) for s in sizes)


def padding_for(size: Size, multiple: Size) -> Size:
    """End padding that brings ``size`` up to a multiple of ``multiple``, per axis.

    Written as ``ceil(size / m) * m - size`` rather than ``-size % m`` (equal for ints): with a symbolic size
    the padded size is then visibly a multiple of ``m``, so the window reshapes export without guards.
    """
    return tuple((s + m - 1) // m * m - s for s, m in zip(size, multiple))


def _end_pads(pads: Size) -> tuple[int, ...]:
    """``F.pad``'s argument for a channels-last map: channels untouched, then each axis from the last."""
    out = [0, 0]
    for p in reversed(pads):
        out += [0, p]
    return tuple(out)


def pad_to_multiple(x: torch.Tensor, multiple: Size) -> torch.Tensor:
    """Zero-pad the end of every spatial axis up to a multiple, ``(B, *spatial, C) -> (B, *spatial', C)``."""
    pads = padding_for(tuple(x.shape[1:-1]), multiple)
    if is_symbolic(*pads) or any(pads):
        x = F.pad(x, _end_pads(pads))
    return x


def pad_shift(x: torch.Tensor, window_size: Size, shift: Size) -> torch.Tensor:
    """The reference Swin-MLP shift: zero-pad so that windows start ``shift`` tokens towards the origin.

    ``(B, *spatial, C) -> (B, *(spatial + window), C)`` on each shifted axis, padding (start, end) =
    ``(w - s, s)``. The map must already be a window multiple.
    Window boundaries and in-window positions equal those of :func:`cyclic_shift` by ``shift``, but no token
    wraps around.
    An axis with no shift is not padded (the reference's pad there would add one row of windows of zeros
    only, whose outputs are cropped), so a zero shift returns ``x`` itself.
    """
    if not any(shift):
        return x
    pads = [0, 0]
    for w, s in reversed(tuple(zip(window_size, shift))):
        pads += [w - s if s else 0, s]
    return F.pad(x, tuple(pads))


def unpad_shift(x: torch.Tensor, window_size: Size, shift: Size) -> torch.Tensor:
    """Inverse crop of :func:`pad_shift`, ``(B, *(spatial + window), C) -> (B, *spatial, C)``."""
    index = tuple(slice(w - s if s else 0, x.shape[i + 1] - s) for i, (w, s) in enumerate(zip(window_size, shift)))
    return x[(slice(None), *index)]


def actual_window(size: Size, window_size: Size, shift: Size, crop: bool) -> tuple[Size, Size]:
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
    return tuple(ws), tuple(ss)


def sub_window_tokens(window_size: Size, sub_window: Size, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Positions of the ``sub_window`` tokens at the window's origin among its row-major tokens, ``-> (prod,)``."""
    index = torch.zeros((), dtype=torch.long, device=device)
    for size, full in zip(sub_window, window_size):
        index = index[..., None] * full + torch.arange(size, device=device)
    return index.flatten()


# sub-window positions depend on sizes only (see hiermlp.ops.cache)
cached_sub_window_tokens = geometry_cache(sub_window_tokens)


def crop_tokens(t: torch.Tensor, window_size: Size, sub_window: Size | None, dims: tuple[int, ...]) -> torch.Tensor:
    """``t`` restricted, along each of ``dims`` (a window's ``prod(window)`` tokens, row-major), to the tokens of
    the ``sub_window`` at the window's origin (``None`` or the window itself: ``t`` unchanged).

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
    padded_size: Size,
    window_size: Size,
    shift: Size,
    valid_size: Size | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Region label of every token of a padded map after a cyclic shift, ``-> padded_size`` long.

    Tokens may interact only when their labels are equal. Along each axis the shifted map has three
    regions, the reference slices ``(0, -ws)``, ``(-ws, -s)``, ``(-s, None)``; tokens that wrapped around
    the border land in the last one; a map's label combines its axes' (``3**d`` regions, as the reference's
    nested loops count them). When ``valid_size`` is smaller than ``padded_size`` (a map padded up to a
    window multiple *before* the roll), padding tokens get their own label ``-1``, so real tokens never mix
    with padding and never with tokens from across the border.

    Computed with comparisons on ``arange`` rather than slicing loops, so it traces for export.
    """
    ndim = len(padded_size)
    valid_size = valid_size if valid_size is not None else padded_size
    labels = torch.zeros((1,) * ndim, dtype=torch.long, device=device)
    is_pad = torch.zeros((1,) * ndim, dtype=torch.bool, device=device)
    for a, (n, w, s, valid) in enumerate(zip(padded_size, window_size, shift, valid_size)):
        i = torch.arange(n, device=device)
        label = (i >= n - w).long() + (i >= n - s).long() if s else torch.zeros_like(i)
        j = i + s  # position i holds original index (i + s) mod n; 0 <= i + s < 2n, so one subtraction does it
        pad = torch.where(j >= n, j - n, j) >= valid  # (no `% n`: ONNX cannot take a symbolic modulus)
        view = [1] * ndim
        view[a] = n
        labels = labels * 3 + label.view(view)
        is_pad = is_pad | pad.view(view)
    return torch.where(is_pad, torch.full_like(labels, -1), labels)


def window_mask(
    padded_size: Size,
    window_size: Size,
    shift: Size,
    valid_size: Size | None = None,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Which tokens of each window may interact, ``-> (nW, N, N)`` bool, True where allowed.

    This is the shifted-window mask of Swin (the reference adds -100 where this is False), extended so
    that padding tokens form a region of their own (see :func:`region_labels`).
    """
    labels = region_labels(padded_size, window_size, shift, valid_size, device=device)
    lw = rearrange(labels[None, ..., None], partition_pattern(len(window_size)), **_window_kwargs(window_size))[..., 0]
    return lw[:, :, None] == lw[:, None, :]


def relative_position_index(window_size: Size, *, device: torch.device | str | None = None) -> torch.Tensor:
    """Index into a ``(prod(2w-1), heads)`` bias table for every token pair of a window, ``-> (N, N)`` long.

    The reference construction (Swin's in 2-D, Video Swin's in 3-D): relative coordinates shifted to start at
    0, each axis's offset times the table's stride of that axis (row-major over ``(2w_0-1, 2w_1-1, ...)``).
    """
    coords = torch.stack(torch.meshgrid(*(torch.arange(w, device=device) for w in window_size), indexing="ij")).flatten(
        1
    )  # (d, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (d, N, N)
    index = torch.zeros_like(rel[0])
    for a, w in enumerate(window_size):
        index = index * (2 * w - 1) + (rel[a] + w - 1)
    return index


# window masks depend on sizes only: one bounded LRU shared by every block (see hiermlp.ops.cache)
cached_window_mask = geometry_cache(window_mask)


def crop_to(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Crop end padding, ``(B, *spatial', C) -> (B, *size, C)``.

    A symbolic (dynamic-size export) map is cropped by a gather, not a slice: a slice's strides depend on
    whether padding happened, which a graph exported for all sizes cannot know.
    """
    if is_symbolic(*size):
        for a, s in enumerate(size):
            x = x.index_select(a + 1, torch.arange(s, device=x.device))
        return x
    return x[(slice(None), *(slice(None, s) for s in size))]


# F.interpolate's mode per number of axes of a relative position table: Swin's bicubic fine-tuning recipe in
# 2-D; bicubic does not exist in 3-D, so a 3-D table (Video Swin, SwinUNETR) is resized trilinearly
TABLE_RESIZE_MODES = {1: "linear", 2: "bicubic", 3: "trilinear"}


def resize_rel_pos_table(table: torch.Tensor, new_window: Size, old_window: Size | None = None) -> torch.Tensor:
    """Resize a ``(prod(2M-1), heads)`` bias table to ``(prod(2w-1), heads)`` for window ``new_window``.

    The reference fine-tuning recipe: view as ``(1, heads, 2M_0-1, ...)`` and ``F.interpolate`` (bicubic in
    2-D, trilinear in 3-D). ``old_window``: the table's window; None infers a square 2-D one.
    """
    if old_window is None:
        side = math.isqrt(table.shape[0])
        if side * side != table.shape[0] or len(new_window) != 2:
            raise ShapeError(
                f"cannot infer the window of a relative position table of {table.shape[0]} rows; pass old_window"
            )
        old_window = ((side + 1) // 2, (side + 1) // 2)
    old_sides = tuple(2 * w - 1 for w in old_window)
    if math.prod(old_sides) != table.shape[0] or len(old_window) != len(new_window):
        raise ShapeError(f"a table of {table.shape[0]} rows is not that of a {tuple(old_window)} window")
    heads = table.shape[1]
    grid = table.T.reshape(1, heads, *old_sides).float()
    size = tuple(2 * w - 1 for w in new_window)
    out = F.interpolate(grid, size=size, mode=TABLE_RESIZE_MODES[len(size)], align_corners=False)
    return out.reshape(heads, -1).T.contiguous().to(table.dtype)
