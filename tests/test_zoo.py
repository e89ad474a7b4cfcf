"""Every registered model: reference figures, and the registry contract (through hiermlp and through timm).

Parametrized over ``hiermlp.list_models()``, so a newly registered model is covered without edits: image
classifiers here (through hiermlp and timm's mirror), videos, volumes, sequences and segmentation networks,
which timm's mirror leaves out, in ``test_non_image_rows_*`` below.
"""

import json

import pytest
import timm
import torch

import hiermlp
from hiermlp.bench import count_gmacs

# ../shared/REFERENCE.md: params (M, as printed there) and the reference code's analytic GMACs
SWIN_REFERENCE = {
    "swin_tiny_patch4_window7_224": (28.29, 4.49, 224),
    "swin_small_patch4_window7_224": (49.61, 8.75, 224),
    "swin_base_patch4_window7_224": (87.77, 15.44, 224),
    "swin_base_patch4_window12_384": (87.90, 47.11, 384),
    "swin_large_patch4_window7_224": (196.53, 34.49, 224),
    "swin_large_patch4_window12_384": (196.74, 103.95, 384),
    "swin_tiny_c24_patch4_window8_256": (28.31, 5.93, 256),
}


def is_image_classifier(name) -> bool:
    entry = hiermlp.models.registry.get_entry(name)
    return entry.kwargs.get("spatial_dims", 2) == 2 and getattr(entry.builder, "task", "classify") == "classify"


IMAGE_MODELS = [n for n in hiermlp.list_models() if is_image_classifier(n)]
OTHER_MODELS = [n for n in hiermlp.list_models() if not is_image_classifier(n)]


def meta_model(name, **kwargs):
    with torch.device("meta"):  # no memory, no init: counting only
        return hiermlp.create_model(name, **kwargs)


@pytest.mark.parametrize("name", sorted(SWIN_REFERENCE))
def test_swin_params_and_gmacs_match_reference(name):
    params_m, gmacs, img = SWIN_REFERENCE[name]
    model = meta_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == params_m
    timm_name = name if name in timm.list_models("swin_*") else None
    if timm_name:  # exact count, not just the rounded figure
        with torch.device("meta"):
            assert n == sum(p.numel() for p in timm.create_model(timm_name).parameters())
    assert count_gmacs(model, (3, img, img), device="meta") == pytest.approx(gmacs, rel=0.01)


def test_list_models_pattern():
    assert "swin_tiny_patch4_window7_224" in hiermlp.list_models("swin_*")
    assert hiermlp.list_models("nothing_matches_this*") == []
    assert set(hiermlp.list_models("swin_t*")) <= set(hiermlp.list_models())


def small_input(model) -> torch.Tensor:
    c = model.pretrained_cfg["input_size"][0]
    return torch.randn(1, c, 40, 36)  # non-square and not a window multiple: every model pads


def check_forward_backward(model, num_classes):
    x = small_input(model)
    out = model(x)
    assert out.shape == (1, num_classes) and torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


# models above this run on the meta device here (shapes only, free): their families' smaller rows run for real
REAL_RUN_PARAMS = 30e6


def sized(name) -> dict:
    """Resolution-tied rows (``fixed_input_size``, e.g. sMLPNet) are built for the small test input."""
    fixed = hiermlp.models.registry.get_entry(name).pretrained_cfg.get("fixed_input_size", False)
    return dict(img_size=(40, 36)) if fixed else {}


