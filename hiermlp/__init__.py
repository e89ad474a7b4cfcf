"""hiermlp: Swin-style hierarchical vision models for any token mixer.

>>> import hiermlp
>>> model = hiermlp.create_model("swin_tiny_patch4_window7_224", num_classes=10)
"""

from hiermlp import accel
from hiermlp.errors import (
    CheckpointError,
    ConfigError,
    HiermlpError,
    NonFiniteError,
    NotFoundError,
    OutputError,
    ShapeError,
    UnknownNameError,
)
from hiermlp.factory import create_any_model, create_model, model_from_checkpoint
from hiermlp.hub import push_to_hf_hub, save_for_hf
from hiermlp.mixers import MIXERS, register_mixer
from hiermlp.models import HierNet, list_models, register_model
from hiermlp.weights import load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "MIXERS",
    "CheckpointError",
    "ConfigError",
    "HierNet",
    "HiermlpError",
    "NonFiniteError",
    "NotFoundError",
    "OutputError",
    "ShapeError",
    "UnknownNameError",
    "__version__",
    "accel",
    "create_any_model",
    "create_model",
    "list_models",
    "load_checkpoint",
    "model_from_checkpoint",
    "push_to_hf_hub",
    "register_mixer",
    "register_model",
    "save_checkpoint",
    "save_for_hf",
]
