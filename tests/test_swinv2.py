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

import hiermlp
from hiermlp import accel
from hiermlp.bench import count_gmacs
from hiermlp.errors import CheckpointError, ConfigError
from hiermlp.layers.cpb import log_spaced_coords
from hiermlp.mixers import CosineWindowAttention
from hiermlp.models.block import HierBlock
from hiermlp.models.zoo_micro import MICRO_VARIANTS
from hiermlp.models.zoo_swinv2 import SWINV2_ALIASES
from hiermlp.ops import window_mask
from hiermlp.testing import fast
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


# ---- whole models: the zoo rows against timm and the reference --------------------------------------
# timm 1.0.31's counts with each row's own head
PARAMS = {
    "swinv2_tiny_window8_256": 28_347_154,
    "swinv2_tiny_window16_256": 28_347_154,
    "swinv2_small_window8_256": 49_728_418,
    "swinv2_small_window16_256": 49_728_418,
    "swinv2_base_window8_256": 87_918_816,
    "swinv2_base_window16_256": 87_918_816,
    "swinv2_base_window12_192": 109_280_841,
    "swinv2_base_window12to16_192to256": 87_918_816,
    "swinv2_base_window12to24_192to384": 87_918_816,
    "swinv2_large_window12_192": 228_772_549,
    "swinv2_large_window12to16_192to256": 196_739_932,
    "swinv2_large_window12to24_192to384": 196_739_932,
}
# GMACs at each row's own size: hiermlp's count (torch.utils.flop_counter, the README's figure; it includes the
# CPB MLP, which the reference's analytic count leaves out) and the paper's / reference code's where given
GMACS = {
    "swinv2_tiny_window8_256": (5.94, 5.9),
    "swinv2_tiny_window16_256": (6.66, 6.6),
    "swinv2_small_window8_256": (11.55, 11.5),
    "swinv2_small_window16_256": (12.78, None),
    "swinv2_base_window8_256": (20.33, 20.3),
    "swinv2_base_window16_256": (21.97, None),
    "swinv2_base_window12_192": (11.88, None),
    "swinv2_base_window12to16_192to256": (21.97, None),
    "swinv2_base_window12to24_192to384": (55.15, None),
    "swinv2_large_window12_192": (26.13, None),
    "swinv2_large_window12to16_192to256": (47.74, None),
    "swinv2_large_window12to24_192to384": (115.99, None),
}
TOL = 1e-5  # max abs difference relative to the reference's largest value


def meta_model(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):  # no memory, no init: counting only
        return hiermlp.create_model(name, **kwargs)


def empty_model(name: str, **kwargs) -> torch.nn.Module:
    """A model with uninitialised CPU weights (skips init, for time): only for loading a full checkpoint into,
    which ``load_checkpoint`` checks (strict: no key missing)."""
    return meta_model(name, **kwargs).to_empty(device="cpu").eval()


def test_zoo_rows_are_timms_models():
    """Every row: timm's exact parameter count and state-dict shapes, its window rule, the cfg, the GMACs."""
    assert sorted(set(hiermlp.list_models("swinv2_*")) - set(MICRO_VARIANTS)) == sorted(PARAMS)  # timm's rows
    for name, n in PARAMS.items():
        ours = meta_model(name)
        with torch.device("meta"):
            theirs = timm.create_model(name)
        assert sum(p.numel() for p in ours.parameters()) == n, name
        assert {k: v.shape for k, v in ours.state_dict().items()} == {
            k: v.shape for k, v in convert_state_dict(theirs.state_dict())[1].items()
        }, name
        ours_gmacs, paper = GMACS[name]
        gmacs = count_gmacs(ours, ours.pretrained_cfg["input_size"], device="meta")
        assert gmacs == pytest.approx(ours_gmacs, abs=0.005), name
        assert paper is None or gmacs == pytest.approx(paper, rel=0.02), name
        assert ours.pretrained_cfg["hf_hub_id"].startswith(f"timm/{name}.")
        # the official file is named by the Microsoft config name, which SWINV2_ALIASES maps to this row
        ms = next(a for a, n in SWINV2_ALIASES.items() if n == name)
        assert (
            ours.pretrained_cfg["url"]
            == f"https://github.com/SwinTransformer/storage/releases/download/v2.0.0/{ms}.pth"
        )
        # the window per stage and the shift follow timm's rule (clamped to the map, then unshifted)
        for stage, layer in zip(ours.stages, theirs.layers):
            blocks = list(layer.blocks)
            assert stage.window_size == blocks[0].window_size, name
            assert stage.shift_size == blocks[-1].shift_size, name
            mixer = stage.blocks[0].mixer
            assert mixer.pretrained_window_size == tuple(blocks[0].attn.pretrained_window_size), name


