"""Export to ONNX and torch.export, verified against eager PyTorch, for every mixer family in MIXERS."""

from __future__ import annotations

import pytest
import torch

import hiermlp
from hiermlp.cli import main
from hiermlp.errors import ConfigError
from hiermlp.export import dynamic_size_range, export_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# small enough to export in seconds: 2 stages, window 4, a shifted block per stage, padding at 20x36
SMALL = dict(
    img_size=(20, 36),
    patch_size=2,
    embed_dim=8,
    depths=(2, 2),
    num_heads=(1, 2),
    window_size=4,
    num_classes=5,
    drop_path_rate=0.0,
)


def small_model(mixer: str) -> torch.nn.Module:
    return hiermlp.HierNet(**SMALL, mixer=mixer).eval()


@pytest.mark.parametrize("mixer", sorted(hiermlp.MIXERS))
@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_dynamic_batch_export_matches_eager(mixer, fmt, tmp_path):
    res = export_model(small_model(mixer), fmt, (20, 36), dynamic_batch=True, out=tmp_path / f"m.{fmt}")
    assert res.path.is_file()
    assert [c.batch for c in res.checks] == [1, 3]  # two batch sizes, neither the traced one (2)
    assert res.ok, [str(c) for c in res.checks]
    assert res.max_abs_diff <= 1e-4


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_a_registered_model_exports_through_the_speed_layer(fmt, tmp_path):
    # create_model hands out the speed layer's twins; at 16x16 the second stage is one 4x4 window, where the
    # fused CPU attention's output layout differs from the exporter's math replacement
    kwargs = {k: v for k, v in SMALL.items() if k != "img_size"}
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **kwargs).eval()
    assert any(type(m).__module__.startswith("hiermlp.accel") for m in model.modules())
    res = export_model(model, fmt, (16, 16), dynamic_batch=True, out=tmp_path / f"m.{fmt}")
    assert res.ok and res.max_abs_diff <= 1e-4, [str(c) for c in res.checks]


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_dynamic_size_export_matches_eager_at_a_second_size(fmt, tmp_path):
    model = hiermlp.HierNet(**{**SMALL, "img_size": (36, 44)}, mixer="attention").eval()
    res = export_model(model, fmt, (36, 44), dynamic_size=True, out=tmp_path / f"m.{fmt}")
    sizes = {c.img_size for c in res.checks}
    assert len(sizes) == 2 and (36, 44) in sizes, res.checks
    assert res.ok, [str(c) for c in res.checks]


def test_dynamic_size_range_follows_the_window_grid():
    # Swin-T at 224: stage 4 is one 7x7 window (stride 32 -> sizes <= 224), stage 3 has two (stride 16 -> > 112)
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", num_classes=0)
    assert dynamic_size_range(model, (224, 224)) == ((113, 224), (113, 224))
    assert dynamic_size_range(model, (448, 448)) == ((225, None), (225, None))


def test_torch_export_out_of_range_size_fails_loudly(tmp_path):
    res = export_model(small_model("attention"), "torch-export", (20, 36), dynamic_size=True, out=tmp_path / "m.pt2")
    (lo, _), _ = res.size_range
    program = torch.export.load(str(res.path)).module()
    with pytest.raises(Exception, match=r"(?i)guard|constraint|range|expected"):
        program(torch.randn(1, 3, lo - 1 if lo > 2 else 1, 36))


def test_cli_exports_a_trainer_checkpoint_and_prints_differences(tmp_path, capsys):
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **{k: v for k, v in SMALL.items()}, in_chans=1)
    config = {
        "model": "swin_tiny_patch4_window7_224",
        "model_kwargs": {"patch_size": 2, "embed_dim": 8, "depths": [2, 2], "num_heads": [1, 2], "window_size": 4},
        "in_chans": 1,
        "img_size": 20,
    }
    torch.save({"model": model.state_dict(), "config": config}, tmp_path / "best.pth")
    out = tmp_path / "best.pt2"
    rc = main(
        ["export", str(tmp_path / "best.pth"), "--format", "torch-export", "--img-size", "20", "36", "--out", str(out)]
    )
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "max|diff|" in text and "verified" in text
    loaded = torch.export.load(str(out)).module()
    x = torch.randn(2, 1, 20, 36)
    torch.testing.assert_close(loaded(x), model.eval()(x), atol=1e-5, rtol=0)


def test_cli_exits_nonzero_above_tolerance(tmp_path, capsys):
    rc = main(
        [
            "export",
            "swin_tiny_patch4_window7_224",
            "--format",
            "torch-export",
            "--img-size",
            "32",
            "--num-classes",
            "3",
            "--atol",
            "-1",
            "--out",
            str(tmp_path / "m.pt2"),
        ]
    )
    captured = capsys.readouterr()
    assert rc == 1
    assert "VERIFICATION FAILED" in captured.err


def test_bad_arguments_are_hiermlp_errors(tmp_path):
    with pytest.raises(ConfigError, match="format"):
        export_model(small_model("attention"), "tflite", 20)
    with pytest.raises(ConfigError, match="opset"):
        export_model(small_model("attention"), "onnx", 20, opset=11)
    with pytest.raises(ConfigError, match="neither"):
        export_model("no_such_model_or_file", "onnx", 20)
    state_dict = tmp_path / "sd.pth"
    torch.save(small_model("attention").state_dict(), state_dict)
    with pytest.raises(ConfigError, match="--model"):
        export_model(state_dict, "onnx", 20)


def test_dynamic_size_range_per_axis_in_3d():
    # micro Video Swin at 8x32x32: stem strides (2, 4, 4), windows (2, 4, 4), merging H and W only, so the
    # per-axis strides are T 2-2-2 and H/W 4-8-16. T: stage windows of 2*2=4 frames, 2 of them at 8 -> T > 4.
    # H: stage 2's one 8*4=32-pixel window caps it at 32, stage 1's two 16-pixel windows need H > 16.
    model = hiermlp.create_model("swin3d_micro_conv_window2x4_8x32")
    assert dynamic_size_range(model, (8, 32, 32)) == ((5, None), (17, 32), (17, 32))


@pytest.mark.parametrize("fmt", ["onnx", "torch-export"])
def test_cli_exports_a_3d_model_with_dynamic_sizes(fmt, tmp_path, capsys):
    out = tmp_path / f"clip.{fmt}"
    args = ["export", "swin3d_micro_conv_window2x4_8x32", "--format", fmt, "--img-size", "8", "32", "32"]
    assert main([*args, "--dynamic-size", "--out", str(out)]) == 0, capsys.readouterr()
    text = capsys.readouterr().out
    assert "T in [5, inf], H in [17, 32], W in [17, 32]" in text and "verified: 4 checks" in text
    assert "size=8x32x32" in text and out.is_file()
    # two sizes for a 3-D model are an error naming its axes (one size would mean every axis)
    assert main(["export", "swin3d_micro_conv_window2x4_8x32", "--img-size", "32", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "takes 3-D inputs (TxHxW)" in err, err


def test_a_1d_model_exports(tmp_path):
    model = hiermlp.HierNet(
        spatial_dims=1, img_size=64, patch_size=4, embed_dim=8, depths=(2, 2), num_heads=(1, 2), window_size=4,
        num_classes=3, drop_path_rate=0.0,
    ).eval()  # fmt: skip
    res = export_model(model, "torch-export", 60, dynamic_size=True, out=tmp_path / "seq.pt2")
    assert res.ok and res.img_size == (60,) and len({c.img_size for c in res.checks}) == 2, res.checks
