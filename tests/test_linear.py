"""The oneDNN linear path equals F.linear (values and gradients) and falls back wherever it does not apply."""

import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

import hiermlp
from hiermlp.accel import override
from hiermlp.accel.linear import FastLinear as Linear
from hiermlp.accel.linear import FastMlp as Mlp
from hiermlp.accel.linear import linear, onednn_available, onednn_enabled
from hiermlp.bench import count_gmacs


def onednn(on: bool):
    return override(onednn=on)


pytestmark = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN linear kernel")


@pytest.fixture(autouse=True)
def _onednn_on():
    """The kernel is opt-in (HIERMLP_ACCEL=onednn=1); these tests are about it, so it is on in each."""
    with onednn(True):
        yield


SHAPES = [(7, 16), (3, 5, 16), (2, 3, 4, 16), (1, 1, 16)]


def ref_linear(x, w, b, activation=None):
    y = F.linear(x, w, b)
    return F.gelu(y) if activation == "gelu" else y


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode", [None, "gelu"])
def test_values_match_f_linear(shape, bias, mode):
    x = torch.randn(shape)
    w, b = torch.randn(24, 16), (torch.randn(24) if bias else None)
    with torch.no_grad():
        got = linear(x, w, b, activation=mode)
    torch.testing.assert_close(got, ref_linear(x, w, b, mode), rtol=1e-5, atol=1e-5)
    assert got.shape == (*shape[:-1], 24)


def test_non_contiguous_input():
    x = torch.randn(4, 16, 6).transpose(1, 2)  # (4, 6, 16), not contiguous
    w, b = torch.randn(16, 16), torch.randn(16)
    with torch.no_grad():
        torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear(x, w, b, activation="gelu"), F.gelu(F.linear(x, w, b)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(9, 16), (2, 5, 16), (4, 10, 16)])  # 40 rows: the (x^T g)^T weight gradient
def test_gradients_match_f_linear(shape):
    x = torch.randn(shape, requires_grad=True)
    w = torch.randn(12, 16, requires_grad=True)
    b = torch.randn(12, requires_grad=True)
    g = torch.randn(*shape[:-1], 12)
    grads = []
    for fn in (linear, F.linear):
        x.grad = w.grad = b.grad = None
        fn(x, w, b).backward(g)
        grads.append((x.grad.clone(), w.grad.clone(), b.grad.clone()))
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
    assert "onednn_linear" in linear(x, w, b).grad_fn.name()


def test_only_the_needed_gradients_and_double_backward():
    x = torch.randn(5, 8, requires_grad=True)
    w = torch.randn(4, 8)  # frozen weight: only the input gradient
    y = linear(x, w, None)
    (gx,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    (gx_ref,) = torch.autograd.grad(F.linear(x, w).square().sum(), x, create_graph=True)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)
    # create_graph=True: the backward itself is differentiable
    (ggx,) = torch.autograd.grad(gx.sum(), x)
    (ggx_ref,) = torch.autograd.grad(gx_ref.sum(), x)
    torch.testing.assert_close(ggx, ggx_ref, rtol=1e-5, atol=1e-5)


def test_fallbacks_use_plain_pytorch():
    w, b = torch.randn(6, 8), torch.randn(6)
    with torch.no_grad():
        # float64, bfloat16 autocast, an empty batch and the switch all take F.linear, bit for bit
        x64 = torch.randn(3, 8, dtype=torch.float64)
        assert torch.equal(linear(x64, w.double(), b.double()), F.linear(x64, w.double(), b.double()))
        x = torch.randn(3, 8)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert linear(x, w, b).dtype == torch.bfloat16
        assert linear(torch.randn(0, 8), w, b).shape == (0, 6)
        with onednn(False):
            assert not onednn_enabled()
            assert torch.equal(linear(x, w, b), F.linear(x, w, b))
        assert onednn_enabled()
    with pytest.raises(ValueError, match="activation must be None or one of"):
        linear(x, w, b, activation="relu")


