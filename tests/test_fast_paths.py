"""The speed layer (hiermlp.accel) computes the plain modules' function, and its caches cannot go stale."""

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hiermlp
from hiermlp import accel
from hiermlp.accel import cache as accel_cache
from hiermlp.mixers import MIXERS, mixer_name
from hiermlp.mixers.base import mixer_attr, mixer_kind
from hiermlp.models.block import HierBlock
from hiermlp.models.stage import HierStage
from hiermlp.ops import GEOMETRY_CACHE_SIZE, cached_window_mask
from hiermlp.testing import TINY_SWIN, fast, randomize_, set_fast

SIZES = [(8, 8), (9, 11), (5, 13), (3, 3), (16, 12), (7, 4), (4, 4)]  # (4, 4): one window = the map
SHIFTS = [(0, 0), (2, 2), (2, 0)]


def block_kwargs(name: str) -> dict:
    # mixers that bring their own channel projections run in blocks without a channel MLP
    return dict(mlp_ratio=0.0 if name == "gmlp" else 2.0)


WINDOW_MIXERS = sorted(n for n in MIXERS if mixer_kind(n) == "window")


# the opt-in oneDNN linears (and their fused GELU / residual epilogues) as well as the default path
ONEDNN = [False, pytest.param(True, marks=pytest.mark.skipif(not accel.onednn_available(), reason="no oneDNN"))]


@pytest.fixture(params=ONEDNN, ids=["mkl", "onednn"])
def onednn(request):
    with accel.override(onednn=request.param):
        yield request.param


@pytest.mark.parametrize("name", WINDOW_MIXERS)
@pytest.mark.parametrize("shift", SHIFTS)
def test_block_fast_equals_plain(name, shift, onednn):
    if mixer_attr(name, "global_window", False) and any(shift):
        pytest.skip("global-window mixers never shift")
    torch.manual_seed(0)
    block = HierBlock(dim=16, num_heads=2, window_size=(4, 4), shift_size=shift, mixer=name, **block_kwargs(name))
    randomize_(block).eval()
    for size in SIZES:
        x = torch.randn(2, *size, 16)
        with torch.no_grad():
            with fast(block, True):
                got = block(x)
            ref = block(x)
        assert (got - ref).abs().max().item() < 1e-5, (mixer_name(name), shift, size)


@pytest.mark.parametrize("size", [(32, 32), (40, 24), (27, 35)])
def test_model_fast_equals_plain_forward_and_backward(size, onednn):
    torch.manual_seed(0)
    model = randomize_(hiermlp.HierNet(**TINY_SWIN))
    x = torch.randn(2, 3, *size)
    grads, outs = [], []
    for on in (True, False):
        set_fast(model, on)
        out = model(x)
        grads.append(torch.autograd.grad(out.square().sum(), list(model.parameters())))
        outs.append(out.detach())
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    for (n, _), a, b in zip(model.named_parameters(), *grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, n=n: f"{n}: {m}")


def test_create_model_is_fast_and_plain_swaps_back():
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", num_classes=3)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"FastHierBlock", "FastWindowAttention", "FastLinear", "FastMlp"} <= kinds
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    accel.plain(model)
    assert not accel.is_accelerated(model) and {"HierBlock", "WindowAttention"} <= {
        type(m).__name__ for m in model.modules()
    }
    assert model.state_dict().keys() == sd.keys()
    with accel.override(enabled=False):
        assert not accel.is_accelerated(hiermlp.create_model("swin_tiny_patch4_window7_224"))


