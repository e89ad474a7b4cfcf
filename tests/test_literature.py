"""CycleMLP, AS-MLP, Wave-MLP and sMLPNet against independent official-layout references.

The references (``hiermlp.testing.literature_reference``) compute each model the way its official code does
(CycleMLP's Cycle FC as a deformable convolution with constant offsets, AS-MLP's pad/chunk/roll shift, NCHW
1x1 convolutions) with random weights AND random BatchNorm statistics; hiermlp's modules get the weights
through ``load_checkpoint``'s auto-detected converters and must give the same outputs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hiermlp.errors import CheckpointError, ShapeError
from hiermlp.layers import BatchNormNHWC
from hiermlp.mixers.axial_shift import AxialShift, axial_shift
from hiermlp.mixers.cycle_mlp import CycleMlp, cycle_shift
from hiermlp.mixers.smlp import SparseMlp
from hiermlp.mixers.wave_mlp import PhaseAwareMixing
from hiermlp.testing import literature_reference as ref
from hiermlp.weights.convert import convert_state_dict


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1)


def linears(sd: dict) -> dict:
    """1x1 conv weights as linear weights (what the converters do), for mixer-level checks."""
    return {k: v.flatten(1) if v.ndim == 4 and v.shape[-2:] == (1, 1) else v for k, v in sd.items()}


def assert_close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    scale = b.abs().max().item()
    assert scale > 0.1, "a degenerate reference output would prove nothing"
    assert (a - b).abs().max().item() <= rel * scale, ((a - b).abs().max().item(), scale)


# ---- the ops: exactly the official sampling, zero fill at the borders ------------------------------
@pytest.mark.parametrize("kernel_size", [(1, 3), (3, 1), (1, 5), (7, 1)])
@pytest.mark.parametrize("size", [(7, 9), (1, 4), (2, 1), (5, 5)])
def test_cycle_fc_is_the_deformable_conv_with_constant_offsets(kernel_size, size):
    torch.manual_seed(0)
    theirs = ref.RefCycleFC(10, 6, kernel_size)
    nn.init.normal_(theirs.bias)
    fc = nn.Linear(10, 6)
    fc.load_state_dict(linears({k: v for k, v in theirs.state_dict().items() if k != "offset"}))
    kh, kw = kernel_size
    x = torch.randn(2, *size, 10)
    assert_close(fc(cycle_shift(x, max(kh, kw), axis=2 if kh == 1 else 1)), nhwc(theirs(nchw(x))))


@pytest.mark.parametrize("channels,shift", [(12, 5), (8, 5), (7, 3), (96, 5), (4, 7), (1, 3)])
@pytest.mark.parametrize("size", [(7, 9), (1, 1), (2, 5), (3, 3)])
def test_axial_shift_equals_the_official_pad_roll_crop(channels, shift, size):
    x = torch.randn(2, channels, *size)
    for dim in (2, 3):
        assert torch.equal(nchw(axial_shift(nhwc(x), shift, dim - 1)), ref.ref_axial_shift(x, shift, dim))


# ---- the mixers, against the reference token mixers ------------------------------------------------
def test_cycle_mixer_matches_reference():
    theirs = ref.randomize(ref.RefCycleMLP(12), std=0.3)
    ours = CycleMlp(12).eval()
    ours.load_state_dict(linears({k: v for k, v in theirs.state_dict().items() if not k.endswith("offset")}))
    x = torch.randn(2, 7, 9, 12)
    assert_close(ours(x), theirs(x))


def test_axial_shift_mixer_matches_reference():
    theirs = ref.randomize(ref.RefAxialShift(12, 5), std=0.3)
    ours = AxialShift(12, shift_size=5).eval()
    ours.load_state_dict(linears(theirs.state_dict()))
    x = torch.randn(2, 12, 7, 9)
    assert_close(nchw(ours(nhwc(x))), theirs(x))


@pytest.mark.parametrize("mode", ["fc", "depthwise"])
@pytest.mark.parametrize("train", [False, True])
def test_wave_mixer_matches_reference(mode, train):
    theirs = ref.randomize(ref.RefPATM(12, mode), std=0.3).train(train)
    ours = PhaseAwareMixing(12, mode=mode).train(train)
    ours.load_state_dict(linears(theirs.state_dict()))
    x = torch.randn(2, 12, 5, 6)
    assert_close(nchw(ours(nhwc(x))), theirs(x))
    if train:  # batch statistics over every position of the batch, as BatchNorm2d's
        bn_ours, bn_theirs = ours.theta_h_conv[1], theirs.theta_h_conv[1]
        assert torch.allclose(bn_ours.running_var, bn_theirs.running_var, atol=1e-6)


def test_sparse_mlp_mixer_matches_reference_and_is_resolution_tied():
    c, n = 12, 7
    theirs = ref.randomize(nn.Sequential(ref.RefDWConvBlock(c), ref.RefSMLPBlock(n, n, c)), std=0.3)
    s = theirs.state_dict()
    pre_norm = BatchNormNHWC(c).eval()  # the official DWConvBlock's BN is hiermlp's block norm1
    pre_norm.load_state_dict({k[len("0.conv_merge.BN.") :]: v for k, v in s.items() if "conv_merge.BN" in k})
    ours = SparseMlp(c, feat_size=(n, n)).eval()
    mixer_sd = {"dwconv.weight": s["0.conv_merge.Conv.weight"], "fuse.weight": s["1.fuse.weight"]}
    mixer_sd |= {"row_mlp.weight": s["1.proj_h.weight"], "row_mlp.bias": s["1.proj_h.bias"]}
    mixer_sd |= {"col_mlp.weight": s["1.proh_w.weight"], "col_mlp.bias": s["1.proh_w.bias"]}
    mixer_sd |= {"norm." + k[len("1.BN.") :]: v for k, v in s.items() if k.startswith("1.BN.")}
    ours.load_state_dict(linears(mixer_sd))
    x = torch.randn(2, c, n, n)
    assert_close(nchw(ours(pre_norm(nhwc(x)))), theirs(x))
    with pytest.raises(ShapeError, match=r"resolution-tied.*7x7"):
        ours(torch.randn(1, 8, 8, c))


# ---- conversion ------------------------------------------------------------------------------------
def test_cycle_converter_rejects_offsets_it_cannot_express():
    sd = ref.RefCycleNet(layers=(1, 1), embed_dims=(8, 16), mlp_ratios=(2, 2), num_classes=3).state_dict()
    assert convert_state_dict(sd)[0] == "cyclemlp"
    sd["network.0.0.attn.sfc_h.offset"] = sd["network.0.0.attn.sfc_h.offset"].flip(1)
    with pytest.raises(CheckpointError, match="offsets"):
        convert_state_dict(sd)


@pytest.mark.parametrize(
    "name,kwargs,layout",
    [
        ("cyclemlp_b1", dict(layers=(1, 1)), "cyclemlp"),
        ("asmlp_tiny_patch4_shift5_224", dict(depths=(1, 1)), "asmlp"),
        ("wavemlp_t", dict(layers=(1, 1)), "wavemlp"),
        ("smlpnet_tiny", dict(depths=(1, 1)), "smlpnet"),
    ],
)
def test_layouts_are_detected_and_do_not_collide(name, kwargs, layout):
    if name.startswith(("cyclemlp", "wavemlp")):
        m = ref.build_reference(name, embed_dims=(8, 16), mlp_ratios=(2, 2), **kwargs)
    elif name.startswith("asmlp"):
        m = ref.build_reference(name, embed_dim=8, **kwargs)
    else:
        m = ref.build_reference(name, dim=8, **kwargs)
    assert convert_state_dict(m.state_dict())[0] == layout
