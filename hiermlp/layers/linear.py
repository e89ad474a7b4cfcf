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
that shape), through the custom op ``hiermlp::onednn_linear``; double backward works. Activation and
residual fusion are inference-only (nothing that needs a gradient).

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

from hiermlp.ops import is_exporting

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
_functorch_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)

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
        and not _functorch_active()
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


def _compiled_linear_backward(ctx, grad: torch.Tensor) -> tuple:
    # input gradient on oneDNN (faster than MKL for these shapes), weight gradient on MKL (faster than oneDNN);
    # both are ops with autograd of their own, so create_graph=True (double backward) works
    x, weight = ctx.saved_tensors
    g2 = grad.reshape(-1, grad.shape[-1])
    gx = _compiled_linear(grad, weight.t(), None, "none", None) if ctx.needs_input_grad[0] else None
    gw = g2.t().matmul(x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
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


def linear_act(fc: nn.Linear, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(fc(x))``, as one fused kernel where the activation is exact GELU and no gradient is needed."""
    fused = _fusable_activation(act)
    if fused is not None and not _needs_grad(x, fc.weight, fc.bias):
        return linear(x, fc.weight, fc.bias, activation=fused)
    return act(fc(x))


class Mlp(nn.Module):
    """The channel MLP ``fc2(drop(act(fc1(x))))``, timm's ``Mlp`` parameter names and behaviour.

    With exact GELU and no gradient needed, ``fc1`` and the activation run as one fused kernel, and
    :meth:`forward_residual` folds the block's residual add into ``fc2``.

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.hidden(x)))

    def forward_residual(self, x: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """``shortcut + forward(x)``, the add fused into ``fc2`` where nothing needs a gradient."""
        h = self.hidden(x)
        if self.training and self.drop2.p > 0:
            return shortcut + self.drop2(self.fc2(h))
        return linear(h, self.fc2.weight, self.fc2.bias, residual=shortcut)
