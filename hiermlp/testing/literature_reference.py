"""Independent reference formulations of CycleMLP, AS-MLP, Wave-MLP and sMLPNet, ``(B, 3, H, W) -> (B, classes)``.

Written from the papers and the structure of each official repository, with the OFFICIAL parameter names,
module nesting and NCHW layout, so that a state dict of these modules has exactly the keys of an official
checkpoint (``hiermlp.weights.literature`` converts them). They are deliberately *not* hiermlp's
formulation: CycleMLP's Cycle FC is a deformable convolution with constant integer offsets
(``torchvision.ops.deform_conv2d``, as in ShoufaChen/CycleMLP), AS-MLP's axial shift pads, chunks, rolls
and crops (svip-lab/AS-MLP's pure-PyTorch ``torch_shift``), 1x1 convolutions stay ``nn.Conv2d``.

* CycleMLP (ShoufaChen/CycleMLP ``cycle_mlp.py``): ``patch_embed.proj``, ``network.{0,2,4,6}.j`` blocks,
  ``network.{1,3,5}.proj`` downsampling, ``norm``, ``head``; blocks on NHWC maps with LayerNorm.
* AS-MLP (svip-lab/AS-MLP ``models/as_mlp.py``): Swin's layout (``layers.i.blocks.j``, merging at the end
  of stages 0-2), GroupNorm(1, C) everywhere, NCHW.
* Wave-MLP (huawei-noah/Efficient-AI-Backbones ``wavemlp_pytorch/models/wavemlp.py``): CycleMLP's
  ``network`` layout on NCHW maps, BatchNorm (T) or GroupNorm(1, C) (S/M/B) blocks.
* sMLPNet (microsoft/SPACH ``models/smlp.py``): flat ``token_mix.k`` / ``channel_mix.k`` lists over all
  stages, ``to_patch_embedding.i``, ``batch_norm``, ``mlp_head.0``.

Nothing here is imported by the library itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d


# ---- shared -----------------------------------------------------------------------------------------
class RefMlp(nn.Module):
    """fc1 -> GELU -> fc2, as ``nn.Linear`` (NHWC) or as 1x1 ``nn.Conv2d`` (NCHW)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, *, conv: bool = False) -> None:
        super().__init__()
        out = out or dim
        self.fc1 = nn.Conv2d(dim, hidden, 1) if conv else nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, out, 1) if conv else nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def randomize(model: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Random weights, norm scales near 1 and random BatchNorm statistics, then eval mode.

    Every parameter and running statistic differs from its init, so no symmetry can hide a layout error.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            for name, p in m.named_parameters(recurse=False):
                noise = torch.randn(p.shape, generator=g) * std
                is_scale = isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm2d)) and name == "weight"
                p.copy_(noise + 1.0 if is_scale else noise)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                m.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=g)))
    return model.eval()


