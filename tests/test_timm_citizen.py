"""hiermlp's models as timm models: what timm's own tests/test_models.py checks for timm's, for every
``hiermlp_*`` model in timm's registry, offline.

As in timm's suite, inputs are reduced and big models skip the forward/backward checks: those run on the
smallest model of every family (a ``*tiny*`` row, or gMLP-S for the isotropic ones) with two blocks per stage
(every stage, merging, unshifted and shifted block stays; the depth is what makes them slow), the cfg and
structure checks on every model at full size, built on the meta device (free at any size).
"""

import math
import re

import pytest
import timm
import torch
from timm.models import get_arch_pretrained_cfgs, get_pretrained_cfg

import hiermlp
from hiermlp.errors import CheckpointError, ConfigError
from hiermlp.factory import resolve_source
from hiermlp.models.registry import get_entry, nominal_pool_size
from hiermlp.testing import fast

from .conftest import randomize_

# every row of the zoo (not the model tests/test_detection.py registers); the published sizes are the rows
# without the small ladder of hiermlp.models.zoo_micro (micro, pico, nano)
ALL = [n for n in timm.list_models("hiermlp_*") if "micro_swin_for_tests" not in n]
PUBLISHED = [n for n in ALL if not re.search(r"_(micro|pico|nano)(_|$)", n)]


def _smallest_per_family() -> list[str]:
    by_family: dict[str, list[str]] = {}
    for n in PUBLISHED:
        by_family.setdefault(get_entry(n[len("hiermlp_") :]).family, []).append(n)

    def size(n):
        kw = get_entry(n[len("hiermlp_") :]).kwargs
        return kw.get("embed_dim", 96), sum(kw.get("depths", ())), len(n)

    return sorted(min(names, key=size) for names in by_family.values())


SMALL = _smallest_per_family()
# the fields of timm's own Swin cfgs (timm.create_model("swin_tiny_patch4_window7_224").pretrained_cfg)
TIMM_FIELDS = {
    "url", "hf_hub_id", "architecture", "tag", "custom_load", "input_size", "fixed_input_size", "interpolation",
    "crop_pct", "crop_mode", "mean", "std", "num_classes", "pool_size", "first_conv", "classifier", "license",
}  # fmt: skip


def build(name, **kwargs):
    """timm.create_model with two blocks per stage (see the module doc)."""
    depths = get_entry(name[len("hiermlp_") :]).kwargs["depths"]
    return timm.create_model(name, depths=(2,) * len(depths), **kwargs)


def small_input(model, batch=1):
    """timm's reduced test size: 64x64 (a non-multiple of most windows) unless the model is fixed-size."""
    cfg = model.pretrained_cfg
    size = cfg["input_size"][1:] if cfg["fixed_input_size"] else (64, 64)
    return torch.randn(batch, cfg["input_size"][0], *size)


def test_small_models_cover_every_family():
    assert {"hiermlp_swin_tiny_patch4_window7_224", "hiermlp_gmlp_s16_224"} <= set(SMALL)
    assert len(SMALL) == len({get_entry(n[len("hiermlp_") :]).family for n in ALL})


@pytest.mark.parametrize("name", ALL)
def test_default_cfgs_are_timms(name):
    cfg = get_pretrained_cfg(name).to_dict()
    entry = get_entry(name[len("hiermlp_") :])
    # timm's to_dict drops None: no hub copy -> no hf_hub_id, an untagged row (no weights) -> no tag
    null = ({"hf_hub_id"} if not entry.pretrained_cfg.get("hf_hub_id") else set()) | (
        {"tag"} if not entry.tags[0] else set()
    )
    null |= {"license"} if not entry.pretrained_cfg.get("license") else set()  # official code without a license
    assert TIMM_FIELDS - null <= set(cfg) and cfg["architecture"] == name
    tags = get_arch_pretrained_cfgs(name)
    bare = name[len("hiermlp_") :]
    if timm.is_model(bare):  # timm has the architecture: the same tags, order, sources and sizes
        theirs = get_arch_pretrained_cfgs(bare)
        assert [t.partition(".")[2] for t in theirs] == list(entry.tags)
        for (_, a), (_, b) in zip(theirs.items(), tags.items()):
            fields = ("url", "hf_hub_id", "num_classes", "input_size", "crop_pct", "interpolation", "mean", "std")
            assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
            # timm's isotropic models output tokens (no pool_size); hiermlp's the NHWC map, checked below
            assert a.pool_size is None or a.pool_size == b.pool_size
    assert list(tags) == [f"{name}.{t}" if t else name for t in entry.tags]
    for full, c in tags.items():
        assert c.tag == (full.partition(".")[2] or None) and c.architecture == name
        assert bool(c.url) == bool(c.has_weights)
        if c.hf_hub_id:  # timm's hub copy of the same weights, under timm's own name
            assert c.hf_hub_id == f"timm/{name[len('hiermlp_') :]}.{c.tag}"
    # pool_size is the real unpooled map: the model's own last reduction at the cfg's input size
    with torch.device("meta"):
        model = timm.create_model(name)
    assert model.pretrained_cfg == cfg | {"num_classes": model.num_classes}
    reduction = model.feature_info[-1]["reduction"]
    assert cfg["pool_size"] == tuple(math.ceil(s / reduction) for s in cfg["input_size"][1:])
    assert model.feature_info[-1]["num_chs"] == model.num_features
    assert len(model.feature_info) >= 3  # timm's test_models: stages, or an isotropic model's blocks
    sd = model.state_dict()
    assert cfg["first_conv"] + ".weight" in sd and cfg["classifier"] + ".weight" in sd
    assert sd[cfg["first_conv"] + ".weight"].shape[1] == cfg["input_size"][0]


