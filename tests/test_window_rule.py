"""The window rule follows the actual map size: a map not larger than the window is one unshifted window on
that axis, run at the map's size by mixers that can crop (the same function as the padded window), padded up
to the window for the others."""

import pytest
import torch
from torch import nn

import hiermlp
from hiermlp.errors import ConfigError, ShapeError
from hiermlp.mixers import MIXERS
from hiermlp.mixers.base import mixer_crop_modes, mixer_kind
from hiermlp.models.block import HierBlock
from hiermlp.ops import (
    actual_window,
    crop_tokens,
    cyclic_shift,
    pad_shift,
    pad_to_multiple,
    unpad_shift,
    window_mask,
    window_merge,
    window_partition,
)
from hiermlp.testing import fast, randomize_

WS, SHIFT, DIM = (7, 7), (3, 3), 16


def test_actual_window_rule():
    # nominal behaviour unchanged: a map larger than the window keeps window and shift
    assert actual_window((14, 14), WS, SHIFT, True) == (WS, SHIFT)
    assert actual_window((7, 7), WS, (0, 0), True) == (WS, (0, 0))  # Swin-T stage 4 at 224
    # per axis: not larger than the window -> no shift there, and the map's size when cropping
    assert actual_window((8, 8), (56, 56), (0, 0), True) == ((8, 8), (0, 0))
    assert actual_window((4, 20), WS, SHIFT, True) == ((4, 7), (0, 3))
    assert actual_window((4, 20), WS, SHIFT, False) == (WS, (0, 3))
    assert actual_window((7, 5), WS, SHIFT, True) == ((7, 5), (0, 0))


def test_crop_tokens_is_the_sub_window_and_checks_it():
    t = torch.arange(12.0).view(3, 4)  # a 3x4 window's tokens
    got = crop_tokens(t.flatten()[None], (3, 4), (2, 3), dims=(1,))
    assert torch.equal(got[0], t[:2, :3].flatten())
    assert crop_tokens(t, (3, 4), None, dims=(0,)) is t
    with pytest.raises(ShapeError, match="inside the window"):
        crop_tokens(t.flatten(), (3, 4), (4, 1), dims=(0,))


