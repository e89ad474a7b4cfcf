"""Swin Transformer V2: the cosine-attention mixer, its position bias, checkpoints and the zoo, against timm and
an independent reference in the Microsoft layout (hiermlp.testing.swinv2_reference)."""

from __future__ import annotations

import copy
import math

import pytest
import timm
import torch
from timm.models.swin_transformer_v2 import WindowAttention as TimmWindowAttentionV2
from timm.models.swin_transformer_v2 import checkpoint_filter_fn

from hiermlp.errors import CheckpointError, ConfigError
from hiermlp.layers.cpb import log_spaced_coords
from hiermlp.mixers import CosineWindowAttention
from hiermlp.ops import window_mask
from hiermlp.testing.swinv2_reference import SwinV2Reference
from hiermlp.weights import convert_state_dict

# a V2 small enough for unit tests: maps 16, 8, 4, 2 at 64 px, so stage 3 clamps the window to its map and
# stage 4 to a 2x2 map, both without shift
SMALL_V2 = dict(img_size=64, patch_size=4, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=4)


def randomize_v2_(model: torch.nn.Module) -> torch.nn.Module:
    """Every tensor matters: noise on all weights, norms around 1 (the res-post norms init to 0), and logit
    scales spread over ``[log 2, log 200]``, so the clamp at ``log 100`` is exercised too."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                p.copy_(torch.empty_like(p).uniform_(math.log(2.0), math.log(200.0)))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.add_(torch.randn_like(p) * 0.05)
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference relative to the scale of the reference (the issue's "relative to the logit scale")."""
    return ((a - b).abs().max() / b.abs().max()).item()


# ---- the mixer against timm's WindowAttention -------------------------------------------------------
@pytest.mark.parametrize(
    ("window", "pretrained", "heads"),
    [((8, 8), (0, 0), 3), ((8, 8), (6, 6), 2), ((4, 6), (0, 0), 2), ((16, 16), (12, 12), 4), ((1, 1), (0, 0), 1)],
)
def test_cosine_attention_matches_timm(window, pretrained, heads):
    dim = 12 * heads
    theirs = randomize_v2_(
        TimmWindowAttentionV2(dim, window_size=window, num_heads=heads, pretrained_window_size=pretrained)
    )
    ours = CosineWindowAttention(dim, window_size=window, num_heads=heads, pretrained_window_size=pretrained)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # the same parameter names, no buffers to carry
    n = window[0] * window[1]
    x = torch.randn(2 * 4, n, dim)
    shift = (window[0] // 2, window[1] // 2)
    mask = window_mask((2 * window[0], 2 * window[1]), window, shift)  # (4, N, N) bool
    additive = torch.zeros(mask.shape).masked_fill(~mask, -100.0)  # the reference's form
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-6)
        masked = theirs(x, additive)
        torch.testing.assert_close(ours(x, mask), masked, atol=1e-6, rtol=1e-6)
        if any(shift):  # the mask really changes the result (so the comparison above tests it)
            assert (masked - theirs(x)).abs().max() > 1e-3