def test_invalid_tags_error_like_timms():
    with pytest.raises(RuntimeError, match=r"Invalid pretrained tag \(bogus\) for hiermlp_swin_tiny"):
        timm.create_model("hiermlp_swin_tiny_patch4_window7_224.bogus")
    with pytest.raises(RuntimeError, match=r"Invalid pretrained tag \(bogus\) for swin_tiny.*ms_in1k, ms_in22k_ft"):
        hiermlp.create_model("swin_tiny_patch4_window7_224.bogus")
    with torch.device("meta"):
        m = timm.create_model("hiermlp_swin_tiny_patch4_window7_224.ms_in22k")
        ours = hiermlp.create_model("swin_base_patch4_window7_224")
    assert m.num_classes == 21841 and m.pretrained_cfg["tag"] == "ms_in22k"
    # the trainer, bench and export resolve "arch.tag" names to hiermlp's registry too
    assert resolve_source("swin_tiny_patch4_window7_224.ms_in22k") == (
        "hiermlp",
        "swin_tiny_patch4_window7_224.ms_in22k",
    )
    assert ours.pretrained_cfg["tag"] == "ms_in22k_ft_in1k"  # timm's default tag for Swin-B


# the Microsoft README's ImageNet-1k top-1 of each release, by timm tag
SWIN_TOP1 = {
    "swin_tiny_patch4_window7_224": {"ms_in1k": 81.2, "ms_in22k_ft_in1k": 80.9},
    "swin_small_patch4_window7_224": {"ms_in22k_ft_in1k": 83.2, "ms_in1k": 83.2},
    "swin_base_patch4_window7_224": {"ms_in22k_ft_in1k": 85.2, "ms_in1k": 83.5},
    "swin_base_patch4_window12_384": {"ms_in22k_ft_in1k": 86.4, "ms_in1k": 84.5},
    "swin_large_patch4_window7_224": {"ms_in22k_ft_in1k": 86.3},
    "swin_large_patch4_window12_384": {"ms_in22k_ft_in1k": 87.3},
}


@pytest.mark.parametrize("name", sorted(SWIN_TOP1))
def test_zoo_note_and_docs_row_give_the_default_tags_top1(name):
    from pathlib import Path

    entry = get_entry(name)
    tag = entry.tags[0]
    label = {"ms_in1k": "IN-1K", "ms_in22k_ft_in1k": "IN-22K -> 1K"}[tag]
    assert entry.notes.split(" (")[0].endswith(f"{label} {SWIN_TOP1[name][tag]}"), entry.notes
    zoo = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    (row,) = [line for line in zoo.splitlines() if line.startswith(f"| `{name}` |")]
    assert f"{label.replace(' -> ', '→')} {SWIN_TOP1[name][tag]}" in row.split("|")[-2].split(";")[0], row
    if tag != "ms_in1k" and "ms_in1k" in SWIN_TOP1[name]:  # a 22K default names the IN-1K-only release too
        top1 = SWIN_TOP1[name]["ms_in1k"]
        assert f"ms_in1k: IN-1K {top1}" in entry.notes and f"`.ms_in1k` IN-1K {top1}" in row


