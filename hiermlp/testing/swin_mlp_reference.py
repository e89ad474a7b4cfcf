"""An independent reference Swin-MLP, written like microsoft models/swin_mlp.py (its Microsoft layout and names).

Zero-padding shift and a grouped ``Conv1d`` per head, as the reference does it; shared by the tests and
``benchmarks/perf_cpu.py``, which times hiermlp's Swin-MLP against it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def ref_partition(x, ws):
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def ref_reverse(windows, ws, h, w):
    b = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


class RefMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RefSwinMLPBlock(nn.Module):
    """Zero-padding shift and a grouped Conv1d, as the reference does it."""

    def __init__(self, dim, input_resolution, num_heads, window_size, shift_size):
        super().__init__()
        self.dim, self.input_resolution, self.num_heads = dim, input_resolution, num_heads
        self.window_size, self.shift_size = window_size, shift_size
        if min(input_resolution) <= window_size:
            self.shift_size, self.window_size = 0, min(input_resolution)
        ws, s = self.window_size, self.shift_size
        self.padding = [ws - s, s, ws - s, s]  # P_l, P_r, P_t, P_b
        self.norm1 = nn.LayerNorm(dim)
        self.spatial_mlp = nn.Conv1d(num_heads * ws**2, num_heads * ws**2, kernel_size=1, groups=num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = RefMlp(dim, 4 * dim)

    def forward(self, x):  # (B, H*W, C)
        h, w = self.input_resolution
        b, _, c = x.shape
        ws, heads = self.window_size, self.num_heads
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift_size > 0:
            p_l, p_r, p_t, p_b = self.padding
            x = F.pad(x, [0, 0, p_l, p_r, p_t, p_b], "constant", 0)
        _, hp, wp, _ = x.shape
        win = ref_partition(x, ws).view(-1, ws * ws, c)
        win = win.view(-1, ws * ws, heads, c // heads).transpose(1, 2).reshape(-1, heads * ws * ws, c // heads)
        win = self.spatial_mlp(win)
        win = win.view(-1, heads, ws * ws, c // heads).transpose(1, 2).reshape(-1, ws, ws, c)
        x = ref_reverse(win, ws, hp, wp)
        if self.shift_size > 0:
            p_l, p_r, p_t, p_b = self.padding
            x = x[:, p_t:-p_b, p_l:-p_r, :].contiguous()
        x = shortcut + x.view(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class RefPatchMerging(nn.Module):
    def __init__(self, input_resolution, dim):
        super().__init__()
        self.input_resolution = input_resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x):
        h, w = self.input_resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class RefLayer(nn.Module):
    def __init__(self, dim, res, depth, heads, ws, downsample):
        super().__init__()
        self.blocks = nn.ModuleList(
            RefSwinMLPBlock(dim, res, heads, ws, 0 if i % 2 == 0 else ws // 2) for i in range(depth)
        )
        self.downsample = RefPatchMerging(res, dim) if downsample else None

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class RefPatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        self.norm = nn.LayerNorm(dim)


class RefSwinMLP(nn.Module):
    def __init__(self, img_size, embed_dim, depths, num_heads, window_size, num_classes=1000):
        super().__init__()
        self.patch_embed = RefPatchEmbed(embed_dim)
        res = img_size // 4
        self.layers = nn.ModuleList()
        for i, (d, h) in enumerate(zip(depths, num_heads)):
            r = res // 2**i
            self.layers.append(RefLayer(embed_dim * 2**i, (r, r), d, h, window_size, i < len(depths) - 1))
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, x):
        x = self.patch_embed.norm(self.patch_embed.proj(x).flatten(2).transpose(1, 2))
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean(1))
