"""An independent Swin Transformer V2 in the Microsoft reference layout, for tests and benchmarks.

Written from the paper (Liu et al. 2022, "Swin Transformer V2: Scaling Up Capacity and Resolution") and the
structure of the official ``models/swin_transformer_v2.py``: the same module tree and key names, so its
``state_dict()`` is an official-layout checkpoint (``layers.i.blocks.j.attn.*``, merging at the END of stages
0..n-2 as ``layers.i.downsample``, classifier ``head``, and the persistent buffers
``relative_coords_table``, ``relative_position_index`` and ``attn_mask`` the official files carry). It shares
no code with hiermlp's model stack: tokens are ``(B, L, C)`` sequences as in the reference, windows are cut
with ``view``/``permute``, the mask is drawn with the reference's region slices, merging slices
``x[0::2, 0::2]`` etc. Only nominal sizes (multiples of the window at every stage) are supported, as there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """``(B, H, W, C) -> (B*nW, ws*ws, C)``, windows row-major within each image."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """``(B*nW, ws*ws, C) -> (B, H, W, C)``."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


class RefWindowAttentionV2(nn.Module):
    """Scaled cosine attention with the log-spaced continuous position bias (official names)."""

    def __init__(self, dim: int, window_size: int, num_heads: int, pretrained_window_size: int = 0) -> None:
        super().__init__()
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False))
        m = window_size
        # continuous coordinates of the (2M-1)^2 offsets, normalised by the pretrained window (paper eq. 4)
        offsets = torch.arange(-(m - 1), m, dtype=torch.float32)
        table = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)[None]  # 1, 2M-1, 2M-1, 2
        table = table / ((pretrained_window_size if pretrained_window_size > 0 else m) - 1)
        table = table * 8
        table = torch.sign(table) * torch.log2(table.abs() + 1.0) / math.log2(8)
        self.register_buffer("relative_coords_table", table)
        # pair index into the table: (dy + M - 1) * (2M - 1) + (dx + M - 1)
        ys, xs = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        index = (ys[:, None] - ys[None, :] + m - 1) * (2 * m - 1) + (xs[:, None] - xs[None, :] + m - 1)
        self.register_buffer("relative_position_index", index)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        bw, n, c = x.shape
        heads = self.num_heads
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).view(bw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        attn = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-1, -2)
        attn = attn * self.logit_scale.clamp(max=math.log(100.0)).exp()
        table = self.cpb_mlp(self.relative_coords_table).view(-1, heads)
        pos = table[self.relative_position_index.flatten()].view(n, n, heads).permute(2, 0, 1)
        attn = attn + 16 * torch.sigmoid(pos)[None]
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(bw // nw, nw, heads, n, n) + mask[None, :, None]).view(bw, heads, n, n)
        out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(bw, n, c)
        return self.proj(out)


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class RefBlockV2(nn.Module):
    """Res-post-norm block: ``x + norm1(attn(x))``, ``x + norm2(mlp(x))`` on ``(B, L, C)`` tokens."""

    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        num_heads: int,
        window_size: int,
        shift_size: int,
        pretrained_window_size: int,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.resolution = resolution
        if min(resolution) <= window_size:  # the map fits one window: no partition, no shift
            window_size, shift_size = min(resolution), 0
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RefWindowAttentionV2(dim, window_size, num_heads, pretrained_window_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio))
        mask = None
        if shift_size:
            h, w = resolution
            regions = torch.zeros(1, h, w, 1)
            cuts = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
            for i, hs in enumerate(cuts):
                for j, wsl in enumerate(cuts):
                    regions[:, hs, wsl, :] = 3 * i + j
            labels = _partition(regions, window_size).squeeze(-1)  # nW, N
            diff = labels[:, None, :] - labels[:, :, None]
            mask = torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, n, c = x.shape
        ws, s = self.window_size, self.shift_size
        y = x.view(b, h, w, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = _reverse(self.attn(_partition(y, ws), self.attn_mask), ws, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + self.norm1(y.reshape(b, n, c))
        return x + self.norm2(self.mlp(x))


class RefPatchMergingV2(nn.Module):
    """2x2 neighbours concatenated (x0, x1, x2, x3 order), ``reduction`` to 2C, then ``norm`` (V2 order)."""

    def __init__(self, resolution: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.norm(self.reduction(x.view(b, -1, 4 * c)))


class RefBasicLayer(nn.Module):
    def __init__(self, dim, resolution, depth, num_heads, window_size, pretrained_window_size, downsample):
        super().__init__()
        shifts = [0 if i % 2 == 0 else window_size // 2 for i in range(depth)]
        self.blocks = nn.ModuleList(
            RefBlockV2(dim, resolution, num_heads, window_size, s, pretrained_window_size) for s in shifts
        )
        self.downsample = RefPatchMergingV2(resolution, dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``-> (output of the blocks, output of the layer)`` (they differ by the merging at the end)."""
        for blk in self.blocks:
            x = blk(x)
        return x, (self.downsample(x) if self.downsample is not None else x)


class RefPatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinV2Reference(nn.Module):
    """Swin V2 as the reference builds it (one window size for every stage, clamped where the map is smaller)."""

    def __init__(
        self,
        *,
        img_size: int = 256,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 8,
        pretrained_window_sizes: Sequence[int] = (0, 0, 0, 0),
    ) -> None:
        super().__init__()
        self.patch_embed = RefPatchEmbed(patch_size, in_chans, embed_dim)
        grid = img_size // patch_size
        n = len(depths)
        self.layers = nn.ModuleList(
            RefBasicLayer(
                embed_dim * 2**i,
                (grid // 2**i, grid // 2**i),
                depths[i],
                num_heads[i],
                window_size,
                pretrained_window_sizes[i],
                downsample=i < n - 1,
            )
            for i in range(n)
        )
        self.num_features = embed_dim * 2 ** (n - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.grid = grid

    def stage_outputs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``-> ([each stage's blocks' output as (B, C, H, W)], final normalised tokens (B, L, C))``."""
        x = self.patch_embed(x)
        feats = []
        for i, layer in enumerate(self.layers):
            y, x = layer(x)
            side = self.grid // 2**i
            feats.append(y.transpose(1, 2).reshape(y.shape[0], -1, side, side))
        return feats, self.norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, x = self.stage_outputs(x)
        return self.head(x.mean(1))