def test_cosine_attention_gradients_match_timm():
    theirs = randomize_v2_(TimmWindowAttentionV2(32, window_size=(4, 4), num_heads=2, pretrained_window_size=(3, 3)))
    ours = CosineWindowAttention(32, window_size=(4, 4), num_heads=2, pretrained_window_size=3)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(8, 16, 32)
    mask = window_mask((8, 8), (4, 4), (2, 2))
    theirs(x, torch.zeros(mask.shape).masked_fill(~mask, -100.0)).square().sum().backward()
    ours(x, mask).square().sum().backward()
    mine = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        torch.testing.assert_close(mine[name].grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_log_spaced_coords_are_the_reference_table():
    for window, pretrained in (((8, 8), (0, 0)), ((16, 16), (12, 12)), ((8, 8), (6, 6)), ((3, 5), (0, 0))):
        attn = TimmWindowAttentionV2(8, window_size=window, num_heads=1, pretrained_window_size=pretrained)
        torch.testing.assert_close(log_spaced_coords(window, pretrained), attn.relative_coords_table[0], rtol=0, atol=0)
    # normalised by the pretrained window: the window-12 coordinates sit inside the window-16 table unchanged
    small, large = log_spaced_coords((12, 12), (12, 12)), log_spaced_coords((16, 16), (12, 12))
    torch.testing.assert_close(large[4:-4, 4:-4], small, rtol=0, atol=0)
    assert large.abs().max() > small.abs().max()


def test_state_dict_holds_parameters_only():
    m = CosineWindowAttention(16, window_size=(4, 4), num_heads=2)
    expected = "qkv.weight q_bias v_bias logit_scale cpb_mlp.0.weight cpb_mlp.0.bias cpb_mlp.2.weight proj.weight"
    expected += " proj.bias"
    assert sorted(m.state_dict()) == sorted(expected.split())
    assert CosineWindowAttention(16, window_size=(4, 4), num_heads=2, qkv_bias=False).q_bias is None


def test_position_bias_follows_every_way_of_changing_weights():
    """The bias is derived from cpb_mlp on every forward: no edit of the weights can leave it stale."""
    theirs = randomize_v2_(TimmWindowAttentionV2(16, window_size=(4, 4), num_heads=2, pretrained_window_size=(0, 0)))
    ours = CosineWindowAttention(16, window_size=(4, 4), num_heads=2).eval()
    x = torch.randn(2, 16, 16)
    with torch.no_grad():
        before = ours(x)  # a first forward with the init weights (would fill any cache)
        ours.load_state_dict(copy.deepcopy(theirs.state_dict()), assign=True)  # own tensors, not shared
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-6)
        for m in (theirs, ours):
            m.cpb_mlp[2].weight.data = m.cpb_mlp[2].weight.data * 3  # a .data edit
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-6)
        clone = copy.deepcopy(ours)
        clone.cpb_mlp[0].bias.add_(1.0)
        theirs.cpb_mlp[0].bias.add_(1.0)
        torch.testing.assert_close(clone(x), theirs(x), atol=1e-6, rtol=1e-6)
        assert (clone(x) - ours(x)).abs().max() > 1e-4 and (before - ours(x)).abs().max() > 1e-4
        ours.to(torch.float64)
        torch.testing.assert_close(ours(x.double()).float(), ours.float()(x), atol=1e-5, rtol=1e-5)


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="divide"):
        CosineWindowAttention(10, window_size=(4, 4), num_heads=3)
    with pytest.raises(ConfigError, match="pretrained_window_size"):
        CosineWindowAttention(8, window_size=(4, 4), num_heads=2, pretrained_window_size=-1)
    with pytest.raises(ConfigError, match="needs a window"):
        CosineWindowAttention(8, window_size=None, num_heads=2)


# ---- the reference and the checkpoint layouts -------------------------------------------------------
def small_reference() -> SwinV2Reference:
    kw = {k: v for k, v in SMALL_V2.items()}
    return randomize_v2_(SwinV2Reference(**kw, num_classes=7, pretrained_window_sizes=(4, 3, 0, 2))).eval()


def small_timm(**kw) -> torch.nn.Module:
    return timm.create_model(
        "swinv2_tiny_window8_256", **SMALL_V2, num_classes=7, pretrained_window_sizes=(4, 3, 0, 2), **kw
    ).eval()


def test_reference_is_timm():
    """The independent reference and timm compute the same function (bit for bit here) from one checkpoint."""
    ref = small_reference()
    t = small_timm()
    t.load_state_dict(checkpoint_filter_fn({"model": ref.state_dict()}, t))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats, _ = ref.stage_outputs(x)
        torch.testing.assert_close(ref(x), t(x), atol=1e-6, rtol=1e-6)
        for a, b in zip(feats, t.forward_intermediates(x, intermediates_only=True)):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_layouts_are_detected_before_v1():
    ref_sd = small_reference().state_dict()
    assert {"layers.0.blocks.1.attn_mask", "layers.0.blocks.0.attn.relative_coords_table"} <= set(ref_sd)
    layout, sd = convert_state_dict(ref_sd)
    assert layout == "microsoft_swinv2"
    assert "stages.1.downsample.reduction.weight" in sd and "head.fc.weight" in sd
    assert "stages.0.blocks.0.mixer.cpb_mlp.2.weight" in sd and "stages.0.blocks.0.mixer.q_bias" in sd
    assert not any(k.endswith(("attn_mask", "relative_coords_table", "relative_position_index")) for k in sd)
    layout, sd2 = convert_state_dict(small_timm().state_dict())
    assert layout == "timm_swinv2" and sd2.keys() == sd.keys()
    # V1 files keep their converters
    assert convert_state_dict(timm.create_model("swin_tiny_patch4_window7_224", depths=(1, 1)).state_dict())[0] == (
        "timm_swin"
    )


def test_nonzero_key_bias_is_refused():
    sd = small_timm().state_dict()
    sd["layers.0.blocks.0.attn.k_bias"] = torch.ones(16)
    with pytest.raises(CheckpointError, match="k_bias"):
        convert_state_dict(sd)
    sd["layers.0.blocks.0.attn.k_bias"] = torch.zeros(16)
    assert "stages.0.blocks.0.mixer.k_bias" not in convert_state_dict(sd)[1]
