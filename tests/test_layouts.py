"""Checkpoint layouts both ways: hiermlp -> timm / Microsoft files that the reference classes load, and the
mmpretrain and Hugging Face transformers Swin layouts read back (written here from their official converters)."""

import re

import pytest
import timm
import torch
from timm.models import mlp_mixer

import hiermlp
from hiermlp.cli import main
from hiermlp.errors import ConfigError
from hiermlp.testing.swin_mlp_reference import RefSwinMLP
from hiermlp.weights import convert_state_dict, export_state_dict, read_state_dict

from .conftest import TINY_SWIN, randomize_
from .test_swin import to_microsoft_layout

# timm's SwinTransformer with TINY_SWIN's architecture
TIMM_TINY = {k: v for k, v in TINY_SWIN.items() if k != "drop_path_rate"}


def tiny_pair():
    """A randomised timm Swin and the hiermlp model loaded from it (the same function)."""
    ref = randomize_(timm.models.swin_transformer.SwinTransformer(**TIMM_TINY)).eval()
    ours = hiermlp.HierNet(**TINY_SWIN).eval()
    hiermlp.load_checkpoint(ours, ref.state_dict())
    return ref, ours


def microsoft_to_timm(sd: dict) -> dict:
    """The reference layout read back into timm's class, independently of hiermlp's converters."""
    sd = {k: v for k, v in sd.items() if not k.endswith(("attn_mask", "relative_position_index"))}
    out = {}
    for k, v in sd.items():
        k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", k)
        out[re.sub(r"^head\.", "head.fc.", k)] = v
    return out


@pytest.fixture(scope="module")
def swin_t():
    torch.manual_seed(0)
    ours = randomize_(hiermlp.create_model("swin_tiny_patch4_window7_224")).eval()
    return ours, torch.randn(1, 3, 224, 224)


def test_swin_t_timm_layout_loads_into_timms_class(swin_t, tmp_path):
    ours, x = swin_t
    path = hiermlp.save_checkpoint(ours, tmp_path / "swin_t_timm.safetensors", layout="timm")
    ref = timm.create_model("swin_tiny_patch4_window7_224").eval()
    ref.load_state_dict(read_state_dict(path), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), ours(x), atol=1e-5, rtol=0)


def test_swin_t_microsoft_layout_is_the_reference_file(swin_t, tmp_path):
    ours, x = swin_t
    path = hiermlp.save_checkpoint(ours, tmp_path / "swin_t_ms.pth", layout="microsoft")
    raw = torch.load(path, weights_only=True)
    assert list(raw) == ["model"]
    sd = raw["model"]
    # the reference's own buffers: merging at stage ends, head.*, index tables and the shifted blocks' masks
    assert "layers.0.downsample.reduction.weight" in sd and "layers.3.downsample.reduction.weight" not in sd
    assert "head.weight" in sd and sd["layers.0.blocks.1.attn_mask"].shape == (64, 49, 49)
    assert "layers.3.blocks.1.attn_mask" not in sd  # stage 4 at 224 is one window: no shift
    assert set(sd["layers.0.blocks.1.attn_mask"].unique().tolist()) == {0.0, -100.0}
    # the mask hiermlp writes is the reference's: the test's own construction (Swin's published recipe)
    torch.testing.assert_close(sd["layers.1.blocks.1.attn_mask"], reference_mask(28, 7, 3))
    ref = timm.create_model("swin_tiny_patch4_window7_224").eval()
    ref.load_state_dict(microsoft_to_timm(sd), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), ours(x), atol=1e-5, rtol=0)


def reference_mask(size, ws, s):
    img = torch.zeros(size, size)
    regions = (slice(0, -ws), slice(-ws, -s), slice(-s, None))
    for a, hs in enumerate(regions):
        for b, wsl in enumerate(regions):
            img[hs, wsl] = 3 * a + b
    win = img.unfold(0, ws, ws).unfold(1, ws, ws).reshape(-1, ws * ws)  # (nW, N), row-major windows
    diff = win[:, None, :] - win[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


def test_swin_mlp_microsoft_layout_loads_into_the_reference():
    ref = randomize_(RefSwinMLP(32, 16, (2, 2), (1, 2), 4, num_classes=10)).eval()
    ours = hiermlp.HierNet(
        img_size=32, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4, mixer="spatial_mlp", num_classes=10
    ).eval()
    hiermlp.load_checkpoint(ours, {"model": ref.state_dict()})
    exported = export_state_dict(ours, "microsoft")
    fresh = RefSwinMLP(32, 16, (2, 2), (1, 2), 4, num_classes=10).eval()
    fresh.load_state_dict(exported, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), ref(x), atol=0, rtol=0)
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


