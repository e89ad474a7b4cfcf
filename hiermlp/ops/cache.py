"""Caching tensors derived from sizes alone (masks, gather indices): pure functions behind a bounded LRU.

A cached geometry tensor depends only on Python values (map size, window, shift, mode, device), so it is keyed
by exactly those, never by a data pointer or a version counter. The cache is bounded: a detector trained at
hundreds of input sizes keeps at most :data:`GEOMETRY_CACHE_SIZE` entries per function. Cached tensors are
shared between blocks and calls: callers must treat them as read-only.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

# entries per cached geometry function: a Swin-T needs about 7 per input size, so this holds ~18 sizes
GEOMETRY_CACHE_SIZE = 128

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def cache_context() -> Iterator[None]:
    """Build cached tensors here: plain tensors without autograd history.

    A tensor created under ``torch.inference_mode`` is an inference tensor, which autograd refuses to save
    for backward; if a model's first forward ran in inference mode and cached its window mask, a later
    training step would fail. Under ``no_grad`` a cached tensor also never holds a stale graph.
    """
    with torch.inference_mode(False), torch.no_grad():
        yield


def _hashable(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_hashable(v) for v in value)
    return value is None or type(value) in (int, bool, str)


def geometry_cache(fn: F) -> F:
    """Memoise ``fn(*sizes, device=...)`` in a bounded LRU keyed by its (int/tuple/str) arguments and device.

    Calls with symbolic sizes (``torch.export``/``torch.compile`` with dynamic shapes) or from inside a traced
    graph compute directly: a graph must build the tensor from its own sizes, not capture one example's.
    """

    @functools.lru_cache(maxsize=GEOMETRY_CACHE_SIZE)
    def cached(*args: Any, device: str) -> torch.Tensor:
        with cache_context():
            return fn(*args, device=torch.device(device))

    @functools.wraps(fn)
    def wrapper(*args: Any, device: torch.device | str | None = None) -> Any:
        if torch.compiler.is_compiling() or not all(_hashable(a) for a in args):
            return fn(*args, device=device)
        return cached(*args, device=str(torch.device(device if device is not None else "cpu")))

    wrapper.cache_info = cached.cache_info  # type: ignore[attr-defined]
    wrapper.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    wrapper.uncached = fn  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
