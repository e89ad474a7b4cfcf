"""Linear layers that run float32 CPU GEMMs through oneDNN, and the channel MLP built on them.

On CPU, ``F.linear`` goes to MKL's ``sgemm`` through ``addmm``, which first broadcasts the bias into the
output and then accumulates into it. oneDNN's inner-product primitive (``torch.ops.mkldnn._linear_pointwise``,
the kernel ``torch.compile`` itself emits for CPU linears) adds the bias and, optionally, applies GELU or a
residual add in the GEMM's epilogue. On the AVX-512 machine of ``benchmarks/results/perf_cpu`` it runs the
Swin GEMM shapes 1.2-1.6x faster than ``F.linear``, and fusing GELU saves a full pass over the 4C-wide hidden
activations.

The results equal ``F.linear`` to float32 rounding (a different summation order; tests/test_linear.py checks
values and gradients). The fast path is taken only where it applies:

* a float32 CPU input and weight, no autocast, a oneDNN-enabled PyTorch;
* not while exporting: ``torch.export``, TorchScript and ONNX see plain ``F.linear`` (exported graphs hold
  standard ops only). ``torch.compile`` calls the kernel through the custom op ``hiermlp::onednn_linear``;
* no functorch transform (``vmap``, ``grad``) active.

With autograd the forward and the input gradient run on oneDNN and the weight gradient on MKL (faster for
that shape), through the custom op ``hiermlp::onednn_linear``; double backward works. A training
:class:`Mlp` (exact GELU, no dropout) runs as one autograd function with a hand-written backward: rows in
chunks small enough to be reused from the heap, the GELU gradient in place, the residual add in ``fc2``'s
epilogue. Without gradients ``fc1`` fuses GELU and ``fc2`` the residual add.

It is on by default on x86-64, where it was measured. ``HIERMLP_ONEDNN=0`` (or :func:`set_onednn`) turns it
off, ``HIERMLP_ONEDNN=1`` on elsewhere; everything off the path runs ``F.linear``. A build whose kernel is
missing or fails a one-time probe at import uses ``F.linear``.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module  # the global forward-hook registries

from hiermlp.ops import functorch_active, is_exporting

_OP = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _probe() -> bool:
    """The kernel exists and runs here (a private op: a build or platform without it must not crash models)."""
    if _OP is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
        return bool(torch.equal(_OP(x, w, b, "none", [], ""), torch.full((2, 4), 3.0)))
    except Exception:  # any failure means: not usable here, use F.linear
        return False


def _default_enabled() -> bool:
    # measured on x86-64 (benchmarks/results/perf_cpu); elsewhere (e.g. aarch64 builds on ACL) opt in with =1
    setting = os.environ.get("HIERMLP_ONEDNN", "auto").strip().lower()
    if setting in ("0", "false", "off", "no"):
        return False
    if setting in ("1", "true", "on", "yes"):
        return True
    return platform.machine().lower() in ("x86_64", "amd64")


_AVAILABLE = _probe()
_enabled = _default_enabled()

ACTIVATIONS = ("gelu",)


def onednn_available() -> bool:
    """Whether this PyTorch build has the oneDNN linear kernel (independent of :func:`set_onednn`)."""
    return _AVAILABLE


def onednn_enabled() -> bool:
    """Whether eligible float32 CPU linears currently take the oneDNN path."""
    return _AVAILABLE and _enabled


def set_onednn(enabled: bool) -> bool:
    """Enable or disable the oneDNN path process-wide; returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


@contextlib.contextmanager
def onednn(enabled: bool) -> Iterator[None]:
    """Context manager form of :func:`set_onednn` (for A/B comparisons and tests)."""
    previous = set_onednn(enabled)
    try:
        yield
    finally:
        set_onednn(previous)


def _eligible(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        _enabled
        and _AVAILABLE
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.numel() > 0
        and not x.is_sparse
        and not torch.is_autocast_enabled("cpu")
        and not is_exporting()
        and not functorch_active()
    )