@pytest.mark.parametrize("name", SMALL)
def test_forward_backward_reach_every_parameter(name):
    model = build(name, drop_path_rate=0.0)
    x = small_input(model)
    out = model(x)
    assert out.shape == (1, model.num_classes) and torch.isfinite(out).all()
    out.mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters without gradient: {no_grad[:5]}"


@pytest.mark.parametrize("name", SMALL)
def test_unpooled_output_is_pool_size_and_non_std_cfgs(name):
    model = build(name).eval()
    cfg = model.pretrained_cfg
    x = small_input(model)
    pool = nominal_pool_size(get_entry(name[len("hiermlp_") :]).kwargs, x.shape[1:])
    if cfg["fixed_input_size"]:
        assert pool == cfg["pool_size"]
    with torch.no_grad():
        feats = model.forward_features(x)  # NHWC, the model's output_fmt
        assert model.output_fmt == "NHWC" and feats.shape == (1, *pool, model.num_features)
        assert model.forward_head(feats, pre_logits=True).shape == (1, model.num_features)
        model.reset_classifier(0)
        assert model(x).shape == (1, model.num_features)
        model.reset_classifier(0, "")
        assert model(x).shape == (1, *pool, model.num_features)
        # non-standard: no classifier nor pooling from __init__, one input channel, head dropout
        bare = build(name, num_classes=0, global_pool="", in_chans=1, drop_rate=0.1).eval()
        assert bare.pretrained_cfg["input_size"][0] == 1
        assert bare(x[:, :1]).shape == (1, *pool, bare.num_features)


@pytest.mark.parametrize("name", SMALL)
def test_forward_intermediates_and_features_only(name):
    torch.manual_seed(0)
    model = build(name).eval()
    x = small_input(model)
    info = model.feature_info
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x), rtol=0, atol=1e-6)
        assert len(inter) == len(info)
        for t, f in zip(inter, info):
            assert t.shape == (1, f["num_chs"], math.ceil(x.shape[2] / f["reduction"]), t.shape[3])
        n = len(info)
        # timm's defaults: a hierarchy's stages as a list of NHWC maps (as for timm's Swin); an isotropic
        # model's last 3 blocks through forward_intermediates, NCHW (as for timm's MlpMixer)
        isotropic = model.isotropic
        assert n >= 3 or isotropic  # timm's test_models: at least 3 levels (here 2 blocks, see `build`)
        for kwargs, take in (
            ({}, range(n - min(3, n), n) if isotropic else range(n)),
            (dict(feature_cls="getter", out_indices=min(2, n)), range(n - min(2, n), n)),
        ):
            torch.manual_seed(0)  # the same init as `model`
            feats = build(name, features_only=True, **kwargs).eval()
            assert "num_classes" not in feats.pretrained_cfg and feats.pretrained_cfg["architecture"] == name
            assert feats.feature_info.channels() == [info[i]["num_chs"] for i in take]
            outs = feats(x)
            getter = kwargs.get("feature_cls", "getter" if isotropic else "list") == "getter"
            nhwc = kwargs.get("output_fmt", "NCHW" if getter else "NHWC") == "NHWC"
            for i, o in zip(take, outs):
                torch.testing.assert_close(o, inter[i].permute(0, 2, 3, 1) if nhwc else inter[i], rtol=0, atol=1e-6)


