"""Wave-MLP's token mixer (Tang et al. 2022, "An Image Patch is a Wave: Phase-Aware Vision MLP").

Phase-aware token mixing (PATM) treats each token as a wave with an amplitude (a linear map of the token)
and a phase θ (a linear map or a depthwise 3x3 conv, then BatchNorm and ReLU); the wave is expanded as
``cat(|z| cos θ, |z| sin θ)`` and aggregated over neighbours by a grouped 1x7 (``tfc_h``) or 7x1 (``tfc_w``)
convolution with two input channels per group. Both branches and a channel FC are fused by CycleMLP's
softmax re-weighting. Official code: huawei-noah/Efficient-AI-Backbones ``wavemlp_pytorch/models/wavemlp.py``.

On the channels-last map the five per-token linear maps of the "fc" mode (``fc_h``, ``fc_w``, ``fc_c`` and
the two phase maps) are one GEMM over the concatenated weights; the grouped convolutions run on a
channels-last view (no layout copies).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers import BatchNormNHWC, ConvCL, Mlp
from hiermlp.mixers.base import register_mixer

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("rearrange")


@register_mixer("wave")
class PhaseAwareMixing(nn.Module):
    """Wave-MLP's PATM, ``(B, H, W, C) -> (B, H, W, C)``, with the official parameter names.

    Args:
        dim: Channels C.
        mode: ``"fc"`` (the phase from a linear map with bias) or ``"depthwise"`` (from a depthwise 3x3
            conv without bias; Wave-MLP-T-dw).
        qkv_bias: Biases on ``fc_h``, ``fc_w``, ``fc_c`` (the official option; off in the released models).
    """

    kind = "map"

    def __init__(self, dim: int, *, mode: str = "fc", qkv_bias: bool = False) -> None:
        super().__init__()
        if mode not in ("fc", "depthwise"):
            raise ConfigError(f"wave: mode must be 'fc' or 'depthwise', got {mode!r}")
        self.dim, self.mode = dim, mode
        self.fc_h = nn.Linear(dim, dim, bias=qkv_bias)
        self.fc_w = nn.Linear(dim, dim, bias=qkv_bias)
        self.fc_c = nn.Linear(dim, dim, bias=qkv_bias)
        self.tfc_h = ConvCL(2 * dim, dim, (1, 7), padding=(0, 3), groups=dim, bias=False)
        self.tfc_w = ConvCL(2 * dim, dim, (7, 1), padding=(3, 0), groups=dim, bias=False)
        self.reweight = Mlp(dim, dim // 4, dim * 3)
        self.proj = nn.Linear(dim, dim)

        def phase() -> nn.Sequential:
            if mode == "fc":
                conv: nn.Module = nn.Linear(dim, dim)
            else:
                conv = ConvCL(dim, dim, 3, padding=1, groups=dim, bias=False)
            return nn.Sequential(conv, BatchNormNHWC(dim), nn.ReLU())

        self.theta_h_conv = phase()
        self.theta_w_conv = phase()

    def init_weights(self) -> None:
        """The official init: PyTorch's defaults for the (1x1 conv) maps, unit BatchNorm (``WaveNet`` only
        re-initialises ``nn.Linear`` heads and norms)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.BatchNorm2d)):
                m.reset_parameters()

    def _linear_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(x_h, x_w, c, pre-BN θ_h, pre-BN θ_w)``: in "fc" mode one GEMM over the stacked weights."""
        if self.mode != "fc":
            return self.fc_h(x), self.fc_w(x), self.fc_c(x), self.theta_h_conv[0](x), self.theta_w_conv[0](x)
        maps = (self.fc_h, self.fc_w, self.fc_c, self.theta_h_conv[0], self.theta_w_conv[0])
        weight = torch.cat([m.weight for m in maps])
        zeros = None
        biases = []
        for m in maps:
            if m.bias is None:
                zeros = x.new_zeros(self.dim) if zeros is None else zeros
            biases.append(m.bias if m.bias is not None else zeros)
        y = F.linear(x, weight, torch.cat(biases))  # (B, H, W, 5C)
        return y.split(self.dim, dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_h, x_w, cc, theta_h, theta_w = self._linear_maps(x)
        theta_h = self.theta_h_conv[2](self.theta_h_conv[1](theta_h))
        theta_w = self.theta_w_conv[2](self.theta_w_conv[1](theta_w))
        # the official cat is (cos | sin) along channels, so group g of the grouped conv sees channels 2g, 2g+1
        h = self.tfc_h(torch.cat([x_h * torch.cos(theta_h), x_h * torch.sin(theta_h)], dim=-1))
        w = self.tfc_w(torch.cat([x_w * torch.cos(theta_w), x_w * torch.sin(theta_w)], dim=-1))
        # per-channel weights over the three branches; the official reshape is channel-major, (c k)
        a = rearrange(self.reweight((h + w + cc).mean((1, 2))), "b (c k) -> k b 1 1 c", k=3).softmax(dim=0)
        return self.proj(h * a[0] + w * a[1] + cc * a[2])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, mode={self.mode!r}"
