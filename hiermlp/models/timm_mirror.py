"""Mirror every hiermlp model into timm's registry as ``hiermlp_<name>``, built the way timm builds its own.

After ``import hiermlp``, ``timm.create_model("hiermlp_swin_tiny_patch4_window7_224.ms_in1k", num_classes=10)``
works as ``timm.create_model("swin_tiny_patch4_window7_224.ms_in1k", ...)`` does: the cfgs go through timm's
``generate_default_cfgs`` (``arch.tag`` keys, the first tag with weights the default, an unknown tag a
``RuntimeError``), the model through timm's ``build_model_with_cfg`` (pretrained weights from the Hugging Face
hub or the URL, ``in_chans`` adaptation, ``features_only`` with every ``feature_cls``), as timm's
swin_transformer.py does. The prefix keeps hiermlp's names from colliding with timm's own
(``swin_tiny_patch4_window7_224`` stays timm's model in timm).
"""

from __future__ import annotations

from typing import Any

import timm.models
from torch import nn

from hiermlp.models.registry import ModelEntry, build_model, on_register

PREFIX = "hiermlp_"
__all__: list[str] = []
default_cfgs: dict[str, Any] = {}  # read by timm's register_model: one DefaultCfg (all tags) per architecture


def _mirror(entry: ModelEntry) -> None:
    timm_name = PREFIX + entry.name

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        return build_model(entry, timm_name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = timm_name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"hiermlp's {entry.name} ({entry.notes or entry.family})."
    keyed = {f"{timm_name}.{tag}" if tag else timm_name: cfg for tag, cfg in entry.pretrained_cfgs.items()}
    default_cfgs.update(timm.models.generate_default_cfgs(keyed))
    globals()[timm_name] = entrypoint
    timm.models.register_model(entrypoint)


on_register(_mirror)
