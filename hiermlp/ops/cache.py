"""Making tensors that modules cache across forwards (masks, gather indices, folded biases)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def cache_context() -> Iterator[None]:
    """Build cached tensors here: plain tensors without autograd history.

    A tensor created under ``torch.inference_mode`` is an inference tensor, which autograd refuses to save
    for backward; if a model's first forward ran in inference mode and cached its window mask, a later
    training step would fail. Under ``no_grad`` a cached tensor also never holds a stale graph.
    """
    with torch.inference_mode(False), torch.no_grad():
        yield