# ---- CycleMLP ---------------------------------------------------------------------------------------
class RefCycleFC(nn.Module):
    """Cycle FC as the official code computes it: a 1x1 deformable conv with constant integer offsets.

    Input channel i is read at offset ``(i + k//2) % k - k//2`` along the pseudo-kernel's long axis
    (``offset`` is ``(dy_0, dx_0, dy_1, dx_1, ...)``, one pair per input channel); bilinear sampling at an
    integer offset is an exact read, and zero outside the map.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        assert kernel_size[0] == 1 or kernel_size[1] == 1, kernel_size
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        offset = torch.zeros(1, 2 * in_channels, 1, 1)
        kh, kw = kernel_size
        start = (kh * kw) // 2
        for i in range(in_channels):
            if kh == 1:
                offset[0, 2 * i + 1] = (i + start) % kw - kw // 2
            else:
                offset[0, 2 * i] = (i + start) % kh - kh // 2
        self.register_buffer("offset", offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        b, _, h, w = x.shape
        return deform_conv2d(x, self.offset.expand(b, -1, h, w), self.weight, self.bias)


class RefCycleMLP(nn.Module):
    """The CycleMLP token mixer on NHWC maps: ``sfc_h`` (1x3), ``sfc_w`` (3x1), ``mlp_c``, softmax fusion."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mlp_c = nn.Linear(dim, dim, bias=False)
        self.sfc_h = RefCycleFC(dim, dim, (1, 3))
        self.sfc_w = RefCycleFC(dim, dim, (3, 1))
        self.reweight = RefMlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C)
        b, _, _, c = x.shape
        h = self.sfc_h(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        w = self.sfc_w(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        cc = self.mlp_c(x)
        a = (h + w + cc).permute(0, 3, 1, 2).flatten(2).mean(2)
        a = self.reweight(a).reshape(b, c, 3).permute(2, 0, 1).softmax(dim=0).unsqueeze(2).unsqueeze(2)
        return self.proj(h * a[0] + w * a[1] + cc * a[2])


class RefCycleBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = RefCycleMLP(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefConvProj(nn.Module):
    """``proj`` (a strided conv) then an optional ``norm`` (NCHW); CycleMLP's permutes NHWC around it."""

    def __init__(self, cin: int, cout: int, k: int, s: int, p: int, norm: nn.Module | None, nhwc: bool) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, k, s, p)
        if norm is not None:
            self.norm = norm
        self.nhwc = nhwc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = self.proj(x)
        return self.norm(x) if hasattr(self, "norm") else x


class RefCycleNet(nn.Module):
    """CycleMLP (``CycleNet``): conv 7x7/4 stem, Cycle blocks, conv 3x3/2 transitions, LayerNorm, mean, head."""

    def __init__(
        self,
        *,
        layers: Sequence[int],
        embed_dims: Sequence[int],
        mlp_ratios: Sequence[float],
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.patch_embed = RefConvProj(in_chans, embed_dims[0], 7, 4, 2, None, nhwc=False)
        network: list[nn.Module] = []
        for i, depth in enumerate(layers):
            network.append(nn.Sequential(*[RefCycleBlock(embed_dims[i], mlp_ratios[i]) for _ in range(depth)]))
            if i < len(layers) - 1:
                network.append(RefConvProj(embed_dims[i], embed_dims[i + 1], 3, 2, 1, None, nhwc=True))
        self.network = nn.ModuleList(network)
        self.norm = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).permute(0, 2, 3, 1)
        for m in self.network:
            x = m(x)
        x = self.norm(x.flatten(1, 2))
        return self.head(x.mean(1))


# ---- AS-MLP -----------------------------------------------------------------------------------------
def ref_axial_shift(x: torch.Tensor, shift_size: int, dim: int) -> torch.Tensor:
    """AS-MLP's pure-PyTorch shift: pad, split channels into ``shift_size`` chunks, roll chunk g by
    ``g - shift_size//2`` along ``dim`` (2 = H, 3 = W), crop. The zero padding is what rolls in."""
    _, _, h, w = x.shape
    pad = shift_size // 2
    x = F.pad(x, (pad, pad, pad, pad), "constant", 0)
    xs = torch.chunk(x, shift_size, 1)
    x = torch.cat([torch.roll(xc, s, dim) for xc, s in zip(xs, range(-pad, pad + 1))], 1)
    return torch.narrow(torch.narrow(x, 2, pad, h), 3, pad, w)


class RefAxialShift(nn.Module):
    def __init__(self, dim: int, shift_size: int, as_bias: bool = True) -> None:
        super().__init__()
        self.shift_size = shift_size
        self.conv1 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv2_1 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv2_2 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.conv3 = nn.Conv2d(dim, dim, 1, bias=as_bias)
        self.actn = nn.GELU()
        self.norm1 = nn.GroupNorm(1, dim)
        self.norm2 = nn.GroupNorm(1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = self.actn(self.norm1(self.conv1(x)))
        x_lr = self.actn(self.conv2_1(ref_axial_shift(x, self.shift_size, 3)))
        x_td = self.actn(self.conv2_2(ref_axial_shift(x, self.shift_size, 2)))
        return self.conv3(self.norm2(x_lr + x_td))


class RefAxialShiftedBlock(nn.Module):
    def __init__(self, dim: int, shift_size: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.axial_shift = RefAxialShift(dim, shift_size)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio), conv=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.axial_shift(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefASPatchMerging(nn.Module):
    """Swin's 2x2 concat (same order) on NCHW, GroupNorm(1, 4C), 1x1 conv 4C -> 2C without bias."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(4 * dim, 2 * dim, 1, bias=False)
        self.norm = nn.GroupNorm(1, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        assert h % 2 == 0 and w % 2 == 0, (h, w)
        x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], 1)
        return self.reduction(self.norm(x))


class RefASLayer(nn.Module):
    def __init__(self, dim: int, depth: int, shift_size: int, mlp_ratio: float, downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([RefAxialShiftedBlock(dim, shift_size, mlp_ratio) for _ in range(depth)])
        self.downsample = RefASPatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class RefASMLP(nn.Module):
    """AS-MLP: 4x4 patch embed + GroupNorm, axial-shift blocks, merging at stage ends, GroupNorm, pool, head."""

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        shift_size: int = 5,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        in_chans: int = 3,
        img_size: int = 224,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        n = len(depths)
        self.patch_embed = RefConvProj(in_chans, embed_dim, 4, 4, 0, nn.GroupNorm(1, embed_dim), nhwc=False)
        self.layers = nn.ModuleList(
            [RefASLayer(embed_dim * 2**i, d, shift_size, mlp_ratio, i < n - 1) for i, d in enumerate(depths)]
        )
        self.num_features = embed_dim * 2 ** (n - 1)
        self.norm = nn.GroupNorm(1, self.num_features)
        self.head = nn.Linear(self.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-2:] == (self.img_size, self.img_size), "AS-MLP's patch embed fixes the input size"
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm(x).mean((2, 3)))


# ---- Wave-MLP ---------------------------------------------------------------------------------------
def ref_norm(kind: str, dim: int) -> nn.Module:
    return nn.BatchNorm2d(dim) if kind == "batchnorm" else nn.GroupNorm(1, dim)


class RefPATM(nn.Module):
    """Phase-aware token mixing (NCHW): amplitude ``fc_h/fc_w`` (1x1), phase ``theta_*_conv`` (conv+BN+ReLU),
    the wave ``cat(x cos θ, x sin θ)`` through grouped 1x7 / 7x1 convs (2 input channels per group), and
    ``fc_c``; fused by the softmax re-weighting, then ``proj``."""

    def __init__(self, dim: int, mode: str = "fc") -> None:
        super().__init__()
        self.fc_h = nn.Conv2d(dim, dim, 1, bias=False)
        self.fc_w = nn.Conv2d(dim, dim, 1, bias=False)
        self.fc_c = nn.Conv2d(dim, dim, 1, bias=False)
        self.tfc_h = nn.Conv2d(2 * dim, dim, (1, 7), padding=(0, 3), groups=dim, bias=False)
        self.tfc_w = nn.Conv2d(2 * dim, dim, (7, 1), padding=(3, 0), groups=dim, bias=False)
        self.reweight = RefMlp(dim, dim // 4, dim * 3, conv=True)
        self.proj = nn.Conv2d(dim, dim, 1)
        if mode == "fc":
            conv = lambda: nn.Conv2d(dim, dim, 1)
        else:
            conv = lambda: nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.theta_h_conv = nn.Sequential(conv(), nn.BatchNorm2d(dim), nn.ReLU())
        self.theta_w_conv = nn.Sequential(conv(), nn.BatchNorm2d(dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, _, _ = x.shape
        theta_h, theta_w = self.theta_h_conv(x), self.theta_w_conv(x)
        x_h, x_w = self.fc_h(x), self.fc_w(x)
        x_h = torch.cat([x_h * torch.cos(theta_h), x_h * torch.sin(theta_h)], dim=1)
        x_w = torch.cat([x_w * torch.cos(theta_w), x_w * torch.sin(theta_w)], dim=1)
        h, w, cc = self.tfc_h(x_h), self.tfc_w(x_w), self.fc_c(x)
        a = F.adaptive_avg_pool2d(h + w + cc, output_size=1)
        a = self.reweight(a).reshape(b, c, 3).permute(2, 0, 1).softmax(dim=0).unsqueeze(-1).unsqueeze(-1)
        return self.proj(h * a[0] + w * a[1] + cc * a[2])


class RefWaveBlock(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float, norm: str, mode: str) -> None:
        super().__init__()
        self.norm1 = ref_norm(norm, dim)
        self.attn = RefPATM(dim, mode)
        self.norm2 = ref_norm(norm, dim)
        self.mlp = RefMlp(dim, int(dim * mlp_ratio), conv=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefWaveNet(nn.Module):
    """Wave-MLP (``WaveNet``): conv 7x7/4 stem (+norm), Wave blocks, conv 3x3/2 (+norm), norm, pool, head."""

    def __init__(
        self,
        *,
        layers: Sequence[int],
        embed_dims: Sequence[int],
        mlp_ratios: Sequence[float],
        norm: str = "batchnorm",
        mode: str = "fc",
        ds_use_norm: bool = True,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        d = embed_dims
        self.patch_embed = RefConvProj(in_chans, d[0], 7, 4, 2, ref_norm(norm, d[0]) if ds_use_norm else None, False)
        network: list[nn.Module] = []
        for i, depth in enumerate(layers):
            network.append(nn.Sequential(*[RefWaveBlock(d[i], mlp_ratios[i], norm, mode) for _ in range(depth)]))
            if i < len(layers) - 1:
                ds_norm = ref_norm(norm, d[i + 1]) if ds_use_norm else None
                network.append(RefConvProj(d[i], d[i + 1], 3, 2, 1, ds_norm, nhwc=False))
        self.network = nn.ModuleList(network)
        self.norm = ref_norm(norm, d[-1])
        self.head = nn.Linear(d[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for m in self.network:
            x = m(x)
        return self.head(F.adaptive_avg_pool2d(self.norm(x), output_size=1).flatten(1))


# ---- sMLPNet ----------------------------------------------------------------------------------------
class RefBNActivConv(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.BN = nn.BatchNorm2d(channels)
        self.Activation = nn.GELU()
        self.Conv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.Conv(self.Activation(self.BN(x)))


class RefDWConvBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_merge = RefBNActivConv(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_merge(x)


class RefSMLPBlock(nn.Module):
    """The sparse MLP (NCHW): ``proj_h`` mixes along W within each row, ``proh_w`` along H within each
    column (both ``Conv2d(N, N, 1)`` on a permuted map, the official names), ``fuse`` the three."""

    def __init__(self, w: int, h: int, channels: int) -> None:
        super().__init__()
        assert w == h
        self.activation = nn.GELU()
        self.BN = nn.BatchNorm2d(channels)
        self.proj_h = nn.Conv2d(h, h, (1, 1))
        self.proh_w = nn.Conv2d(w, w, (1, 1))
        self.fuse = nn.Conv2d(channels * 3, channels, (1, 1), (1, 1), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.BN(x))
        x_h = self.proj_h(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x_w = self.proh_w(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        return self.fuse(torch.cat([x, x_h, x_w], dim=1))


class RefFeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class RefNHWC(nn.Module):
    """Channel mixing on NCHW maps: ``1`` LayerNorm and ``2`` FeedForward on a channels-last view."""

    def __init__(self, dim: int, alpha: float) -> None:
        super().__init__()
        self.add_module("1", nn.LayerNorm(dim))
        self.add_module("2", RefFeedForward(dim, int(dim * alpha)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        return getattr(self, "2")(getattr(self, "1")(x)).permute(0, 3, 1, 2)


class RefSMLPNet(nn.Module):
    """sMLPNet: 4x4 patch conv, [dwconv block -> sparse MLP] + [LN -> FFN] blocks, 2x2 conv transitions,
    BatchNorm, mean, head. Tied to ``image_size`` (the row/column MLPs are sized to the maps)."""

    def __init__(
        self,
        *,
        dim: int = 80,
        alpha: float = 3,
        depths: Sequence[int] = (2, 8, 14, 2),
        num_classes: int = 1000,
        in_chans: int = 3,
        patch_size: int = 4,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        self.depths = tuple(depths)
        n_patch = image_size // patch_size
        self.to_patch_embedding = nn.ModuleList()
        self.token_mix = nn.ModuleList()
        self.channel_mix = nn.ModuleList()
        for i, depth in enumerate(depths):
            r = 2**i
            conv = nn.Conv2d(in_chans, dim, patch_size, patch_size, bias=False) if i == 0 else None
            conv = conv or nn.Conv2d(dim * r // 2, dim * r, 2, 2, bias=False)
            self.to_patch_embedding.append(nn.Sequential(conv))
            for _ in range(depth):
                c, side = dim * r, n_patch // r
                self.token_mix.append(nn.Sequential(RefDWConvBlock(c), RefSMLPBlock(side, side, c)))
                self.channel_mix.append(RefNHWC(c, alpha))
        self.batch_norm = nn.BatchNorm2d(dim * 2 ** (len(depths) - 1))
        self.mlp_head = nn.Sequential(nn.Linear(dim * 2 ** (len(depths) - 1), num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = 0
        for i, depth in enumerate(self.depths):
            x = self.to_patch_embedding[i](x)
            for _ in range(depth):
                x = x + self.token_mix[k](x)
                x = x + self.channel_mix[k](x)
                k += 1
        return self.mlp_head(self.batch_norm(x).mean(dim=[2, 3]))


# ---- official variants ------------------------------------------------------------------------------
CYCLEMLP = {
    "cyclemlp_b1": dict(layers=(2, 2, 4, 2), embed_dims=(64, 128, 320, 512), mlp_ratios=(4, 4, 4, 4)),
    "cyclemlp_b2": dict(layers=(2, 3, 10, 3), embed_dims=(64, 128, 320, 512), mlp_ratios=(4, 4, 4, 4)),
    "cyclemlp_b3": dict(layers=(3, 4, 18, 3), embed_dims=(64, 128, 320, 512), mlp_ratios=(8, 8, 4, 4)),
    "cyclemlp_b4": dict(layers=(3, 8, 27, 3), embed_dims=(64, 128, 320, 512), mlp_ratios=(8, 8, 4, 4)),
    "cyclemlp_b5": dict(layers=(3, 4, 24, 3), embed_dims=(96, 192, 384, 768), mlp_ratios=(4, 4, 4, 4)),
}
ASMLP = {
    "asmlp_tiny_patch4_shift5_224": dict(embed_dim=96, depths=(2, 2, 6, 2)),
    "asmlp_small_patch4_shift5_224": dict(embed_dim=96, depths=(2, 2, 18, 2)),
    "asmlp_base_patch4_shift5_224": dict(embed_dim=128, depths=(2, 2, 18, 2)),
}
_WAVE_T = dict(layers=(2, 2, 4, 2), embed_dims=(64, 128, 320, 512), mlp_ratios=(4, 4, 4, 4))
WAVEMLP = {
    "wavemlp_t_dw": dict(**_WAVE_T, mode="depthwise"),
    "wavemlp_t": dict(_WAVE_T),
    "wavemlp_s": dict(_WAVE_T, layers=(2, 3, 10, 3), norm="groupnorm"),
    "wavemlp_m": dict(_WAVE_T, layers=(3, 4, 18, 3), mlp_ratios=(8, 8, 4, 4), norm="groupnorm", ds_use_norm=False),
    "wavemlp_b": dict(
        layers=(2, 2, 18, 2),
        embed_dims=(96, 192, 384, 768),
        mlp_ratios=(4, 4, 4, 4),
        norm="groupnorm",
        ds_use_norm=False,
    ),
}
SMLPNET = {
    "smlpnet_tiny": dict(dim=80, depths=(2, 8, 14, 2)),
    "smlpnet_small": dict(dim=96, depths=(2, 10, 24, 2)),
    "smlpnet_base": dict(dim=112, depths=(2, 10, 24, 2)),
}


def build_reference(name: str, **overrides) -> nn.Module:
    """The reference module of a zoo name (e.g. ``"cyclemlp_b1"``), with optional overrides."""
    for table, cls in ((CYCLEMLP, RefCycleNet), (ASMLP, RefASMLP), (WAVEMLP, RefWaveNet), (SMLPNET, RefSMLPNet)):
        if name in table:
            return cls(**{**table[name], **overrides})
    raise KeyError(name)