@pytest.mark.parametrize("feature_cls", ["hook", "dict", "list"])
def test_timm_wrappers_honour_output_fmt(feature_cls):
    kwargs = dict(img_size=32, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
    torch.manual_seed(0)
    model = timm.create_model("hiermlp_swin_tiny_patch4_window7_224", **kwargs).eval()
    torch.manual_seed(0)
    feats = timm.create_model(
        "hiermlp_swin_tiny_patch4_window7_224",
        features_only=True,
        feature_cls=feature_cls,
        out_indices=(-1,),
        output_fmt="NCHW",
        **kwargs,
    ).eval()
    x = torch.randn(2, 3, 36, 28)
    with torch.no_grad():
        out = feats(x)
        want = model.forward_intermediates(x, indices=1, intermediates_only=True)
    out = list(out.values()) if isinstance(out, dict) else out
    assert len(out) == 1 and feats.feature_info.channels() == [32]
    torch.testing.assert_close(out[0], want[0], rtol=0, atol=1e-6)


def fx_nodes(model):
    from timm.models import get_graph_node_names

    train, evaluation = get_graph_node_names(model)
    return train[-1], evaluation[-1]


# The speed layer steps aside under FX, so a graph computes the plain modules' function: equal to the plain
# eager model within 1e-6, and to the sped-up one within the oneDNN tolerance of tests/test_swin.py (the
# libraries sum in different orders).
ATOL_ONEDNN = 3e-5


@pytest.mark.parametrize("name", SMALL)
def test_fx_forward_and_backward(name):
    from timm.models import create_feature_extractor

    model = build(name, drop_path_rate=0.0)  # with the speed layer, as create_model builds it
    x = small_input(model)
    train_out, eval_out = fx_nodes(model)
    fx = create_feature_extractor(model.eval(), return_nodes=[eval_out])
    with torch.no_grad():
        got = fx(x)[eval_out]
        torch.testing.assert_close(got, model(x), rtol=0, atol=ATOL_ONEDNN)
        with fast(model, False):
            torch.testing.assert_close(got, model(x), rtol=0, atol=1e-6)
    fx = create_feature_extractor(model.train(), return_nodes=[train_out])
    fx(x)[train_out].mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("size", [(224, 224), (200, 300)])
def test_torchvision_feature_extractor_equals_forward_intermediates(size):
    from torchvision.models.feature_extraction import create_feature_extractor

    model = randomize_(hiermlp.create_model("swin_tiny_patch4_window7_224")).eval()
    x = torch.randn(1, 3, *size)
    fx = create_feature_extractor(model, return_nodes={f"stages.{i}": str(i) for i in range(4)})
    with torch.no_grad(), fast(model, False):  # the plain modules: the function the graph computes (see above)
        got = fx(x)
        want = model.forward_intermediates(x, intermediates_only=True, output_fmt="NHWC")
    for i, w in enumerate(want):
        torch.testing.assert_close(got[str(i)], w, rtol=0, atol=1e-6)


def test_fx_symbolic_trace_and_fx_features():
    kwargs = dict(img_size=32, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **kwargs).eval()
    gm = torch.fx.symbolic_trace(model)
    x = torch.randn(2, 3, 36, 28)
    with torch.no_grad(), fast(model, False):
        torch.testing.assert_close(gm(x), model(x), rtol=0, atol=1e-6)
    # feature_cls="fx": timm's FeatureGraphNet
    feats = hiermlp.create_model("swin_tiny_patch4_window7_224", features_only=True, feature_cls="fx", **kwargs)
    assert [o.shape[1] for o in feats(x)] == [16, 32]


_PVT_MICRO = dict(embed_dim=(16, 32, 40, 48), depths=(1, 1, 2, 1), num_classes=10)


@pytest.mark.parametrize(
    "name,kwargs,sizes",
    [
        (
            "swinv2_tiny_window8_256",
            dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4),
            [(36, 28), (25, 43)],
        ),
        ("cyclemlp_b1", _PVT_MICRO, [(41, 33), (37, 54)]),
        ("wavemlp_t", _PVT_MICRO, [(37, 54)]),  # BatchNorm blocks
        ("asmlp_tiny_patch4_shift5_224", dict(embed_dim=20, depths=(1, 1, 2, 1), num_classes=10), [(37, 54)]),
    ],
)
def test_fx_graph_is_the_eager_model_at_odd_sizes(name, kwargs, sizes):
    """One graph, traced without an example input, computes the plain eager model at sizes the trace never saw
    (size geometry runs as opaque calls), in eval and in train mode (BatchNorm statistics, gradients)."""
    model = randomize_(hiermlp.create_model(name, **kwargs))
    graphs = {train: torch.fx.symbolic_trace(model.train(train)) for train in (False, True)}
    with fast(model, False):
        for size in sizes:
            x = torch.randn(2, 3, *size)
            with torch.no_grad():
                torch.testing.assert_close(graphs[False](x), model.eval()(x), rtol=0, atol=1e-6)
        x = torch.randn(2, 3, *sizes[0])
        torch.manual_seed(1)
        want = model.train()(x)
        want.square().mean().backward()
        want_grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        torch.manual_seed(1)
        got = graphs[True](x)
        got.square().mean().backward()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    for g, w in zip((p.grad for p in model.parameters()), want_grads):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)


