"""Window attention on the fastest kernel per device, with the folded bias cached.

The plain :class:`~hiermlp.mixers.attention.WindowAttention` adds the position bias and the mask to the
logits of ``F.scaled_dot_product_attention`` each call. Its fast twin overrides the kernel hook ``attend``
(measured in benchmarks/results/perf_gpu, except where said):

* the bias and the shift mask are folded into one additive ``(1, heads or nW*heads, N, N)`` tensor, cached
  when no gradient flows to the table (inference, or a frozen table): :mod:`hiermlp.accel.cache`;
* CUDA, eager: SDPA's memory-efficient kernel with the bias in the autocast dtype and row-aligned
  (``SETTINGS.align_mask``), in training too (the kernel differentiates the bias), unless the GPU's attention
  profile measured explicit attention faster on Swin-T's window shape (:mod:`hiermlp.accel.machine`, per GPU,
  cached);
* CUDA, compiled: explicit attention for windows, which the compiler fuses (traced SDPA lowers to a
  slower cuDNN kernel);
* a trainable position bias off CUDA: explicit attention (two matmuls and a softmax), since the other
  devices' fused SDPA kernels give the mask no gradient and PyTorch falls back to its math path (a Swin-T
  training step on CPU went from 0.93x to 1.0x timm's with it, commit da5a1d4);
* CPU inference: the kernel the machine profile measured faster on Swin-T's stage-1 window batch, per dtype
  (float32, bfloat16), SDPA on a tie. SDPA there reads q, k and v as strided views of the qkv projection,
  ``(B*nW, heads, N, d)``, with the bias as ``(nW, heads, N, N)`` (:meth:`FastAttentionMixin.multi_head`,
  ``SETTINGS.sdpa_views``): no copy into the ``(B, nW*heads)`` layout and none back, since the CPU kernel
  writes its output token-major (measured in benchmarks/results/perf_cpu_xeon). Explicit attention there runs a
  few window rows per call (:data:`hiermlp.accel.explicit.EXPLICIT_CHUNK_BYTES` of logits), so the logits stay
  in cache while the softmax and the second matmul read them (measured in benchmarks/results/perf_cpu);
* inference with a shift mask whose folded bias would exceed ``SETTINGS.attn_chunk_mib`` (large 3-D windows:
  SwinUNETR's first stage at 96^3 folds 343 windows x 3 heads of 343 x 343 into 0.9 GB): a few windows at a
  time, each chunk's bias built for it alone (measured in benchmarks/results/ndim_cpu).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hiermlp.accel import machine, settings
from hiermlp.accel.cache import derived
from hiermlp.accel.explicit import explicit_attention, probs
from hiermlp.accel.trace import is_exporting, is_fx_tracing, is_tracing
from hiermlp.mixers.attention import WindowAttention
from hiermlp.mixers.baselines import GlobalAttention

# windows of up to this many tokens use explicit attention in compiled CUDA graphs; larger token counts
# (global attention) keep SDPA
MAX_EXPLICIT_TOKENS = 256

# devices whose SDPA differentiates ``attn_mask`` in a fused kernel (CUDA's memory-efficient kernel does):
# there a trainable position bias stays on SDPA; elsewhere PyTorch would fall back to its math path
SDPA_BIAS_GRAD_DEVICES: frozenset[str] = frozenset({"cuda"})


def use_explicit(
    device_type: str,
    tokens: int,
    trains_bias: bool,
    tracing: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> bool:
    """Explicit GEMMs + softmax (True) or ``F.scaled_dot_product_attention`` (False) for one window batch.

    With ``device`` given, eager CUDA windows take the kernel the GPU's attention profile measured faster
    (:func:`hiermlp.accel.machine.attention_choice`: timed once per GPU and cached, SDPA on a tie), and CPU
    inference the kernel the machine profile measured faster for ``dtype``
    (:func:`hiermlp.accel.machine.cpu_attention_explicit`)."""
    choice = settings.current().attention
    if choice != "auto":
        return choice == "explicit"
    if trains_bias and device_type not in SDPA_BIAS_GRAD_DEVICES:
        return True
    if tracing:
        return device_type == "cuda" and tokens <= MAX_EXPLICIT_TOKENS
    if device is not None and device_type == "cuda" and tokens <= MAX_EXPLICIT_TOKENS:
        return machine.window_attention_explicit(device, train=torch.is_grad_enabled())
    if device is not None and device_type == "cpu" and tokens <= MAX_EXPLICIT_TOKENS and not torch.is_grad_enabled():
        return machine.cpu_attention_explicit(dtype)
    return False


def align_rows(bias: torch.Tensor, align: int) -> torch.Tensor:
    """``bias`` as a view whose row stride is a multiple of ``align`` (zero-padded columns, sliced off)."""
    n = bias.shape[-1]
    if not align or bias.stride(-2) % align == 0:
        return bias
    return F.pad(bias, (0, -n % align))[..., :n]


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

    def multi_head(
        self, qkv: torch.Tensor, mask: torch.Tensor | None, window_size: tuple[int, ...] | None
    ) -> torch.Tensor:
        if not self.token_major(qkv, mask):
            return super().multi_head(qkv, mask, window_size)
        b, n, h = qkv.shape[0], qkv.shape[1], self.num_heads
        # strided views of the projection, (B*nW, heads, N, d): SDPA's CPU kernel reads them as they lie
        q, k, v = qkv.unflatten(-1, (3, h, -1)).permute(2, 0, 3, 1, 4)
        bias = self.folded_bias(mask, qkv.dtype, window_size=window_size)
        if bias is not None:
            bias = bias.view(-1, h, n, n)  # (nW or 1, heads, N, N)
            if 1 < bias.shape[0] < b:  # windows are batch-major: the nW maps repeat for every image
                bias = bias.expand(b // bias.shape[0], -1, -1, -1, -1).flatten(0, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        # the kernel writes (B*nW, N, heads, d) memory under its (B*nW, heads, N, d) shape: merging heads is a view
        return out.transpose(1, 2).flatten(2)

    def token_major(self, qkv: torch.Tensor, mask: torch.Tensor | None) -> bool:
        """Whether :meth:`multi_head` runs SDPA on strided views of the projection, ``(B*nW, heads, N, d)``
        with the bias as ``(nW, heads, N, N)``, instead of copying q, k and v into the ``(B, nW*heads)`` layout
        of :meth:`attend` and the output back: CPU inference (no dropout, no trace) where :meth:`attend` would
        run SDPA on every window at once (``SETTINGS.sdpa_views``)."""
        if not settings.current().sdpa_views or is_fx_tracing() or is_tracing() or torch.is_grad_enabled():
            return False
        if qkv.device.type != "cpu" or (self.training and self.attn_drop > 0):
            return False
        n, nw = qkv.shape[1], 1 if mask is None else mask.shape[0]
        if qkv.shape[0] % nw or qkv.shape[-1] % (3 * self.num_heads):  # the plain path says what is wrong
            return False
        if use_explicit("cpu", n, False, False, qkv.device, qkv.dtype):
            return False
        return not self.windows_per_call(mask, n, qkv.dtype)

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
        explicit = use_explicit(device, q.shape[-2], trains_bias and not tracing, tracing, q.device, q.dtype)
        # SDPA on CUDA: the bias in the dtype autocast hands the kernel and row-aligned, so the memory-efficient
        # kernel reads it broadcast over the batch
        cuda_sdpa = not explicit and device == "cuda"
        align = settings.current().align_mask if cuda_sdpa else 0
        autocast = cuda_sdpa and not tracing and torch.is_autocast_enabled(device)
        dtype = torch.get_autocast_dtype(device) if autocast else q.dtype
        chunk = 0 if tracing or torch.is_grad_enabled() else self.windows_per_call(mask, q.shape[-2], dtype)
        if chunk:
            out = q.new_empty((*q.shape[:-1], v.shape[-1]))
            for w in range(0, mask.shape[0], chunk):
                part = slice(w * self.num_heads, (w + chunk) * self.num_heads)  # (w heads): windows major
                bias = align_rows(WindowAttention.attn_bias(self, mask[w : w + chunk], dtype, window_size), align)
                out[:, part] = self.kernel(q[:, part], k[:, part], v[:, part], bias.contiguous(), explicit, tracing)
            return out
        bias = self.folded_bias(mask, dtype, align=align, window_size=window_size)
        return self.kernel(q, k, v, bias, explicit, tracing)

    def windows_per_call(self, mask: torch.Tensor | None, tokens: int, dtype: torch.dtype) -> int:
        """Windows per attention call in inference (``SETTINGS.attn_chunk_mib``); 0: all at once."""
        budget = settings.current().attn_chunk_mib * 2**20
        if mask is None or not budget:
            return 0
        per_window = self.num_heads * tokens * tokens * dtype.itemsize
        windows = max(1, budget // per_window)
        return windows if windows < mask.shape[0] else 0

    def kernel(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        explicit: bool,
        tracing: bool,
    ) -> torch.Tensor:
        """``softmax(q k^T * scale + bias) v`` on the kernel :meth:`attend` chose."""
        device = q.device.type
        drop = self.attn_drop if self.training else 0.0
        if explicit and tracing:  # plain functional ops: compilers and exporters fuse them themselves
            attn = torch.matmul(q, k.transpose(-2, -1)) * self.scale
            attn = (attn if bias is None else attn + bias).softmax(-1)
            out = torch.matmul(F.dropout(attn, p=drop) if drop > 0 else attn, v)
        elif explicit and not torch.is_grad_enabled() and not drop:
            out = explicit_attention(q, k, v, bias, self.scale)
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
