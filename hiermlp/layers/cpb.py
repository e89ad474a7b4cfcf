"""Log-spaced continuous position bias of Swin V2 (Liu et al. 2022, sec. 3.3)."""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from hiermlp.ops import geometry_cache, relative_position_index

Size = tuple[int, ...]


def log_spaced_coords(
    window_size: Size, pretrained_window_size: Size = (0, 0), *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Log-spaced relative coordinates of every offset in a window, ``-> (2wh-1, 2ww-1, 2)`` float32 (one
    axis and one coordinate per spatial axis: ``(2wt-1, 2wh-1, 2ww-1, 3)`` for a 3-D window).

    Offsets ``-(w-1) .. w-1`` per axis are divided by ``pretrained - 1`` (by ``window - 1`` when no pretrained
    window is given, i.e. 0), times 8, then ``sign(x) * log2(|x| + 1) / log2(8)``. Dividing by the
    *pretrained* window keeps the coordinates a model was trained on where they were, so a larger window at
    fine-tune only adds coordinates further out (the paper's window transfer, no table resizing). A window
    of 1 has the single offset 0 (divide by 1, not 0, as timm does).
    """
    pretrained = tuple(pretrained_window_size)
    norms = pretrained if pretrained[0] > 0 else tuple(window_size)
    axes = [
        torch.arange(-(w - 1), w, device=device, dtype=torch.float32) / max(n - 1, 1)
        for w, n in zip(window_size, norms)
    ]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1) * 8  # (2wh-1, 2ww-1, 2)
    return torch.sign(coords) * torch.log2(coords.abs() + 1.0) / math.log2(8)


# coordinates and pair index depend on the window alone: bounded LRUs shared by every block (hiermlp.ops.cache)
cached_log_spaced_coords = geometry_cache(log_spaced_coords)
cached_relative_position_index = geometry_cache(relative_position_index)

# window geometry on a parameter's device runs as opaque calls under torch.fx (timm's and torchvision's feature
# extractors): a traced parameter's device and dtype are not Python values; rearrange does not know fx proxies
torch.fx.wrap("window_coords")
torch.fx.wrap("window_pair_index")
torch.fx.wrap("rearrange")


def window_coords(window_size: Size, pretrained_window_size: Size, like: torch.Tensor) -> torch.Tensor:
    """:func:`log_spaced_coords` (cached) on ``like``'s device and in its dtype, ``-> (2wh-1, 2ww-1, 2)``."""
    return cached_log_spaced_coords(window_size, pretrained_window_size, device=like.device).to(like.dtype)


def window_pair_index(window_size: Size, like: torch.Tensor) -> torch.Tensor:
    """The ``(N, N)`` relative-offset index of a window (cached) on ``like``'s device."""
    return cached_relative_position_index(window_size, device=like.device)


class ContinuousPositionBias(nn.Sequential):
    """The CPB MLP ``(..., d) -> (..., heads)``: ``Linear(d, 512) -> ReLU -> Linear(512, heads, bias=False)``,
    ``d`` the number of spatial axes (2 in Swin V2).

    A ``Sequential`` so its state dict keys are the reference's (``cpb_mlp.0.weight``, ``cpb_mlp.0.bias``,
    ``cpb_mlp.2.weight``). :meth:`position_bias` turns it into the ``(heads, N, N)`` bias of a window.

    The table is computed from the parameters on every call (``(2wh-1)(2ww-1)`` rows through the MLP, cheap
    next to the attention it biases), so no copy can go stale when weights are loaded, assigned, moved or
    copied. Only what depends on the window alone (coordinates, pair index) is cached, by pure functions
    keyed by window, pretrained window and device; nothing travels in a state dict or pickle.
    """

    def __init__(self, *, num_heads: int, hidden_dim: int = 512, spatial_dims: int = 2) -> None:
        super().__init__(
            nn.Linear(spatial_dims, hidden_dim, bias=True),
            nn.ReLU(),
            nn.Linear(hidden_dim, num_heads, bias=False),
        )
        self.num_heads = num_heads

    def position_bias(self, window_size: Size, pretrained_window_size: Size = (0, 0)) -> torch.Tensor:
        """``() -> (heads, N, N)``: ``16 * sigmoid(mlp(coords)[index])``, ``N = prod(window_size)``."""
        weight = self[0].weight
        if len(pretrained_window_size) != len(window_size):
            pretrained_window_size = (pretrained_window_size[0],) * len(window_size)
        coords = window_coords(tuple(window_size), tuple(pretrained_window_size), weight)
        index = window_pair_index(tuple(window_size), weight)
        table = self(coords).view(-1, self.num_heads)  # (prod(2w-1), heads)
        n = index.shape[0]
        bias = rearrange(table[index.view(-1)], "(n m) heads -> heads n m", n=n)
        return 16 * torch.sigmoid(bias)