def padded_reference(block: HierBlock, x: torch.Tensor) -> torch.Tensor:
    """The block's token mixing written out at its built window: pad the map up to the window, shift only
    axes where the map is larger than the window, mask (roll) or zero-pad (pad), the mixer on full windows."""
    h, w = x.shape[1], x.shape[2]
    ws = block.window_size
    shift = tuple(0 if s <= k else sh for s, k, sh in zip((h, w), ws, block.shift_size))
    xp = pad_to_multiple(x, ws)
    if block.shift_mode == "roll":
        mask = window_mask((xp.shape[1], xp.shape[2]), ws, shift, (h, w))
        y = cyclic_shift(xp, shift)
        out = window_merge(block.mixer(window_partition(y, ws), mask), ws, (y.shape[1] // ws[0], y.shape[2] // ws[1]))
        out = cyclic_shift(out, (-shift[0], -shift[1]))
    else:
        y = pad_shift(xp, ws, shift)
        out = window_merge(block.mixer(window_partition(y, ws), None), ws, (y.shape[1] // ws[0], y.shape[2] // ws[1]))
        out = unpad_shift(out, ws, shift)
    return out[:, :h, :w]


WINDOW_MIXERS = sorted(n for n in MIXERS if mixer_kind(n) == "window" and not getattr(MIXERS[n], "global_window", 0))
CASES = [(n, m) for n in WINDOW_MIXERS for m in ("roll", "pad") if m == "pad" or getattr(MIXERS[n], "honours_mask", 0)]


@pytest.mark.parametrize(("name", "mode"), CASES)
@pytest.mark.parametrize("shift", [(0, 0), SHIFT])
def test_small_map_equals_the_padded_window(name, mode, shift):
    """Cropping (mixers with ``crop_modes``) or padding (the rest) is the padded window's function, plain and
    fast; a cropping mixer is handed windows of the map's size."""
    torch.manual_seed(0)
    kwargs = dict(mlp_ratio=0.0) if name == "gmlp" else {}
    block = HierBlock(
        dim=DIM, num_heads=2, window_size=WS, shift_size=shift, mixer=name, shift_mode=mode, **kwargs
    ).eval()
    randomize_(block, std=0.1)
    crops = mode in mixer_crop_modes(name)
    assert block.crops == crops
    seen = []
    block.mixer.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    for size in [(4, 5), (4, 20), (3, 3), (10, 6)]:
        x = torch.randn(2, *size, DIM)
        with torch.no_grad():
            ref = padded_reference(block, block.norm1(x))
            seen.clear()
            got = block.mix_tokens(block.norm1(x))
            assert seen == [min(size[0], 7) * min(size[1], 7) if crops else 49], (name, size, seen)
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-6, msg=lambda m, s=size: f"{name} {mode} {s}: {m}")
            with fast(block, True):
                torch.testing.assert_close(block.mix_tokens(block.norm1(x)), ref, rtol=0, atol=1e-5)


def micro(window_size: int, **kw) -> nn.Module:
    cfg = dict(img_size=64, patch_size=4, embed_dim=16, depths=(2, 2), num_heads=(1, 2), num_classes=5)
    return randomize_(hiermlp.HierNet(**(cfg | dict(window_size=window_size) | kw)), std=0.05).eval()


def tokens_per_window(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    seen: dict[str, int] = {}
    handles = [
        m.mixer.register_forward_hook(lambda mod, args, out, n=n: seen.__setitem__(n, args[0].shape[1]))
        for n, m in model.named_modules()
        if isinstance(m, HierBlock)
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("mixer", ["attention", "spatial_mlp"])
def test_big_window_small_input_equals_the_padded_model(mixer):
    """window_size=1000 (16x16 and 8x8 windows at the nominal 64 px): a 32x32 input (8x8, 4x4 maps) runs
    as one window of the map's size per stage, the same function as padding it to the built window."""
    model = micro(1000, mixer=mixer)
    assert [s.window_size for s in model.stages] == [(16, 16), (8, 8)]
    x = torch.randn(2, 3, 32, 32)
    assert set(tokens_per_window(model, x).values()) <= {64, 16}
    assert tokens_per_window(model, x)["stages.0.blocks.1"] == 64
    with torch.no_grad():
        got = model(x)
        with fast(model, True):
            got_fast = model(x)
        blocks = [m for m in model.modules() if isinstance(m, HierBlock)]
        for b in blocks:
            b.crops = False  # the padded reference: 16x16 and 8x8 windows with the padding masked out
        assert tokens_per_window(model, x)["stages.0.blocks.1"] == 256
        ref = model(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(got_fast, ref, rtol=0, atol=1e-5)


def test_swin_t_with_a_huge_window_builds_no_giant_window_for_a_small_input():
    """The issue's case (Swin-T's patch 4 at 224, made small): window_size=1000 is a 56x56 window in stage 1;
    a 32x32 input (8x8 tokens) used to be padded to it (3136 tokens per window); now the mixer sees the 64
    tokens of the map."""
    model = micro(1000, img_size=224, depths=(2, 2, 2), num_heads=(1, 1, 1), embed_dim=8)
    assert [s.window_size for s in model.stages] == [(56, 56), (28, 28), (14, 14)]
    seen = tokens_per_window(model, torch.randn(1, 3, 32, 32))
    assert seen["stages.0.blocks.0"] == seen["stages.0.blocks.1"] == 64
    assert seen["stages.2.blocks.1"] == 4


def test_fx_trace_follows_the_rule_at_any_size():
    model = micro(1000)
    gm = torch.fx.symbolic_trace(model)
    with torch.no_grad(), fast(model, False):
        for size in [(32, 32), (36, 100)]:
            x = torch.randn(1, 3, *size)
            torch.testing.assert_close(gm(x), model(x), rtol=0, atol=1e-6)


def test_a_user_mixer_defaults_to_padding_and_bad_crop_modes_are_errors():
    class Mine(nn.Module):
        honours_mask = True

        def __init__(self, dim, *, window_size):
            super().__init__()

        def forward(self, x, mask=None):
            return x

    block = HierBlock(dim=8, window_size=(4, 4), mixer=Mine)
    assert not block.crops
    block(torch.randn(1, 2, 3, 8))  # padded to the 4x4 window; forward is never given window_size

    class Bad(Mine):
        crop_modes = ("roll", "zero")

    with pytest.raises(ConfigError, match="crop_modes"):
        HierBlock(dim=8, window_size=(4, 4), mixer=Bad)


def test_recorded_attention_of_a_cropped_window():
    from hiermlp.models.features import record_attention

    model = micro(1000)
    with record_attention(model) as maps, torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert maps["stages.0.blocks.1.mixer"].shape == (2, 1, 1, 64, 64)  # one 8x8 window, not the built 16x16
    torch.testing.assert_close(maps["stages.1.blocks.0.mixer"].sum(-1), torch.ones(2, 1, 2, 16))
