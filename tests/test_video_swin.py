"""Video Swin = torchvision's swin3d_t/s/b: params, logits and every stage's map, from torchvision's layout and
the official Video Swin / mmaction layout (``backbone.*``, ``cls_head.fc_cls.*``).

torchvision is the reference where it pads correctly: it zero-pads the stem input and odd maps before merging
as hiermlp does, but a map that is no window multiple is padded with tokens every real token attends to, and a
window clamped on H or W takes the first rows of the full window's bias index (right only when time alone is
clamped). The sizes below avoid those two cases; hiermlp's own padding is checked by tests/test_ndim.py.
"""

import re

import pytest
import torch
from torchvision.models import video as tv_video
from torchvision.models.video.swin_transformer import SwinTransformer3d

from hiermlp import create_model
from hiermlp.models import HierNet
from hiermlp.weights import convert_state_dict, load_checkpoint

PARAMS = {"swin3d_t": 28_158_070, "swin3d_s": 49_816_678, "swin3d_b": 88_048_984}  # torchvision's metas


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere, norms and position tables included (init leaves them at 1/0 and 0.02)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if name.endswith(("norm.weight", "norm1.weight", "norm2.weight")) else 0.1
            base = 1.0 if name.endswith("weight") and p.ndim == 1 else 0.0
            p.copy_(base + scale * torch.randn(p.shape, generator=g))
    return model.eval()


def stage_maps_tv(model: SwinTransformer3d, x: torch.Tensor) -> list[torch.Tensor]:
    """torchvision's stage outputs: ``features[2i]`` (the blocks of stage i, before the next merging)."""
    x = model.patch_embed(x)
    maps = []
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i % 2 == 0:
            maps.append(x)
    return maps


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    err = ((a - b).abs().max() / b.abs().max()).item()
    assert err < 1e-5, err


def check_same(tv: torch.nn.Module, hm: torch.nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        assert_close(hm(x), tv(x))
        for a, b in zip(hm.forward_intermediates(x, output_fmt="NHWC", intermediates_only=True), stage_maps_tv(tv, x)):
            assert_close(a, b)


def mmaction_layout(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's keys -> the official Video Swin / mmaction recognizer's (an independent renaming)."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"features\.(\d+)\.(.*)", k)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            if i % 2 == 0:
                rest = re.sub(r"^(\d+)\.mlp\.0\.", r"\1.mlp.fc1.", re.sub(r"^(\d+)\.mlp\.3\.", r"\1.mlp.fc2.", rest))
                k = f"backbone.layers.{i // 2}.blocks.{rest}"
            else:  # the merging after stage i // 2 belongs to that stage in the official layout
                k = f"backbone.layers.{i // 2}.downsample.{rest}"
        elif k.startswith("head."):
            k = "cls_head.fc_cls." + k[len("head.") :]
        else:
            k = "backbone." + k
        out[k] = v
    return out


MICRO = dict(patch_size=(2, 4, 4), embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=(4, 3, 3))


def micro_pair(seed: int = 0) -> tuple[SwinTransformer3d, HierNet]:
    tv = randomize(
        SwinTransformer3d(**{k: list(v) if isinstance(v, tuple) else v for k, v in MICRO.items()}, num_classes=10), seed
    )
    hm = HierNet(
        spatial_dims=3, img_size=(16, 96, 96), downsample_kwargs=dict(factors=(1, 2, 2)), num_classes=10, **MICRO
    )
    return tv, hm.eval()


@pytest.mark.parametrize("size", [(1, 3, 16, 96, 96), (2, 3, 15, 94, 95)])
def test_micro_video_swin_with_every_shift_is_torchvisions(size):
    """A small window (4, 3, 3) so that time, height and width are all shifted and masked in stages 1-3 (time
    in stage 4), at a divisible size and at one the stem pads on every axis."""
    tv, hm = micro_pair()
    assert hm.load_state_dict(convert_state_dict(tv.state_dict())[1]) is not None
    check_same(tv, hm, torch.randn(size))


@pytest.mark.parametrize("name", ["swin3d_t", "swin3d_s", "swin3d_b"])
def test_param_counts_are_torchvisions(name):
    with torch.device("meta"):
        hm = create_model(name)
        tv = getattr(tv_video, name)()
    assert sum(p.numel() for p in hm.parameters()) == sum(p.numel() for p in tv.parameters()) == PARAMS[name]


@pytest.mark.slow
@pytest.mark.parametrize("name,frames", [("swin3d_t", 3), ("swin3d_b", 2)])  # S: B's blocks at T's width
def test_video_swin_is_torchvisions(name, frames, tmp_path):
    """Random weights and norms, torchvision's layout through a file (the loader's detection and conversion):
    logits and every stage's map within 1e-5 at 224 (the smallest size whose last map fills a 7x7 window; odd
    frame counts are padded by the stem)."""
    torch.manual_seed(0)
    tv = randomize(getattr(tv_video, name)(), 1)
    path = tmp_path / f"{name}.pth"
    torch.save(tv.state_dict(), path)
    hm = create_model(name, checkpoint_path=path).eval()
    check_same(tv, hm, torch.randn(1, 3, frames, 224, 224))


def test_official_mmaction_layout_converts(tmp_path):
    tv, hm = micro_pair(seed=3)
    official = {
        "meta": {"config": "swin_tiny_patch244_window877_kinetics400_1k"},
        "state_dict": mmaction_layout(tv.state_dict()),
    }
    assert any(k.startswith("backbone.layers.0.downsample.") for k in official["state_dict"])
    path = tmp_path / "official.pth"
    torch.save(official, path)
    result = load_checkpoint(hm, path)
    assert result.layout == "mmaction_video_swin" and not result.missing and not result.unexpected
    check_same(tv, hm, torch.randn(1, 3, 7, 96, 96))


def test_video_swin_features_and_window_mlp_variant():
    """One argument swaps attention for a window MLP in the 3-D family; features_only gives (B, C, T, H, W)."""
    kw = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), num_classes=4)
    for mixer in ("spatial_mlp", "token_mlp", "gmlp"):
        extra = dict(mlp_ratio=0.0) if mixer == "gmlp" else {}
        model = create_model("swin3d_t", mixer=mixer, **kw, **extra).eval()
        assert model(torch.randn(1, 3, 4, 64, 64)).shape == (1, 4)
