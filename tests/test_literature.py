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

from hiermlp.errors import CheckpointError, ConfigError, ShapeError
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
    with pytest.raises(ConfigError, match="feat_size"):
        SparseMlp(c, feat_size=None)


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


# ---- whole models: official-layout reference -> load_checkpoint -> the same logits ------------------
EXPECTED_PARAMS = {
    "cyclemlp_b1": 15_155_400,
    "cyclemlp_b2": 26_802_504,
    "cyclemlp_b3": 38_385_720,
    "cyclemlp_b4": 51_796_552,
    "cyclemlp_b5": 75_747_280,
    "asmlp_tiny_patch4_shift5_224": 28_282_696,
    "asmlp_small_patch4_shift5_224": 49_594_696,
    "asmlp_base_patch4_shift5_224": 87_752_808,
    "wavemlp_t_dw": 15_286_472,
    "wavemlp_t": 17_193_160,
    "wavemlp_s": 30_708_040,
    "wavemlp_m": 44_056_632,
    "wavemlp_b": 63_586_360,
    "smlpnet_tiny": 24_123_584,
    "smlpnet_small": 48_558_136,
    "smlpnet_base": 65_880_408,
}
# GMACs at 224 from the papers (REFERENCE.md)
PAPER_GMACS = {
    "cyclemlp_b1": 2.1,
    "cyclemlp_b2": 3.9,
    "cyclemlp_b3": 6.9,
    "cyclemlp_b4": 10.1,
    "cyclemlp_b5": 12.3,
    "asmlp_tiny_patch4_shift5_224": 4.4,
    "asmlp_small_patch4_shift5_224": 8.5,
    "asmlp_base_patch4_shift5_224": 15.2,
    "wavemlp_t_dw": 2.1,
    "wavemlp_t": 2.4,
    "wavemlp_s": 4.5,
    "wavemlp_m": 7.9,
    "wavemlp_b": 10.2,
    "smlpnet_tiny": 5.0,
    "smlpnet_small": 10.3,
    "smlpnet_base": 14.0,
}

# Every multiply-add of a product in the official code is counted (hiermlp.bench.flops: one convention for
# every family) and every row is within 1.2% of its paper, except Wave-MLP-T and -T-dw: 2.6% and 3.0% above
# the papers' 2.4 and 2.1. Their count is exactly their products (test_wave_mlp_t_gmacs_are_its_products), no
# honest convention reaches the papers' figures (0.06 GMACs below it for both: the stem is 0.03, the grouped
# 1x7/7x1 convs 0.025) and the counting tools count more (thop, which the official README installs, 2.478 and
# 2.179; fvcore 2.471 and 2.172): the measured gap is kept, with that tolerance.
GMAC_TOLERANCE = {"wavemlp_t": 0.03, "wavemlp_t_dw": 0.035}

_PVT_MICRO = dict(embed_dims=(16, 32, 40, 48), layers=(1, 1, 2, 1))
# (zoo name, reference overrides, hiermlp overrides, odd input size or None)
MICRO = [
    ("cyclemlp_b1", dict(_PVT_MICRO, mlp_ratios=(4, 4, 4, 4)), {}, 201),
    ("wavemlp_t", dict(_PVT_MICRO, mlp_ratios=(4, 4, 4, 4)), {}, 201),
    ("wavemlp_t_dw", dict(_PVT_MICRO, mlp_ratios=(4, 4, 4, 4)), {}, None),
    ("wavemlp_m", dict(_PVT_MICRO, mlp_ratios=(8, 8, 4, 4)), {}, None),
    ("asmlp_tiny_patch4_shift5_224", dict(embed_dim=20, depths=(1, 1, 2, 1)), {}, 160),
    ("smlpnet_tiny", dict(dim=16, depths=(1, 1, 2, 1)), {}, None),
]


