"""Window multi-head self-attention (Swin's W-MSA / SW-MSA)."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.layers import RelativePositionBias
from hiermlp.layers.linear import Linear
from hiermlp.mixers.base import register_mixer
from hiermlp.ops import functorch_active, is_exporting, is_tracing
from hiermlp.ops.cache import cache_context


def mask_to_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Bool ``(..., N, N)`` mask to an additive one: 0 where allowed, -inf where not.

    The reference adds -100; -inf gives the same softmax to float32 precision and stays exact in bf16.
    Every row has at least one allowed entry (a token may always attend to itself), so no row is all -inf.
    """
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))


def _attention_plain(qkv: torch.Tensor, bias: torch.Tensor | None, scale: float, drop: float = 0.0) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v`` as plain functional ops, ``q, k, v = qkv`` (traced graphs, and the
    differentiable form behind :class:`_WindowAttentionFunction`'s double backward)."""
    q, k, v = qkv.unbind(0)
    attn = torch.matmul(q, k.transpose(-2, -1)) * scale
    attn = (attn if bias is None else attn + bias).softmax(-1)
    return torch.matmul(F.dropout(attn, p=drop) if drop > 0 else attn, v)


def _probs(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale + bias)``, the scale and bias in place on the logits (matmul's backward needs
    its inputs, not its output, so autograd allows it); the softmax too where autograd does not need it
    (each row is read for its max and sum before it is overwritten)."""
    attn = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
    if bias is not None:
        attn.add_(bias)
    if torch.is_grad_enabled() and attn.requires_grad:
        return attn.softmax(-1)
    return torch.ops.aten._softmax.out(attn, -1, False, out=attn)


class _WindowAttentionFunction(torch.autograd.Function):
    """``softmax(q k^T * scale + bias) v`` for training, with a hand-written backward.

    ``qkv`` is one ``(3, b, G, N, d)`` tensor (``q, k, v = qkv``), ``bias`` broadcasts against ``(b, G, N, N)``.
    Against autograd through the same ops it saves passes and allocations: the scale, the bias add and the
    softmax run in place on the logits; the softmax gradient is written over the upstream one and the scale
    folded into it; q, k and v gradients land straight in one ``(3, b, G, N, d)`` buffer (no stack/cat). The
    bias gradient is the logits gradient summed over the batch. Double backward (``create_graph=True``)
    differentiates the plain composition instead.
    """

    @staticmethod
    def forward(ctx, qkv, bias, scale):
        q, k, v = qkv.unbind(0)
        attn = _probs(q, k, bias, scale)  # grad mode is off in forward: all in place
        ctx.save_for_backward(qkv, bias, attn)
        ctx.scale = scale
        return torch.matmul(attn, v)

    @staticmethod
    def backward(ctx, grad):
        qkv, bias, attn = ctx.saved_tensors
        needs_qkv, needs_bias = ctx.needs_input_grad[:2]
        if torch.is_grad_enabled():  # create_graph=True
            inputs = [t for t, n in ((qkv, needs_qkv), (bias, needs_bias)) if n]
            with torch.enable_grad():
                y = _attention_plain(qkv, bias, ctx.scale)
            grads = iter(torch.autograd.grad(y, inputs, grad, create_graph=True))
            return (next(grads) if needs_qkv else None, next(grads) if needs_bias else None, None)
        q, k, v = qkv.unbind(0)
        grad = grad.contiguous()  # unshifted blocks get a permuted view: one copy here, not one per matmul
        out = torch.empty_like(qkv) if needs_qkv else None
        if needs_qkv:
            torch.matmul(attn.transpose(-2, -1), grad, out=out[2])
        g = torch.matmul(grad, v.transpose(-2, -1))
        g = torch.ops.aten._softmax_backward_data.out(g, attn, -1, attn.dtype, grad_input=g)
        gbias = None
        if needs_bias:
            gbias = g.sum_to_size(bias.shape) if g.shape != bias.shape else g.clone()
        if needs_qkv:
            g.mul_(ctx.scale)
            torch.matmul(g, k, out=out[0])
            torch.matmul(g.transpose(-2, -1), q, out=out[1])
        return out, gbias, None


# On CPU (and in compiled CUDA graphs), windows of up to this many tokens use explicit attention (faster than
# the flash kernel there); larger token counts (global attention) keep SDPA, which never materialises the
# N x N logits.
MAX_EXPLICIT_TOKENS = 256

# Devices whose SDPA differentiates ``attn_mask`` in a fused kernel (CUDA's memory-efficient kernel does):
# there a trainable position bias stays on SDPA. Elsewhere (CPU's fused kernels take no mask gradient and
# PyTorch would fall back to its math path) it takes the explicit path. benchmarks/perf_gpu.py measures both.
SDPA_BIAS_GRAD_DEVICES: frozenset[str] = frozenset({"cuda"})

# The memory-efficient kernel wants the mask's rows aligned (PyTorch checks for multiples of 8 elements); given
# Swin's N = 49 SDPA pads a fresh copy of the mask on every call. The bias handed to SDPA on CUDA is therefore
# cached as a view into row-padded storage (rows of 64), which SDPA takes as is. Measured on an H200: Swin-T
# inference 1.34x timm with it, 1.13x without (benchmarks/results/perf_gpu).
MASK_ALIGN = 16


def use_explicit(device_type: str, tokens: int, trains_bias: bool, tracing: bool = False) -> bool:
    """Explicit GEMMs + softmax (True) or ``F.scaled_dot_product_attention`` (False) for one window batch.

    Traced graphs on CUDA take the explicit form for window-sized N: the compiler fuses scale, bias, mask and
    softmax around two bmm, and ties compiled timm, whereas SDPA in a compiled graph lowers to cuDNN's
    attention kernel, which ran Swin-T 19% slower (benchmarks/results/perf_gpu).
    """
    if trains_bias and device_type not in SDPA_BIAS_GRAD_DEVICES:
        return True
    return (device_type == "cpu" or (tracing and device_type == "cuda")) and tokens <= MAX_EXPLICIT_TOKENS


def _align_rows(bias: torch.Tensor, align: int) -> torch.Tensor:
    """``bias`` as a view whose row stride is a multiple of ``align`` (zero-padded columns, sliced off)."""
    n = bias.shape[-1]
    if not align or bias.stride(-2) % align == 0:
        return bias
    return F.pad(bias, (0, -n % align))[..., :n]


@register_mixer("attention")
class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, ``(B*nW, N, C) -> (B*nW, N, C)``.

    qkv projection, relative position bias added to the logits, the (shifted-window) mask, then
    ``F.scaled_dot_product_attention`` (a fused kernel where the device has one) and an output projection.
    The parameter names are the reference's (``qkv``, ``proj``, ``relative_position_bias_table``).

    The position bias and the shift mask are folded into one additive ``(1, heads or nW*heads, N, N)``
    tensor. When no gradient flows to the table (inference, or a frozen table) it is cached, keyed by the
    mask and the table's version counter, so the gather runs once instead of every forward; an optimizer
    step or ``load_state_dict`` bumps the version and refreshes it. The bias is 4-D because the CPU fused
    kernel rejects a 3-D mask (PyTorch then falls back to the slower math path).

    Which kernel runs (:func:`use_explicit`, measured in benchmarks/results/perf_cpu and perf_gpu):

    * CPU: explicit attention for windows (two bmm, in-place softmax; a hand-written backward in training);
      SDPA for global attention.
    * CUDA, eager: SDPA's memory-efficient kernel with the cached bias in the autocast dtype and row-aligned,
      in training too (the kernel differentiates the bias).
    * CUDA, compiled: explicit attention for windows, which the compiler fuses (traced SDPA lowers to a
      slower cuDNN kernel).

    Args:
        dim: Channels C.
        window_size: ``(wh, ww)``; None for a global window (then there is no position bias).
        num_heads: Heads; must divide ``dim``.
        qkv_bias: Bias on the qkv projection.
        attn_drop: Dropout on attention weights.
        proj_drop: Dropout after the output projection.
        rel_pos: Learn a relative position bias table.
    """

    honours_mask = True

    def __init__(
        self,
        dim: int,
        *,
        window_size: tuple[int, int] | None,
        num_heads: int,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        rel_pos: bool = True,
    ) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ConfigError(f"attention: num_heads={num_heads} must be >= 1 and divide dim={dim}")
        self.dim = dim
        self.num_heads = num_heads
        self.window_size = window_size
        self.qkv = Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rel_pos = (
            RelativePositionBias(window_size=window_size, num_heads=num_heads)
            if rel_pos and window_size is not None
            else None
        )
        self._bias_cache: dict[tuple, torch.Tensor] = {}

    def attn_bias(self, mask: torch.Tensor | None, dtype: torch.dtype, align: int = 0) -> torch.Tensor | None:
        """Position bias plus shift mask, ``-> (1, heads, N, N)`` or ``(1, nW*heads, N, N)`` (or None); with
        ``align``, a view whose row stride is a multiple of it (see :data:`MASK_ALIGN`)."""
        table = None if self.rel_pos is None else self.rel_pos.relative_position_bias_table
        if mask is None and table is None:
            return None
        cacheable = not is_tracing() and not (table is not None and table.requires_grad and torch.is_grad_enabled())
        if cacheable:
            key = (
                None if mask is None else (mask.data_ptr(), tuple(mask.shape)),
                None if table is None else (table.data_ptr(), table._version),
                dtype,
                align,
                str(table.device if table is not None else mask.device),
            )
            hit = self._bias_cache.get(key)
            if hit is not None:
                return hit
        with cache_context() if cacheable else contextlib.nullcontext():
            bias = None if table is None else self.rel_pos().to(dtype)[None].contiguous()  # (1, heads, N, N)
            if mask is not None:
                folded = mask_to_bias(mask[:, None], dtype)  # (nW, 1, N, N)
                if bias is not None:
                    folded = folded + bias
                n = folded.shape[-1]
                bias = folded.expand(-1, self.num_heads, -1, -1).reshape(1, -1, n, n)
            if bias is not None:
                bias = _align_rows(bias, align)
        if cacheable:
            if len(self._bias_cache) >= 8:  # a few sizes at most: keep the cache bounded
                self._bias_cache.clear()
            self._bias_cache[key] = bias
        return bias

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        tracing = is_tracing()
        device = x.device.type
        table = None if self.rel_pos is None else self.rel_pos.relative_position_bias_table
        trains_bias = table is not None and table.requires_grad and torch.is_grad_enabled()
        n_tokens = x.shape[-2]
        explicit = use_explicit(device, n_tokens, trains_bias and not tracing, tracing)
        if explicit or device != "cuda":
            bias = self.attn_bias(mask, x.dtype)
        else:
            # SDPA on CUDA: the bias in the dtype autocast hands the kernel (a cast would drop the padded
            # layout) and row-aligned, so the memory-efficient kernel reads it broadcast over the batch
            # (traced graphs take x.dtype: the compiler places casts and layouts itself)
            amp = torch.get_autocast_dtype(device) if not tracing and torch.is_autocast_enabled(device) else x.dtype
            bias = self.attn_bias(mask, amp, align=MASK_ALIGN)
        qkv = self.qkv(x)
        if mask is None:
            qkv = rearrange(qkv, "b n (three heads d) -> three b heads n d", three=3, heads=self.num_heads)
        else:
            # windows are batch-major: (B*nW) splits as (B, nW) and the (nW*heads) bias broadcasts over B
            qkv = rearrange(
                qkv, "(b w) n (three heads d) -> three b (w heads) n d", w=mask.shape[0], three=3, heads=self.num_heads
            )
        q, k, v = qkv.unbind(0)
        if (
            explicit
            and not tracing
            and device == "cpu"
            and torch.is_grad_enabled()
            and (qkv.requires_grad or trains_bias)
            and not (self.training and self.attn_drop > 0)
            and not functorch_active()
        ):
            # training on CPU: the hand-written backward (fewer passes; tests/test_fast_paths.py)
            x = _WindowAttentionFunction.apply(qkv.contiguous(), bias, q.shape[-1] ** -0.5)
        elif explicit and tracing:  # plain functional ops: compilers and exporters fuse them themselves
            x = _attention_plain(qkv, bias, q.shape[-1] ** -0.5, self.attn_drop if self.training else 0.0)
        elif explicit:
            x = self._explicit_attention(q, k, v, bias)
        else:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0
            )
        if tracing and (device == "cpu" or is_exporting()):
            # the fused CPU kernel returns a (b, n, heads, d) memory layout, the exporters' math replacement
            # (b, heads, n, d): a view recorded against one cannot replay on the other
            x = x.contiguous()
        if mask is None:
            x = rearrange(x, "b heads n d -> b n (heads d)")
        else:
            x = rearrange(x, "b (w heads) n d -> (b w) n (heads d)", heads=self.num_heads)
        return self.proj_drop(self.proj(x))

    def _explicit_attention(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """``softmax(q k^T / sqrt(d) + bias) v`` as two batched GEMMs and a softmax, in place where it can be.

        Used (a) while the position table trains: PyTorch's fused kernels take no gradient for ``attn_mask``
        and would fall back to their math path, which also scans the mask for all -inf rows (every row here
        has a finite entry: a token always sees itself); (b) on CPU for window-sized N, where it runs 1.3-1.5x
        faster than the flash kernel (benchmarks/results/perf_cpu).
        """
        attn = _probs(q, k, bias, q.shape[-1] ** -0.5)
        if self.training and self.attn_drop > 0:
            attn = F.dropout(attn, p=self.attn_drop, training=True)
        return torch.matmul(attn, v)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, window_size={self.window_size}, num_heads={self.num_heads}"
