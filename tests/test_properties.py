"""Property-based tests of the framework (hypothesis): random valid configurations build, run and keep the
output grid their strides imply; shifted windows never leak across the border; invalid ones raise
hiermlp's own errors. Examples are bounded so the file runs in about a minute on 2 CPU cores."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hiermlp
from hiermlp.errors import ConfigError, HiermlpError, ShapeError
from hiermlp.mixers.base import mixer_attr, mixer_kind
from hiermlp.models.block import HierBlock

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# whatever is registered when the tests run, less resolution-tied mixers (they take the stage's feat_size and
# refuse other map sizes by design, which the random input sizes here would hit)
MIXER_NAMES = sorted(
    m for m in hiermlp.MIXERS if "feat_size" not in inspect.signature(hiermlp.mixers.get_mixer(m)).parameters
)
WINDOWED = [m for m in MIXER_NAMES if mixer_kind(m) == "window" and not mixer_attr(m, "global_window", False)]


@st.composite
def configs(draw):
    n = draw(st.integers(1, 3))
    patch = draw(st.sampled_from([1, 2, 4]))
    return dict(
        img_size=(draw(st.integers(patch, 33)), draw(st.integers(patch, 33))),
        patch_size=patch,
        embed_dim=8,  # dims 8, 16, 32: divisible by every drawn head count
        depths=tuple(draw(st.integers(1, 2)) for _ in range(n)),
        num_heads=tuple(draw(st.sampled_from([1, 2])) for _ in range(n)),
        window_size=tuple(draw(st.integers(1, 5)) for _ in range(n)),
        mixer=tuple(draw(st.sampled_from(MIXER_NAMES)) for _ in range(n)),
        shift=draw(st.booleans()),
        num_classes=3,
        drop_path_rate=0.0,
    )


@FAST
@given(cfg=configs(), batch=st.integers(1, 2), other=st.tuples(st.integers(0, 9), st.integers(0, 9)))
def test_random_models_build_run_and_keep_their_grid(cfg, batch, other):
    torch.manual_seed(0)
    model = hiermlp.HierNet(**cfg).eval()
    p = cfg["patch_size"]
    # the nominal size, then another size (models run at any size >= one patch)
    for h, w in (cfg["img_size"], (cfg["img_size"][0] + other[0], cfg["img_size"][1] + other[1])):
        x = torch.randn(batch, 3, h, w)
        with torch.no_grad():
            final, maps = model.forward_intermediates(x)
            logits = model.forward_head(final)
        assert logits.shape == (batch, 3)
        assert torch.isfinite(logits).all()
        assert len(maps) == (cfg["depths"][0] if model.isotropic else len(cfg["depths"]))
        for i, m in enumerate(maps):
            i = 0 if model.isotropic else i  # one stage: its blocks are the feature levels
            want = (math.ceil(math.ceil(h / p) / 2**i), math.ceil(math.ceil(w / p) / 2**i))
            assert tuple(m.shape) == (batch, 8 * 2**i, *want), (i, cfg)


def window_of(p: int, window: int, shift: int) -> int:
    """Window index of map position ``p`` when windows start ``shift`` tokens up-left (shifted Swin windows):
    the first window holds [0, shift), then [shift + k*window, shift + (k+1)*window)."""
    if shift == 0:
        return p // window
    return 0 if p < shift else 1 + (p - shift) // window


@FAST
@given(
    mixer=st.sampled_from(WINDOWED),
    window=st.tuples(st.integers(2, 5), st.integers(2, 5)),
    data=st.data(),
)
def test_shifted_window_has_no_cross_border_leakage(mixer, window, data):
    """One shifted block on a (B, H, W, C) map: perturbing the bottom-right token changes only tokens in
    its shifted window, never (0, 0) or anything across the border (the roll would wrap it there)."""
    shift = (data.draw(st.integers(1, window[0] - 1)), data.draw(st.integers(1, window[1] - 1)))
    h = data.draw(st.integers(window[0] + 1, 3 * window[0]))
    w = data.draw(st.integers(window[1] + 1, 3 * window[1]))
    torch.manual_seed(0)
    block = HierBlock(dim=8, num_heads=2, window_size=window, shift_size=shift, mixer=mixer).eval()
    with torch.no_grad():
        for prm in block.parameters():  # away from init so every path carries signal
            prm.add_(torch.randn_like(prm) * 0.1)
        x = torch.randn(2, h, w, 8)
        y = x.clone()
        y[:, h - 1, w - 1] += 3.0
        diff = (block(y) - block(x)).abs().amax(dim=(0, 3))  # (H, W)
    rows = torch.tensor([window_of(i, window[0], shift[0]) == window_of(h - 1, window[0], shift[0]) for i in range(h)])
    cols = torch.tensor([window_of(j, window[1], shift[1]) == window_of(w - 1, window[1], shift[1]) for j in range(w)])
    allowed = rows[:, None] & cols[None, :]
    assert not allowed[0, 0]
    assert diff[~allowed].max() <= 1e-6, (mixer, window, shift, (h, w), diff)
    assert diff[h - 1, w - 1] > 0  # the perturbation itself goes through


# ---- invalid configurations: hiermlp's own errors, never an einops or reshape traceback -------------------
def raises_own_error(fn, *args, **kwargs) -> HiermlpError:
    with pytest.raises((ConfigError, ShapeError)) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    assert "einops" not in str(info.value).lower() and "shape '[" not in str(info.value)
    return info.value


SMALL_OK = dict(img_size=16, patch_size=2, embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=4)


@FAST
@given(window=st.integers(-3, 0), mixer=st.sampled_from(WINDOWED))
def test_window_below_one_is_a_config_error(window, mixer):
    raises_own_error(hiermlp.HierNet, **{**SMALL_OK, "window_size": window, "mixer": mixer})


@FAST
@given(window=st.integers(1, 6), extra=st.integers(0, 3), mixer=st.sampled_from(WINDOWED))
def test_shift_not_below_window_is_a_config_error(window, extra, mixer):
    raises_own_error(
        HierBlock, dim=8, num_heads=1, window_size=(window, window), shift_size=(window + extra, 0), mixer=mixer
    )


@FAST
@given(dim=st.integers(2, 40), heads=st.integers(2, 12))
def test_heads_not_dividing_dim_is_a_config_error(dim, heads):
    if dim % heads == 0:
        dim += 1
    raises_own_error(HierBlock, dim=dim, num_heads=heads, window_size=(2, 2), mixer="attention")


@FAST
@given(patch=st.integers(2, 8), data=st.data())
def test_image_smaller_than_a_patch(patch, data):
    small = data.draw(st.integers(1, patch - 1))
    raises_own_error(hiermlp.HierNet, **{**SMALL_OK, "patch_size": patch, "img_size": (small, 16)})
    model = hiermlp.HierNet(**{**SMALL_OK, "patch_size": patch, "img_size": 16})
    raises_own_error(model, torch.randn(1, 3, 16, small))


@FAST
@given(in_chans=st.integers(1, 4), given_chans=st.integers(1, 4))
def test_mismatched_in_chans_is_a_shape_error(in_chans, given_chans):
    model = hiermlp.HierNet(**SMALL_OK, in_chans=in_chans)
    if in_chans == given_chans:
        assert model(torch.randn(1, given_chans, 16, 16)).shape == (1, 1000)
    else:
        raises_own_error(model, torch.randn(1, given_chans, 16, 16))


@FAST
@given(
    key=st.sampled_from(["num_heads", "window_size", "mixer", "shift", "mlp_ratio", "embed_dim"]),
    n=st.integers(0, 5).filter(lambda n: n != 2),
)
def test_per_stage_tuples_of_the_wrong_length(key, n):
    values = {"num_heads": 1, "window_size": 2, "mixer": "attention", "shift": True, "mlp_ratio": 2.0, "embed_dim": 8}
    raises_own_error(hiermlp.HierNet, **{**SMALL_OK, key: (values[key],) * n})
