"""Window attention on the fastest kernel per device, with the folded bias cached.

The plain :class:`~hiermlp.mixers.attention.WindowAttention` adds the position bias and the mask to the
logits of ``F.scaled_dot_product_attention`` each call. Its fast twin overrides the kernel hook ``attend``
(measured in benchmarks/results/perf_gpu, except where said):

* the bias and the shift mask are folded into one additive ``(1, heads or nW*heads, N, N)`` tensor, cached
  when no gradient flows to the table (inference, or a frozen table): :mod:`hiermlp.accel.cache`;
* CUDA, eager: SDPA's memory-efficient kernel with the bias in the autocast dtype and row-aligned
  (``SETTINGS.align_mask``), in training too (the kernel differentiates the bias);
* CUDA, compiled: explicit attention for windows, which the compiler fuses (traced SDPA lowers to a
  slower cuDNN kernel);
* a trainable position bias off CUDA: explicit attention (two matmuls and a softmax), since the other
  devices' fused SDPA kernels give the mask no gradient and PyTorch falls back to its math path (a Swin-T
  training step on CPU went from 0.93x to 1.0x timm's with it, commit da5a1d4); CPU inference keeps SDPA.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hiermlp.accel import settings
from hiermlp.accel.cache import derived
from hiermlp.accel.trace import is_exporting, is_fx_tracing, is_tracing
from hiermlp.mixers.attention import WindowAttention
from hiermlp.mixers.baselines import GlobalAttention

# windows of up to this many tokens use explicit attention in compiled CUDA graphs; larger token counts
# (global attention) keep SDPA
MAX_EXPLICIT_TOKENS = 256

# devices whose SDPA differentiates ``attn_mask`` in a fused kernel (CUDA's memory-efficient kernel does):
# there a trainable position bias stays on SDPA; elsewhere PyTorch would fall back to its math path
SDPA_BIAS_GRAD_DEVICES: frozenset[str] = frozenset({"cuda"})


def use_explicit(device_type: str, tokens: int, trains_bias: bool, tracing: bool = False) -> bool:
    """Explicit GEMMs + softmax (True) or ``F.scaled_dot_product_attention`` (False) for one window batch."""
    choice = settings.current().attention
    if choice != "auto":
        return choice == "explicit"
    if trains_bias and device_type not in SDPA_BIAS_GRAD_DEVICES:
        return True
    return tracing and device_type == "cuda" and tokens <= MAX_EXPLICIT_TOKENS


def align_rows(bias: torch.Tensor, align: int) -> torch.Tensor:
    """``bias`` as a view whose row stride is a multiple of ``align`` (zero-padded columns, sliced off)."""
    n = bias.shape[-1]
    if not align or bias.stride(-2) % align == 0:
        return bias
    return F.pad(bias, (0, -n % align))[..., :n]


def probs(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale + bias)``, scale and bias in place on the logits (matmul's backward needs its
    inputs, not its output)."""
    attn = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
    if bias is not None:
        attn.add_(bias)
    return attn.softmax(-1)


class FastAttentionMixin:
    """The fast :meth:`attend` for :class:`WindowAttention` and its subclasses (same parameters and function)."""

    def folded_bias(
        self,
        mask: torch.Tensor | None,
        dtype: torch.dtype,
        align: int = 0,
        window_size: tuple[int, int] | None = None,
    ) -> torch.Tensor | None:
        """The plain :meth:`attn_bias` (position bias plus shift mask, ``(1, heads or nW*heads, N, N)`` or None),
        contiguous with rows aligned to ``align``, cached while no gradient flows to the position table."""
        table = None if self.rel_pos is None else self.rel_pos.relative_position_bias_table
        if mask is None and table is None:
            return None
        window = tuple(window_size) if window_size is not None else self.window_size

        def build() -> torch.Tensor:
            return align_rows(WindowAttention.attn_bias(self, mask, dtype, window_size).contiguous(), align)

        if is_tracing() or (table is not None and table.requires_grad and torch.is_grad_enabled()):
            return build()
        sources = () if table is None else (table,)
        device = (table if table is not None else mask).device
        return derived(self, ("bias", dtype, align, str(device), window), (mask,), sources, build)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | None,
        window_size: tuple[int, int] | None,
    ) -> torch.Tensor:
        if is_fx_tracing():
            return super().attend(q, k, v, mask, window_size)
        tracing = is_tracing()
        device = q.device.type
        table = None if self.rel_pos is None else self.rel_pos.relative_position_bias_table
        trains_bias = table is not None and table.requires_grad and torch.is_grad_enabled()
        explicit = use_explicit(device, q.shape[-2], trains_bias and not tracing, tracing)
        if explicit or device != "cuda":
            bias = self.folded_bias(mask, q.dtype, window_size=window_size)
        else:
            # SDPA on CUDA: the bias in the dtype autocast hands the kernel and row-aligned, so the
            # memory-efficient kernel reads it broadcast over the batch
            amp = torch.get_autocast_dtype(device) if not tracing and torch.is_autocast_enabled(device) else q.dtype
            bias = self.folded_bias(mask, amp, align=settings.current().align_mask, window_size=window_size)
        drop = self.attn_drop if self.training else 0.0
        if explicit and tracing:  # plain functional ops: compilers and exporters fuse them themselves
            attn = torch.matmul(q, k.transpose(-2, -1)) * self.scale
            attn = (attn if bias is None else attn + bias).softmax(-1)
            out = torch.matmul(F.dropout(attn, p=drop) if drop > 0 else attn, v)
        elif explicit:
            attn = probs(q, k, bias, self.scale)
            out = torch.matmul(F.dropout(attn, p=drop) if drop > 0 else attn, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=self.scale)
        if tracing and (device == "cpu" or is_exporting()):
            # the fused CPU kernel returns a (b, n, heads, d) memory layout, the exporters' math replacement
            # (b, heads, n, d): a view recorded against one cannot replay on the other. An exporter records
            # contiguous() only where the traced layout needs it, so it gets a copy it always keeps.
            out = out.clone(memory_format=torch.contiguous_format) if is_exporting() else out.contiguous()
        return out


class FastWindowAttention(FastAttentionMixin, WindowAttention):
    """:class:`WindowAttention` on the fast kernels (see the module docstring)."""


class FastGlobalAttention(FastAttentionMixin, GlobalAttention):
    """:class:`GlobalAttention` on the fast kernels (see the module docstring)."""
