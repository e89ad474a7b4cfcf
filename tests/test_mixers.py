"""Every registered token mixer on the mixer contract, plus each mixer's own semantics and bad input.

The contract tests are parametrized over ``MIXERS`` itself, so a newly registered mixer is covered without
editing this file.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hiermlp
from hiermlp.errors import ConfigError, ShapeError, UnknownNameError
from hiermlp.mixers import MIXERS, build_mixer
from hiermlp.mixers.base import mixer_attr, mixer_kind
from hiermlp.models.block import HierBlock
from hiermlp.ops import window_mask

DIM, HEADS, WS = 32, 4, (4, 4)
N = WS[0] * WS[1]
# an 8x8 map, windows 4x4, shift 2: 4 windows, each cut into up to 4 regions by the cyclic shift
MASK = window_mask((8, 8), WS, (2, 2))
N_WIN = MASK.shape[0]


def make(name: str, **options) -> nn.Module:
    window = None if mixer_attr(name, "global_window", False) else WS
    torch.manual_seed(0)
    mixer = build_mixer(name, dim=DIM, window_size=window, num_heads=HEADS, **options)
    for p in mixer.parameters():  # away from any special init (e.g. gMLP's near-identity gate)
        nn.init.normal_(p, std=0.2)
    return mixer


ALL = sorted(n for n in MIXERS if mixer_kind(n) == "window")  # the window-mixer contract
MAPS = sorted(n for n in MIXERS if mixer_kind(n) == "map")  # (B, H, W, C) -> (B, H, W, C)
MASKED = [m for m in ALL if mixer_attr(m, "honours_mask", False)]


def make_map(name: str) -> nn.Module:
    torch.manual_seed(0)
    mixer = build_mixer(name, dim=DIM, num_heads=HEADS, window_size=WS, feat_size=(8, 8))
    for p in mixer.parameters():
        nn.init.normal_(p, std=0.2)
    return mixer


@pytest.mark.parametrize("name", MAPS)
def test_map_mixer_shape_and_gradient_reaches_every_parameter(name):
    mixer = make_map(name)
    x = torch.randn(2, 8, 8, DIM, requires_grad=True)
    out = mixer(x)
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}: no gradient reaches {pname}"


@pytest.mark.parametrize("name", MAPS)
def test_map_mixer_in_a_block_mixes_across_window_borders(name):
    """A map mixer sees the whole map: the block cuts no windows for it."""
    block = HierBlock(dim=DIM, num_heads=HEADS, window_size=(4, 4), feat_size=(8, 8), mixer=name, mlp_ratio=0).eval()
    x = torch.randn(1, 8, 8, DIM, dtype=torch.float64)
    block = block.double()
    probe = x.clone()
    probe[0, 3, 3] += 1.0  # next to the border of the 4x4 window at the top left
    with torch.no_grad():
        diff = (block(probe) - block(x)).abs().amax(-1)[0]
    assert (diff[3:5, 3:5].sum() > 0 and diff[4:, 4:].max() > 0) or diff[4, 3] > 0 or diff[3, 4] > 0


@pytest.mark.parametrize("name", ALL)
def test_output_shape(name):
    mixer = make(name)
    x = torch.randn(2 * N_WIN, N, DIM)
    assert mixer(x, None).shape == x.shape
    if mixer_attr(name, "honours_mask", False):
        assert mixer(x, MASK).shape == x.shape


@pytest.mark.parametrize("name", ALL)
def test_gradient_reaches_every_parameter(name):
    mixer = make(name)
    x = torch.randn(2 * N_WIN, N, DIM, requires_grad=True)
    mask = MASK if mixer_attr(name, "honours_mask", False) else None
    out = mixer(x, mask)
    (out * torch.randn_like(out)).sum().backward()  # a random projection: no symmetric cancellation
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in mixer.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient at {pname}"


@pytest.mark.parametrize("name", MASKED)
def test_mask_blocks_information_across_regions(name):
    """One-hot probe: perturb one token; only tokens of its own region (same window, same batch) may change."""
    mixer = make(name).eval()
    torch.manual_seed(1)
    x = torch.randn(2 * N_WIN, N, DIM, dtype=torch.float64)
    mixer = mixer.double()
    base = mixer(x, MASK)
    for win, tok in [(0, 0), (1, 3), (2, 12), (3, 15), (3, 5)]:
        probe = x.clone()
        probe[N_WIN + win, tok] += torch.randn(DIM, dtype=x.dtype)  # batch 1, window `win`
        diff = (mixer(probe, MASK) - base).abs().amax(-1)  # (B*nW, N)
        allowed = torch.zeros_like(diff, dtype=torch.bool)
        allowed[N_WIN + win] = MASK[win, :, tok]  # tokens n that may read token `tok`
        assert diff[~allowed].max() == 0, f"{name}: token ({win}, {tok}) leaked into another region"
        assert diff[allowed].max() > 0  # and it does reach its own region (itself at least)


# ---- spatial_mlp ---------------------------------------------------------------------------------------
def test_spatial_mlp_equals_grouped_conv1d():
    """The named einsum is the reference's Conv1d(heads*N, heads*N, 1, groups=heads)."""
    mixer = make("spatial_mlp")
    conv = nn.Conv1d(HEADS * N, HEADS * N, kernel_size=1, groups=HEADS)
    with torch.no_grad():
        conv.weight.copy_(mixer.weight.reshape(HEADS * N, N, 1))
        conv.bias.copy_(mixer.bias.reshape(-1))
    x = torch.randn(6, N, DIM)
    heads = x.view(6, N, HEADS, DIM // HEADS).transpose(1, 2).reshape(6, HEADS * N, DIM // HEADS)
    ref = conv(heads).view(6, HEADS, N, DIM // HEADS).transpose(1, 2).reshape(6, N, DIM)
    torch.testing.assert_close(mixer(x, None), ref, atol=1e-5, rtol=0)


def test_spatial_mlp_bias_is_not_masked():
    """As in the reference pad-shift (padded zeros still get the bias), every output token gets its bias."""
    mixer = make("spatial_mlp")
    out = mixer(torch.zeros(2 * N_WIN, N, DIM), MASK)
    expected = mixer.bias[:, :, None].expand(HEADS, N, DIM // HEADS).permute(1, 0, 2).reshape(N, DIM)
    torch.testing.assert_close(out, expected.expand_as(out), atol=0, rtol=0)


def test_spatial_mlp_masked_equals_masked_weight_by_hand():
    mixer = make("spatial_mlp")
    x = torch.randn(2 * N_WIN, N, DIM)
    out = mixer(x, MASK)
    for w in range(2 * N_WIN):
        weight = mixer.weight * MASK[w % N_WIN]  # (heads, N, N)
        xh = x[w].view(N, HEADS, -1).transpose(0, 1)  # (heads, N, d)
        ref = (weight @ xh + mixer.bias[..., None]).transpose(0, 1).reshape(N, DIM)
        torch.testing.assert_close(out[w], ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["spatial_mlp", "gmlp", "pool"])
def test_all_true_mask_equals_no_mask(name):
    mixer = make(name)
    x = torch.randn(2 * N_WIN, N, DIM)
    full = torch.ones(N_WIN, N, N, dtype=torch.bool)
    torch.testing.assert_close(mixer(x, full), mixer(x, None), atol=1e-5, rtol=0)


# ---- token_mlp ------------------------------------------------------------------------------------------
def test_token_mlp_shifts_by_padding():
    block = HierBlock(dim=DIM, num_heads=1, window_size=WS, shift_size=(2, 2), mixer="token_mlp")
    assert block.shift_mode == "pad"
    with pytest.raises(ConfigError, match="does not honour masks"):
        HierBlock(dim=DIM, num_heads=1, window_size=WS, shift_size=(2, 2), mixer="token_mlp", shift_mode="roll")


def test_token_mlp_hidden_size_options():
    assert build_mixer("token_mlp", dim=8, window_size=(4, 4), num_heads=1).fc1.out_features == 32
    assert build_mixer("token_mlp", dim=8, window_size=(4, 4), num_heads=1, token_mlp_ratio=0.5).fc1.out_features == 8
    assert build_mixer("token_mlp", dim=8, window_size=(4, 4), num_heads=1, hidden_tokens=7).fc1.out_features == 7


def test_token_mlp_mixes_tokens_not_channels():
    mixer = make("token_mlp")
    x = torch.randn(3, N, DIM)
    x2 = x.clone()
    x2[:, :, 0] += 1.0  # change channel 0 of every token: the other channels must not move
    torch.testing.assert_close(mixer(x2, None)[..., 1:], mixer(x, None)[..., 1:], atol=0, rtol=0)


# ---- gmlp -----------------------------------------------------------------------------------------------
def test_gmlp_gate_starts_near_identity_even_inside_a_model():
    model = hiermlp.HierNet(
        img_size=32, embed_dim=16, depths=(2,), num_heads=1, window_size=4, mixer="gmlp", mlp_ratio=0
    )
    gate = model.stages[0].blocks[0].mixer.gate
    assert torch.all(gate.bias == 1) and gate.weight.abs().max() < 1e-4
    assert model.stages[0].blocks[0].mlp is None  # the gMLP body carries its own channel projections


def test_gmlp_heads_split_the_gate():
    mixer = build_mixer("gmlp", dim=16, window_size=(2, 2), num_heads=4, ffn_ratio=2.0)
    assert mixer.gate.weight.shape == (4, 4, 4)
    with pytest.raises(ConfigError, match="divisible by heads"):
        build_mixer("gmlp", dim=16, window_size=(2, 2), num_heads=3, ffn_ratio=2.0)


# ---- baselines ------------------------------------------------------------------------------------------
def test_identity_and_pool_values():
    x = torch.randn(2, N, DIM)
    assert build_mixer("identity", dim=DIM, window_size=WS, num_heads=1)(x, None) is x
    pool = build_mixer("pool", dim=DIM, window_size=WS, num_heads=1)
    torch.testing.assert_close(pool(x, None), x.mean(1, keepdim=True) - x)
    assert not list(pool.parameters())


def test_pool_with_mask_averages_its_region_only():
    pool = build_mixer("pool", dim=DIM, window_size=WS, num_heads=1)
    x = torch.randn(N_WIN, N, DIM)
    out = pool(x, MASK)
    for w in range(N_WIN):
        for n in range(N):
            region = MASK[w, n]
            torch.testing.assert_close(out[w, n], x[w, region].mean(0) - x[w, n])


def test_global_attention_sees_the_whole_map():
    block = HierBlock(dim=DIM, num_heads=HEADS, window_size=(4, 4), shift_size=(2, 2), mixer="global_attention")
    assert block.global_window and block.window_size is None and block.mixer.rel_pos is None
    block = block.double()
    for p in block.mixer.parameters():
        nn.init.normal_(p, std=0.1)  # not so large that the softmax saturates to one-hot
    x = torch.randn(1, 12, 12, DIM, dtype=torch.float64)
    x2 = x.clone()
    x2[0, 0, 0] += torch.randn(DIM, dtype=x.dtype)  # not a constant: norm1 would remove it
    assert (block(x2) - block(x))[0, 11, 11].abs().max() > 1e-9  # opposite corners interact: no windows


# ---- bad input ------------------------------------------------------------------------------------------
def test_unknown_mixer_name_lists_known_ones():
    with pytest.raises(UnknownNameError) as e:
        build_mixer("spatial_mpl", dim=DIM, window_size=WS, num_heads=1)
    msg = str(e.value)
    assert "spatial_mpl" in msg and "Did you mean: spatial_mlp" in msg
    for known in ("attention", "gmlp", "token_mlp", "pool", "identity", "global_attention"):
        assert known in msg
    with pytest.raises(UnknownNameError, match="Known mixers"):
        hiermlp.create_model("swin_mlp_tiny_c24_patch4_window8_256", mixer="no_such_mixer")


def test_unknown_mixer_option_is_an_error():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['hiden_tokens'\].*hidden_tokens"):
        build_mixer("token_mlp", dim=DIM, window_size=WS, num_heads=1, hiden_tokens=8)
    with pytest.raises(ConfigError, match="rel_pos"):
        build_mixer("global_attention", dim=DIM, window_size=None, num_heads=HEADS, rel_pos=True)
    with pytest.raises(ConfigError, match="ffn_ratio"):
        hiermlp.create_model("gmlp_s16_224", mixer_kwargs=dict(ffn_ratoi=4.0))


@pytest.mark.parametrize(
    ("name", "options", "named"),
    [
        ("wave", dict(mode="conv"), "mode must be 'fc' or 'depthwise'"),
        ("cycle", dict(kernel_size=0), "kernel_size must be >= 1"),
        ("axial_shift", dict(shift_size=4), "shift_size must be odd"),
        ("smlp", dict(), "needs feat_size"),
    ],
)
def test_map_mixer_bad_option_is_a_config_error(name, options, named):
    """Map mixers answer a bad option as the window mixers do: a ConfigError naming the mixer and the rule."""
    with pytest.raises(ConfigError, match=f"{name}.*{named}"):
        build_mixer(name, dim=DIM, **options)


class WrongShape(nn.Module):
    honours_mask = True

    def __init__(self, dim: int, *, window_size, num_heads: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim // 2)

    def forward(self, x, mask=None):
        return self.proj(x)


class NoContract(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()


def test_contract_breaking_mixers_fail_clearly():
    block = HierBlock(dim=DIM, num_heads=1, window_size=WS, mixer=WrongShape)
    with pytest.raises(ShapeError, match=r"broke the mixer contract: it returned \(8, 16, 16\)"):
        block(torch.randn(2, 8, 8, DIM))
    with pytest.raises(ConfigError, match=r"breaks the window-mixer contract.*window_size"):
        HierBlock(dim=DIM, num_heads=1, window_size=WS, mixer=NoContract)
    with pytest.raises(ConfigError, match="already registered"):
        hiermlp.register_mixer("spatial_mlp", WrongShape)