def micro_pair(name: str, ref_kwargs: dict):
    import hiermlp

    theirs = ref.randomize(ref.build_reference(name, num_classes=10, **ref_kwargs), seed=1)
    ours_kwargs = dict(num_classes=10)
    if "embed_dims" in ref_kwargs:
        ours_kwargs |= dict(embed_dim=ref_kwargs["embed_dims"], depths=ref_kwargs["layers"])
    else:
        ours_kwargs |= dict(embed_dim=ref_kwargs.get("embed_dim", ref_kwargs.get("dim")), depths=ref_kwargs["depths"])
    ours = hiermlp.create_model(name, **ours_kwargs).eval()
    result = hiermlp.load_checkpoint(ours, {"model": theirs.state_dict()})
    return theirs, ours, result


@pytest.mark.parametrize("name,ref_kwargs,_,odd", MICRO, ids=[m[0] for m in MICRO])
def test_official_weights_give_official_logits(name, ref_kwargs, _, odd):
    """Random weights and BatchNorm statistics in the official layout, auto-detected and converted: the
    same logits at 224 (accelerated, as create_model returns it, and plain) and at an odd size."""
    from hiermlp.accel import accelerate, is_accelerated, plain

    theirs, ours, result = micro_pair(name, ref_kwargs)
    assert result.layout == name.split("_")[0]
    assert not result.missing and not result.unexpected and is_accelerated(ours)
    x = torch.randn(1, 3, 224, 224)
    want = theirs(x)
    assert_close(ours(x), want)
    assert_close(plain(ours)(x), want)
    if odd:
        x = torch.randn(1, 3, odd, odd)
        if name.startswith("asmlp"):
            theirs.img_size = odd
        assert_close(accelerate(ours)(x), theirs(x))


def test_smlpnet_names_its_supported_size():
    import hiermlp

    model = hiermlp.create_model("smlpnet_tiny", embed_dim=16, depths=(1, 1, 1, 1), num_classes=3).eval()
    with pytest.raises(ShapeError, match=r"224x224"):
        model(torch.randn(1, 3, 256, 256))


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_zoo_rows_have_the_official_parameter_count(name):
    from hiermlp.models.registry import get_entry

    entry = get_entry(name)
    with torch.device("meta"):
        model = entry.builder(**entry.kwargs)
    assert sum(p.numel() for p in model.parameters()) == EXPECTED_PARAMS[name]


def zoo_gmacs(name: str) -> float:
    from hiermlp.bench import count_gmacs
    from hiermlp.models.registry import get_entry

    entry = get_entry(name)
    with torch.device("meta"):
        model = entry.builder(**entry.kwargs)
    return count_gmacs(model, device="meta")


@pytest.mark.parametrize("name", sorted(PAPER_GMACS))
def test_zoo_rows_have_the_papers_gmacs(name):
    from hiermlp.models.registry import get_entry

    gmacs = zoo_gmacs(name)
    assert abs(gmacs - PAPER_GMACS[name]) <= GMAC_TOLERANCE.get(name, 0.02) * PAPER_GMACS[name], gmacs
    assert f"{gmacs:.2f} GMACs (paper {PAPER_GMACS[name]})" in get_entry(name).notes  # the zoo note is true