def v2_checkpoint_pair(name: str, img: int, **kwargs):
    """A random reference V2 (official layout) and timm's model of the same name holding its weights."""
    entry = hiermlp.models.registry.get_entry(name).kwargs
    windows = [m.get("pretrained_window_size", 0) for m in entry.get("mixer_kwargs") or ({},) * 4]
    ref = SwinV2Reference(
        img_size=img,
        embed_dim=entry["embed_dim"],
        depths=kwargs.get("depths", entry["depths"]),
        num_heads=entry["num_heads"],
        window_size=entry["window_size"],
        pretrained_window_sizes=windows,
        num_classes=entry.get("num_classes", 1000),
    )
    randomize_v2_(ref).eval()
    theirs = timm.create_model(name, **kwargs).eval()
    theirs.load_state_dict(checkpoint_filter_fn({"model": ref.state_dict()}, theirs))
    return ref, theirs


def outputs(model, x) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and every stage's map (NCHW) from one forward pass (timm's or hiermlp's model API)."""
    with torch.no_grad():
        final, feats = model.forward_intermediates(x)
        return model.forward_head(final), feats


def assert_matches(ours, ref_logits, ref_feats, x, reference=None):
    """Logits and every stage's map within TOL of the reference with the plain modules (timm's kernels); the
    speed layer (as created, and with its opt-in oneDNN linears, which sum in another order) within 1e-4
    (tests/test_swin.py does the same for V1). Through 12-24 res-post blocks of random weights two float32
    summation orders can drift further apart than that (1.05e-4 of the largest stage-4 feature of
    swinv2_small_window16_256 on one Xeon, where timm's own float32 run was 2.5e-4 from a float64 run of the same
    weights): there the speed layer must be no further from the float64 run of ``reference`` than twice timm's
    float32 error."""
    exact = None
    for on, onednn, tol in ((False, False, TOL), (True, False, 10 * TOL), (True, True, 10 * TOL)):
        with fast(ours, on), accel.override(onednn=onednn):
            logits, feats = outputs(ours, x)
        assert len(feats) == len(ref_feats)
        pairs = list(zip([logits, *feats], [ref_logits, *ref_feats]))
        if not on or all(rel_err(a, b) <= tol for a, b in pairs):
            assert all(rel_err(a, b) <= tol for a, b in pairs), on
            continue
        assert reference is not None, (on, onednn, [rel_err(a, b) for a, b in pairs])
        if exact is None:
            exact = outputs(copy.deepcopy(reference).double(), x.double())
        for (a, b), e in zip(pairs, [exact[0], *exact[1]]):
            assert rel_err(a.double(), e) <= 2 * rel_err(b.double(), e) + TOL, (on, onednn)


