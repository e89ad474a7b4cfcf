"""SwinUNETR = MONAI's: params, logits and the encoder's five maps, 3-D and 2-D, v1 and v2 mergings, use_v2;
MONAI checkpoints and the self-supervised SwinViT encoder layout load; any volume size runs.

MONAI is the reference where it computes what it means: sizes divisible by 32, windows that divide every
stage's map (it lets real tokens attend to window padding) and no window clamped below the map on a later
axis (it then takes the first rows of the full window's bias index). Hence the windows 4 and 2 below."""

import pytest
import torch

pytest.importorskip("monai")
from monai.networks.nets import SwinUNETR as MonaiSwinUNETR

from hiermlp import create_model
from hiermlp.errors import ConfigError
from hiermlp.models.swin_unetr import SwinUNETR
from hiermlp.weights import convert_state_dict, load_checkpoint

# MONAI 1.6.1's counts for in_channels=1, out_channels=14 (tests/REFERENCE "N-dimensional Swin")
PARAMS = {
    "swin_unetr_base": 62_187_296,
    "swin_unetr_v2_base": 72_762_656,
    "swin_unetr_small": 15_703_304,
    "swin_unetr_v2_small": 18_347_144,
}


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith("weight") and p.ndim == 1 else 0.0  # norms around 1, the rest around 0
            p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return ((a - b).abs().max() / b.abs().max()).item()


def pair(**kw):
    monai_kw = dict(kw)
    hier = SwinUNETR(in_chans=monai_kw.pop("in_channels"), num_classes=monai_kw.pop("out_channels"), **monai_kw).eval()
    ref = randomize(MonaiSwinUNETR(**kw))
    layout, sd = convert_state_dict(ref.state_dict())
    assert layout == "monai_swin_unetr"
    hier.load_state_dict(sd)
    return ref, hier


# feature_size 12 and heads (1, 2, 4, 8) keep the 3-D cases cheap (the structure is width-independent; the
# 24/48 widths are pinned by the param counts); (64, 32, 32) is the smallest volume MONAI takes (its instance
# norm needs 2 bottleneck voxels)
SMALL = dict(feature_size=12, num_heads=(1, 2, 4, 8))
CASES = [
    # (MONAI kwargs, input): 3-D v1 merging; 3-D v2 (conv blocks) with mergingv2; 2-D
    (dict(spatial_dims=3, window_size=2, downsample="merging", **SMALL), (1, 1, 64, 32, 32)),
    (dict(spatial_dims=3, window_size=2, downsample="mergingv2", use_v2=True, **SMALL), (1, 1, 64, 32, 32)),
    (dict(spatial_dims=2, feature_size=24, window_size=4, use_v2=True), (2, 3, 64, 64)),
]


@pytest.mark.parametrize("kw,size", CASES)
def test_swin_unetr_is_monais(kw, size):
    """The encoder's maps within 1e-5 in float32; the logits in float64, where rounding is not amplified: the
    decoder's instance norms over a bottleneck of 2 voxels turn float32's 1e-7 differences into 1e-4."""
    torch.manual_seed(0)
    ref, hier = pair(in_channels=size[1], out_channels=3, **kw)
    x = torch.randn(size)
    with torch.no_grad():
        for a, b in zip(hier.forward_features(x), ref.swinViT(x, True)):
            assert rel(a, b) < 1e-5
        ref, hier, x = ref.double(), hier.double(), x.double()
        assert rel(hier(x), ref(x)) < 1e-10


@pytest.mark.parametrize("name", list(PARAMS))
def test_param_counts_are_monais(name):
    with torch.device("meta"):
        model = create_model(name)
    kw = dict(feature_size=48 if "base" in name else 24, use_v2="v2" in name)
    ref = MonaiSwinUNETR(in_channels=1, out_channels=14, **kw)  # on CPU: MONAI reads its drop-path rates
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters()) == PARAMS[name]


def test_monai_checkpoint_and_ssl_encoder_load(tmp_path):
    torch.manual_seed(1)
    kw = dict(in_channels=1, out_channels=2, spatial_dims=3, window_size=2, **SMALL)
    ref, _ = pair(**kw)
    # a MONAI training checkpoint ({"state_dict": ...}), from a file
    path = tmp_path / "monai.pt"
    torch.save({"epoch": 3, "state_dict": ref.state_dict()}, path)
    model = SwinUNETR(in_chans=1, num_classes=2, window_size=2, **SMALL).eval()
    result = load_checkpoint(model, path)
    assert result.layout == "monai_swin_unetr" and not result.missing
    x = torch.randn(1, 1, 64, 32, 32)
    with torch.no_grad():
        assert rel(model.double()(x.double()), ref.double()(x.double())) < 1e-10
        model, ref = model.float(), ref.float()
    # the self-supervised encoder's layout (model_swinvit.pt: module.*, mlp.fc1/2, pre-training heads)
    ssl = {}
    for k, v in ref.swinViT.state_dict().items():
        if k.startswith("layers") and "c." not in k.split(".0.")[0]:
            k = k.replace("mlp.linear1", "mlp.fc1").replace("mlp.linear2", "mlp.fc2")
        ssl["module." + k] = v
    ssl["module.rotation_head.weight"] = torch.randn(4, 192)
    fresh = SwinUNETR(in_chans=1, num_classes=2, window_size=2, **SMALL).eval()
    with pytest.warns(UserWarning, match="missing"):
        result = load_checkpoint(fresh, {"state_dict": ssl}, strict=False)
    assert result.layout == "monai_ssl_swinvit" and not result.unexpected
    assert all(k.startswith(("encoder", "decoder", "out.")) for k in result.missing)
    with torch.no_grad():
        for a, b in zip(fresh.forward_features(x), ref.swinViT(x, True)):
            assert rel(a, b) < 1e-5


