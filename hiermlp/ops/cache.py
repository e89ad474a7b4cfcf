"""Caching tensors derived from sizes alone (masks, gather indices): pure functions behind a bounded LRU.

A cached geometry tensor depends only on Python values (map size, window, shift, mode, device), so it is keyed
by exactly those, never by a data pointer or a version counter. The cache is bounded: a detector trained at
hundreds of input sizes keeps at most :data:`GEOMETRY_CACHE_SIZE` entries per function, none larger than
:data:`GEOMETRY_ENTRY_MAX_BYTES`. Cached tensors are shared between blocks and calls: callers must treat them as
read-only.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

# entries per cached geometry function: a Swin-T needs about 7 per input size, so this holds ~18 sizes
GEOMETRY_CACHE_SIZE = 128
# the largest result kept: Swin-T's largest mask at 224 is 0.1 MB; SwinUNETR's first-stage masks at 96^3 (343
# windows of 343 x 343) are 40 MB each, 128 of those would be 5 GB
GEOMETRY_ENTRY_MAX_BYTES = 8 * 2**20

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


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.untyped_storage().nbytes()
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return 0


def geometry_cache(fn: F) -> F:
    """Memoise ``fn(*sizes, device=...)`` in a bounded LRU keyed by its (int/tuple/str) arguments and device.

    At most :data:`GEOMETRY_CACHE_SIZE` entries, and none larger than :data:`GEOMETRY_ENTRY_MAX_BYTES`: such a
    result is returned without being kept (rebuilding it costs far less than the attention over the windows it
    belongs to), so the cache's memory stays bounded whatever the sizes.
    Calls with symbolic sizes (``torch.export``/``torch.compile`` with dynamic shapes) or from inside a traced
    graph compute directly: a graph must build the tensor from its own sizes, not capture one example's.
    """
    entries: OrderedDict[tuple, Any] = OrderedDict()
    stats = {"hits": 0, "misses": 0}
    lock = threading.Lock()

    def cached(*args: Any, device: str) -> Any:
        key = (args, device)
        with lock:
            if key in entries:
                entries.move_to_end(key)
                stats["hits"] += 1
                return entries[key]
            stats["misses"] += 1
        with cache_context():
            value = fn(*args, device=torch.device(device))
        if _nbytes(value) <= GEOMETRY_ENTRY_MAX_BYTES:
            with lock:
                entries[key] = value
                entries.move_to_end(key)
                while len(entries) > GEOMETRY_CACHE_SIZE:
                    entries.popitem(last=False)
        return value

    @functools.wraps(fn)
    def wrapper(*args: Any, device: torch.device | str | None = None) -> Any:
        if torch.compiler.is_compiling() or not all(_hashable(a) for a in args):
            return fn(*args, device=device)
        return cached(*args, device=str(torch.device(device if device is not None else "cpu")))

    def cache_info() -> functools._CacheInfo:
        with lock:
            return functools._CacheInfo(stats["hits"], stats["misses"], GEOMETRY_CACHE_SIZE, len(entries))

    def cache_clear() -> None:
        with lock:
            entries.clear()
            stats.update(hits=0, misses=0)

    wrapper.cache_info = cache_info  # type: ignore[attr-defined]
    wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
    wrapper.uncached = fn  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
