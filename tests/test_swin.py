"""The Swin Transformer, exact to timm's and to the Microsoft reference layout."""

import re

import pytest
import timm
import torch
import torch.nn.functional as F

import hiermlp
from hiermlp import accel
from hiermlp.models.block import HierBlock
from hiermlp.testing import fast

from .conftest import TINY_SWIN, randomize_

ATOL = 1e-5
# the speed layer's opt-in oneDNN linears (hiermlp.accel.linear) and timm's MKL linears sum
# in different orders: through 12-24 blocks of random weights single features then differ by up to ~1.5e-5
# (about 100 ulps at magnitude 1). The fast model is held to ATOL_ONEDNN elementwise (plus PyTorch's float32
# default rtol); the plain model (the reference modules) runs timm's kernels and the strict ATOL applies.
ATOL_ONEDNN = 3e-5
RTOL = 1.3e-6


def to_microsoft_layout(timm_sd: dict) -> dict:
    """Rewrite a timm Swin state dict the way the reference code stores it (merging at stage ends, head.*)."""
    sd = {}
    for k, v in timm_sd.items():
        k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        sd[k.replace("head.fc.", "head.")] = v
    # the reference also stores the non-persistent buffers
    sd["layers.0.blocks.1.attn_mask"] = torch.zeros(64, 49, 49)
    sd["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    return {"model": sd, "epoch": 300}


def assert_same(timm_model, ours, x):
    with torch.no_grad():
        a = timm_model(x)
        fa = timm_model.forward_intermediates(x, intermediates_only=True)
        # the speed layer as created (MKL linears), with its opt-in oneDNN linears, and the plain modules
        for on, onednn, atol in ((True, False, ATOL_ONEDNN), (True, True, ATOL_ONEDNN), (False, False, ATOL)):
            with fast(ours, on), accel.override(onednn=onednn):
                b = ours(x)
                fb = ours.forward_intermediates(x, intermediates_only=True)
            torch.testing.assert_close(b, a, atol=atol, rtol=RTOL)
            assert len(fa) == len(fb)
            for u, v in zip(fa, fb):
                torch.testing.assert_close(v, u, atol=atol, rtol=RTOL)


@pytest.fixture(scope="module")
def timm_swin_t():
    torch.manual_seed(0)
    return randomize_(timm.create_model("swin_tiny_patch4_window7_224")).eval()


def test_swin_t_matches_timm(timm_swin_t):
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224").eval()
    result = hiermlp.load_checkpoint(ours, timm_swin_t.state_dict())
    assert result.layout == "timm_swin" and not result.missing and not result.unexpected
    assert_same(timm_swin_t, ours, torch.randn(2, 3, 224, 224))


def test_swin_t_matches_microsoft_layout(timm_swin_t, tmp_path):
    path = tmp_path / "swin_tiny_patch4_window7_224.pth"
    torch.save(to_microsoft_layout(timm_swin_t.state_dict()), path)
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224", checkpoint_path=path).eval()
    assert_same(timm_swin_t, ours, torch.randn(1, 3, 224, 224))
    assert hiermlp.load_checkpoint(ours, path).layout == "microsoft_swin"


def test_swin_b_reduced_input_matches_timm():
    # Swin-B at 112: stage 4 is a 4x4 map, so the window is clamped to 4 and the shift turned off there
    t = randomize_(timm.create_model("swin_base_patch4_window7_224", img_size=112)).eval()
    ours = hiermlp.create_model("swin_base_patch4_window7_224", img_size=112).eval()
    hiermlp.load_checkpoint(ours, t.state_dict())
    assert ours.stages[3].window_size == (4, 4) and ours.stages[3].shift_size == (0, 0)
    assert_same(t, ours, torch.randn(1, 3, 112, 112))


def test_window_change_resizes_tables_bicubically(timm_swin_t):
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224", window_size=12, img_size=384)
    result = hiermlp.load_checkpoint(ours, timm_swin_t.state_dict())
    # stage 4 at 384 is a 12x12 map: window 12, so every table is resized 13x13 -> 23x23
    assert len(result.resized) == 12
    old = timm_swin_t.layers[1].blocks[0].attn.relative_position_bias_table
    expected = F.interpolate(old.T.reshape(1, 6, 13, 13), size=(23, 23), mode="bicubic", align_corners=False)
    got = ours.stages[1].blocks[0].mixer.rel_pos.relative_position_bias_table
    assert got.shape == (23 * 23, 6)
    torch.testing.assert_close(got, expected.reshape(6, -1).T, rtol=0, atol=0)


def test_arbitrary_input_sizes():
    model = hiermlp.create_model("swin_tiny_patch4_window7_224").eval()
    x = torch.randn(1, 3, 200, 300)
    with torch.no_grad():
        assert model(x).shape == (1, 1000)
        feats = model.forward_intermediates(x, intermediates_only=True)
    # 200x300 -> patches 50x75 -> 25x38 -> 13x19 -> 7x10 (each merge rounds up)
    assert [tuple(f.shape[2:]) for f in feats] == [(50, 75), (25, 38), (13, 19), (7, 10)]


@pytest.mark.parametrize("size", [(9, 11), (13, 6), (5, 5)])
def test_shifted_window_never_mixes_across_the_border(size):
    """Perturb the bottom-right token: nothing at the top or left border may change.

    With a cyclic shift the bottom-right token wraps into the same window as the top-left ones; the mask
    must keep them apart at every size, multiples of the window or not (timm 1.0.31 rolls before padding
    and leaks here).
    """
    torch.manual_seed(0)
    h, w = size
    block = HierBlock(dim=8, num_heads=2, window_size=(4, 4), shift_size=(2, 2), mlp_ratio=0).eval()
    x = torch.randn(1, h, w, 8)
    x2 = x.clone()
    x2[0, h - 1, w - 1] += torch.randn(8)  # not a constant: LayerNorm would remove it
    with torch.no_grad():
        changed = (block(x) - block(x2)).abs().amax(-1)[0] > 1e-6
    # only tokens in the perturbed token's own shifted window (rows/cols near the end) may change
    rows, cols = changed.nonzero(as_tuple=True)
    assert changed[h - 1, w - 1]
    assert rows.min() >= h - 4 and cols.min() >= w - 4, f"leak into {list(zip(rows.tolist(), cols.tolist()))}"


def test_timm_leaks_where_hiermlp_does_not():
    """The perturbation test above catches timm's roll-before-pad at non-multiple sizes."""
    torch.manual_seed(0)
    t = timm.create_model(
        "swin_tiny_patch4_window7_224",
        img_size=(36, 36),
        window_size=4,
        embed_dim=8,
        depths=(2,),
        num_heads=(2,),
        strict_img_size=False,
    ).eval()
    blk = t.layers[0].blocks[1]
    blk.set_input_size((9, 9), (4, 4))  # a 9x9 map, not a window multiple
    x = torch.randn(1, 9, 9, 8)
    x2 = x.clone()
    x2[0, 8, 8] += torch.randn(8)
    with torch.no_grad():
        leaked = (blk(x) - blk(x2)).abs().amax(-1)[0, 0, 0] > 1e-6
    if not leaked:
        pytest.skip("this timm version no longer leaks across the border")
    assert leaked


def test_tiny_swin_trains_one_step():
    model = hiermlp.HierNet(**TINY_SWIN)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    decay_free = model.no_weight_decay()
    assert decay_free and all(n.endswith("relative_position_bias_table") for n in decay_free)


def test_grad_checkpointing_same_gradients():
    torch.manual_seed(0)
    a = hiermlp.HierNet(**TINY_SWIN)
    b = hiermlp.HierNet(**TINY_SWIN)
    b.load_state_dict(a.state_dict())
    b.set_grad_checkpointing(True)
    x = torch.randn(2, 3, 32, 32)
    a(x).sum().backward()
    b(x).sum().backward()
    for (n, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)


def test_features_only_and_backbone_api():
    f = hiermlp.create_model("swin_tiny_patch4_window7_224", features_only=True, out_indices=(1, 2, 3))
    assert f.feature_info.channels() == [192, 384, 768] and f.feature_info.reduction() == [8, 16, 32]
    outs = f(torch.randn(1, 3, 160, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 192, 20, 12), (1, 384, 10, 6), (1, 768, 5, 3)]
    nhwc = hiermlp.create_model("swin_tiny_patch4_window7_224", features_only=True, output_fmt="NHWC", out_indices=(0,))
    assert nhwc(torch.randn(1, 3, 64, 64))[0].shape == (1, 16, 16, 96)
    # a full checkpoint loads into the backbone (head, final norm and unused stages are ignored)
    full = hiermlp.create_model("swin_tiny_patch4_window7_224")
    hiermlp.load_checkpoint(nhwc, full.state_dict())


def test_model_api():
    m = hiermlp.HierNet(**TINY_SWIN)
    x = torch.randn(2, 3, 32, 32)
    assert m.forward_head(m.forward_features(x), pre_logits=True).shape == (2, 128)
    m.reset_classifier(5)
    assert m(x).shape == (2, 5) and m.get_classifier().out_features == 5
    m.reset_classifier(0)
    assert m(x).shape == (2, 128)
    groups = m.group_matcher()
    assert groups["stem"] == r"^patch_embed"
    final, inter = m.forward_intermediates(x, indices=2, output_fmt="NHWC")
    assert len(inter) == 2 and inter[-1].shape == (2, 2, 2, 128) and final.shape == (2, 2, 2, 128)
    assert not any("relative_position_index" in k or "mask" in k for k in m.state_dict())


def test_hybrid_is_one_line():
    m = hiermlp.HierNet(
        **{
            **TINY_SWIN,
            "mixer": ("attention", "attention", "attention", "attention"),
            "mixer_kwargs": ({"qkv_bias": False}, None, None, None),
        }
    )
    assert m.stages[0].blocks[0].mixer.qkv.bias is None and m.stages[1].blocks[0].mixer.qkv.bias is not None
