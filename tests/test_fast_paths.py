"""Every fast path equals the straightforward path: gather geometry and the cached folded attention bias."""

import pytest
import torch
from torch import nn

import hiermlp
from hiermlp.mixers import MIXERS, mixer_name
from hiermlp.mixers.base import mixer_attr
from hiermlp.models.block import HierBlock

from .conftest import TINY_SWIN, randomize_

SIZES = [(8, 8), (9, 11), (5, 13), (3, 3), (16, 12), (7, 4), (4, 4)]  # (4, 4): one window = the map
SHIFTS = [(0, 0), (2, 2), (2, 0)]


def set_fast(model: torch.nn.Module, on: bool) -> None:
    for m in model.modules():
        if isinstance(m, HierBlock):
            m.fast_path = on


def block_kwargs(name: str) -> dict:
    # mixers that bring their own channel projections run in blocks without a channel MLP
    return dict(mlp_ratio=0.0 if name == "gmlp" else 2.0)


@pytest.mark.parametrize("name", sorted(MIXERS))
@pytest.mark.parametrize("shift", SHIFTS)
def test_block_gather_equals_reference(name, shift):
    if mixer_attr(name, "global_window", False) and any(shift):
        pytest.skip("global-window mixers never shift")
    torch.manual_seed(0)
    block = HierBlock(dim=16, num_heads=2, window_size=(4, 4), shift_size=shift, mixer=name, **block_kwargs(name))
    randomize_(block).eval()
    for size in SIZES:
        x = torch.randn(2, *size, 16)
        with torch.no_grad():
            fast = block(x)
            block.fast_path = False
            ref = block(x)
            block.fast_path = True
        assert (fast - ref).abs().max().item() < 1e-5, (mixer_name(name), shift, size)


@pytest.mark.parametrize("size", [(32, 32), (40, 24), (27, 35)])
def test_model_fast_equals_reference_forward_and_backward(size):
    torch.manual_seed(0)
    model = randomize_(hiermlp.HierNet(**TINY_SWIN))
    x = torch.randn(2, 3, *size)
    grads = []
    outs = []
    for fast in (True, False):
        set_fast(model, fast)
        model.zero_grad()
        out = model(x)
        out.square().sum().backward()
        outs.append(out.detach())
        grads.append([p.grad.clone() for p in model.parameters()])
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    for g_fast, g_ref in zip(*grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=1e-4, atol=1e-5)


def test_cached_bias_follows_weight_updates():
    """The eval-mode bias cache is keyed on the table's version: optimizer steps and loads refresh it."""
    torch.manual_seed(0)
    model = hiermlp.HierNet(**TINY_SWIN).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    model.train()
    model(x).sum().backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        after = model(x)
        for m in model.modules():  # ground truth: no cache at all
            if hasattr(m, "_bias_cache"):
                m._bias_cache.clear()
        fresh = model(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)
    other = hiermlp.HierNet(**TINY_SWIN).eval()
    with torch.no_grad():
        other(x)  # fill its cache, then load new weights in place
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(other(x), fresh, rtol=0, atol=0)


@pytest.mark.parametrize("mixer", ["attention", "spatial_mlp"])
def test_inference_mode_first_then_training(mixer):
    """Caches filled under torch.inference_mode must not break a later training step."""
    model = hiermlp.HierNet(**{**TINY_SWIN, "mixer": mixer})
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_compile_fullgraph_has_no_graph_breaks(name):
    """torch.compile(fullgraph=True) traces every mixer's model in one graph (dynamo only, no codegen)."""
    kwargs = dict(TINY_SWIN, mixer=name, depths=(2, 2), num_heads=(1, 2), drop_path_rate=0.0)
    if name == "gmlp":
        kwargs["mlp_ratio"] = 0.0
    model = hiermlp.HierNet(**kwargs).eval()
    x = torch.randn(2, 3, 36, 28)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["attention", "spatial_mlp", "token_mlp", "gmlp"])
