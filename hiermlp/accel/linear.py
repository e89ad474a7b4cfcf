"""Fast CPU linears: float32 GEMMs on oneDNN with a fused GELU epilogue, where this machine runs them faster.

On CPU, ``F.linear`` goes to MKL's ``sgemm`` through ``addmm``, which first broadcasts the bias into the
output and then accumulates into it. oneDNN's inner-product primitive (``torch.ops.mkldnn._linear_pointwise``,
the kernel ``torch.compile`` itself emits for CPU linears) adds the bias and, optionally, applies GELU in
the GEMM's epilogue, saving a full pass over the 4C-wide hidden activations. Whether that beats MKL depends
on the machine (MKL runs AVX2 code on AMD CPUs, oneDNN AVX-512; elsewhere MKL can win), so the path is the
machine profile's decision (:mod:`hiermlp.accel.machine`: timed once per machine and cached) unless
``SETTINGS.onednn`` pins it (``HIERMLP_ACCEL=onednn=1`` or ``0``).

Under CPU bfloat16 autocast in inference, where ``F.linear`` runs oneDNN's bfloat16 GEMM, the same kernel is
called directly (``SETTINGS.onednn_bf16``), so GELU joins the GEMM's epilogue there too and is applied before
the result is rounded to bfloat16 (autocast's path rounds, then runs GELU on bfloat16 values).

The results equal ``F.linear`` to float32 rounding (a different summation order; tests/test_linear.py checks
values and gradients). The fast path is taken only where it applies:

* a float32 CPU input and weight, no autocast, a oneDNN-enabled PyTorch, :func:`onednn_enabled`;
* not while exporting: ``torch.export``, TorchScript and ONNX see plain ``F.linear``. ``torch.compile``
  calls the kernel through the custom op ``hiermlp::onednn_linear``;
* no functorch transform (``vmap``, ``grad``) active.

With autograd the forward and the input gradient run on oneDNN and the weight gradient on MKL, through the
custom op; double backward works. Without gradients :class:`FastMlp` fuses GELU into ``fc1``. A build whose
kernel is missing or fails a one-time probe (run on first use, never at import) uses ``F.linear``.
:func:`register_flop_formulas` teaches ``torch.utils.flop_counter`` these kernels (``hiermlp.bench.count_flops``
calls it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from timm.layers.activations import GELU as TimmGELU
from torch import nn
from torch.utils import flop_counter

from hiermlp.accel import machine, settings
from hiermlp.accel.trace import functorch_active, hooked, is_exporting, is_fx_tracing
from hiermlp.errors import ConfigError

# the kernel: torch.ops.mkldnn._linear_pointwise once the probe found it usable, else None
_OP = None
_AVAILABLE: bool | None = None  # the probe's answer, once it ran

ACTIVATIONS = ("gelu",)


def _pointwise_op():
    """``torch.ops.mkldnn._linear_pointwise``, or None where this build lacks it (a private op)."""
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _probe() -> bool:
    """The kernel exists and runs here (a private op: a build or platform without it must not crash models)."""
    global _OP
    op = _pointwise_op()
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        x, w, b = torch.ones(2, 3), torch.ones(4, 3), torch.zeros(4)
        usable = bool(torch.equal(op(x, w, b, "none", [], ""), torch.full((2, 4), 3.0)))
    except Exception:  # any failure means: not usable here, use F.linear
        return False
    _OP = op if usable else None
    return usable


# a compiler tracing a model runs this once, eagerly, and takes its answer as a constant
@torch.compiler.assume_constant_result
def onednn_available() -> bool:
    """Whether this PyTorch build has a working oneDNN linear kernel (independent of the setting); probed
    once, on the first call."""
    global _AVAILABLE
    if _AVAILABLE is None:
        _AVAILABLE = _probe()
    return _AVAILABLE


def onednn_enabled() -> bool:
    """Whether eligible float32 CPU linears currently take the oneDNN path: ``SETTINGS.onednn`` where it is
    pinned, else the machine profile's decision (measured on the first call per machine, then cached)."""
    choice = settings.current().onednn
    if choice is False or not onednn_available():
        return False
    return choice is True or machine.prefers_onednn()


