"""mmsegmentation's UPerNet (``UPerHead`` + auxiliary ``FCNHead``) as plain functions of an mmseg state dict.

Written from mmseg's published module layout and forward code (``mmseg/models/decode_heads/uper_head.py``,
``psp_head.py``, ``fcn_head.py``, ``decode_head.py``; mmcv's ``ConvModule``), in eval mode: every tensor is read
by its mmseg key (``decode_head.psp_modules.0.1.conv.weight``, ``...bn.running_mean``, ``conv_seg``), none by a
hiermlp module, so loading such a state dict into :class:`hiermlp.models.segment.HierSegmentor` and comparing
the logits checks the layout and the computation together. :func:`mmseg_head_state` draws random weights and
BatchNorm statistics under those keys; its shapes are what mmseg's config builds, so its size is mmseg's
parameter count of the heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["encoder_decoder_logits", "fcn_head", "mmseg_head_state", "param_count", "uper_head"]

StateDict = dict[str, torch.Tensor]


def _conv_module(sd: StateDict, prefix: str, x: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """mmcv ``ConvModule(norm_cfg=BN, act_cfg=ReLU)``: conv without bias, eval BatchNorm (eps 1e-5), ReLU."""
    x = F.conv2d(x, sd[f"{prefix}conv.weight"], sd.get(f"{prefix}conv.bias"), padding=padding)
    x = F.batch_norm(
        x,
        sd[f"{prefix}bn.running_mean"],
        sd[f"{prefix}bn.running_var"],
        sd[f"{prefix}bn.weight"],
        sd[f"{prefix}bn.bias"],
        training=False,
        eps=1e-5,
    )
    return F.relu(x)


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _cls_seg(sd: StateDict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, sd[f"{prefix}conv_seg.weight"], sd[f"{prefix}conv_seg.bias"])  # dropout: identity in eval


def uper_head(
    sd: StateDict, feats: Sequence[torch.Tensor], prefix: str = "decode_head.", pool_scales=(1, 2, 3, 6)
) -> torch.Tensor:
    """``UPerHead.forward`` in eval mode: ``[(B, C_i, H_i, W_i)] -> (B, K, H_0, W_0)``."""
    top = feats[-1]
    psp = [top]
    for i, scale in enumerate(pool_scales):  # PPM: pool, 1x1 ConvModule, back to the map's size
        y = _conv_module(sd, f"{prefix}psp_modules.{i}.1.", F.adaptive_avg_pool2d(top, scale))
        psp.append(_resize(y, top.shape[2:]))
    laterals = [_conv_module(sd, f"{prefix}lateral_convs.{i}.", f) for i, f in enumerate(feats[:-1])]
    laterals.append(_conv_module(sd, f"{prefix}bottleneck.", torch.cat(psp, dim=1), padding=1))
    n = len(laterals)
    for i in range(n - 1, 0, -1):
        laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[2:])
    outs = [_conv_module(sd, f"{prefix}fpn_convs.{i}.", laterals[i], padding=1) for i in range(n - 1)]
    outs.append(laterals[-1])
    for i in range(n - 1, 0, -1):
        outs[i] = _resize(outs[i], outs[0].shape[2:])
    return _cls_seg(sd, prefix, _conv_module(sd, f"{prefix}fpn_bottleneck.", torch.cat(outs, dim=1), padding=1))


def fcn_head(
    sd: StateDict, feats: Sequence[torch.Tensor], prefix: str = "auxiliary_head.", in_index: int = 2, num_convs: int = 1
) -> torch.Tensor:
    """``FCNHead.forward`` (``concat_input=False``) in eval mode on map ``in_index``."""
    x = feats[in_index]
    for i in range(num_convs):
        x = _conv_module(sd, f"{prefix}convs.{i}.", x, padding=1)
    return _cls_seg(sd, prefix, x)


def encoder_decoder_logits(
    sd: StateDict, feats: Sequence[torch.Tensor], size: Sequence[int], pool_scales=(1, 2, 3, 6)
) -> tuple[torch.Tensor, torch.Tensor]:
    """``EncoderDecoder``: the decode head's logits (and the auxiliary head's) resized to ``size``."""
    return _resize(uper_head(sd, feats, pool_scales=pool_scales), size), _resize(fcn_head(sd, feats), size)


def _conv_module_state(prefix: str, c_in: int, c_out: int, k: int, g: torch.Generator) -> StateDict:
    return {
        f"{prefix}conv.weight": torch.randn(c_out, c_in, k, k, generator=g) * (2.0 / (c_in * k * k)) ** 0.5,
        f"{prefix}bn.weight": 1.0 + 0.1 * torch.randn(c_out, generator=g),
        f"{prefix}bn.bias": 0.1 * torch.randn(c_out, generator=g),
        f"{prefix}bn.running_mean": 0.1 * torch.randn(c_out, generator=g),
        f"{prefix}bn.running_var": 0.5 + torch.rand(c_out, generator=g),
        f"{prefix}bn.num_batches_tracked": torch.tensor(1000),
    }


def mmseg_head_state(
    in_channels: Sequence[int],
    num_classes: int,
    *,
    channels: int = 512,
    pool_scales: Sequence[int] = (1, 2, 3, 6),
    aux_channels: int = 256,
    aux_index: int = 2,
    seed: int = 0,
) -> StateDict:
    """Random ``decode_head.*`` (UPerHead) and ``auxiliary_head.*`` (FCNHead, one conv) tensors under mmseg's keys,
    shaped as mmseg's Swin UPerNet config builds them (BatchNorm statistics included)."""
    g = torch.Generator().manual_seed(seed)
    sd: StateDict = {}
    p = "decode_head."
    for i, _ in enumerate(pool_scales):
        sd |= _conv_module_state(f"{p}psp_modules.{i}.1.", in_channels[-1], channels, 1, g)
    sd |= _conv_module_state(f"{p}bottleneck.", in_channels[-1] + len(pool_scales) * channels, channels, 3, g)
    for i, c in enumerate(in_channels[:-1]):
        sd |= _conv_module_state(f"{p}lateral_convs.{i}.", c, channels, 1, g)
        sd |= _conv_module_state(f"{p}fpn_convs.{i}.", channels, channels, 3, g)
    sd |= _conv_module_state(f"{p}fpn_bottleneck.", len(in_channels) * channels, channels, 3, g)
    sd[f"{p}conv_seg.weight"] = 0.05 * torch.randn(num_classes, channels, 1, 1, generator=g)
    sd[f"{p}conv_seg.bias"] = 0.05 * torch.randn(num_classes, generator=g)
    a = "auxiliary_head."
    sd |= _conv_module_state(f"{a}convs.0.", in_channels[aux_index], aux_channels, 3, g)
    sd[f"{a}conv_seg.weight"] = 0.05 * torch.randn(num_classes, aux_channels, 1, 1, generator=g)
    sd[f"{a}conv_seg.bias"] = 0.05 * torch.randn(num_classes, generator=g)
    return sd


def param_count(sd: StateDict) -> int:
    """Parameters of an mmseg state dict: every tensor but BatchNorm's running statistics."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(v.numel() for k, v in sd.items() if not k.endswith(buffers))
