"""Explicit attention, ``softmax(q k^T * scale + bias) v`` as two matmuls around a softmax: the kernels the speed
layer runs where the machine (or the autograd need) prefers them to ``F.scaled_dot_product_attention``
(:mod:`hiermlp.accel.attention` decides; :mod:`hiermlp.accel.machine` times them)."""

from __future__ import annotations

import torch

# CPU inference's explicit attention computes at most this many bytes of logits per call: the window batch in
# slices small enough to stay in a core's cache between the two matmuls and the softmax (a whole stage-1 batch
# of logits, 15 MB at batch 8, goes out to memory and back three times; a sweep of 0.25-4 MiB here was flat
# from 0.5 to 2)
EXPLICIT_CHUNK_BYTES = 2**20


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """``softmax(q k^T * scale + bias) v`` without autograd (inference), :data:`EXPLICIT_CHUNK_BYTES` of logits
    per call: slices of the leading (batch) dimension, over which ``bias`` broadcasts. Each slice is copied
    contiguous first (q, k, v are strided views of the qkv projection; the copy of a slice stays in cache,
    where the matmuls would otherwise gather them from memory)."""
    rows = max(1, EXPLICIT_CHUNK_BYTES // (q[:1].numel() // q.shape[-1] * k.shape[-2] * q.element_size()))
    out = q.new_empty((*q.shape[:-1], v.shape[-1]))
    for i in range(0, q.shape[0], rows):
        part = slice(i, i + rows)
        attn = probs(q[part].contiguous(), k[part].contiguous(), bias, scale)
        out[part] = torch.matmul(attn, v[part].contiguous())
    return out


def probs(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """``softmax(q k^T * scale + bias)``, scale and bias in place on the logits (matmul's backward needs its
    inputs, not its output)."""
    attn = torch.matmul(q, k.transpose(-2, -1)).mul_(scale)
    if bias is not None:
        attn.add_(bias)
    return attn.softmax(-1)