# the isotropic rows at reduced width and depth (the same classes and key names as the full models)
_GMLP = dict(mlp_ratio=6, block_layer=mlp_mixer.SpatialGatingBlock, mlp_layer=mlp_mixer.GatedMlp)
SMALL_ISOTROPIC = {
    "mixer_b16_224": (dict(embed_dim=64, depths=(2,), mixer_kwargs=dict(hidden_tokens=32)), {}),
    "gmlp_s16_224": (dict(embed_dim=64, depths=(2,)), _GMLP),
}


@pytest.mark.parametrize("name", sorted(SMALL_ISOTROPIC))
def test_isotropic_timm_layout_round_trip(name, tmp_path):
    ours_kwargs, timm_kwargs = SMALL_ISOTROPIC[name]
    ours = randomize_(hiermlp.create_model(name, num_classes=5, **ours_kwargs)).eval()
    path = hiermlp.save_checkpoint(ours, tmp_path / f"{name}.pth", layout="timm")
    ref = mlp_mixer.MlpMixer(num_classes=5, patch_size=16, num_blocks=2, embed_dim=64, **timm_kwargs).eval()
    ref.load_state_dict(read_state_dict(path), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ref(x), ours(x), atol=1e-5, rtol=0)


def test_every_layout_round_trips_for_tiny_swin(tmp_path):
    _, ours = tiny_pair()
    for layout in ("hiermlp", "timm", "microsoft"):
        path = hiermlp.save_checkpoint(ours, tmp_path / f"{layout}.pth", layout=layout)
        back = hiermlp.HierNet(**TINY_SWIN)
        hiermlp.load_checkpoint(back, path)
        assert all(torch.equal(back.state_dict()[k], v) for k, v in ours.state_dict().items()), layout


def test_layouts_a_family_lacks_are_named():
    winmixer = hiermlp.HierNet(**{**TINY_SWIN, "mixer": "token_mlp", "num_heads": 1})
    with pytest.raises(ConfigError, match=r"has no 'timm' layout.*layouts for it: hiermlp"):
        hiermlp.save_checkpoint(winmixer, "unused.pth", layout="timm")
    with pytest.raises(ConfigError, match="unknown checkpoint layout 'onnx'"):
        export_state_dict(winmixer, "onnx")


def test_families_are_told_by_type_fast_twins_included():
    from hiermlp import accel
    from hiermlp.mixers import MIXERS, WindowAttention
    from hiermlp.weights.layouts import model_family

    model = hiermlp.HierNet(**TINY_SWIN)
    assert model_family(model) == "swin"
    accel.accelerate(model)  # sped-up twins subclass the plain mixers: the same architecture, the same layouts
    assert accel.is_accelerated(model) and model_family(model) == "swin"
    assert model_family(accel.accelerate(hiermlp.HierNet(**{**TINY_SWIN, "mixer": "spatial_mlp"}))) == "swin_mlp"

    class OtherAttention(WindowAttention):  # a registered subclass is an architecture of its own
        pass

    hiermlp.register_mixer("test_other_attention", OtherAttention)
    try:
        assert model_family(hiermlp.HierNet(**{**TINY_SWIN, "mixer": "test_other_attention"})) == "other"
    finally:
        del MIXERS["test_other_attention"]


def test_cli_saves_a_layout(tmp_path, capsys):
    src, out = tmp_path / "tiny.pth", tmp_path / "tiny_ms.pth"
    _, ours = tiny_pair()
    hiermlp.save_checkpoint(ours, src)
    tiny = ["img_size=32", "patch_size=2", "embed_dim=16", "depths=(2,2,2,2)", "num_heads=(1,2,2,4)"]
    tiny += ["window_size=4", "num_classes=10"]

    def convert(layout, model, *options):
        return main(["convert", str(src), str(out), "--layout", layout, "--model", model, "--set", *tiny, *options])

    assert convert("microsoft", "swin_tiny_patch4_window7_224") == 0
    assert convert_state_dict(read_state_dict(out))[0] == "microsoft_swin"
    # a family without the layout: exit 2 and one line naming it
    winmixer = hiermlp.HierNet(**{**TINY_SWIN, "mixer": "token_mlp", "num_heads": 1})
    hiermlp.save_checkpoint(winmixer, src)
    capsys.readouterr()
    assert convert("timm", "winmixer_tiny_patch4_window7_224", "num_heads=1") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no 'timm' layout" in err
    with pytest.raises(SystemExit) as bad:  # argparse: exit code 2 for an unknown layout
        convert("onnx", "swin_tiny_patch4_window7_224")
    assert bad.value.code == 2


