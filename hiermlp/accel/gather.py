"""Window partition as one gather: pad + shift + partition (and its inverse + crop) in a single copy.

The plain block's composition (:func:`~hiermlp.ops.pad_to_multiple`, ``torch.roll``, einops partition, and
back) copies the map five or six times per block. Here the whole geometry is folded into two precomputed index
vectors per map size: ``fwd`` takes window slots to map positions, ``inv`` takes map positions back to their
slot, cropping the padding for free. The indices depend on sizes only and live in the bounded geometry LRU
(:func:`hiermlp.ops.geometry_cache`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from hiermlp.errors import ConfigError
from hiermlp.ops import geometry_cache

Size2 = tuple[int, int]


def window_index(
    size: Size2, window_size: Size2, shift: Size2, mode: str, *, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, Size2, bool]:
    """Gather indices for a ``(H, W)`` map: ``(fwd (nW*N,), inv (H*W,), padded size, uses padding)``.

    ``fwd`` indexes the flattened map extended by one zero token at position ``H*W`` (the padding);
    window slots are ordered exactly as :func:`~hiermlp.ops.window.window_partition` of the padded,
    shifted map. ``mode`` is ``"roll"`` (pad bottom/right to a window multiple, then cyclic shift: the
    padded size is the mask's) or ``"pad"`` (the reference Swin-MLP zero pad-shift).
    """
    h, w = size
    (wh, ww), (sh, sw) = window_size, shift
    sentinel = h * w
    # built on the CPU (once per size) and moved: boolean indexing has no meta-device kernel
    src = torch.arange(h * w).view(h, w)
    src = F.pad(src, (0, -w % ww, 0, -h % wh), value=sentinel)
    padded = (src.shape[0], src.shape[1])
    if mode == "roll":
        if sh or sw:
            src = torch.roll(src, shifts=(-sh, -sw), dims=(0, 1))
    elif mode == "pad":
        if sh or sw:
            # as pad_shift: an axis without a shift is not padded
            src = F.pad(src, (ww - sw if sw else 0, sw, wh - sh if sh else 0, sh), value=sentinel)
    else:
        raise ConfigError(f"window_index: mode must be 'roll' or 'pad', got {mode!r}")
    fwd = rearrange(src, "(gh wh) (gw ww) -> (gh gw wh ww)", wh=wh, ww=ww)
    real = fwd < sentinel
    inv = torch.empty(h * w, dtype=torch.long)
    inv[fwd[real]] = torch.arange(fwd.numel())[real]
    return fwd.to(device), inv.to(device), padded, fwd.numel() != h * w


# gather indices depend on sizes only: one bounded LRU shared by every block
cached_window_index = geometry_cache(window_index)


def gather_windows(x: torch.Tensor, fwd: torch.Tensor, window_area: int, padded: bool) -> torch.Tensor:
    """``(B, H, W, C) -> (B*nW, N, C)`` with ``fwd`` from :func:`window_index`.

    ``padded``: whether ``fwd`` refers to the zero token at ``H*W`` (then one zero row is appended).
    """
    b, h, w, c = x.shape
    flat = x.reshape(b, h * w, c)
    if padded:
        flat = torch.cat([flat, flat.new_zeros(b, 1, c)], dim=1)
    return flat.index_select(1, fwd).view(-1, window_area, c)


def scatter_windows(windows: torch.Tensor, inv: torch.Tensor, batch: int, size: Size2) -> torch.Tensor:
    """Inverse of :func:`gather_windows`, padding cropped, ``(B*nW, N, C) -> (B, H, W, C)``."""
    c = windows.shape[-1]
    return windows.reshape(batch, -1, c).index_select(1, inv).view(batch, size[0], size[1], c)