# The kernel as a custom op with a fake impl and autograd. torch.compile treats it as an opaque extern call
# (inductor's own lowering of the mkldnn op needs frozen, pre-packed weights), so compiled models keep
# oneDNN's speed and fused epilogues; eager autograd uses it too. Eager inference calls the kernel directly.
@torch.library.custom_op("hiermlp::onednn_linear", mutates_args=())
def _compiled_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str, residual: torch.Tensor | None
) -> torch.Tensor:
    return _kernel(x, weight, bias, activation, residual)


@_compiled_linear.register_fake
def _(x, weight, bias, activation, residual):  # the op's signature: output shape for fake tensors
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _compiled_linear_setup(ctx, inputs, output) -> None:
    x, weight, bias = inputs[:3]
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _weight_grad_transposed(rows: int, n_in: int, n_out: int) -> bool:
    """Whether ``g^T x`` (the weight gradient) runs faster on MKL as ``(x^T g)^T``: for wide weights
    (``in > out``) over a long reduction, 4-20% on the Swin shapes (benchmarks/results/perf_cpu)."""
    return n_in > n_out and rows >= 2 * n_in


def _weight_grad(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``g^T x`` for ``g (rows, out)``, ``x (rows, in)``: the ``(out, in)`` weight gradient, contiguous."""
    if _weight_grad_transposed(x.shape[0], x.shape[1], g.shape[1]):
        return x.t().mm(g).t().contiguous()
    return g.t().mm(x)


def _compiled_linear_backward(ctx, grad: torch.Tensor) -> tuple:
    # input gradient on oneDNN (faster than MKL for these shapes), weight gradient on MKL (faster than oneDNN);
    # both are ops with autograd of their own, so create_graph=True (double backward) works
    x, weight = ctx.saved_tensors
    g2 = grad.reshape(-1, grad.shape[-1])
    gx = _compiled_linear(grad, weight.t(), None, "none", None) if ctx.needs_input_grad[0] else None
    gw = _weight_grad(g2, x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
    gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return gx, gw, gb, None, None


_compiled_linear.register_autograd(_compiled_linear_backward, setup_context=_compiled_linear_setup)


def _kernel(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str, residual: torch.Tensor | None
) -> torch.Tensor:
    if residual is not None:
        return _OP.binary(x, residual.contiguous(), weight, bias, "add")
    if activation == "gelu":
        return _OP(x, weight, bias, "gelu", [], "none")
    return _OP(x, weight, bias, "none", [], "")


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    activation: str | None = None,
    residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """``residual + activation(x @ weight.T + bias)``, on oneDNN where eligible, else plain PyTorch ops.

    Args:
        x: ``(..., in)``.
        weight: ``(out, in)``.
        bias: ``(out,)`` or None.
        activation: None or ``"gelu"`` (exact, erf-based, as ``nn.GELU()``).
        residual: A tensor of the output's shape to add, or None.
    """
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"linear: activation must be None or one of {ACTIVATIONS}, got {activation!r}")
    if residual is not None and activation is not None:
        raise ValueError("linear: pass either activation or residual, not both")
    if not _eligible(x, weight):
        y = F.linear(x, weight, bias)
    elif _needs_grad(x, weight, bias, residual):
        # the custom op carries its own autograd (oneDNN forward and input gradient, MKL weight gradient);
        # activation and residual stay outside, where autograd sees them
        y = _compiled_linear(x, weight, bias, "none", None)
    else:
        fuse = residual is not None and residual.shape == (*x.shape[:-1], weight.shape[0]) and residual.dtype == x.dtype
        # eager calls the kernel directly (no dispatcher round trip); compiled graphs need the custom op
        kernel = _compiled_linear if torch.compiler.is_compiling() else _kernel
        y = kernel(x, weight, bias, activation or "none", residual if fuse else None)
        return y if residual is None or fuse else y + residual
    if activation == "gelu":
        y = F.gelu(y)
    return y if residual is None else y + residual


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, init and state dict) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def _fusable_activation(act: nn.Module) -> str | None:
    if type(act) is nn.GELU and act.approximate == "none":
        return "gelu"
    return None


def _hooked(*modules: nn.Module) -> bool:
    """Whether calling these modules would run forward hooks (then a fused path, which skips their
    ``forward``, must not be taken: the hooks would silently not fire)."""
    if _module._global_forward_hooks or _module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def linear_act(fc: nn.Linear, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(fc(x))``, as one fused kernel where the activation is exact GELU and no gradient is needed."""
    fused = _fusable_activation(act)
    if fused is not None and not _needs_grad(x, fc.weight, fc.bias) and not _hooked(fc, act):
        return linear(x, fc.weight, fc.bias, activation=fused)
    return act(fc(x))


# Training MLPs run in row chunks of at most this many hidden activations (16 MB of float32). glibc hands
# out blocks above 32 MB as fresh mmap'd pages on every allocation, and each first touch is a page fault
# (about 11 ms per 38 MB block on the machine of benchmarks/results/perf_cpu, Swin-T stage 1 at batch 8);
# smaller blocks are reused from the heap.
TRAIN_CHUNK_ELEMENTS = 1 << 22


def _row_spans(rows: int, width: int) -> list[tuple[int, int]]:
    chunks = max(1, -(-rows * width // TRAIN_CHUNK_ELEMENTS))
    step = -(-rows // chunks)
    return [(start, min(start + step, rows)) for start in range(0, rows, step)]


def _gelu_mlp_plain(x, w1, b1, w2, b2, residual):
    y = F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2)
    return y if residual is None else residual + y


class _GeluMlpFunction(torch.autograd.Function):
    """``residual + fc2(gelu(fc1(x)))`` with a hand-written backward, for training on oneDNN.

    Same arithmetic as the composition of :func:`linear` calls, fewer passes and allocations:

    * rows run in chunks (:data:`TRAIN_CHUNK_ELEMENTS`), so the 4C-wide hidden tensors are heap blocks
      instead of fresh page-faulted mappings;
    * the GELU gradient is written over the upstream gradient buffer (``gelu_backward`` out= its input)
      instead of a new hidden-sized tensor;
    * the residual add runs in ``fc2``'s epilogue (oneDNN ``binary`` post-op);
    * weight gradients accumulate chunk by chunk with ``addmm_``.

    Double backward (``create_graph=True``) differentiates the plain composition instead, so gradient
    penalties still work.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, residual):
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        r2 = None if residual is None else residual.reshape(-1, w2.shape[0]).contiguous()
        out = x2.new_empty(x2.shape[0], w2.shape[0])
        spans = _row_spans(x2.shape[0], w1.shape[0])
        hidden, acts = [], []
        for start, stop in spans:
            h = _OP(x2[start:stop], w1, b1, "none", [], "")
            a = F.gelu(h)
            if r2 is None:
                out[start:stop] = _OP(a, w2, b2, "none", [], "")
            else:
                out[start:stop] = _OP.binary(a, r2[start:stop], w2, b2, "add")
            hidden.append(h)
            acts.append(a)
        ctx.save_for_backward(x, w1, b1, w2, b2, residual, *hidden, *acts)
        ctx.spans = spans
        return out.view(*x.shape[:-1], w2.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, w1, b1, w2, b2, residual, *saved = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled():  # create_graph=True: a differentiable backward, from the plain ops
            inputs = [t for t, n in zip((x, w1, b1, w2, b2, residual), needs) if n]
            with torch.enable_grad():
                y = _gelu_mlp_plain(x, w1, b1, w2, b2, residual)
            grads = iter(torch.autograd.grad(y, inputs, grad, create_graph=True))
            return tuple(next(grads) if n else None for n in needs)
        spans = ctx.spans
        hidden, acts = saved[: len(spans)], saved[len(spans) :]
        g2 = grad.reshape(-1, grad.shape[-1]).contiguous()
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        gx = x2.new_empty(x2.shape) if needs[0] else None
        gw1 = gb1 = gw2 = None
        gb2 = g2.sum(0) if needs[4] else None
        w2_transposed = _weight_grad_transposed(x2.shape[0], w2.shape[1], w2.shape[0])
        for i, (start, stop) in enumerate(spans):
            gc = g2[start:stop]
            if needs[3]:  # accumulated over chunks, as (in, out) where that runs faster
                a, b = (acts[i].t(), gc) if w2_transposed else (gc.t(), acts[i])
                gw2 = a.mm(b) if gw2 is None else gw2.addmm_(a, b)
            if not (needs[0] or needs[1] or needs[2]):
                continue
            ga = _OP(gc, w2.t(), None, "none", [], "")
            gh = torch.ops.aten.gelu_backward.grad_input(ga, hidden[i], grad_input=ga)
            if needs[1]:
                gw1 = gh.t().mm(x2[start:stop]) if gw1 is None else gw1.addmm_(gh.t(), x2[start:stop])
            if needs[2]:
                gb1 = gh.sum(0) if gb1 is None else gb1.add_(gh.sum(0))
            if needs[0]:
                gx[start:stop] = _OP(gh, w1.t(), None, "none", [], "")
        if gw2 is not None and w2_transposed:
            gw2 = gw2.t().contiguous()
        return (
            None if gx is None else gx.view(x.shape),
            gw1,
            gb1,
            gw2,
            gb2,
            grad if needs[5] else None,
        )


class Mlp(nn.Module):
    """The channel MLP ``fc2(drop(act(fc1(x))))``, timm's ``Mlp`` parameter names and behaviour.

    On the oneDNN path (:func:`linear`), with exact GELU: without gradients ``fc1`` and the activation run as
    one fused kernel and :meth:`forward_residual` folds the block's residual add into ``fc2``; with gradients
    (no dropout) the whole MLP runs as :class:`_GeluMlpFunction` (chunked rows, hand-written backward). A
    module with forward hooks on its parts always takes the plain path, so the hooks fire.

    Args:
        in_features: Input channels.
        hidden_features: Hidden channels (default ``in_features``).
        out_features: Output channels (default ``in_features``).
        act_layer: Activation class.
        drop: Dropout after the activation and after ``fc2``.
        bias: Biases on ``fc1`` and ``fc2``.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop1(linear_act(self.fc1, self.act, x))

    def _trains_fused(self, x: torch.Tensor, shortcut: torch.Tensor | None) -> bool:
        """Training through :class:`_GeluMlpFunction`: exact GELU, no dropout, oneDNN-eligible, no hooks."""
        fc1, fc2 = self.fc1, self.fc2
        return (
            _fusable_activation(self.act) == "gelu"
            and not (self.training and (self.drop1.p > 0 or self.drop2.p > 0))
            and _needs_grad(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias, shortcut)
            and not torch.compiler.is_compiling()
            and _eligible(x, fc1.weight)
            and fc2.weight.dtype == torch.float32
            and (
                shortcut is None or (shortcut.shape == (*x.shape[:-1], fc2.out_features) and shortcut.dtype == x.dtype)
            )
            and not _hooked(fc1, self.act, fc2, self.drop1, self.drop2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._trains_fused(x, None):
            return _GeluMlpFunction.apply(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, None)
        return self.drop2(self.fc2(self.hidden(x)))

    def forward_residual(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """``shortcut + forward(x)``, the add fused into ``fc2``'s kernel where it can be."""
        if self._trains_fused(x, shortcut):
            w1, b1, w2, b2 = self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias
            return _GeluMlpFunction.apply(x, w1, b1, w2, b2, shortcut)
        h = self.hidden(x)
        if (self.training and self.drop2.p > 0) or _hooked(self.fc2, self.drop2):
            return shortcut + self.drop2(self.fc2(h))
        return linear(h, self.fc2.weight, self.fc2.bias, residual=shortcut)