# ---- timm's kwargs --------------------------------------------------------------------------------------------
def test_timm_kwargs_map_or_are_rejected_by_name():
    with torch.device("meta"):
        m = timm.create_model(
            "hiermlp_hybrid_tiny_patch4_window7_224", qkv_bias=False, attn_drop_rate=0.1, proj_drop_rate=0.2
        )
        ok = timm.create_model("hiermlp_swin_tiny_patch4_window7_224", dynamic_img_size=True, weight_init="")
    attn = m.stages[2].blocks[0].mixer
    assert attn.qkv.bias is None and attn.attn_drop == 0.1 and attn.proj_drop.p == 0.2
    assert isinstance(m.stages[0].blocks[0].mixer, hiermlp.MIXERS["spatial_mlp"])  # untouched: no such option
    assert ok.stages[0].blocks[0].mixer.qkv.bias is not None
    for kwargs, match in (
        (dict(qkv_bias=False), "qkv_bias means nothing for winmixer_tiny.*token_mlp"),
        (dict(dynamic_img_size=False), "dynamic_img_size=False cannot be honoured.*accepts any input size"),
        (dict(strict_img_size=True), "strict_img_size=True cannot be honoured"),
        (dict(weight_init="jax"), "weight_init: hiermlp models have one init"),
        (dict(bogus_option=1), r"unknown model option\(s\) \['bogus_option'\]"),
    ):
        with pytest.raises(ConfigError, match=match), torch.device("meta"):
            timm.create_model("hiermlp_winmixer_tiny_patch4_window7_224", **kwargs)
    with pytest.raises(ConfigError, match=r"dynamic_img_size=True cannot be honoured.*fixed_input_size"):
        timm.create_model("hiermlp_gmlp_s16_224", dynamic_img_size=True)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
def test_torchscript_is_not_supported_as_the_readme_says():
    tiny = dict(img_size=32, patch_size=2, embed_dim=16, depths=(2,), num_heads=(1,), window_size=4)
    with pytest.raises(Exception):  # noqa: B017  (torch.jit raises RuntimeError/NotSupportedError/...)
        torch.jit.script(hiermlp.create_model("swin_tiny_patch4_window7_224", **tiny).eval())
    timm_swin = timm.models.swin_transformer.SwinTransformer(**tiny, num_classes=10).eval()
    scripted = torch.jit.script(timm_swin)  # timm's Swin does script
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(scripted(x), timm_swin(x))


# ---- loading like timm ------------------------------------------------------------------------------------------
def hf_cache(root, repo: str, sd: dict, rev: str = "0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub's cache has: models--ORG--NAME/snapshots/REV/FILE and refs/main."""
    from safetensors.torch import save_file

    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "snapshots" / rev).mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(rev)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(repo_dir / "snapshots" / rev / "model.safetensors"))


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """HF_HUB_CACHE and HF_HUB_OFFLINE as a user sets them (huggingface_hub reads them at import: patched too)."""
    import huggingface_hub.constants as hub

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    return tmp_path


SMALL_SWIN = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=4)


def test_pretrained_resolves_the_hub_copy_offline(offline_hub):
    # timm's hub copy of Swin-T (timm's layout) at reduced width, as the cache holds it
    ref = randomize_(timm.create_model("swin_tiny_patch4_window7_224", **SMALL_SWIN)).eval()
    hf_cache(offline_hub, "timm/swin_tiny_patch4_window7_224.ms_in1k", ref.state_dict())
    x = torch.randn(1, 3, 64, 64)
    for build in (timm.create_model, hiermlp.create_model):
        name = "swin_tiny_patch4_window7_224.ms_in1k"
        ours = build(("hiermlp_" if build is timm.create_model else "") + name, pretrained=True, **SMALL_SWIN)
        with torch.no_grad():
            torch.testing.assert_close(ours.eval()(x), ref(x), atol=1e-5, rtol=0)
    # in_chans=1 adapts the 3-channel stem as timm does (RGB filters summed); 10 classes: a fresh head
    gray = hiermlp.create_model(
        "swin_tiny_patch4_window7_224", pretrained=True, in_chans=1, num_classes=10, **SMALL_SWIN
    )
    torch.testing.assert_close(gray.patch_embed.proj.weight, ref.patch_embed.proj.weight.sum(1, keepdim=True))
    assert gray.head.fc.weight.shape == (10, 16 * 8)
    torch.testing.assert_close(gray.head.fc.bias, torch.zeros(10))  # re-initialised, not the checkpoint's
    # a tag whose hub copy is not in the cache: one CheckpointError naming the way out
    with pytest.raises(CheckpointError, match=r"could not load pretrained weights.*HF_HUB_CACHE"):
        hiermlp.create_model("swin_tiny_patch4_window7_224.ms_in22k", pretrained=True, **SMALL_SWIN)


