"""Checkpoints: read (never executing code), convert between layouts, resize, load and save."""

from hiermlp.weights import swinv2 as _swinv2  # noqa: F401  (V2 converters, detected before V1)
from hiermlp.weights.convert import CONVERTERS, convert_state_dict, register_converter
from hiermlp.weights.load import (
    LoadResult,
    load_checkpoint,
    load_pretrained,
    read_state_dict,
    resize_rel_pos_table,
    save_weights,
)

__all__ = [
    "CONVERTERS",
    "LoadResult",
    "convert_state_dict",
    "load_checkpoint",
    "load_pretrained",
    "read_state_dict",
    "register_converter",
    "resize_rel_pos_table",
    "save_weights",
]