def gemm_choice(threads: int | None = None) -> dict[str, Any]:
    """Which path float32 CPU linears of accelerated models take at ``threads`` torch threads (None: the
    current count), and why (for reports and checkpoints):
    ``{"gemm": "onednn" | "mkl", "gemm_choice": reason, "gemm_rates": GFLOP/s measured or None}``; with the
    window-attention kernel left to the machine profile (``attention=auto``), also ``"cpu_attention_explicit"``:
    per dtype name, whether CPU inference runs explicit attention (True) or SDPA."""
    s = settings.current()
    rates = None
    if not s.enabled:
        gemm, why = "mkl", "speed layer off (HIERMLP_ACCEL=0): F.linear"
    elif not onednn_available():
        gemm, why = "mkl", "this PyTorch build has no usable oneDNN linear kernel"
    elif s.onednn is not None:
        gemm, why = ("onednn" if s.onednn else "mkl"), f"pinned (HIERMLP_ACCEL onednn={int(s.onednn)})"
    else:
        p = machine.profile(threads)
        gemm = "onednn" if p.onednn else "mkl"
        where = "measured by this process" if p.source == "measured" else f"read from {p.path}"
        why = f"machine profile ({where}, {p.key['threads']} threads)"
        rates = {k: round(v, 1) for k, v in p.rates.items()}
    choice: dict[str, Any] = {"gemm": gemm, "gemm_choice": why, "gemm_rates": rates}
    if s.enabled and s.attention == "auto":
        choice["cpu_attention_explicit"] = dict(machine.profile(threads).attention)
    return choice


def _eligible(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        settings.current().onednn is not False
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.numel() > 0
        and not x.is_sparse
        and not torch.is_autocast_enabled("cpu")
        and not is_exporting()
        and not functorch_active()
        and onednn_enabled()
    )


def _bf16_eligible(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """CPU inference under bfloat16 autocast, where ``F.linear`` would run oneDNN's bfloat16 GEMM anyway: the
    same kernel called directly takes the activation into its epilogue (``SETTINGS.onednn_bf16``)."""
    return (
        settings.current().onednn_bf16
        and x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
        and x.dtype in (torch.float32, torch.bfloat16)
        and weight.dtype == torch.float32
        and x.numel() > 0
        and not x.is_sparse
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and not is_exporting()
        and not functorch_active()
        and onednn_available()
    )


def _bf16_kernel(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None
) -> torch.Tensor:
    # autocast's casts, done here: the op is called below autocast, which would otherwise leave it in float32
    bf16 = torch.bfloat16
    b = None if bias is None else bias.to(bf16)
    return _kernel(x.to(bf16), weight.to(bf16), b, activation or "none")


# The kernel as a custom op with a fake impl and autograd. torch.compile treats it as an opaque extern call
# (inductor's own lowering of the mkldnn op needs frozen, pre-packed weights), so compiled models keep
# oneDNN's speed and fused epilogue; eager autograd uses it too. Eager inference calls the kernel directly.
@torch.library.custom_op("hiermlp::onednn_linear", mutates_args=())
def _compiled_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    return _kernel(x, weight, bias, activation)


@_compiled_linear.register_fake
def _(x, weight, bias, activation):  # the op's signature: output shape for fake tensors
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
    gx = _compiled_linear(grad, weight.t(), None, "none") if ctx.needs_input_grad[0] else None
    gw = _weight_grad(g2, x.reshape(-1, x.shape[-1])) if ctx.needs_input_grad[1] else None
    gb = g2.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
    return gx, gw, gb, None


_compiled_linear.register_autograd(_compiled_linear_backward, setup_context=_compiled_linear_setup)


def _kernel(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str) -> torch.Tensor:
    if activation == "gelu":
        return _OP(x, weight, bias, "gelu", [], "none")
    return _OP(x, weight, bias, "none", [], "")


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, activation: str | None = None
) -> torch.Tensor:
    """``activation(x @ weight.T + bias)``, on oneDNN where eligible, else plain PyTorch ops.

    Args:
        x: ``(..., in)``.
        weight: ``(out, in)``.
        bias: ``(out,)`` or None.
        activation: None or ``"gelu"`` (exact, erf-based, as ``nn.GELU()``).
    """
    if activation is not None and activation not in ACTIVATIONS:
        raise ConfigError(f"linear: activation must be None or one of {ACTIVATIONS}, got {activation!r}")
    if _bf16_eligible(x, weight):
        return _bf16_kernel(x, weight, bias, activation)
    if not _eligible(x, weight):
        y = F.linear(x, weight, bias)
    elif _needs_grad(x, weight, bias):
        # the custom op carries its own autograd (oneDNN forward and input gradient, MKL weight gradient);
        # the activation stays outside, where autograd sees it
        y = _compiled_linear(x, weight, bias, "none")
    else:
        # eager calls the kernel directly (no dispatcher round trip); compiled graphs need the custom op
        kernel = _compiled_linear if torch.compiler.is_compiling() else _kernel
        return kernel(x, weight, bias, activation or "none")
    return F.gelu(y) if activation == "gelu" else y


