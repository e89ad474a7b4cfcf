"""hiermlp's training engine.

>>> from hiermlp.train import load_config, train
>>> cfg = load_config("fmnist_swin_micro", ["epochs=1"])
>>> result = train(cfg, out_dir="runs/demo")
>>> result.top1, result.history[-1]
"""

from hiermlp.io import atomic_save
from hiermlp.train.checkpoint import load_training_checkpoint
from hiermlp.train.config import ConfigError, TrainConfig, config_to_dict, load_config, save_config
from hiermlp.train.loop import TrainResult, build_datasets, evaluate, model_from_config, train

__all__ = [
    "ConfigError",
    "TrainConfig",
    "TrainResult",
    "atomic_save",
    "build_datasets",
    "config_to_dict",
    "evaluate",
    "load_config",
    "load_training_checkpoint",
    "model_from_config",
    "save_config",
    "train",
]
