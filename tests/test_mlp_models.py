"""Swin-MLP against an independent reference formulation, isotropic timm parity, the MLP zoo, user mixers."""

from __future__ import annotations

import textwrap

import pytest
import timm
import torch
from torch import nn

import hiermlp
from hiermlp.bench import count_gmacs
from hiermlp.mixers import MIXERS, GatedMlp, SpatialMlp, TokenMlp, WindowAttention
from hiermlp.models.block import HierBlock
from hiermlp.models.registry import get_entry
from hiermlp.models.zoo_micro import MICRO_VARIANTS, SMALL_VARIANTS


@pytest.fixture(autouse=True)
def _no_grad():
    """Inference only in this module (scoped, so other test modules keep autograd)."""
    with torch.no_grad():
        yield


def randomize(model: nn.Module, seed: int = 0, std: float = 0.05) -> nn.Module:
    """Every parameter random (norm weights around 1), so no init symmetry can hide a layout error."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g) * std
        is_norm_weight = p.ndim == 1 and "norm" in name and name.endswith("weight")
        p.copy_(noise + 1.0 if is_norm_weight else noise)
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


from hiermlp.testing.swin_mlp_reference import RefSwinMLP, RefSwinMLPBlock  # noqa: E402


# ---- Swin-MLP: the masked cyclic shift is the reference pad shift ----------------------------------------
@pytest.mark.parametrize("shift", [0, 4])
@pytest.mark.parametrize("shift_mode", ["auto", "pad"])
def test_swin_mlp_block_equals_reference_pad_shift(shift, shift_mode):
    dim, heads, ws, (h, w) = 32, 4, 8, (16, 24)
    ref = randomize(RefSwinMLPBlock(dim, (h, w), heads, ws, shift))
    block = HierBlock(
        dim=dim,
        num_heads=heads,
        window_size=(ws, ws),
        shift_size=(shift, shift),
        mixer="spatial_mlp",
        shift_mode=shift_mode,
    ).eval()
    assert block.shift_mode == ("roll" if shift_mode == "auto" else "pad")
    sd = {k.replace("spatial_mlp", "mixer"): v for k, v in ref.state_dict().items()}
    sd["mixer.weight"] = sd["mixer.weight"].reshape(heads, ws * ws, ws * ws)
    sd["mixer.bias"] = sd["mixer.bias"].reshape(heads, ws * ws)
    block.load_state_dict(sd)
    x = torch.randn(2, h, w, dim)
    assert max_diff(block(x), ref(x.view(2, h * w, dim)).view(2, h, w, dim)) < 1e-5


SWIN_MLP_REF = {  # REFERENCE.md: name -> (embed_dim, depths, heads, window, img, params (M), GMACs)
    "swin_mlp_tiny_c24_patch4_window8_256": (96, (2, 2, 6, 2), (4, 8, 16, 32), 8, 256, 20.39, 4.03),
    "swin_mlp_tiny_c12_patch4_window8_256": (96, (2, 2, 6, 2), (8, 16, 32, 64), 8, 256, 21.15, 4.03),
    "swin_mlp_tiny_c6_patch4_window8_256": (96, (2, 2, 6, 2), (16, 32, 64, 128), 8, 256, 22.68, 4.03),
    "swin_mlp_base_patch4_window7_224": (128, (2, 2, 18, 2), (4, 8, 16, 32), 7, 224, 60.66, 10.42),
}


def test_swin_mlp_tiny_c24_reproduces_reference_from_its_state_dict(tmp_path):
    """The whole model: reference-layout weights load through load_checkpoint and give the same logits."""
    embed_dim, depths, heads, window, img, *_ = SWIN_MLP_REF["swin_mlp_tiny_c24_patch4_window8_256"]
    ref = randomize(RefSwinMLP(img, embed_dim, depths, heads, window))
    x = torch.randn(1, 3, img, img)
    expected = ref(x)
    path = tmp_path / "swin_mlp_tiny_c24_patch4_window8_256.pth"
    torch.save({"model": ref.state_dict(), "epoch": 300}, path)  # the official files' wrapper
    model = hiermlp.create_model("swin_mlp_tiny_c24_patch4_window8_256").eval()
    result = hiermlp.load_checkpoint(model, path)
    assert result.layout == "microsoft_swin_mlp" and not result.missing and not result.unexpected
    assert model.stages[1].blocks[1].shift_mode == "roll"
    assert max_diff(model(x), expected) < 1e-5
    # the reference's own scheme, loaded through create_model(checkpoint_path=...)
    pad = hiermlp.create_model("swin_mlp_tiny_c24_patch4_window8_256", shift_mode="pad", checkpoint_path=path)
    assert max_diff(pad.eval()(x), expected) < 1e-5


def swin_mlp_param_count(embed_dim, depths, heads, window, img, num_classes=1000):
    """The reference formula: stem conv + norm, blocks (2 norms, spatial MLP, 4x MLP), mergings, norm, head."""
    total = 3 * 16 * embed_dim + embed_dim + 2 * embed_dim
    res = img // 4
    for i, depth in enumerate(depths):
        dim, n = embed_dim * 2**i, min(window, res) ** 2
        total += depth * (4 * dim + heads[i] * n * n + heads[i] * n + 8 * dim * dim + 5 * dim)
        if i < len(depths) - 1:
            total += 8 * dim + 8 * dim * dim
            res //= 2
    return total + 2 * dim + dim * num_classes + num_classes


@pytest.mark.parametrize("name", sorted(SWIN_MLP_REF))
def test_swin_mlp_zoo_params_equal_reference(name):
    embed_dim, depths, heads, window, img, params_m, _ = SWIN_MLP_REF[name]
    expected = swin_mlp_param_count(embed_dim, depths, heads, window, img)
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = hiermlp.create_model(name)
        ref = RefSwinMLP(img, embed_dim, depths, heads, window)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert sum(p.numel() for p in ref.parameters()) == expected
    assert round(expected / 1e6, 2) == params_m


@pytest.mark.slow
@pytest.mark.parametrize("name", ["swin_mlp_tiny_c24_patch4_window8_256", "swin_mlp_base_patch4_window7_224"])
def test_swin_mlp_zoo_gmacs_near_reference(name):
    """Both shifts within 2% of the reference count; the cyclic one mixes fewer windows, so it is lower.

    (C12/C6 have the C24 figure: heads do not change the spatial map's MACs.)
    """
    *_, img, _, gmacs = SWIN_MLP_REF[name]
    roll = count_gmacs(hiermlp.create_model(name), (3, img, img))
    pad = count_gmacs(hiermlp.create_model(name, shift_mode="pad"), (3, img, img))
    assert abs(roll - gmacs) / gmacs < 0.02 and abs(pad - gmacs) / gmacs < 0.02, (roll, pad)
    assert roll < pad
    assert f"{roll:.2f} GMACs roll / {pad:.2f} pad" in get_entry(name).notes  # the zoo note tells the truth


# ---- isotropic models equal timm's ---------------------------------------------------------------------
@pytest.mark.parametrize(("name", "layout"), [("mixer_b16_224", "timm_mixer"), ("gmlp_s16_224", "timm_gmlp")])
def test_isotropic_matches_timm(name, layout):
    theirs = randomize(timm.create_model(name))
    ours = hiermlp.create_model(name).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    result = hiermlp.load_checkpoint(ours, theirs.state_dict())
    assert result.layout == layout and not result.missing and not result.unexpected
    x = torch.randn(1, 3, 224, 224)
    diff = max_diff(ours(x), theirs(x))
    assert diff < 1e-5, diff
    # timm lists an isotropic model's blocks as its feature levels: the same levels, maps and defaults here
    assert [(f["num_chs"], f["reduction"]) for f in ours.feature_info] == [
        (f["num_chs"], f["reduction"]) for f in theirs.feature_info
    ]
    with torch.no_grad():
        mine, theirs_maps = (
            m.forward_intermediates(x, indices=[0, 5, -1], intermediates_only=True) for m in (ours, theirs)
        )
        assert max(max_diff(a, b) for a, b in zip(mine, theirs_maps)) < 1e-5
        feats = hiermlp.create_model(name, features_only=True).eval()
        feats.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.startswith(("head", "norm"))})
        ref = theirs.forward_intermediates(x, indices=3, intermediates_only=True)
        assert [max_diff(a, b) < 1e-5 for a, b in zip(feats(x), ref, strict=True)] == [True] * 3


# ---- the MLP zoo ---------------------------------------------------------------------------------------
NEW_FAMILIES = ("swin_mlp", "winmixer", "wingmlp", "hybrid", "baseline", "isotropic")
# the published and hiermlp's own sizes; the micro/pico/nano rows (zoo_micro) are tested in test_zoo_micro.py
NEW_MODELS = [
    n for f in NEW_FAMILIES for n in hiermlp.list_models(family=f) if n not in {*MICRO_VARIANTS, *SMALL_VARIANTS}
]


def test_zoo_has_every_family():
    assert len(NEW_MODELS) == 15
    for name in ("mixer_b16_224", "gmlp_s16_224", "hybrid_tiny_patch4_window7_224"):
        assert name in NEW_MODELS
        assert timm.is_model(f"hiermlp_{name}")


@pytest.mark.parametrize("name", NEW_MODELS)
def test_zoo_model_builds_and_runs(name):
    """Every row builds; the small ones also run here (tests/test_zoo.py runs all of them, forward and back)."""
    with torch.device("meta"):  # construction only: no memory, no init time
        params = sum(p.numel() for p in hiermlp.create_model(name).parameters())
    if params < 30e6:
        size = 224 if get_entry(name).pretrained_cfg["fixed_input_size"] else 64
        model = hiermlp.create_model(name, num_classes=10).eval()
        assert model(torch.randn(1, 3, size, size)).shape == (1, 10)
    assert get_entry(name).notes


def test_hybrid_mixes_per_stage():
    with torch.device("meta"):
        model = hiermlp.create_model("hybrid_tiny_patch4_window7_224")
    kinds = [
        isinstance(s.blocks[0].mixer, k)
        for s, k in zip(model.stages, (SpatialMlp, SpatialMlp) + (WindowAttention,) * 2)
    ]
    assert all(kinds) and not isinstance(model.stages[0].blocks[0].mixer, WindowAttention)
    assert model.stages[0].blocks[1].shift_mode == "roll"


def test_mixer_families_pick_their_shift():
    with torch.device("meta"):
        winmixer = hiermlp.create_model("winmixer_tiny_patch4_window7_224")
        wingmlp = hiermlp.create_model("wingmlp_tiny_patch4_window7_224")
    assert isinstance(winmixer.stages[0].blocks[1].mixer, TokenMlp) and winmixer.stages[0].blocks[1].shift_mode == "pad"
    block = wingmlp.stages[0].blocks[1]
    assert isinstance(block.mixer, GatedMlp) and block.shift_mode == "roll" and block.mlp is None


# ---- user mixers -----------------------------------------------------------------------------------------
README_SNIPPET = textwrap.dedent(
    '''
    import torch
    from einops import rearrange
    from torch import nn

    import hiermlp


    @hiermlp.register_mixer("window_conv")
    class WindowConv(nn.Module):
        """Depthwise conv over the tokens of each window, (B*nW, N, C) -> (B*nW, N, C)."""

        honours_mask = False  # a conv cannot apply the shift mask: the block shifts by zero padding

        def __init__(self, dim, *, window_size, num_heads, kernel_size=3):
            super().__init__()
            self.window_size = window_size
            self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)

        def forward(self, x, mask=None):
            wh, ww = self.window_size
            x = rearrange(x, "b (wh ww) c -> b c wh ww", wh=wh, ww=ww)
            return rearrange(self.conv(x), "b c wh ww -> b (wh ww) c")


    model = hiermlp.create_model(
        "swin_tiny_patch4_window7_224",
        mixer=("window_conv", "window_conv", "attention", "attention"),  # conv early, attention late
        mixer_kwargs=({"kernel_size": 5}, {"kernel_size": 3}, None, None),
        num_classes=10,
    )
    print(model(torch.randn(1, 3, 224, 224)).shape)  # torch.Size([1, 10])
    '''
)


@pytest.fixture
def clean_mixers():
    before = dict(MIXERS)
    yield
    MIXERS.clear()
    MIXERS.update(before)


def test_readme_user_mixer_snippet(clean_mixers, capsys):
    namespace: dict = {}
    exec(compile(README_SNIPPET, "README.md", "exec"), namespace)
    assert capsys.readouterr().out.strip() == "torch.Size([1, 10])"
    model = namespace["model"]
    assert model.stages[0].blocks[0].mixer.conv.kernel_size == (5, 5)
    assert model.stages[0].blocks[1].shift_mode == "pad"
    # the same mixer by name through timm's registry and through a training config
    m = timm.create_model(
        "hiermlp_swin_mlp_tiny_c24_patch4_window8_256", mixer="window_conv", mixer_kwargs={"kernel_size": 1}
    )
    assert type(m.stages[3].blocks[0].mixer).__name__ == "WindowConv"
    from hiermlp.train.config import config_from_dict
    from hiermlp.train.loop import model_from_config

    cfg = config_from_dict(
        {
            "model_kwargs": dict(
                patch_size=2,
                embed_dim=16,
                depths=[2, 2],
                num_heads=[2, 4],
                window_size=4,
                mixer=["window_conv", "spatial_mlp"],
                mixer_kwargs=[{"kernel_size": 3}, None],
            )
        }
    )
    model = model_from_config(cfg, num_classes=10)
    assert [type(s.blocks[0].mixer).__name__ for s in model.stages] == [
        "WindowConv",
        "SpatialMlp",
    ]  # create_model: the registered classes (spatial_mlp has no fast twin)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(hiermlp.ConfigError, match="kernel_sise"):
        hiermlp.create_model("swin_tiny_patch4_window7_224", mixer="window_conv", mixer_kwargs={"kernel_sise": 3})