class FastLinear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) whose forward is :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_fx_tracing():
            return super().forward(x)
        return linear(x, self.weight, self.bias)


def _fusable_activation(act: nn.Module) -> str | None:
    # exact GELU: torch's, or timm's (what get_act_layer("gelu") gives, so every HierNet channel MLP has it)
    if (type(act) is nn.GELU and act.approximate == "none") or type(act) is TimmGELU:
        return "gelu"
    return None


def _fusable(*fcs: nn.Module) -> bool:
    # only the speed layer's own linears are fused: a wrapped or replaced Linear (LoRA, quantised) keeps
    # its own forward
    return all(type(fc) is FastLinear for fc in fcs)


def linear_act(fc: nn.Module, act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``act(fc(x))``, as one fused kernel where the activation is exact GELU and no gradient is needed."""
    fused = _fusable_activation(act)
    if fused is not None and _fusable(fc) and not _needs_grad(x, fc.weight, fc.bias) and not hooked(fc, act):
        return linear(x, fc.weight, fc.bias, activation=fused)
    return act(fc(x))


class FastMlp(Mlp):
    """timm's ``Mlp`` (same parameters and state dict) whose ``fc1`` and exact GELU run as one oneDNN kernel
    in inference. A module with forward hooks on its parts, a replaced ``fc1``/``fc2`` or a norm inside the
    MLP takes the plain path.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_fx_tracing() or not isinstance(self.norm, nn.Identity) or not _fusable(self.fc1, self.fc2):
            return super().forward(x)
        return self.drop2(self.fc2(self.drop1(linear_act(self.fc1, self.act, x))))


def register_flop_formulas() -> None:
    """Teach ``torch.utils.flop_counter`` the oneDNN linear kernels (call before a ``FlopCounterMode`` is
    made: it copies the registry). Registers nothing twice; probes nothing."""

    def formula(x, *args, out_shape=None, **kwargs) -> int:
        # _linear_pointwise(x, W, B, attr, ...) and hiermlp::onednn_linear(x, W, B, activation) carry a string
        # third; _linear_pointwise.binary(x, other, W, B, attr) has the weight one place later
        weight = args[0] if isinstance(args[2], str) else args[1]
        return 2 * math.prod(x.shape) * weight.shape[0]

    packets = [torch.ops.hiermlp.onednn_linear]
    if _pointwise_op() is not None:
        packets.append(torch.ops.mkldnn._linear_pointwise)
    for packet in packets:
        if packet not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(packet, get_raw=True)(formula)