def test_under_vmap_falls_back():
    w, b = torch.randn(6, 8), torch.randn(6)
    x = torch.randn(4, 3, 8)
    out = torch.func.vmap(lambda t: linear(t, w, b))(x)
    torch.testing.assert_close(out, F.linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_linear_is_an_nn_linear_with_the_same_state_dict():
    layer = Linear(8, 4)
    assert isinstance(layer, nn.Linear) and set(layer.state_dict()) == {"weight", "bias"}
    x = torch.randn(2, 8)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


def test_mlp_matches_timm_mlp_with_the_fused_gelu():
    theirs = timm.layers.Mlp(16, 40).eval()
    ours = hiermlp.accel.accelerate(timm.layers.Mlp(16, 40)).eval()  # FastMlp of FastLinears: fc1 + GELU fuse
    assert type(ours) is Mlp and set(ours.state_dict()) == set(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)  # fused fc1 + GELU
    # with autograd the same module takes the unfused path and gives timm's gradients
    x.requires_grad_(True)
    (g_ours,) = torch.autograd.grad(ours(x).sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs(x).sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-5)


def test_compiled_linear_matches_eager_forward_and_backward():
    torch._dynamo.reset()
    mlp = Mlp(16, 32)
    plain = timm.layers.Mlp(16, 32)
    plain.load_state_dict(mlp.state_dict())
    x = torch.randn(3, 5, 16, requires_grad=True)
    compiled = torch.compile(mlp, fullgraph=True)
    out = compiled(x)
    ref = plain(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    (g,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # inference: the fused GELU runs inside the custom op
        torch.testing.assert_close(compiled(x), plain(x), rtol=1e-5, atol=1e-5)


def test_flop_counter_sees_the_onednn_kernels():
    model = hiermlp.create_model("swin_tiny_patch4_window7_224")
    fast = count_gmacs(model, (3, 64, 64))
    with onednn(False):
        plain = count_gmacs(model, (3, 64, 64))
    assert fast == pytest.approx(plain, rel=1e-9) and fast > 0.3


@pytest.mark.parametrize(("value", "expected"), [("0", False), ("off", False), ("1", True)])
def test_environment_switch(value, expected):
    import os
    import subprocess
    import sys

    code = "import hiermlp.accel as A; print(A.onednn_enabled())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "HIERMLP_ACCEL": f"onednn={value}"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(expected)


def test_benchmark_reports_say_whether_onednn_is_on():
    from hiermlp.bench.env import environment, format_environment

    info = environment()
    assert info["onednn_linears"] is onednn_enabled()
    assert info["gemm"] == "onednn"
    assert "hiermlp float32 CPU linears: oneDNN (pinned (HIERMLP_ACCEL onednn=1))" in format_environment(info)
    with onednn(False):
        text = format_environment(environment())
        assert "hiermlp float32 CPU linears: MKL (F.linear) (pinned (HIERMLP_ACCEL onednn=0))" in text


def _kernel_calls(monkeypatch) -> list[tuple[torch.dtype, str]]:
    """Record (input dtype, activation) of every direct oneDNN kernel call."""
    import hiermlp.accel.linear as fast

    calls, kernel = [], fast._kernel
    monkeypatch.setattr(fast, "_kernel", lambda x, w, b, act: calls.append((x.dtype, act)) or kernel(x, w, b, act))
    return calls


def test_timm_gelu_fuses_too(monkeypatch):
    """HierNet's channel MLPs get timm's GELU class (get_act_layer("gelu")), not nn.GELU: it is the same exact
    GELU and joins fc1's epilogue in inference as nn.GELU does."""
    from timm.layers import get_act_layer

    theirs = timm.layers.Mlp(16, 40, act_layer=get_act_layer("gelu")).eval()
    ours = hiermlp.accel.accelerate(copy.deepcopy(theirs))
    calls = _kernel_calls(monkeypatch)
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert calls == [(torch.float32, "gelu"), (torch.float32, "none")]
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", embed_dim=16, depths=(1, 1), num_heads=(1, 2))
    calls.clear()
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, 56, 56))
    assert calls.count((torch.float32, "gelu")) == 2  # one per block's channel MLP


def test_bf16_autocast_inference_calls_onednn_with_the_gelu_fused(monkeypatch):
    """Under CPU bfloat16 autocast, inference calls oneDNN's bfloat16 kernel (the one F.linear reaches) with GELU
    in the epilogue: bfloat16 results as autocast returns them, as close to float32 as autocast's own path (GELU
    applied before rounding, not after). The switch, autograd and float64 inputs take autocast's F.linear."""
    torch.manual_seed(0)
    theirs = timm.layers.Mlp(64, 256).eval()
    ours = hiermlp.accel.accelerate(copy.deepcopy(theirs))
    assert type(ours) is Mlp and type(ours.fc1) is Linear
    x = torch.randn(4, 49, 64)
    calls = _kernel_calls(monkeypatch)
    with torch.no_grad():
        want = theirs(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, plain = ours(x), theirs(x)
            assert calls == [(torch.bfloat16, "gelu"), (torch.bfloat16, "none")]
            assert got.dtype == plain.dtype == torch.bfloat16
            calls.clear()
            with override(onednn_bf16=False):
                assert torch.equal(ours(x), plain) and not calls
    err, err_plain = (got.float() - want).abs().max(), (plain.float() - want).abs().max()
    assert err <= 1.5 * err_plain and err < 0.05 * want.abs().max()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x.requires_grad_(True)
        assert torch.equal(ours(x), theirs(x)) and not calls  # autograd: autocast's own path