@pytest.mark.parametrize("name", ["swinv2_tiny_window8_256", "swinv2_small_window16_256"])
def test_full_model_matches_timm_and_the_microsoft_layout(name, tmp_path):
    ref, theirs = v2_checkpoint_pair(name, 256)
    x = torch.randn(1, 3, 256, 256)
    logits, feats = outputs(theirs, x)
    with torch.no_grad():
        ref_feats, final = ref.stage_outputs(x)
        assert rel_err(ref.head(final.mean(1)), logits) <= 1e-6  # two independent formulations agree first
    for a, b in zip(ref_feats, feats):
        assert rel_err(a, b) <= 1e-6
    # timm's layout
    ours = empty_model(name)
    result = hiermlp.load_checkpoint(ours, theirs.state_dict())
    assert result.layout == "timm_swinv2" and not result.missing and not result.unexpected
    assert_matches(ours, logits, feats, x, theirs)
    # the official layout as the reference writes it ({'model': sd}, buffers included): the same model exactly
    official = {"model": ref.state_dict(), "epoch": 300}
    if name == "swinv2_tiny_window8_256":  # once through a file and create_model(checkpoint_path=...)
        torch.save(official, tmp_path / f"{name}.pth")
        from_ms = hiermlp.create_model(name, checkpoint_path=tmp_path / f"{name}.pth")
    else:
        from_ms = empty_model(name)
        assert hiermlp.load_checkpoint(from_ms, official).layout == "microsoft_swinv2"
    expected = ours.state_dict()
    assert from_ms.state_dict().keys() == expected.keys()
    for k, v in from_ms.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_window_transfer_from_a_window12_checkpoint(tmp_path):
    """window12 (192 px, 22K head) weights into the 12to16 row at 256 px: the CPB MLP extrapolates to the
    larger window, no table is resized, and the result is timm's same-named model on the same weights.
    Reduced depth (2, 2, 2, 2) and no head, for time; the window scheme (16 clamped to 8 in stage 4, pretrained
    (12, 12, 12, 6)) is the full model's."""
    kw = dict(depths=(2, 2, 2, 2), num_classes=0)  # headless: the transfer is in the blocks
    source = randomize_v2_(timm.create_model("swinv2_base_window12_192", **kw)).eval()
    path = tmp_path / "window12.pth"
    torch.save(source.state_dict(), path)
    ours = empty_model("swinv2_base_window12to16_192to256", **kw)
    assert hiermlp.load_checkpoint(ours, path).layout == "timm_swinv2"
    theirs = timm.create_model("swinv2_base_window12to16_192to256", **kw).eval()
    theirs.load_state_dict(source.state_dict())
    windows = [(s.window_size, s.blocks[0].mixer.pretrained_window_size) for s in ours.stages]
    assert windows == [((16, 16), (12, 12))] * 3 + [((8, 8), (6, 6))]
    x = torch.randn(1, 3, 256, 256)
    assert_matches(ours, *outputs(theirs, x), x, theirs)


# ---- everything the framework gives V1 ---------------------------------------------------------------
V2_SMALL_NET = dict(
    **SMALL_V2, num_classes=5, drop_path_rate=0.0, mixer="cosine_attention", norm_placement="res_post"
) | dict(downsample="patch_merging_v2")


def small_v2_model(**kwargs) -> torch.nn.Module:
    return randomize_v2_(hiermlp.HierNet(**(V2_SMALL_NET | kwargs))).eval()


def test_small_network_equals_timm():
    """The same config through HierNet directly (no zoo row) is timm's SwinTransformerV2."""
    t = small_timm()
    ours = hiermlp.HierNet(
        **(V2_SMALL_NET | dict(num_classes=7)), mixer_kwargs=tuple(dict(pretrained_window_size=p) for p in (4, 3, 0, 2))
    )
    hiermlp.load_checkpoint(ours, randomize_v2_(t).state_dict())
    x = torch.randn(2, 3, 64, 64)
    logits, feats = outputs(t, x)
    assert_matches(ours.eval(), logits, feats, x, t)


@pytest.mark.parametrize("size", [(9, 11), (13, 6), (5, 5)])
def test_shifted_cosine_window_never_mixes_across_the_border(size):
    """Perturb the bottom-right token: nothing at the top or left border may change, at window multiples or not
    (the -100 of the reference leaves exp(-100)-sized weights, far below the threshold)."""
    h, w = size
    block = HierBlock(
        dim=8, num_heads=2, window_size=(4, 4), shift_size=(2, 2), mixer="cosine_attention", norm_placement="res_post"
    )
    randomize_v2_(block).eval()
    x = torch.randn(1, h, w, 8)
    x2 = x.clone()
    x2[0, h - 1, w - 1] += torch.randn(8)
    with torch.no_grad():
        changed = (block(x) - block(x2)).abs().amax(-1)[0] > 1e-6
    rows, cols = changed.nonzero(as_tuple=True)
    assert changed[h - 1, w - 1]
    assert rows.min() >= h - 4 and cols.min() >= w - 4, f"leak into {list(zip(rows.tolist(), cols.tolist()))}"