def test_chunked_inference_equals_the_whole_batch(name):
    """Inference runs big batches a few images at a time; the result is the whole batch's."""
    torch.manual_seed(0)
    block = HierBlock(dim=16, num_heads=2, window_size=(4, 4), shift_size=(2, 2), mixer=name, **block_kwargs(name))
    randomize_(block).eval()
    calls = []
    inner = block._forward
    block._forward = lambda t: calls.append(t.shape[0]) or inner(t)
    for size in [(8, 8), (9, 11), (5, 13)]:
        x = torch.randn(5, *size, 16)
        with torch.no_grad():
            block.inference_chunk_tokens = 0
            whole = block(x)
            block.inference_chunk_tokens = 2 * size[0] * size[1]  # two images per chunk: 2 + 2 + 1
            calls.clear()
            chunked = block(x)
        assert calls == [2, 2, 1]
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    calls.clear()
    block(x)  # autograd on: never split (the graph would hold every chunk anyway)
    assert calls == [5]


@pytest.mark.parametrize("size", [(40, 24), (27, 35)])
@pytest.mark.parametrize("train", [False, True])
def test_explicit_attention_equals_sdpa(monkeypatch, train, size):
    """CPU windows use explicit softmax attention (in place without autograd); it equals the SDPA kernel."""
    from hiermlp.mixers import attention

    model = randomize_(hiermlp.HierNet(**TINY_SWIN))
    for n, p in model.named_parameters():  # a frozen table: SDPA is then usable with autograd too
        if "relative_position_bias_table" in n:
            p.requires_grad_(False)
    x = torch.randn(2, 3, *size, requires_grad=train)
    outs, grads = [], []
    for limit in (attention.MAX_EXPLICIT_TOKENS, 0):  # 0: every window goes to SDPA
        monkeypatch.setattr(attention, "MAX_EXPLICIT_TOKENS", limit)
        model.train(train)
        with torch.set_grad_enabled(train):
            out = model(x)
        outs.append(out.detach())
        if train:
            (g,) = torch.autograd.grad(out.square().sum(), x)
            grads.append(g)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    if train:
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_add_drop_path_is_drop_path_plus_residual():
    from timm.layers import DropPath

    from hiermlp.models.block import add_drop_path

    x, y = torch.randn(64, 3, 5), torch.randn(64, 3, 5, requires_grad=True)
    drop = DropPath(0.5)
    assert torch.equal(add_drop_path(x, y, drop.eval()), x + y)
    assert torch.equal(add_drop_path(x, y, nn.Identity()), x + y)
    drop.train()
    out = add_drop_path(x, y, drop)
    kept = [(out[i] - x[i]).abs().max().item() > 0 for i in range(64)]
    assert 10 < sum(kept) < 54  # about half the samples keep their branch
    for i, k in enumerate(kept):  # a kept branch is scaled by 1 / keep_prob, a dropped one is gone
        torch.testing.assert_close(out[i], x[i] + 2 * y[i] if k else x[i], rtol=1e-6, atol=1e-6)
    out.sum().backward()
    assert set(y.grad.unique().tolist()) <= {0.0, 2.0}


