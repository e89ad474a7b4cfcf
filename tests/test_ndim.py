"""Any number of spatial dims: the window geometry in 1-D/2-D/3-D against torchvision's Video Swin construction
and hand references, the property that no token crosses a mask region, and every window mixer in every dim."""

import math

import pytest
import torch
from torchvision.models.video.swin_transformer import ShiftedWindowAttention3d, _compute_attention_mask_3d

from hiermlp import create_model
from hiermlp.errors import ConfigError, ShapeError
from hiermlp.models import HierBlock, HierNet
from hiermlp.ops import (
    actual_window,
    crop_to,
    cyclic_shift,
    pad_to_multiple,
    region_labels,
    relative_position_index,
    resize_rel_pos_table,
    sub_window_tokens,
    window_mask,
    window_merge,
    window_partition,
)


def ref_partition_3d(x, ws):  # torchvision's shifted_window_attention_3d partition (view/permute)
    b, t, h, w, c = x.shape
    x = x.view(b, t // ws[0], ws[0], h // ws[1], ws[1], w // ws[2], ws[2], c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(-1, ws[0] * ws[1] * ws[2], c)


@pytest.mark.parametrize("size,ws", [((4, 6, 9), (2, 3, 3)), ((8, 7, 7), (8, 7, 7)), ((3, 4, 2), (1, 2, 1))])
def test_partition_3d_is_torchvisions_and_merge_inverts_it(size, ws):
    x = torch.randn(2, *size, 5)
    windows = window_partition(x, ws)
    assert torch.equal(windows, ref_partition_3d(x, ws))
    grid = tuple(s // w for s, w in zip(size, ws))
    assert torch.equal(window_merge(windows, ws, grid), x)


def test_partition_1d():
    x = torch.randn(2, 12, 3)
    windows = window_partition(x, (4,))
    assert torch.equal(windows, x.reshape(2 * 3, 4, 3))
    assert torch.equal(window_merge(windows, (4,), (3,)), x)
    with pytest.raises(ShapeError, match="not a multiple of the window"):
        window_partition(torch.randn(1, 10, 3), (4,))


@pytest.mark.parametrize("ws", [(8, 7, 7), (2, 3, 4), (1, 2, 2)])
def test_relative_position_index_3d_is_torchvisions(ws):
    ref = ShiftedWindowAttention3d(8, list(ws), [0, 0, 0], 2).relative_position_index
    assert torch.equal(relative_position_index(ws), ref)


def test_relative_position_index_1d():
    w = 5
    i = torch.arange(w)
    assert torch.equal(relative_position_index((w,)), i[:, None] - i[None, :] + w - 1)


@pytest.mark.parametrize("size,ws,shift", [((16, 14, 14), (8, 7, 7), (4, 3, 3)), ((4, 6, 6), (2, 3, 3), (1, 1, 2))])
def test_window_mask_3d_is_torchvisions_on_divisible_maps(size, ws, shift):
    ref = _compute_attention_mask_3d(torch.zeros(1), size, ws, shift)  # 0 allowed, -100 forbidden
    assert torch.equal(window_mask(size, ws, shift), ref == 0)


def test_cyclic_shift_pad_and_crop_in_3d():
    x = torch.randn(2, 5, 6, 7, 3)
    assert torch.equal(cyclic_shift(x, (1, 2, 3)), torch.roll(x, (-1, -2, -3), (1, 2, 3)))
    padded = pad_to_multiple(x, (4, 4, 4))
    assert padded.shape == (2, 8, 8, 8, 3) and torch.equal(padded[:, :5, :6, :7], x)
    assert (padded[:, 5:] == 0).all() and (padded[:, :, 6:] == 0).all() and (padded[:, :, :, 7:] == 0).all()
    assert torch.equal(crop_to(padded, (5, 6, 7)), x)


def test_window_rule_per_axis_and_sub_window_tokens():
    # a map not larger than the window on an axis is one window there, unshifted (Video Swin's time axis)
    assert actual_window((4, 28, 28), (8, 7, 7), (4, 3, 3), crop=True) == ((4, 7, 7), (0, 3, 3))
    assert actual_window((4, 28, 28), (8, 7, 7), (4, 3, 3), crop=False) == ((8, 7, 7), (0, 3, 3))
    # the origin sub-window's tokens among a (3, 4, 5) window's row-major tokens
    full = torch.arange(60).view(3, 4, 5)
    assert torch.equal(sub_window_tokens((3, 4, 5), (2, 2, 3)), full[:2, :2, :3].flatten())


def test_resize_rel_pos_table_3d_is_trilinear_and_2d_unchanged():
    table = torch.randn(3 * 5 * 5, 2)
    out = resize_rel_pos_table(table, (3, 4, 4), old_window=(2, 3, 3))
    grid = table.T.reshape(1, 2, 3, 5, 5)
    ref = torch.nn.functional.interpolate(grid, size=(5, 7, 7), mode="trilinear", align_corners=False)
    assert torch.allclose(out, ref.reshape(2, -1).T)
    t2 = torch.randn(13 * 13, 3)  # 2-D: inferred square window, bicubic (the reference recipe)
    ref2 = torch.nn.functional.interpolate(t2.T.reshape(1, 3, 13, 13), size=(15, 15), mode="bicubic")
    assert torch.allclose(resize_rel_pos_table(t2, (8, 8)), ref2.reshape(3, -1).T)


# ---- the property: no token crosses a mask region, in 1-D, 2-D and 3-D --------------------------------------
def expected_interaction(size, window, shift):
    """True where two tokens of the map share a window of the shifted partition (in original coordinates).

    Along an axis with shift s and window w the windows are the intervals ``[k*w - (w - s), (k+1)*w - (w - s))``:
    the reference's zero-padding shift; tokens never wrap around and padding belongs to no window."""
    ws, ss = actual_window(size, window, shift, crop=False)
    coords = torch.stack(torch.meshgrid(*(torch.arange(n) for n in size), indexing="ij"), -1).reshape(-1, len(size))
    group = torch.stack([(coords[:, a] + (w - s if s else 0)) // w for a, (w, s) in enumerate(zip(ws, ss))], -1)
    return (group[:, None, :] == group[None, :, :]).all(-1)


def token_dependency(block, size, channels):
    """``dep[p, q]``: whether output token p of the block's token mixing depends on input token q."""
    x = torch.randn(1, *size, channels, dtype=torch.float64)
    n = math.prod(size)

    def mix(inp):
        return block.mix_tokens(inp.view(1, *size, channels)).reshape(n, channels)

    jac = torch.autograd.functional.jacobian(mix, x.reshape(n, channels), vectorize=True)  # (n, C, n, C)
    return jac.abs().sum((1, 3))


CASES = [
    ((11,), (4,), (2,)),
    ((3,), (4,), (2,)),
    ((7, 9), (3, 4), (1, 2)),
    ((5, 3), (4, 4), (2, 2)),
    ((3, 5, 6), (2, 3, 4), (1, 1, 2)),
    ((3, 7, 4), (4, 3, 3), (2, 1, 1)),
]
MIXERS = [
    ("attention", "roll"),
    ("cosine_attention", "roll"),
    ("spatial_mlp", "roll"),
    ("spatial_mlp", "pad"),
    ("token_mlp", "pad"),
    ("gmlp", "roll"),
    ("pool", "roll"),
]


@pytest.mark.parametrize("mixer,mode", MIXERS)
@pytest.mark.parametrize("size,window,shift", CASES)
def test_no_token_crosses_a_mask_region(mixer, mode, size, window, shift):
    torch.manual_seed(0)
    block = HierBlock(
        dim=4,
        mixer=mixer,
        num_heads=2,
        window_size=window,
        shift_size=shift,
        mlp_ratio=0.0,
        shift_mode=mode,
        spatial_dims=len(size),
    ).double()
    with torch.no_grad():
        for p in block.mixer.parameters():  # generic weights: every allowed pair visibly interacts
            p.normal_(0.0, 0.5)
    dep = token_dependency(block, size, 4)
    allowed = expected_interaction(size, window, shift)
    # forbidden pairs: exactly zero (-inf masks, masked weights) or below exp(-100) (cosine attention's -100)
    if (~allowed).any():
        assert dep[~allowed].max().item() < 1e-30
    off_diagonal = allowed & ~torch.eye(len(allowed), dtype=torch.bool)
    if off_diagonal.any():
        assert dep[off_diagonal].min().item() > 1e-8


@pytest.mark.parametrize("size,window,shift", CASES)
def test_padding_is_a_region_of_its_own(size, window, shift):
    """Values, not only dependencies: the pooling mixer's output is its group's mean of *real* tokens minus the
    token (padding that joined a region would pull the mean towards zero)."""
    block = HierBlock(dim=3, mixer="pool", window_size=window, shift_size=shift, mlp_ratio=0.0, spatial_dims=len(size))
    x = torch.randn(2, *size, 3, dtype=torch.float64)
    allowed = expected_interaction(size, window, shift).double()
    tokens = x.reshape(2, -1, 3)
    ref = (allowed / allowed.sum(-1, keepdim=True)) @ tokens - tokens
    assert torch.allclose(block.mix_tokens(x).reshape(2, -1, 3), ref)


# ---- every window mixer in every dim: the N-D mixer on a line/plane is the lower-dim one ---------------------
WINDOW_MIXERS = ["attention", "cosine_attention", "spatial_mlp", "token_mlp", "gmlp", "pool", "identity"]


def _lift(state, low, high):
    """Weights of a mixer built for window ``low`` as the one built for ``high`` = ``(1, *low)``: the same
    tensors, except the continuous bias MLP's input layer, which gains a leading (time) coordinate column."""
    out = {}
    for k, v in state.items():
        if k.endswith("cpb_mlp.0.weight"):
            v = torch.cat([torch.randn(v.shape[0], 1), v], dim=1)  # the new axis's coordinate is always 0
        out[k] = v
    return out


@pytest.mark.parametrize("mixer", WINDOW_MIXERS)
@pytest.mark.parametrize("low", [(5,), (3, 4)])
def test_window_mixer_in_one_more_dim_with_a_unit_axis_is_the_same_function(mixer, low):
    """A (1, *low) window over maps with a unit leading axis sees the same tokens, offsets and shifts as the
    ``low`` window: the block (padding, shift, mask, crop) and mixer must compute the same outputs."""
    torch.manual_seed(1)
    d = len(low)
    size = (7,) if d == 1 else (7, 9)
    shift = tuple(w // 2 for w in low)
    kw = dict(dim=8, mixer=mixer, num_heads=2, mlp_ratio=0.0)
    lo = HierBlock(**kw, window_size=low, shift_size=shift, spatial_dims=d)
    hi = HierBlock(**kw, window_size=(1, *low), shift_size=(0, *shift), spatial_dims=d + 1)
    with torch.no_grad():
        for p in lo.parameters():
            p.normal_(0.0, 0.5)
    hi.load_state_dict(_lift(lo.state_dict(), low, (1, *low)))
    x = torch.randn(2, *size, 8)
    assert torch.allclose(hi(x[:, None]), lo(x)[:, None], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mixer", ["attention", "spatial_mlp", "token_mlp"])
def test_3d_network_on_single_frames_is_the_2d_network(mixer):
    """The whole 3-D pipeline (Conv3d stem with patch (1, 4, 4), (1, 2, 2) merging, (1, w, w) windows, shifts,
    padding at a size no window divides) on T = 1 clips equals the 2-D network on the frames."""
    torch.manual_seed(2)
    common = dict(embed_dim=16, depths=(2, 2), num_heads=(2, 4), mixer=mixer, num_classes=5, drop_path_rate=0.0)
    net2 = HierNet(img_size=40, window_size=4, **common).eval()
    net3 = HierNet(
        spatial_dims=3,
        img_size=(1, 40, 40),
        patch_size=(1, 4, 4),
        window_size=(1, 4, 4),
        downsample_kwargs=dict(factors=(1, 2, 2)),
        **common,
    ).eval()
    sd = net2.state_dict()
    sd["patch_embed.proj.weight"] = sd["patch_embed.proj.weight"][:, :, None]
    net3.load_state_dict(sd)
    x = torch.randn(2, 3, 38, 43)  # not a multiple of the patch, and maps no window divides
    with torch.no_grad():
        assert torch.allclose(net3(x[:, :, None]), net2(x), atol=1e-5, rtol=1e-5)
        maps2 = net2.forward_intermediates(x, intermediates_only=True)
        maps3 = net3.forward_intermediates(x[:, :, None], intermediates_only=True)
    for a, b in zip(maps2, maps3):
        assert torch.allclose(b[:, :, 0], a, atol=1e-5, rtol=1e-5)


def test_1d_hierarchy_runs_and_pads_sequences():
    torch.manual_seed(3)
    net = HierNet(
        spatial_dims=1,
        img_size=128,
        patch_size=4,
        embed_dim=16,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=8,
        num_classes=3,
    ).eval()
    x = torch.randn(2, 3, 101)
    assert net(x).shape == (2, 3)
    assert [tuple(f.shape) for f in net.forward_intermediates(x, intermediates_only=True)] == [(2, 16, 26), (2, 32, 13)]
    # a sequence's logits do not depend on the batch it is in (no leak through padding or masks)
    assert torch.allclose(net(x[:1]), net(x)[:1], atol=1e-6)


@pytest.mark.parametrize("mixer", ["cycle", "axial_shift", "wave", "smlp"])
@pytest.mark.parametrize("dims", [1, 3])
def test_2d_map_mixers_say_so_in_other_dims(mixer, dims):
    with pytest.raises(ConfigError, match=rf"works on 2-D maps only, not {dims}-D"):
        HierNet(spatial_dims=dims, img_size=32, embed_dim=16, depths=(1,), num_heads=1, mixer=mixer, window_size=4)


def test_nd_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match="spatial_dims must be 1, 2 or 3"):
        HierNet(spatial_dims=4)
    with pytest.raises(ConfigError, match="patch_size must be an int or a triple of ints"):
        HierNet(spatial_dims=3, img_size=(8, 32, 32), patch_size=(2, 4), depths=(1,), num_heads=1)
    net = HierNet(spatial_dims=3, img_size=(8, 32, 32), patch_size=(2, 4, 4), embed_dim=8, depths=(1,), num_heads=1)
    with pytest.raises(ShapeError, match=r"expected 3-D inputs of shape \(B, 3, T, H, W\)"):
        net(torch.randn(1, 3, 32, 32))


def test_features_only_has_per_axis_reductions():
    model = create_model(
        "swin3d_t", features_only=True, embed_dim=8, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), out_indices=(0, 3)
    )
    assert [i["reductions"] for i in model.feature_info.get_dicts()] == [(2, 4, 4), (2, 32, 32)]
    maps = model(torch.randn(1, 3, 4, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, 8, 2, 16, 16), (1, 64, 2, 2, 2)]


def test_region_labels_give_padding_its_own_region_in_3d():
    labels = region_labels((4, 4, 4), (2, 2, 2), (1, 1, 1), (3, 4, 4))
    # the padded time slice (original index 3) sits at rolled position 2
    assert (labels[2] == -1).all() and (labels[[0, 1, 3]] >= 0).all()
    assert labels.max() < 27


@pytest.mark.slow
def test_3d_export_with_dynamic_batch_and_sizes_and_fx():
    """torch.export with a symbolic batch, T, H and W: the program equals eager at other clip sizes (padded and
    shifted differently); torchvision's FX feature extractor traces the 3-D stages."""
    from torchvision.models.feature_extraction import create_feature_extractor

    torch.manual_seed(0)
    net = HierNet(
        spatial_dims=3,
        img_size=(8, 32, 32),
        patch_size=(2, 4, 4),
        embed_dim=16,
        depths=(2, 2),
        num_heads=(2, 4),
        window_size=(2, 3, 3),
        downsample_kwargs=dict(factors=(1, 2, 2)),
        num_classes=5,
    ).eval()
    dyn = torch.export.Dim.DYNAMIC
    with torch.no_grad():
        program = torch.export.export(
            net,
            (torch.randn(2, 3, 8, 40, 36),),
            dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64), 2: dyn, 3: dyn, 4: dyn},),
            strict=False,
        )
        for y in (torch.randn(3, 3, 11, 45, 37), torch.randn(1, 3, 6, 29, 50)):
            assert torch.allclose(program.module()(y), net(y), atol=1e-5)
        extractor = create_feature_extractor(net, {"stages.0": "s0", "stages.1": "s1"})
        y = torch.randn(2, 3, 11, 45, 37)
        maps = extractor(y)
        for key, ref in zip(("s0", "s1"), net.forward_intermediates(y, output_fmt="NHWC", intermediates_only=True)):
            assert torch.equal(maps[key], ref)


def test_info_reports_3d_rows_per_axis():
    from hiermlp.info import model_info

    info = model_info("swin3d_t", img_size=(4, 64, 64))
    assert info["input"] == [1, 3, 4, 64, 64] and info["output"] == [1, 400]
    assert (
        info["stages"][0] == [1, 96, 2, 16, 16] and info["windows"][3] == [8, 7, 7] and info["shifts"][3] == [4, 0, 0]
    )
    seg = model_info("swin_unetr_2d_small", img_size=64)
    assert seg["output"] == [1, 14, 64, 64] and [s[1] for s in seg["stages"]] == [24, 48, 96, 192]