def test_a_replaced_linear_is_never_bypassed():
    """A wrapped/replaced Linear (LoRA, quantisation) keeps its own forward: fused paths skip only FastLinear."""

    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    model = randomize_(hiermlp.create_model("swin_tiny_patch4_window7_224", **TINY_SWIN)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref_blocks = copy.deepcopy(model)
        for m in (model, ref_blocks):
            for blk in m.modules():
                if isinstance(blk, HierBlock) and blk.mlp is not None:
                    old = blk.mlp.fc2
                    new = Scaled(old.in_features, old.out_features)
                    new.load_state_dict(old.state_dict())
                    blk.mlp.fc2 = new
        accel.plain(ref_blocks)
        torch.testing.assert_close(model(x), ref_blocks(x), rtol=0, atol=1e-5)


# ---- caches: the failure loops of issue 13, each against a cache-free ground truth ---------------------
def _fresh(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    accel_cache.clear()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("mixer", ["attention", "spatial_mlp"])
def test_data_assignment_never_serves_a_stale_cache(mixer):
    model = randomize_(hiermlp.create_model("swin_tiny_patch4_window7_224", **{**TINY_SWIN, "mixer": mixer})).eval()
    x = torch.randn(1, 3, 32, 32)
    params = [
        p for n, p in model.named_parameters() if "relative_position_bias_table" in n or n.endswith("mixer.weight")
    ]
    assert params
    for _ in range(6):
        with torch.no_grad():
            model(x)  # fill the caches
            for p in params:
                p.data = torch.randn_like(p)  # new storage, same version counter
            got = model(x)
        torch.testing.assert_close(got, _fresh(model, x), rtol=0, atol=0)
        with torch.no_grad():
            for p in params:
                p.data.copy_(torch.randn_like(p))  # in place through .data: the version counter never moves
            got = model(x)
        torch.testing.assert_close(got, _fresh(model, x), rtol=0, atol=0)


def test_load_state_dict_assign_and_functional_call_never_serve_a_stale_cache():
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **TINY_SWIN).eval()
    x = torch.randn(1, 3, 32, 32)
    for seed in range(4):
        torch.manual_seed(seed)
        other = randomize_(hiermlp.HierNet(**TINY_SWIN), std=0.2)
        with torch.no_grad():
            model(x)
        model.load_state_dict(other.state_dict(), assign=True)
        with torch.no_grad():
            got = model(x)
        torch.testing.assert_close(got, _fresh(model, x), rtol=0, atol=0)
        params = {n: torch.randn_like(p) * 0.2 for n, p in model.named_parameters()}
        with torch.no_grad():
            got = torch.func.functional_call(model, params, (x,))
            ref = torch.func.functional_call(accel.plain(copy.deepcopy(model)), params, (x,))
        torch.testing.assert_close(got, ref, rtol=0, atol=2e-5)


def test_caches_survive_to_deepcopy_and_pickle_without_travelling():
    model = randomize_(hiermlp.create_model("swin_tiny_patch4_window7_224", **TINY_SWIN)).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    attn = next(m for m in model.modules() if isinstance(m, accel.FastWindowAttention))
    assert accel_cache.entries(attn) > 0
    clone = copy.deepcopy(model)
    restored = pickle.loads(pickle.dumps(model))
    assert all(accel_cache.entries(m) == 0 for m in list(clone.modules()) + list(restored.modules()))
    assert not any("cache" in k for k in model.state_dict())
    with torch.no_grad():
        for m in (clone, restored, model.to(torch.float64).to(torch.float32)):
            torch.testing.assert_close(m(x), ref, rtol=0, atol=0)
        clone.double()
        torch.testing.assert_close(clone(x.double()).float(), ref, rtol=0, atol=1e-5)


def test_geometry_cache_is_bounded_over_many_sizes():
    """Swin-T features_only over 40 random sizes: the size-keyed geometry LRU never grows past its bound."""
    cached_window_mask.cache_clear()
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", features_only=True, **TINY_SWIN).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(40):
            h, w = (int(v) for v in torch.randint(16, 96, (2,), generator=g))
            model(torch.randn(1, 3, h, w))
    info = cached_window_mask.cache_info()
    assert info.currsize <= GEOMETRY_CACHE_SIZE and info.maxsize == GEOMETRY_CACHE_SIZE
    cached_window_mask.cache_clear()
    for i in range(GEOMETRY_CACHE_SIZE + 20):
        cached_window_mask((8 + 4 * i, 8), (4, 4), (2, 2), device="cpu")
    assert cached_window_mask.cache_info().currsize == GEOMETRY_CACHE_SIZE


def test_geometry_cache_keeps_no_entry_above_its_byte_bound():
    """A mask larger than GEOMETRY_ENTRY_MAX_BYTES (huge 3-D windows: SwinUNETR's first stage at 96^3 has 40 MB
    masks) is built for its call and not kept, so the entry bound is also a memory bound; the LRU keeps the
    entries used last."""
    from hiermlp.ops import GEOMETRY_ENTRY_MAX_BYTES, window_mask

    cached_window_mask.cache_clear()
    big = ((49, 49, 49), (7, 7, 7), (3, 3, 3), (48, 48, 48))  # 343 windows x 343 x 343 bool = 40 MB
    first = cached_window_mask(*big, device="cpu")
    assert first.nbytes > GEOMETRY_ENTRY_MAX_BYTES and cached_window_mask.cache_info().currsize == 0
    again = cached_window_mask(*big, device="cpu")
    assert again is not first and torch.equal(again, window_mask(*big))
    small = ((8, 8), (4, 4), (2, 2))
    kept = cached_window_mask(*small, device="cpu")
    assert cached_window_mask(*small, device="cpu") is kept
    for i in range(GEOMETRY_CACHE_SIZE - 1):  # fill the cache, touching the first entry halfway
        cached_window_mask((12 + 4 * i, 8), (4, 4), (2, 2), device="cpu")
        if i == GEOMETRY_CACHE_SIZE // 2:
            assert cached_window_mask(*small, device="cpu") is kept
    cached_window_mask((4, 4), (4, 4), (0, 0), device="cpu")  # one more: evicts the least recently used
    assert cached_window_mask(*small, device="cpu") is kept
    assert cached_window_mask.cache_info().currsize == GEOMETRY_CACHE_SIZE
    cached_window_mask.cache_clear()


def test_parameter_cache_is_bounded_per_module():
    attn = randomize_(accel.FastWindowAttention(8, window_size=(4, 4), num_heads=2)).eval()
    for n in range(20):
        mask = cached_window_mask((4 + 4 * (n % 10), 8), (4, 4), (2, 2), (3 + 4 * (n % 10), 8), device="cpu")
        with torch.no_grad():
            attn(torch.randn(mask.shape[0], 16, 8), mask)
    assert accel_cache.entries(attn) <= accel_cache.ENTRIES_PER_MODULE


@pytest.mark.parametrize("mixer", ["attention", "spatial_mlp"])
def test_inference_mode_first_then_training(mixer):
    """Caches filled under torch.inference_mode must not break a later training step."""
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **{**TINY_SWIN, "mixer": mixer})
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        model.eval()(x)
    model.train()(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_compile_fullgraph_has_no_graph_breaks(name):
    """torch.compile(fullgraph=True) traces every mixer's fast model in one graph (dynamo only, no codegen)."""
    kwargs = dict(TINY_SWIN, mixer=name, depths=(2, 2), num_heads=(1, 2), drop_path_rate=0.0, img_size=(36, 28))
    if name == "gmlp":
        kwargs["mlp_ratio"] = 0.0
    model = accel.accelerate(hiermlp.HierNet(**kwargs)).eval()
    x = torch.randn(2, 3, 36, 28)
    # one network class for every mixer: a fresh dynamo state per mixer keeps the recompile limit out of it
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["attention", "spatial_mlp", "token_mlp", "gmlp"])
def test_chunked_inference_equals_the_whole_batch(name):
    """CPU inference runs a stage's blocks on big batches a few images at a time; the result is the whole
    batch's."""
    torch.manual_seed(0)
    stage = HierStage(
        in_dim=16, dim=16, depth=2, downsample=None, feat_size=(8, 8), num_heads=2, window_size=(4, 4), mixer=name,
        **block_kwargs(name),
    )  # fmt: skip
    stage = accel.accelerate(randomize_(stage).eval())
    calls = []  # the images each block sees (a hook on the blocks themselves would keep them whole)
    for block in stage.blocks:
        block.norm1.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    for size in [(8, 8), (9, 11), (5, 13)]:
        x = torch.randn(5, *size, 16)
        with torch.no_grad():
            with accel.override(chunk_tokens=0):
                whole = stage(x)
            calls.clear()
            with accel.override(chunk_tokens=2 * size[0] * size[1]):  # two images per chunk: 2 + 2 + 1
                chunked = stage(x)
        assert calls == [2, 2, 2, 2, 1, 1]  # both blocks on each chunk
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    calls.clear()
    stage(x)  # autograd on: never split (the graph would hold every chunk anyway)
    assert calls == [5, 5]
    two = 2 * size[0] * size[1]
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        calls.clear()
        with accel.override(chunk_tokens=two):  # autocast: every chunk would cast and repack the weights again
            whole = stage(x)
        assert calls == [5, 5]
        calls.clear()
        with accel.override(chunk_tokens=two, chunk_autocast=True):
            chunked = stage(x)
        assert calls == [2, 2, 2, 2, 1, 1]
    # a bf16 GEMM may block fewer rows differently on another CPU: one bf16 rounding step of slack
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-2)
    with torch.no_grad():  # a hook on a block sees the whole batch, as on the plain stage
        seen = []
        stage.blocks[1].register_forward_hook(lambda m, args, out: seen.append(out.shape[0]))
        with accel.override(chunk_tokens=2 * size[0] * size[1]):
            stage(x)
        assert seen == [5]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kernel", ["sdpa", "explicit"])
