"""Caches of tensors derived from parameters, validated by content so they can never go stale.

A derived tensor (the folded attention bias of :mod:`hiermlp.accel.attention`) is rebuilt whenever anything it is
computed from may have changed. Identity and version counters cannot tell that: ``p.data = t``,
``load_state_dict(assign=True)``, ``torch.func.functional_call`` and ``.to()`` all change a parameter's
values without touching one or the other (or reuse a freed address). So an entry keeps a copy of its source
parameters and is used only while they are still equal to it (``torch.equal`` over a table of a few
thousand numbers, far cheaper than the tensor it saves). Geometry inputs (masks) come from the bounded LRU
in :mod:`hiermlp.ops.cache` and are matched by identity; the entry holds a reference to them, so an id is
never reused while it lives.

Entries live in a side table keyed weakly by the module: never in state dicts, pickles or deep copies.
Bounded twice: at most :data:`ENTRIES_PER_MODULE` per module, and :data:`CACHE_BYTES` over all modules
together (least recently used first out); an entry larger than the whole budget is never cached, its
tensor is rebuilt on every call.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import nn

from hiermlp.ops import cache_context

# derived tensors kept per module: a few input sizes (masks) x dtypes
ENTRIES_PER_MODULE = 4
# bytes held by all entries together (derived tensors plus their source snapshots): a Swin-T needs about
# 4 MiB per input size at 224 and 20 MiB at 400, so this keeps a few sizes and bounds a multi-scale sweep
CACHE_BYTES = 64 * 2**20

_tables: weakref.WeakKeyDictionary[nn.Module, OrderedDict] = weakref.WeakKeyDictionary()
# every entry of every module, least recently used first: (id(module), key) -> bytes
_lru: OrderedDict[tuple[int, Hashable], int] = OrderedDict()
_owners: dict[int, weakref.ref] = {}


def _storage_bytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()  # a view (an aligned bias) holds its whole storage


def _forget(module_id: int) -> None:
    """Drop the LRU bookkeeping of a module that was freed (its table went with it)."""
    _owners.pop(module_id, None)
    for k in [k for k in _lru if k[0] == module_id]:
        del _lru[k]


def _evict(module_id: int, key: Hashable) -> None:
    _lru.pop((module_id, key), None)
    ref = _owners.get(module_id)
    module = ref() if ref is not None else None
    table = _tables.get(module) if module is not None else None
    if table is not None:
        table.pop(key, None)


def cached_bytes() -> int:
    """Bytes held by all derived-tensor entries together."""
    return sum(_lru.values())


def derived(
    module: nn.Module,
    key: Hashable,
    refs: Sequence[torch.Tensor | None],
    sources: Sequence[torch.Tensor],
    build: Callable[[], torch.Tensor],
) -> torch.Tensor:
    """``build()``, reused while ``refs`` are the same objects and ``sources`` hold the same values.

    Call only where no gradient flows to ``sources`` (the caller checks): a cached tensor has no history.
    """
    table = _tables.get(module)
    entry = None if table is None else table.get(key)
    if entry is not None:
        e_refs, e_sources, value = entry
        if (
            len(e_refs) == len(refs)
            and all(a is b for a, b in zip(e_refs, refs))
            and all(
                a.dtype == b.dtype and a.device == b.device and a.shape == b.shape and torch.equal(a, b)
                for a, b in zip(e_sources, sources)
            )
        ):
            table.move_to_end(key)
            _lru.move_to_end((id(module), key))
            return value
        _evict(id(module), key)
    with cache_context():
        value = build()
        snapshot = tuple(s.detach().clone() for s in sources)
    nbytes = _storage_bytes(value) + sum(_storage_bytes(s) for s in snapshot)
    if nbytes > CACHE_BYTES:  # would evict everything else and still not fit: rebuilt every call instead
        return value
    if table is None:
        table = _tables[module] = OrderedDict()
        _owners[id(module)] = weakref.ref(module)
        weakref.finalize(module, _forget, id(module))
    table[key] = (tuple(refs), snapshot, value)
    _lru[(id(module), key)] = nbytes
    while len(table) > ENTRIES_PER_MODULE:
        _evict(id(module), next(iter(table)))
    total = cached_bytes()
    while total > CACHE_BYTES:
        (mid, k), size = next(iter(_lru.items()))
        _evict(mid, k)
        total -= size
    return value


def clear(module: nn.Module | None = None) -> None:
    """Drop the derived tensors of one module (or of all)."""
    if module is None:
        _tables.clear()
        _lru.clear()
        _owners.clear()
    else:
        for key in list(_tables.get(module, ())):
            _evict(id(module), key)


def entries(module: nn.Module) -> int:
    return len(_tables.get(module, ()))
