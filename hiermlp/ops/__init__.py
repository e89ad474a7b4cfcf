"""Pure tensor functions for window geometry: no state, no modules."""

from hiermlp.ops.window import (
    cyclic_shift,
    functorch_active,
    is_exporting,
    is_symbolic,
    is_tracing,
    pad_shift,
    pad_to_multiple,
    padding_for,
    region_labels,
    relative_position_index,
    unpad_shift,
    window_mask,
    window_merge,
    window_partition,
)

__all__ = [
    "cyclic_shift",
    "functorch_active",
    "is_exporting",
    "is_symbolic",
    "is_tracing",
    "pad_shift",
    "pad_to_multiple",
    "padding_for",
    "region_labels",
    "relative_position_index",
    "unpad_shift",
    "window_mask",
    "window_merge",
    "window_partition",
]