def wave_t_macs(depthwise: bool) -> int:
    """Wave-MLP-T's multiply-adds at 224 by hand, from the official layout (embed dims 64/128/320/512, depths
    2/2/4/2, MLP ratio 4): stem, 3x3/2 transitions, per token and block ``fc_h, fc_w, fc_c, proj`` (4C^2),
    the phase maps (two 1x1: 2C^2; T-dw: two depthwise 3x3, 18C), ``tfc_h, tfc_w`` (two input channels per
    group times 7: 28C) and the MLP (8C^2); the re-weighting MLP once per image; the head."""
    dims, depths, size = (64, 128, 320, 512), (2, 2, 4, 2), 56
    macs = size * size * dims[0] * 3 * 7 * 7
    for i, (c, n) in enumerate(zip(dims, depths)):
        s = size >> i
        if i:
            macs += s * s * c * dims[i - 1] * 9
        phase = 2 * 9 * c if depthwise else 2 * c * c
        macs += n * (s * s * (4 * c * c + phase + 28 * c + 8 * c * c) + c * (c // 4) + (c // 4) * 3 * c)
    return macs + dims[-1] * 1000


@pytest.mark.parametrize("name", ["wavemlp_t", "wavemlp_t_dw"])
def test_wave_mlp_t_gmacs_are_its_products(name):
    """The two rows outside 2% of their paper (GMAC_TOLERANCE) count exactly their products."""
    assert zoo_gmacs(name) == pytest.approx(wave_t_macs(name.endswith("_dw")) / 1e9, rel=1e-9)


# ---- the framework's options with these mixers ----------------------------------------------------
def test_features_only_gives_the_official_stage_outputs():
    import hiermlp

    theirs = ref.randomize(ref.build_reference("cyclemlp_b1", num_classes=10, **MICRO[0][1]), seed=2)
    feats = hiermlp.create_model(
        "cyclemlp_b1", features_only=True, embed_dim=(16, 32, 40, 48), depths=(1, 1, 2, 1), num_classes=10
    )
    hiermlp.load_checkpoint(feats.eval(), theirs.state_dict())
    assert feats.feature_info.channels() == [16, 32, 40, 48]
    assert feats.feature_info.reduction() == [4, 8, 16, 32]
    x = torch.randn(1, 3, 97, 75)  # any size: the overlapping stem and conv transitions take it
    y = theirs.patch_embed(x).permute(0, 2, 3, 1)
    want = []
    for m in theirs.network:
        y = m(y)
        if isinstance(m, nn.Sequential):
            want.append(nchw(y))
    got = feats(x)
    assert [tuple(g.shape) for g in got] == [tuple(w.shape) for w in want]
    for g, w in zip(got, want):
        assert_close(g, w)


def test_literature_mixers_in_swin_stages_train_at_any_size():
    """A hybrid per stage in Swin's hierarchy (patch embed, patch merging, LayerNorm): every mixer parameter
    gets a gradient, at a size that is no window multiple."""
    import hiermlp

    model = hiermlp.create_model(
        "swin_tiny_patch4_window7_224",
        embed_dim=16,
        depths=(1, 1, 1, 1),
        num_heads=(1, 2, 4, 8),
        mixer=("cycle", "axial_shift", "wave", "attention"),
        num_classes=5,
    )
    assert [type(s.blocks[0].mixer) for s in model.stages[:3]] == [CycleMlp, AxialShift, PhaseAwareMixing]
    with torch.enable_grad():
        out = model(torch.randn(2, 3, 75, 61))
        assert out.shape == (2, 5)
        out.square().sum().backward()
    for name, p in model.named_parameters():
        if ".mixer." in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sparse_mlp_in_another_hierarchy_takes_its_stage_size():
    import hiermlp

    model = hiermlp.create_model(
        "swin_tiny_patch4_window7_224",
        img_size=64,
        embed_dim=16,
        depths=(1, 1),
        num_heads=(1, 2),
        mixer=("attention", "smlp"),
        num_classes=3,
    ).eval()
    assert model.stages[1].blocks[0].mixer.feat_size == (8, 8)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
    with pytest.raises(ShapeError, match=r"resolution-tied.*8x8"):
        model(torch.randn(1, 3, 96, 96))


def test_zoo_rows_are_listed_and_mirrored_into_timm():
    import timm

    import hiermlp

    assert set(EXPECTED_PARAMS) <= set(hiermlp.list_models())
    assert {f"hiermlp_{n}" for n in EXPECTED_PARAMS} <= set(timm.list_models("hiermlp_*"))
    model = timm.create_model("hiermlp_wavemlp_t", embed_dim=(8, 16, 24, 32), depths=(1, 1, 1, 1), num_classes=4)
    assert model.pretrained_cfg["url"].endswith("WaveMLP_T.pth.tar")
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 4)