# ---- mmpretrain / mmdet / mmseg ------------------------------------------------------------------------------
def correct_unfold_reduction_order(x):  # mmseg tools/model_converters/swin2mmseg.py
    out_channel, in_channel = x.shape
    x = x.reshape(out_channel, 4, in_channel // 4)
    return x[:, [0, 2, 1, 3], :].transpose(1, 2).reshape(out_channel, in_channel)


def correct_unfold_norm_order(x):
    in_channel = x.shape[0]
    x = x.reshape(4, in_channel // 4)
    return x[[0, 2, 1, 3], :].transpose(0, 1).reshape(in_channel)


def to_mmpretrain(official: dict) -> dict:
    """Official Swin -> mmpretrain's ``SwinTransformer`` + ``LinearClsHead`` (swin2mmseg's rules)."""
    out = {}
    for k, v in official.items():
        if k.startswith("head."):
            out["head.fc." + k[5:]] = v
            continue
        if k.startswith("layers"):
            if "attn." in k:
                k = k.replace("attn.", "attn.w_msa.")
            elif "mlp.fc1." in k:
                k = k.replace("mlp.fc1.", "ffn.layers.0.0.")
            elif "mlp.fc2." in k:
                k = k.replace("mlp.fc2.", "ffn.layers.1.")
            elif "downsample" in k:
                v = correct_unfold_reduction_order(v) if "reduction." in k else correct_unfold_norm_order(v)
            k = k.replace("layers", "stages", 1)
        elif k.startswith("patch_embed"):
            k = k.replace("proj", "projection")
        elif k.startswith("norm."):
            k = k.replace("norm.", "norm3.")
        out["backbone." + k] = v
    return out


# ---- Hugging Face transformers --------------------------------------------------------------------------------
def to_hf(official: dict) -> dict:
    """Official Swin -> transformers' ``SwinForImageClassification`` (convert_swin_timm_to_pytorch.py's rules)."""
    out = {}
    for k, v in official.items():
        if k.endswith("attn_mask"):  # transformers builds its masks per forward: not in its files
            continue
        if "qkv" in k:
            layer, block = re.match(r"layers\.(\d+)\.blocks\.(\d+)", k).groups()
            base = f"swin.encoder.layers.{layer}.blocks.{block}.attention.self"
            kind = k.rsplit(".", 1)[1]
            for name, part in zip(("query", "key", "value"), v.chunk(3, 0)):
                out[f"{base}.{name}.{kind}"] = part
            continue
        name = k
        if "patch_embed.proj" in name:
            name = name.replace("patch_embed.proj", "embeddings.patch_embeddings.projection")
        if "patch_embed.norm" in name:
            name = name.replace("patch_embed.norm", "embeddings.norm")
        if "layers" in name:
            name = "encoder." + name
        if "attn.proj" in name:
            name = name.replace("attn.proj", "attention.output.dense")
        if "attn" in name:
            name = name.replace("attn", "attention.self")
        if "norm1" in name:
            name = name.replace("norm1", "layernorm_before")
        if "norm2" in name:
            name = name.replace("norm2", "layernorm_after")
        if "mlp.fc1" in name:
            name = name.replace("mlp.fc1", "intermediate.dense")
        if "mlp.fc2" in name:
            name = name.replace("mlp.fc2", "output.dense")
        if name in ("norm.weight", "norm.bias"):
            name = "layernorm." + name.split(".")[1]
        name = name.replace("head.", "classifier.") if name.startswith("head.") else "swin." + name
        out[name] = v
    return out


@pytest.mark.parametrize("layout, convert", [("mmpretrain_swin", to_mmpretrain), ("hf_swin", to_hf)])
def test_foreign_swin_layouts_are_detected_and_exact(layout, convert):
    ref, _ = tiny_pair()
    official = to_microsoft_layout(ref.state_dict())["model"]
    foreign = convert(official)
    assert convert_state_dict(dict(foreign))[0] == layout
    ours = hiermlp.HierNet(**TINY_SWIN).eval()
    result = hiermlp.load_checkpoint(ours, foreign)
    assert result.layout == layout and not result.missing and not result.unexpected
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_hiermlp_files_are_never_taken_for_foreign_layouts():
    # hiermlp's keys contain "stages.", "patch_embed.proj." and ".mixer.": none of the foreign detectors fire
    mixer = hiermlp.create_model("mixer_b16_224", **SMALL_ISOTROPIC["mixer_b16_224"][0])
    for model in (hiermlp.HierNet(**TINY_SWIN), mixer):
        assert convert_state_dict(model.state_dict())[0] == "hiermlp"
