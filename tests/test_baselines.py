"""Baseline models of hiermlp compare: linear_pixels against its formula, resnet_micro against timm's ResNet-18."""

from __future__ import annotations

import pytest
import timm
import torch

import hiermlp  # noqa: F401  (registers the baselines in timm's registry)
from hiermlp.bench.flops import count_gmacs
from hiermlp.errors import ConfigError, ShapeError


def test_linear_pixels_is_one_linear_map_of_the_pixels():
    torch.manual_seed(0)
    m = timm.create_model("linear_pixels", img_size=8, in_chans=2, num_classes=5).eval()
    with torch.no_grad():
        m.fc.weight.normal_()
        m.fc.bias.normal_()
    x = torch.randn(3, 2, 8, 8)
    ref = x.reshape(3, -1) @ m.fc.weight.T + m.fc.bias  # channel-major flattening, as torch's reshape
    torch.testing.assert_close(m(x), ref)
    assert sum(p.numel() for p in m.parameters()) == 2 * 8 * 8 * 5 + 5
    with pytest.raises(ShapeError, match="built for inputs"):
        m(torch.randn(1, 2, 9, 8))
    with pytest.raises(ConfigError, match="no pretrained weights"):
        timm.create_model("linear_pixels", pretrained=True)
    with pytest.raises(ConfigError, match="drop_path_rate"):
        timm.create_model("linear_pixels", drop_path_rate=0.1)


def test_resnet_micro_is_timm_resnet18_made_narrow():
    torch.manual_seed(0)
    wide = timm.create_model("resnet_micro", channels=(64, 128, 256, 512), stem_width=64, num_classes=7)
    ref = timm.create_model("resnet18", in_chans=1, num_classes=7)
    ref.load_state_dict(wide.state_dict(), strict=True)  # the same module tree and shapes as ResNet-18
    for m in (wide, ref):  # random BatchNorm statistics, so every tensor matters
        m.eval()
    with torch.no_grad():
        for (_, a), (_, b) in zip(wide.named_buffers(), ref.named_buffers()):
            if a.is_floating_point():
                a.uniform_(0.5, 1.5)
                b.copy_(a)
    x = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(wide(x), ref(x))
    micro = timm.create_model("resnet_micro")  # the compare presets' baseline: 0.021 GMACs at 32x32
    assert count_gmacs(micro, (1, 32, 32)) == pytest.approx(0.0209, abs=2e-4)
