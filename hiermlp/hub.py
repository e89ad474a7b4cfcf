"""Hugging Face hub and local-directory copies of hiermlp models, timm's way.

``save_for_hf`` and ``push_to_hf_hub`` are timm's functions of the same names (config.json with the cfg and
the options the model was built with, ``model.safetensors``), with one thing settled first: config.json names
the architecture as timm's registry knows it, ``hiermlp_<name>``. A model from ``timm.create_model`` already
carries that name; one from :func:`hiermlp.create_model` carries hiermlp's bare name, which in timm's
registry may be another model (``swin_tiny_patch4_window7_224`` is timm's own Swin). The copy then loads
through both factories::

    hiermlp.save_for_hf(model, "my_swin")
    timm.create_model("local-dir:my_swin", pretrained=True)        # or "hf-hub:ORG/REPO" after push_to_hf_hub
    hiermlp.create_model("local-dir:my_swin", pretrained=True)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.factory import PREFIX
from hiermlp.models.registry import is_model

__all__ = ["push_to_hf_hub", "save_for_hf", "timm_architecture"]


def save_for_hf(model: nn.Module, save_directory: str | os.PathLike, **kwargs: Any) -> Path:
    """Write ``model`` to ``save_directory`` (config.json, model.safetensors) as timm's ``save_for_hf`` does,
    the architecture named ``hiermlp_<name>``; keyword arguments are timm's (``model_args``, ``model_config``,
    ``safe_serialization``, ...). Returns the directory."""
    from timm.models import save_for_hf as timm_save_for_hf

    Path(save_directory).mkdir(parents=True, exist_ok=True)
    with timm_architecture(model):
        timm_save_for_hf(model, save_directory, **kwargs)
    return Path(save_directory)


def push_to_hf_hub(model: nn.Module, repo_id: str, **kwargs: Any) -> str:
    """timm's ``push_to_hf_hub`` (a :func:`save_for_hf` copy uploaded to ``repo_id``); returns the commit URL."""
    from timm.models import push_to_hf_hub as timm_push_to_hf_hub

    with timm_architecture(model):
        return timm_push_to_hf_hub(model, repo_id, **kwargs)


@contextlib.contextmanager
def timm_architecture(model: nn.Module) -> Iterator[None]:
    """Within the block ``model.pretrained_cfg["architecture"]`` is timm's name of the model.

    Raises:
        ConfigError: the model has no pretrained cfg naming its architecture (it was not built by a factory).
    """
    cfg = getattr(model, "pretrained_cfg", None)
    arch = (cfg or {}).get("architecture")
    if not arch:
        raise ConfigError(
            f"{type(model).__name__} has no pretrained_cfg naming its architecture, so config.json could not say "
            "how to rebuild it; build the model with hiermlp.create_model or timm.create_model"
        )
    bare = not arch.startswith(PREFIX) and is_model(arch)
    if bare:
        cfg["architecture"] = PREFIX + arch
    try:
        yield
    finally:
        if bare:
            cfg["architecture"] = arch