def test_any_volume_size_and_window_mlp_encoders():
    """MONAI refuses sizes not divisible by 32; hiermlp pads in merging and crops in the decoder. One argument
    swaps the encoder's attention for a window MLP."""
    for mixer, extra in (("attention", {}), ("spatial_mlp", {}), ("token_mlp", {}), ("gmlp", dict(mlp_ratio=0.0))):
        model = SwinUNETR(
            in_chans=1, num_classes=3, feature_size=12, window_size=3, depths=(1, 1, 1, 1), mixer=mixer, **extra
        ).eval()
        with torch.no_grad():
            assert model(torch.randn(1, 1, 21, 18, 35)).shape == (1, 3, 21, 18, 35)


def test_config_errors():
    with pytest.raises(ConfigError, match="multiple of 12"):
        SwinUNETR(feature_size=20)
    with pytest.raises(ConfigError, match="MONAI's names"):
        SwinUNETR(feature_size=12, downsample="conv")
    with pytest.raises(ConfigError, match="hierarchical classifier"):
        create_model("swin_unetr_small", features_only=True)


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_bf16_conv3d_gradients_equal_float32_on_maps_shorter_than_the_kernel(frames):
    # torch's CPU bf16 Conv3d returns wrong weight gradients for 2 frames under a 3x3x3 kernel (SwinUNETR's
    # decoder on 8-frame clips diverged in one step): hiermlp's Conv3d runs such maps in float32
    from hiermlp.layers.conv import Conv3d

    torch.manual_seed(0)
    conv = Conv3d(32, 16, 3, padding=1, bias=True)
    x, g = torch.randn(4, 32, frames, 6, 6), torch.randn(4, 16, frames, 6, 6)
    conv(x).backward(g)
    ref = [p.grad.clone() for p in conv.parameters()]
    for _ in range(3):  # the wrong kernel's error varies between calls
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = conv(x)
        assert out.dtype == torch.bfloat16
        out.backward(g.bfloat16())
        for p, r in zip(conv.parameters(), ref):
            assert ((p.grad - r).abs().max() / r.abs().max()).item() < 0.02


def test_gradients_are_monais():
    """The decoder's in-place activations and residual sums (MONAI's own) keep autograd right: the input's and
    the decoder's weight gradients equal MONAI's (float64, training mode)."""
    torch.manual_seed(0)
    kw, size = CASES[0]
    ref, hier = pair(in_channels=1, out_channels=3, **kw)
    ref, hier = ref.double().train(), hier.double().train()
    x = torch.randn(size, dtype=torch.float64)
    w = torch.randn(size[0], 3, *size[2:], dtype=torch.float64)
    grads = []
    for model in (hier, ref):
        xi = x.clone().requires_grad_()
        (model(xi) * w).sum().backward()
        grads.append((xi.grad, {n: p.grad for n, p in model.named_parameters() if not n.startswith("swinViT")}))
    (gx, gp), (rx, rp) = grads
    assert rel(gx, rx) < 1e-10
    assert gp.keys() == rp.keys() and len(gp) > 30
    for name in gp:
        assert rel(gp[name], rp[name]) < 1e-10, name


def test_decoder_frees_each_upsampled_map_before_its_conv_block():
    """At full resolution one map is large (96^3 x 48 channels is 170 MB): an up block that kept its upsampled
    map alive through its conv block peaked that much above MONAI's. The map must be gone (only the
    concatenation holds its values) when the conv block starts."""
    import weakref

    model = SwinUNETR(in_chans=1, num_classes=2, feature_size=12, window_size=2, num_heads=(1, 2, 4, 8)).eval()
    alive = []
    for name in ("decoder1", "decoder2", "decoder5"):
        block = getattr(model, name)
        ref = {}
        block.transp_conv.register_forward_hook(lambda m, i, out, ref=ref: ref.update(up=weakref.ref(out)))
        block.conv_block.register_forward_pre_hook(lambda m, i, ref=ref: alive.append(ref["up"]() is not None))
    with torch.no_grad():
        model(torch.randn(1, 1, 64, 32, 32))
    assert alive == [False, False, False]
