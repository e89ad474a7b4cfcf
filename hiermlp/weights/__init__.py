"""Checkpoints: read (never executing code), convert between layouts, resize, load and save."""

from hiermlp.weights import literature as _literature  # noqa: F401  (registers the literature converters)
from hiermlp.weights import monai as _monai  # noqa: F401  (SwinUNETR converters: MONAI, its SSL encoder)
from hiermlp.weights import segment as _segment  # noqa: F401  (segmentors: backbone.* + heads, detected first)
from hiermlp.weights import swinv2 as _swinv2  # noqa: F401  (V2 converters, detected before V1)
from hiermlp.weights import video as _video  # noqa: F401  (Video Swin converters: torchvision, mmaction)
from hiermlp.weights.convert import CONVERTERS, convert_state_dict, register_converter
from hiermlp.weights.layouts import LAYOUTS, export_state_dict, save_checkpoint  # also registers mm/HF readers
from hiermlp.weights.load import (
    LoadResult,
    TrainedCheckpoint,
    load_checkpoint,
    load_pretrained,
    read_checkpoint,
    read_state_dict,
    resize_rel_pos_table,
    save_weights,
)

__all__ = [
    "CONVERTERS",
    "LAYOUTS",
    "LoadResult",
    "TrainedCheckpoint",
    "convert_state_dict",
    "export_state_dict",
    "load_checkpoint",
    "load_pretrained",
    "read_checkpoint",
    "read_state_dict",
    "register_converter",
    "resize_rel_pos_table",
    "save_checkpoint",
    "save_weights",
]
