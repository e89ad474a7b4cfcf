"""Caches of tensors derived from parameters, validated by content so they can never go stale.

A derived tensor (a folded attention bias, a masked token-map weight) is rebuilt whenever anything it is
computed from may have changed. Identity and version counters cannot tell that: ``p.data = t``,
``load_state_dict(assign=True)``, ``torch.func.functional_call`` and ``.to()`` all change a parameter's
values without touching one or the other (or reuse a freed address). So an entry keeps a copy of its source
parameters and is used only while they are still equal to it (``torch.equal`` over a table of a few
thousand numbers, far cheaper than the tensor it saves). Geometry inputs (masks) come from the bounded LRU
in :mod:`hiermlp.ops.cache` and are matched by identity; the entry holds a reference to them, so an id is
never reused while it lives.

Entries live in a side table keyed weakly by the module, bounded per module: never in state dicts, pickles
or deep copies.
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

_tables: weakref.WeakKeyDictionary[nn.Module, OrderedDict] = weakref.WeakKeyDictionary()


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
    table = _tables.setdefault(module, OrderedDict())
    entry = table.get(key)
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
            return value
    with cache_context():
        value = build()
        snapshot = tuple(s.detach().clone() for s in sources)
    table[key] = (tuple(refs), snapshot, value)
    table.move_to_end(key)
    while len(table) > ENTRIES_PER_MODULE:
        table.popitem(last=False)
    return value


def clear(module: nn.Module | None = None) -> None:
    """Drop the derived tensors of one module (or of all)."""
    if module is None:
        _tables.clear()
    else:
        _tables.pop(module, None)


def entries(module: nn.Module) -> int:
    return len(_tables.get(module, ()))