@pytest.mark.parametrize("batch", [1, 3])  # 1: the bias gradient is the logits gradient itself (no sum)
@pytest.mark.parametrize("bias_kind", ["trained", "frozen", None])
def test_training_attention_function_matches_autograd(batch, bias_kind):
    """The hand-written training backward of window attention: values and q/k/v/bias gradients equal
    autograd through the plain composition; double backward goes through the plain ops."""
    from hiermlp.mixers.attention import _attention_plain, _WindowAttentionFunction

    torch.manual_seed(0)
    qkv = torch.randn(3, batch, 6, 13, 8, requires_grad=True)  # (3, b, windows*heads, N, d)
    bias = None if bias_kind is None else torch.randn(1, 6, 13, 13, requires_grad=bias_kind == "trained")
    scale = 8**-0.5
    out = _WindowAttentionFunction.apply(qkv, bias, scale)
    ref = _attention_plain(qkv, bias, scale)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(out)
    inputs = [qkv] + ([bias] if bias_kind == "trained" else [])
    for a, b in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(ref, inputs, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    (g1,) = torch.autograd.grad(_WindowAttentionFunction.apply(qkv, bias, scale).square().sum(), qkv, create_graph=True)
    (g2,) = torch.autograd.grad(_attention_plain(qkv, bias, scale).square().sum(), qkv, create_graph=True)
    second = [torch.autograd.grad(gi.square().sum(), qkv)[0] for gi in (g1, g2)]
    torch.testing.assert_close(second[0], second[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(40, 24), (27, 35)])
def test_swin_training_gradients_equal_plain_autograd(monkeypatch, size):
    """A whole model trained through the hand-written backwards (attention, and the MLP on oneDNN) gives
    the parameter gradients of plain autograd (oneDNN off, attention as plain ops), shifted and padded windows."""
    from hiermlp.layers.linear import onednn
    from hiermlp.mixers import attention

    model = randomize_(hiermlp.HierNet(**TINY_SWIN)).train()
    x = torch.randn(2, 3, *size)
    grads = []
    for fast in (True, False):
        if not fast:  # the same attention as differentiable plain ops
            monkeypatch.setattr(attention._WindowAttentionFunction, "apply", attention._attention_plain)
        with onednn(fast):
            out = model(x)
            grads.append(torch.autograd.grad(out.square().sum(), list(model.parameters())))
    for (name, _), a, b in zip(model.named_parameters(), *grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def test_aligned_bias_is_the_same_bias_with_padded_rows():
    """The bias SDPA gets on CUDA is a view into row-padded storage (49 -> 64): same values, same attention."""
    import torch.nn.functional as F

    from hiermlp.mixers.attention import MASK_ALIGN, WindowAttention

    attn = randomize_(WindowAttention(12, window_size=(7, 7), num_heads=3), std=0.5).eval()
    mask = torch.rand(4, 49, 49) > 0.3
    mask |= torch.eye(49, dtype=torch.bool)  # a token always sees itself
    with torch.no_grad():
        plain = attn.attn_bias(mask, torch.float32)
        aligned = attn.attn_bias(mask, torch.float32, align=MASK_ALIGN)
        assert aligned.shape == plain.shape == (1, 12, 49, 49)
        assert aligned.stride(-2) % MASK_ALIGN == 0 and plain.stride(-2) == 49
        torch.testing.assert_close(aligned, plain, rtol=0, atol=0)
        assert attn.attn_bias(mask, torch.float32, align=MASK_ALIGN) is aligned  # cached per alignment
        q, k, v = torch.randn(3, 2, 12, 49, 4).unbind(0)
        torch.testing.assert_close(
            F.scaled_dot_product_attention(q, k, v, attn_mask=aligned),
            F.scaled_dot_product_attention(q, k, v, attn_mask=plain),
            rtol=0,
            atol=1e-6,
        )


def test_attention_routing_per_device():
    """Explicit attention where it was measured faster (CPU windows, compiled CUDA windows); SDPA elsewhere,
    CUDA's kernel differentiating the trainable bias itself (benchmarks/results/perf_gpu)."""
    from hiermlp.mixers.attention import use_explicit

    assert use_explicit("cpu", 49, trains_bias=False)
    assert not use_explicit("cpu", 3136, trains_bias=False)  # global attention: never the N x N logits
    assert use_explicit("cpu", 3136, trains_bias=True)  # CPU's fused kernels take no mask gradient
    assert not use_explicit("cuda", 49, trains_bias=False)
    assert not use_explicit("cuda", 49, trains_bias=True)  # memory-efficient kernel with bias gradient
    assert use_explicit("cuda", 49, trains_bias=False, tracing=True)  # compiled: fused softmax, not cuDNN
    assert not use_explicit("cuda", 3136, trains_bias=False, tracing=True)
    assert use_explicit("mps", 49, trains_bias=True)
