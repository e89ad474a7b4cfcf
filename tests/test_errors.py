"""Bad input gets hiermlp's own error naming the problem and the fix, never a deep traceback."""

import pytest
import torch

import hiermlp
from hiermlp.errors import ConfigError, ShapeError, UnknownNameError
from hiermlp.models.registry import UnknownModelError

from .conftest import TINY_SWIN


@pytest.fixture(scope="module")
def tiny():
    return hiermlp.HierNet(**TINY_SWIN).eval()


def test_wrong_channel_count(tiny):
    with pytest.raises(ShapeError, match=r"expected images of shape \(B, 3, H, W\), got \(1, 1, 32, 32\).*in_chans=1"):
        tiny(torch.randn(1, 1, 32, 32))
    with pytest.raises(ShapeError, match="expected images"):
        tiny(torch.randn(3, 32, 32))


def test_image_smaller_than_a_patch(tiny):
    with pytest.raises(ShapeError, match="smaller than one 2x2 patch"):
        tiny(torch.randn(1, 3, 1, 40))
    with pytest.raises(ConfigError, match="smaller than one 4x4 patch"):
        hiermlp.create_model("swin_tiny_patch4_window7_224", img_size=3)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match="Did you mean: swin_tiny_patch4_window7_224"):
        hiermlp.create_model("swin_tiny_patch4_window7")
    with pytest.raises(KeyError):  # still a KeyError for callers that catch that
        hiermlp.create_model("nope")
    with pytest.raises(UnknownModelError, match="has no prefix"):
        hiermlp.create_model("hiermlp_swin_tiny_patch4_window7_224")


def test_unknown_model_option():
    with pytest.raises(ConfigError, match=r"unknown model option\(s\) \['window'\].*Did you mean: window_size"):
        hiermlp.create_model("swin_tiny_patch4_window7_224", window=7)


def test_unknown_mixer_and_option():
    with pytest.raises(UnknownNameError, match=r"unknown mixer 'atention'.*Did you mean: attention.*Known mixers"):
        hiermlp.HierNet(**{**TINY_SWIN, "mixer": "atention"})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['qkv_bais'\] for mixer 'attention'.*qkv_bias"):
        hiermlp.HierNet(**{**TINY_SWIN, "mixer_kwargs": {"qkv_bais": False}})


def test_windows_that_cannot_fit():
    with pytest.raises(ConfigError, match="window_size must be >= 1"):
        hiermlp.HierNet(**{**TINY_SWIN, "window_size": 0})
    with pytest.raises(ConfigError, match="window_size has 2 entries but the model has 4 stages"):
        hiermlp.HierNet(**{**TINY_SWIN, "window_size": [4, 4]})
    with pytest.raises(ConfigError, match=r"shift .* cannot fit window"):
        hiermlp.models.HierBlock(dim=8, num_heads=2, window_size=(4, 4), shift_size=(4, 0))
    with pytest.raises(ConfigError, match="num_heads=3 must be >= 1 and divide dim=16"):
        hiermlp.HierNet(**{**TINY_SWIN, "num_heads": 3})


def test_mixer_breaking_the_contract():
    class Bad(torch.nn.Module):
        def __init__(self, dim, *, window_size, num_heads):
            super().__init__()

        def forward(self, x, mask=None):
            return x[:, :-1]

    model = hiermlp.HierNet(**{**TINY_SWIN, "mixer": Bad})
    with pytest.raises(ShapeError, match="broke the mixer contract"):
        model(torch.randn(1, 3, 32, 32))

    class NoHeads(torch.nn.Module):
        def __init__(self, dim):
            super().__init__()

    with pytest.raises(ConfigError, match="breaks the window-mixer contract"):
        hiermlp.HierNet(**{**TINY_SWIN, "mixer": NoHeads})
