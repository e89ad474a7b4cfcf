"""Relative position bias of Swin."""

from __future__ import annotations

import math

import torch
from torch import nn

from hiermlp.ops import crop_tokens, relative_position_index

# a sub-window crop depends on sizes: an opaque call under torch.fx, which cannot trace its size check
torch.fx.wrap("crop_tokens")


class RelativePositionBias(nn.Module):
    """Learned bias per head for every token pair of a window, ``([window_size]) -> (heads, N, N)``.

    The table has ``prod(2w-1)`` rows, one per relative offset (``(2wh-1)(2ww-1)`` in 2-D, Video Swin's
    ``(2wt-1)(2wh-1)(2ww-1)`` in 3-D), and one column per head; the index is a non-persistent buffer, so
    state dicts hold only the table (under the reference's name).
    """

    def __init__(self, *, window_size: tuple[int, ...], num_heads: int) -> None:
        super().__init__()
        self.window_size = tuple(window_size)
        self.num_heads = num_heads
        n_rel = math.prod(2 * w - 1 for w in window_size)
        self.relative_position_bias_table = nn.Parameter(torch.zeros(n_rel, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, window_size: tuple[int, ...] | None = None) -> torch.Tensor:
        """``(heads, N, N)``; for a smaller ``window_size`` (the top-left part of the window, for a map smaller
        than the window) the bias between its tokens, which is the sub-matrix of the window's."""
        index = crop_tokens(self.relative_position_index, self.window_size, window_size, dims=(0, 1))
        n = index.shape[0]
        bias = self.relative_position_bias_table[index.reshape(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)  # (heads, N, N)

    def init_non_persistent_buffers(self) -> None:
        """Rebuild the index (e.g. after ``to_empty``), as timm's meta-device init expects."""
        self.relative_position_index = relative_position_index(
            self.window_size, device=self.relative_position_bias_table.device
        )