def test_pretrained_cfg_overlay_file_and_checkpoint_path(tmp_path):
    from .test_swin import to_microsoft_layout

    ref = randomize_(timm.create_model("swin_tiny_patch4_window7_224", **SMALL_SWIN)).eval()
    path = tmp_path / "swin_t_small.pth"
    torch.save(to_microsoft_layout(ref.state_dict()), path)  # the reference's own layout
    x = torch.randn(1, 3, 64, 64)
    a = timm.create_model(
        "hiermlp_swin_tiny_patch4_window7_224",
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(path)),
        **SMALL_SWIN,
    )
    b = hiermlp.create_model("swin_tiny_patch4_window7_224", checkpoint_path=path, **SMALL_SWIN)
    with torch.no_grad():
        for m in (a, b):
            torch.testing.assert_close(m.eval()(x), ref(x), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="not both"):
        hiermlp.create_model("swin_tiny_patch4_window7_224", pretrained=True, checkpoint_path=path)


def test_pretrained_falls_back_to_the_url(monkeypatch):
    # swin_tiny_c24 has no hub copy: timm's builder fetches the Microsoft release URL (faked here, offline)
    from .test_swin import to_microsoft_layout

    small = dict(img_size=64, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=4)
    ref = randomize_(timm.models.swin_transformer.SwinTransformer(**small)).eval()
    fetched = []

    def fake_download(url, **kwargs):
        fetched.append(url)
        return to_microsoft_layout(ref.state_dict())

    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", fake_download)
    ours = hiermlp.create_model("swin_tiny_c24_patch4_window8_256", pretrained=True, **small).eval()
    assert fetched == [get_entry("swin_tiny_c24_patch4_window8_256").pretrained_cfg["url"]]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=0)


def test_strict_false_reports_every_skipped_key_and_warns(tmp_path):
    src = hiermlp.HierNet(img_size=32, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4)
    dst = hiermlp.HierNet(img_size=32, patch_size=2, embed_dim=16, depths=(2, 2), num_heads=(1, 4), window_size=4)
    sd = {**src.state_dict(), "extra.weight": torch.zeros(1)}
    del sd["norm.bias"]
    with pytest.warns(UserWarning, match="skipped missing \\(1\\): norm.bias; unexpected \\(1\\): extra.weight; shape"):
        r = hiermlp.load_checkpoint(dst, sd, strict=False)
    tables = [k for k in dst.state_dict() if k.startswith("stages.1") and k.endswith("bias_table")]
    assert r.missing == ["norm.bias"] and r.unexpected == ["extra.weight"]
    assert sorted(m.split(":")[0] for m in r.mismatched) == sorted(tables) and len(tables) == 2
    torch.testing.assert_close(dst.norm.weight, src.norm.weight)  # the rest loaded


def test_empty_checkpoint_is_one_line_error(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    model = hiermlp.HierNet(img_size=32, patch_size=2, embed_dim=16, depths=(2,), num_heads=(1,), window_size=4)
    with pytest.raises(CheckpointError, match=r"is empty \(0 bytes\)") as e:
        hiermlp.load_checkpoint(model, tmp_path / "empty.pth")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("onednn", [True, False])
def test_timm_fx_graph_equals_the_eager_model_bit_for_bit(onednn):
    # timm's tests/test_models.py traces every model with timm's tracer (its leaf modules and functions) and asks
    # the graph's output to equal the eager model's exactly: the speed layer's twins whose kernels differ from the
    # plain path (oneDNN linears, the fused MLP, the attention kernels) must stay whole in that graph
    from timm.layers import get_notrace_functions, get_notrace_modules
    from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

    from hiermlp.accel import onednn_available, override

    if onednn and not onednn_available():
        pytest.skip("no oneDNN linear kernel in this PyTorch build")
    with override(onednn=onednn):
        model = randomize_(timm.create_model("hiermlp_swin_micro_patch4_window4_32", num_classes=7)).eval()
        tracer_kwargs = dict(
            leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions(), param_shapes_constant=True
        )
        _, eval_nodes = get_graph_node_names(model, tracer_kwargs=tracer_kwargs)
        fx = create_feature_extractor(
            model, train_return_nodes=[eval_nodes[-1]], eval_return_nodes=[eval_nodes[-1]], tracer_kwargs=tracer_kwargs
        )
        x = torch.randn(1, 3, 32, 32)
        with torch.inference_mode():
            want = model(x)
            (got,) = fx(x).values()
    assert torch.equal(got, want)