def test_window_chunked_attention_equals_the_plain_block(dims, kernel):
    """Inference runs shifted window attention a few windows at a time when all windows' folded bias would
    exceed SETTINGS.attn_chunk_mib; each chunk builds its own bias. Values equal the plain block's (the
    reference path: one bias for every window), bit for bit against the unsplit fast path."""
    torch.manual_seed(0)
    window, feat = ((16, 16), (40, 56)) if dims == 2 else ((4, 8, 8), (8, 20, 28))
    kwargs = dict(dim=32, mixer="attention", num_heads=4, window_size=window, feat_size=feat, spatial_dims=dims)
    plain = randomize_(HierBlock(**kwargs, shift_size=tuple(w // 2 for w in window))).eval()
    block = accel.accelerate(copy.deepcopy(plain))
    per_window = 4 * 4 * (window[0] * window[1] * (window[2] if dims == 3 else 1)) ** 2  # heads x N x N float32
    windows, kernel_calls = [], []  # the windows of each mixer call; the (window x head) rows of each kernel call
    hook = block.mixer.register_forward_hook(lambda m, args, out: windows.append(args[1].shape[0]))
    run_kernel = block.mixer.kernel
    block.mixer.kernel = lambda q, *rest: kernel_calls.append(q.shape[1]) or run_kernel(q, *rest)
    for size in (feat, tuple(f - 3 for f in feat)):  # a window multiple, and padded windows
        x = torch.randn(2, *size, 32)
        with torch.no_grad(), accel.override(attention=kernel):
            want = plain(x)
            with accel.override(attn_chunk_mib=0):
                whole = block(x)
            windows.clear(), kernel_calls.clear()
            with accel.override(attn_chunk_mib=max(1, 3 * per_window // 2**20)):
                chunked = block(x)
        (n,) = windows
        assert n > 3 and kernel_calls == [4 * 3] * (n // 3) + [4 * (n % 3)] * (n % 3 > 0)  # 3 windows a call
        torch.testing.assert_close(chunked, want, rtol=0, atol=1e-5)
        assert torch.equal(chunked, whole)
    hook.remove()
    block.train()
    x = torch.randn(2, *feat, 32, requires_grad=True)
    with accel.override(attn_chunk_mib=1):  # autograd: never split; the gradients are the plain block's
        grads = torch.autograd.grad(block(x).square().sum(), [x, *block.parameters()])
    want = torch.autograd.grad(plain.train()(x).square().sum(), [x, *plain.parameters()])
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [(40, 24), (27, 35)])
@pytest.mark.parametrize("train", [False, True])
def test_explicit_attention_equals_sdpa(train, size):
    """Each attention kernel choice of the speed layer computes the same function, values and gradients."""
    model = accel.accelerate(randomize_(hiermlp.HierNet(**TINY_SWIN)))
    x = torch.randn(2, 3, *size, requires_grad=train)
    outs, grads = [], []
    for kernel in ("explicit", "sdpa"):
        with accel.override(attention=kernel):
            model.train(train)
            with torch.set_grad_enabled(train):
                out = model(x)
            outs.append(out.detach())
            if train:
                grads.append(torch.autograd.grad(out.square().sum(), [x, *model.parameters()]))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=1e-5)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def reference_attention(q, k, v, bias, scale):
    """softmax(q k^T * scale + bias) v, from the definition."""
    logits = torch.einsum("bhnd,bhmd->bhnm", q, k) * scale
    return torch.einsum("bhnm,bhmd->bhnd", (logits if bias is None else logits + bias).softmax(-1), v)


@pytest.mark.parametrize("bias_heads", [None, 3, 12])  # no bias, (1, heads), (1, windows x heads) as shifted runs
def test_chunked_explicit_attention_is_attention(bias_heads, monkeypatch):
    """CPU inference's explicit kernel runs the batch in slices of EXPLICIT_CHUNK_BYTES logits: every slice, the
    ragged last one included, computes attention on strided views of a qkv projection (float64, the definition)."""
    from hiermlp.accel import explicit

    torch.manual_seed(0)
    b, h, n, d = 7, bias_heads or 3, 9, 4
    qkv = torch.randn(b, n, 3, h, d, dtype=torch.float64)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # strided, not contiguous: as an unshifted block hands them over
    bias = None if bias_heads is None else torch.randn(1, h, n, n, dtype=torch.float64)
    if bias is not None:
        bias[..., 0, 1:] = float("-inf")  # a masked row, as a shift mask makes
    want = reference_attention(q, k, v, bias, 0.3)
    slices = []
    real_probs = explicit.probs
    monkeypatch.setattr(explicit, "probs", lambda q, *a: slices.append(q.shape[0]) or real_probs(q, *a))
    monkeypatch.setattr(explicit, "EXPLICIT_CHUNK_BYTES", 2 * h * n * n * 8)  # two batch rows per call
    torch.testing.assert_close(explicit.explicit_attention(q, k, v, bias, 0.3), want, rtol=1e-12, atol=1e-12)
    assert slices == [2, 2, 2, 1]
    slices.clear()
    monkeypatch.setattr(explicit, "EXPLICIT_CHUNK_BYTES", 2**30)  # all in one call
    torch.testing.assert_close(explicit.explicit_attention(q, k, v, bias, 0.3), want, rtol=1e-12, atol=1e-12)
    assert slices == [7]


def test_cpu_inference_takes_the_profiles_attention_kernel(monkeypatch):
    """With the profile choosing explicit attention, an accelerated Swin's inference runs the sliced explicit
    kernel and computes the plain model's function (float64); with it choosing SDPA, it never does."""
    from hiermlp.accel import attention, explicit, machine

    model = randomize_(hiermlp.HierNet(**TINY_SWIN)).double().eval()
    x = torch.randn(3, 3, 27, 35, dtype=torch.float64)
    with torch.no_grad():
        want = model(x)
    fast_model = accel.accelerate(model)
    calls = []
    real = attention.explicit_attention
    monkeypatch.setattr(attention, "explicit_attention", lambda *a: calls.append(a[0].shape) or real(*a))
    monkeypatch.setattr(explicit, "EXPLICIT_CHUNK_BYTES", 1)  # one batch row per call
    for chosen in (True, False):
        monkeypatch.setattr(machine, "cpu_attention_explicit", lambda dtype, chosen=chosen: chosen)
        calls.clear()
        with torch.no_grad(), accel.override(attention="auto"):
            torch.testing.assert_close(fast_model(x), want, rtol=1e-10, atol=1e-10)
        assert bool(calls) is chosen


@pytest.mark.parametrize("drop_path", [0.0, 0.4])
def test_split_mlp_branch_in_training_is_the_whole_batch_branch(drop_path, onednn):
    """With autograd on CPU the channel-MLP branch runs a few images at a time (SETTINGS.mlp_chunk_mib): the
    same values, gradients and drop-path draws as the plain block on the whole batch."""
    torch.manual_seed(0)
    block = HierBlock(dim=16, num_heads=2, window_size=(4, 4), shift_size=(2, 2), mlp_ratio=2.0, drop_path=drop_path)
    randomize_(block).train()
    calls = []
    block.mlp.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    # hidden activations of one image: 0.50 MiB at 64x64 (two images per 1 MiB call), 0.54 MiB at 63x70 (one)
    for size, split in [((64, 64), [2, 2, 1]), ((63, 70), [1] * 5), ((8, 8), [5])]:
        x = torch.randn(5, *size, 16, requires_grad=True)
        results = []
        for speed, budget in ((False, 0), (True, 0), (True, 1)):
            calls.clear()
            torch.manual_seed(1)  # the same drop-path draws for every variant
            with fast(block, speed), accel.override(mlp_chunk_mib=budget):
                out = block(x)
            results.append((out.detach(), *torch.autograd.grad(out.square().sum(), [x, *block.parameters()])))
            assert calls == (split if speed and budget else [5])
        for got in results[1:]:
            torch.testing.assert_close(got[0], results[0][0], rtol=0, atol=1e-5)
            for a, b in zip(got[1:], results[0][1:]):  # sums over 20k tokens, in another order
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_mlp_branch_is_not_split_where_images_are_not_independent():
    """BatchNorm in training (batch statistics) or active dropout (other draws) keep the branch whole."""
    from hiermlp.layers.norm import make_norm

    for norm, dropout, train_mode in (
        ("batchnorm", 0.0, True),
        ("layernorm", 0.1, True),
        ("batchnorm", 0.1, False),  # eval: both are per image again
    ):
        block = HierBlock(dim=16, num_heads=2, window_size=(4, 4), mlp_ratio=2.0, mlp_norm_layer=make_norm(norm))
        block.mlp.drop1.p = dropout
        block = accel.accelerate(block).train(train_mode)
        calls: list[int] = []
        block.mlp.register_forward_pre_hook(lambda m, args, calls=calls: calls.append(args[0].shape[0]))
        with accel.override(mlp_chunk_mib=1):
            block(torch.randn(5, 64, 64, 16, requires_grad=True))
        assert calls == ([5] if train_mode else [2, 2, 1]), (norm, dropout, train_mode)


def test_hooks_on_the_channel_mlp_fire_in_the_fast_block():
    """The fused residual path calls the MLP's parts itself; a hook on the MLP module keeps it the module call."""
    block = accel.accelerate(HierBlock(dim=16, num_heads=2, window_size=(4, 4)))
    seen = []
    block.mlp.register_forward_hook(lambda m, args, out: seen.append(out.shape))
    for train in (False, True):
        block.train(train)
        with torch.set_grad_enabled(train):
            block(torch.randn(2, 8, 8, 16))
    assert seen == [torch.Size([2, 8, 8, 16])] * 2


def test_aligned_bias_is_the_same_bias_with_padded_rows():
    """The bias SDPA gets on CUDA is a view into row-padded storage (49 -> 64): same values, same attention."""
    attn = randomize_(accel.FastWindowAttention(12, window_size=(7, 7), num_heads=3), std=0.5).eval()
    mask = torch.rand(4, 49, 49) > 0.3
    mask |= torch.eye(49, dtype=torch.bool)  # a token always sees itself
    align = accel.settings.current().align_mask
    with torch.no_grad():
        plain = attn.folded_bias(mask, torch.float32)
        aligned = attn.folded_bias(mask, torch.float32, align=align)
        assert aligned.shape == plain.shape == (1, 12, 49, 49)
        assert aligned.stride(-2) % align == 0 and plain.stride(-2) == 49
        torch.testing.assert_close(aligned, plain, rtol=0, atol=0)
        assert attn.folded_bias(mask, torch.float32, align=align) is aligned  # cached per alignment
        q, k, v = torch.randn(3, 2, 12, 49, 4).unbind(0)
        torch.testing.assert_close(
            F.scaled_dot_product_attention(q, k, v, attn_mask=aligned),
            F.scaled_dot_product_attention(q, k, v, attn_mask=plain),
            rtol=0,
            atol=1e-6,
        )


def test_attention_routing_per_device():
    """Explicit attention where it was measured faster (compiled CUDA windows, a trainable bias off CUDA); SDPA
    elsewhere, CUDA's kernel differentiating the trainable bias itself (benchmarks/results/perf_gpu)."""
    from hiermlp.accel.attention import use_explicit

    assert not use_explicit("cpu", 49, trains_bias=False)
    assert not use_explicit("cpu", 3136, trains_bias=False)  # global attention: never the N x N logits
    assert use_explicit("cpu", 3136, trains_bias=True)  # CPU's fused kernels take no mask gradient
    assert not use_explicit("cuda", 49, trains_bias=False)
    assert not use_explicit("cuda", 49, trains_bias=True)  # memory-efficient kernel with bias gradient
    assert use_explicit("cuda", 49, trains_bias=False, tracing=True)  # compiled: fused softmax, not cuDNN
    assert not use_explicit("cuda", 3136, trains_bias=False, tracing=True)
    assert use_explicit("mps", 49, trains_bias=True)
    with accel.override(attention="sdpa"):
        assert not use_explicit("cpu", 49, trains_bias=True)
    with accel.override(attention="explicit"):
        assert use_explicit("cpu", 49, trains_bias=False)


def test_settings_from_the_environment_variable():
    from hiermlp.accel.settings import from_env

    assert from_env(None) == accel.AccelSettings()
    assert not from_env("0").enabled
    s = from_env("onednn=0,chunk_tokens=0,attention=sdpa")
    assert (s.onednn, s.chunk_tokens, s.attention) == (False, 0, "sdpa")
    for bad in ("chunk_tokens=abc", "nope=1", "attention=fast", "onednn"):
        with pytest.raises(hiermlp.ConfigError):
            from_env(bad)


def assert_twins_agree(module, plain_cls, fast_cls, x):
    """``module`` as its plain class and as its fast twin: the same output and gradients (input and every
    parameter); left as the fast twin."""
    outs = []
    for cls in (plain_cls, fast_cls):
        module.__class__ = cls
        y = module(x)
        outs.append((y, *torch.autograd.grad(y.square().sum(), [x, *module.parameters()])))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("c_in", "c_out", "groups", "kernel", "stride", "padding", "bias"),
    [
        (12, 6, 6, (1, 7), 1, (0, 3), False),  # Wave-MLP's tfc_h
        (12, 6, 6, (7, 1), 1, (3, 0), True),  # tfc_w, with a bias
        (9, 3, 3, 3, 2, 1, True),  # three inputs per group, strided
        (8, 8, 8, 3, 1, 1, False),  # plain depthwise: the conv itself
        (8, 4, 2, 3, 1, 1, False),  # two outputs per group: the conv itself
    ],
)
def test_grouped_conv_as_depthwise_and_sum(c_in, c_out, groups, kernel, stride, padding, bias):
    from hiermlp.accel.conv import FastConvCL
    from hiermlp.layers import ConvCL

    torch.manual_seed(0)
    conv = ConvCL(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups, bias=bias)
    x = torch.randn(2, 9, 11, c_in, requires_grad=True)
    assert_twins_agree(conv, ConvCL, FastConvCL, x)
    assert type(hiermlp.create_model("wavemlp_t").stages[0].blocks[0].mixer.tfc_h) is FastConvCL


def test_import_probes_nothing_and_registers_nothing():
    """``import hiermlp`` (and its bench package) runs no oneDNN probe and leaves torch's FLOP registry alone;
    the probe runs on first use, the formulas are registered where FLOPs are counted."""
    import subprocess
    import sys

    code = (
        "import torch; from torch.utils import flop_counter as fc; before = set(fc.flop_registry)\n"
        "import hiermlp, hiermlp.bench; from hiermlp.accel import linear\n"
        "print(linear._AVAILABLE, set(fc.flop_registry) == before)\n"
        "hiermlp.bench.count_gmacs(hiermlp.create_model('swin_tiny_patch4_window7_224', num_classes=0), (3, 32, 32))\n"
        "print(torch.ops.hiermlp.onednn_linear in fc.flop_registry)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "True", "True"]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_inference_sdpa_reads_the_projection_as_it_lies(dims, dtype, monkeypatch):
    """CPU inference on SDPA hands the kernel q, k and v as strided views of the qkv projection, (B*nW, heads,
    N, d), with the bias as (nW, heads, N, N) repeated per image: the copying layout's result (bit for bit in
    float32; also under bfloat16 autocast), shifted and not, one image and several, padded maps, and the plain
    block's function."""
    from hiermlp.accel import machine

    monkeypatch.setattr(machine, "cpu_attention_explicit", lambda dtype: False)  # SDPA, on any machine
    window, size = {1: ((4,), (11,)), 2: ((4, 4), (9, 11)), 3: ((2, 4, 4), (3, 9, 6))}[dims]
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kw):
        seen.append((q.is_contiguous(), None if attn_mask is None else attn_mask.shape[:2]))
        return sdpa(q, k, v, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    for shift in (0, 2):
        torch.manual_seed(0)
        plain = HierBlock(
            dim=16, num_heads=2, window_size=window, shift_size=tuple(shift if w > 2 else 0 for w in window),
            feat_size=size, spatial_dims=dims,
        )  # fmt: skip
        plain = randomize_(plain).eval()
        block = accel.accelerate(copy.deepcopy(plain))
        for images in (1, 3):
            x = torch.randn(images, *size, 16)
            with torch.no_grad(), autocast:
                seen.clear()
                got = block(x)
                ((contiguous, (maps, heads)),) = seen  # one call, on views; a bias: position bias and masks
                assert not contiguous and heads == 2
                assert maps == 1 or maps % images == 0  # (1, heads) broadcast, or nW maps for every image
                with accel.override(sdpa_views=False):
                    seen.clear()
                    copied = block(x)
                    assert seen[0][0]  # the (B, nW*heads) layout: contiguous copies
                ref = plain(x)
            # the same kernel on the same values; under bf16 another CPU's GEMM may block the other batch layout
            # differently, so one bf16 rounding step of slack there (float32: bit for bit)
            torch.testing.assert_close(got, copied, rtol=0, atol=0 if dtype == torch.float32 else 1e-2)
            if dtype == torch.float32:
                torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    with torch.enable_grad():  # autograd: the copying layout (SDPA would give a trainable bias no gradient)
        seen.clear()
        block(x)
        assert seen == [] or seen[0][0]


def test_fast_twins_of_hiermlp_modules_override_hooks_never_forward():
    """A fast twin of a hiermlp module overrides narrow hooks of its plain class, never ``forward``: an edit of
    the plain module's forward holds on both paths (torch's Linear and timm's Mlp have no hooks to override)."""
    for plain_cls, fast_cls in accel.FAST.items():
        own = fast_cls.__mro__[: fast_cls.__mro__.index(plain_cls)]  # the twin and its mixins
        defined = {name for cls in own for name, v in vars(cls).items() if callable(v)}
        if plain_cls.__module__.startswith("hiermlp."):
            assert "forward" not in defined, fast_cls
        overridden = {name for name in defined if not name.startswith("__") and hasattr(plain_cls, name)}
        assert overridden, fast_cls  # it speeds something up through the plain class's own names


def test_an_edit_of_the_plain_block_holds_on_the_fast_path(monkeypatch):
    """Change the plain block once (here its forward: the channel-MLP residual runs before the token mixing)
    and the fast block computes the changed function too."""

    def edited(self, x):
        x = self.mlp_residual(x)
        return x + self.drop_path1(self.ls1(self.mix_tokens(self.norm1(x))))

    torch.manual_seed(0)
    block = randomize_(HierBlock(dim=16, num_heads=2, window_size=(4, 4), shift_size=(2, 2))).eval()
    x = torch.randn(2, 9, 11, 16)
    with torch.no_grad():
        before = block(x)
        monkeypatch.setattr(HierBlock, "forward", edited)
        ref = block(x)
        with fast(block, True):
            got = block(x)
    assert (ref - before).abs().max() > 1e-3  # the edit changes the function
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


CL3 = torch.channels_last_3d


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("shape,offset", [((2, 8, 5, 6, 7), 0.0), ((1, 8, 40, 40, 40), 5.0), ((1, 16, 3, 3, 3), 1.0)])
def test_instance_norm_on_channels_last_maps_equals_channels_first(shape, offset, affine):
    """The NDHWC instance norm of the speed layer (SwinUNETR's decoder) equals torch's channels-first kernel in
    value and gradient; at 64,000 voxels a one-pass float32 sum (torch's channels-last group norm) misses by 1e-4."""
    torch.manual_seed(0)
    plain = nn.InstanceNorm3d(shape[1], affine=affine)
    if affine:
        with torch.no_grad():
            plain.weight.normal_(1.0, 0.2), plain.bias.normal_(0.0, 0.2)
    norm = accel.accelerate(copy.deepcopy(plain))
    assert type(norm) is accel.FastInstanceNorm3d
    x = (2 * torch.randn(shape) + offset).contiguous(memory_format=CL3).requires_grad_()
    got = norm(x)
    assert got.is_contiguous(memory_format=CL3) and not got.is_contiguous()  # the NDHWC path ran
    want = plain(x.detach().contiguous().requires_grad_())
    torch.testing.assert_close(got, want, rtol=0, atol=2e-6)
    g = torch.randn(shape)
    grads = torch.autograd.grad(got, [x, *norm.parameters()], g)
    x2 = x.detach().contiguous().requires_grad_()
    want_grads = torch.autograd.grad(plain(x2), [x2, *plain.parameters()], g)
    for a, b in zip(grads, want_grads):  # the affine gradients sum 64,000 products: float32 rounding at 1e-5
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad(), accel.override(conv_channels_last=False):
        assert norm(x).is_contiguous()  # the lever off: torch's kernel, its layout


def _decoder_layouts(model: nn.Module) -> list[bool]:
    """Whether each up block's output map is NDHWC, recorded by hooks on the next forward."""
    seen = []
    for name in ("decoder5", "decoder4", "decoder3", "decoder2", "decoder1"):
        getattr(model, name).register_forward_hook(lambda m, i, out: seen.append(out.is_contiguous(memory_format=CL3)))
    return seen


def test_swin_unetr_channels_last_decoder_equals_plain():
    """SwinUNETR's decoder on NDHWC maps (conv_channels_last) computes the plain modules' function: float64
    logits and gradients to 1e-10, float32 logits to float32 rounding amplified by the instance norms."""
    from hiermlp.models.swin_unetr import SwinUNETR

    torch.manual_seed(0)
    plain = randomize_(SwinUNETR(in_chans=1, num_classes=3, feature_size=12, window_size=2, num_heads=(1, 2, 4, 8)))
    model = accel.accelerate(copy.deepcopy(plain))
    x = torch.randn(2, 1, 64, 32, 40)
    layouts = _decoder_layouts(model)
    with torch.no_grad():
        got, want = model.eval()(x), plain.eval()(x)
        assert layouts == [True] * 5  # the lever acted on every up block
        assert ((got - want).abs().max() / want.abs().max()).item() < 1e-4
        layouts.clear()
        with accel.override(conv_channels_last=False):
            torch.testing.assert_close(model(x), want, rtol=0, atol=0)
        assert layouts == [False] * 5
    model, plain, x = model.double().train(), plain.double().train(), x.double().requires_grad_()
    got = model(x)
    want = plain(x)
    assert ((got - want).abs().max() / want.abs().max()).item() < 1e-10
    g = torch.randn_like(got)
    grads = torch.autograd.grad(got, [x, *model.parameters()], g)
    for a, b in zip(grads, torch.autograd.grad(want, [x, *plain.parameters()], g)):
        assert ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item() < 1e-8