def n_params(name) -> int:
    return sum(p.numel() for p in meta_model(name).parameters())


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_registry_model_builds_forwards_backwards(name):
    if n_params(name) > REAL_RUN_PARAMS:
        model = meta_model(name, num_classes=7, drop_path_rate=0.0, **sized(name))
        assert model(small_input(model).to("meta")).shape == (1, 7)
    else:
        model = hiermlp.create_model(name, num_classes=7, drop_path_rate=0.0, **sized(name))
        check_forward_backward(model, 7)
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == name and cfg["num_classes"] == 7 and cfg["classifier"] == "head.fc"
    assert model.get_classifier().out_features == 7


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_registry_model_through_timm(name):
    # the architecture timm builds is exactly hiermlp's (checked on the meta device: free for any size) ...
    with torch.device("meta"):
        via_timm = timm.create_model(f"hiermlp_{name}", num_classes=3, in_chans=1)
        features = timm.create_model(f"hiermlp_{name}", features_only=True)
    ours = meta_model(name, num_classes=3, in_chans=1)
    assert {k: v.shape for k, v in via_timm.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    # timm's defaults: every stage of a hierarchy, the last 3 blocks of an isotropic model (as its MlpMixer)
    levels = [f["num_chs"] for f in ours.feature_info]
    assert features.feature_info.channels() == (levels[-3:] if ours.isotropic else levels)
    # ... and runs through timm (small rows for real; gradients are checked in the test above)
    if sum(p.numel() for p in ours.parameters()) < REAL_RUN_PARAMS:
        with torch.no_grad():
            model = timm.create_model(f"hiermlp_{name}", num_classes=3, in_chans=1, **sized(name)).eval()
            out = model(torch.randn(1, 1, 40, 36))
            assert out.shape == (1, 3) and torch.isfinite(out).all()
            outs = timm.create_model(f"hiermlp_{name}", features_only=True, **sized(name))(torch.randn(1, 3, 40, 36))
        # timm lists a hierarchy's NHWC maps (as for its Swin), an isotropic model's NCHW (as for its MlpMixer)
        assert [o.shape[1 if ours.isotropic else -1] for o in outs] == features.feature_info.channels()


def test_timm_mirror_is_prefixed_and_complete():
    # (less the model tests/test_detection.py registers, whichever test ran first)
    test_only = {"hiermlp_micro_swin_for_tests"}
    mirrored = set(timm.list_models("hiermlp_*")) - test_only
    assert mirrored == {f"hiermlp_{n}" for n in IMAGE_MODELS} - test_only
    assert OTHER_MODELS and not mirrored & {f"hiermlp_{n}" for n in OTHER_MODELS}
    # timm's own swin is untouched
    assert type(timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)).__module__.startswith("timm.")
    cfg = timm.models.get_pretrained_cfg("hiermlp_swin_tiny_patch4_window7_224")
    assert cfg.url.endswith("swin_tiny_patch4_window7_224.pth")


def small_clip(model) -> torch.Tensor:
    """A small input of the row's own rank, no axis a window multiple: every model pads."""
    c, *spatial = model.pretrained_cfg["input_size"]
    return torch.randn(1, c, *(35, 41, 38)[-len(spatial) :]) if len(spatial) < 3 else torch.randn(1, c, 5, 41, 38)


@pytest.mark.parametrize("name", OTHER_MODELS)
def test_non_image_rows_build_forward_backward(name):
    """Video, volume, sequence and segmentation rows through hiermlp's registry (small widths: the full rows'
    parameter counts are pinned by tests/test_video_swin.py and tests/test_swin_unetr.py)."""
    entry = hiermlp.models.registry.get_entry(name)
    small = dict(depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))
    if entry.builder is hiermlp.models.HierNet:
        model = hiermlp.create_model(name, num_classes=3, embed_dim=8, drop_path_rate=0.0, **small)
        out = model(small_clip(model))
        assert out.shape == (1, 3)
    else:  # segmentation: logits per voxel, at the input's own size
        model = hiermlp.create_model(name, num_classes=3, feature_size=12, **small)
        x = small_clip(model)
        out = model(x)
        assert out.shape == (1, 3, *x.shape[2:])
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == name and cfg["input_size"] == entry.pretrained_cfg["input_size"]


def test_info_shows_window_geometry_only_for_window_mixers(capsys):
    from hiermlp.cli import main

    assert main(["info", "cyclemlp_b1", "--img-size", "64", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["mixers"] == ["cycle"] * 4 and info["windows"] == [None] * 4 and info["shifts"] == [None] * 4
    assert main(["info", "cyclemlp_b1", "--img-size", "64"]) == 0
    assert "mixer=cycle map mixer (whole feature map)" in capsys.readouterr().out