def test_any_input_size_and_backbone():
    model = hiermlp.create_model("swinv2_tiny_window8_256", num_classes=3).eval()
    with torch.no_grad():
        feats = model.forward_intermediates(torch.randn(1, 3, 200, 300), intermediates_only=True)
    # 200x300 -> patches 50x75 -> 25x38 -> 13x19 -> 7x10 (each merge rounds up)
    assert [tuple(f.shape[2:]) for f in feats] == [(50, 75), (25, 38), (13, 19), (7, 10)]
    backbone = empty_model("swinv2_tiny_window8_256", features_only=True, out_indices=(1, 2, 3))
    hiermlp.load_checkpoint(backbone, model.state_dict())  # a full checkpoint loads into the backbone
    assert backbone.feature_info.channels() == [192, 384, 768] and backbone.feature_info.reduction() == [8, 16, 32]
    x = torch.randn(1, 3, 160, 96)
    with torch.no_grad():
        outs, full = backbone(x), model.forward_intermediates(x, indices=(1, 2, 3), intermediates_only=True)
    assert [tuple(o.shape) for o in outs] == [(1, 192, 20, 12), (1, 384, 10, 6), (1, 768, 5, 3)]
    for a, b in zip(outs, full):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_hybrid_across_versions_trains():
    """V2 attention is just a mixer: Swin-MLP mixers in stages 1-2, cosine attention in 3-4, res-post norms."""
    model = hiermlp.HierNet(
        **(V2_SMALL_NET | dict(mixer=("spatial_mlp", "spatial_mlp", "cosine_attention", "cosine_attention")))
    )
    assert [type(s.blocks[0].mixer).__name__ for s in model.stages] == ["SpatialMlp"] * 2 + [
        "CosineWindowAttention"
    ] * 2
    x, y = torch.randn(2, 3, 64, 48), torch.randint(0, 5, (2,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # and a V2 block in a V1 network: cosine attention with res-post norms in the last two stages only
    mixed = hiermlp.HierNet(
        **(SMALL_V2 | dict(num_classes=5)),
        mixer=("attention", "attention", "cosine_attention", "cosine_attention"),
        norm_placement=("pre", "pre", "res_post", "res_post"),
    )
    assert mixed(x).shape == (2, 5)


def test_readme_window_change_equals_timm(tmp_path):
    """The README's fine-tune call: window-8 weights at window 16 with pretrained_window_size=8 is timm's
    window-16 model with pretrained_window_sizes (8, 8, 8, 8) on the same weights. Reduced depth for time."""
    depths = (2, 2, 2, 2)
    source = randomize_v2_(timm.create_model("swinv2_tiny_window8_256", depths=depths))
    path = tmp_path / "swinv2_tiny_patch4_window8_256.pth"
    torch.save({"model": source.state_dict()}, path)
    ours = hiermlp.create_model(
        "swinv2_tiny_window8_256",
        window_size=16,
        mixer_kwargs=dict(pretrained_window_size=8),
        checkpoint_path=path,
        depths=depths,
    ).eval()
    theirs = timm.create_model("swinv2_tiny_window16_256", pretrained_window_sizes=(8,) * 4, depths=depths).eval()
    theirs.load_state_dict(source.state_dict())
    assert [s.window_size for s in ours.stages] == [(16, 16), (16, 16), (16, 16), (8, 8)]
    x = torch.randn(1, 3, 256, 256)
    assert_matches(ours, *outputs(theirs, x), x, theirs)


def test_microsoft_config_names_are_aliases():
    from hiermlp.models.zoo_swinv2 import SWINV2_ALIASES

    assert SWINV2_ALIASES["swinv2_tiny_patch4_window8_256"] == "swinv2_tiny_window8_256"
    with torch.device("meta"):
        model = hiermlp.create_model("swinv2_tiny_patch4_window8_256", num_classes=3)
    assert model.pretrained_cfg["architecture"] == "swinv2_tiny_window8_256"
    assert hiermlp.models.is_model("swinv2_tiny_patch4_window8_256")
    assert "swinv2_tiny_patch4_window8_256" not in hiermlp.list_models()  # listed once, under timm's name
