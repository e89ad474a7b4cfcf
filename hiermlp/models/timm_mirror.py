"""Mirror every hiermlp model into timm's registry as ``hiermlp_<name>``.

After ``import hiermlp``, ``timm.create_model("hiermlp_swin_tiny_patch4_window7_224", num_classes=10)``
works, with ``features_only``, ``pretrained`` and ``checkpoint_path``. The prefix keeps hiermlp's names from
colliding with timm's own (``swin_tiny_patch4_window7_224`` stays timm's model in timm).
"""

from __future__ import annotations

from typing import Any

import timm.models
from torch import nn

from hiermlp.models.registry import ModelEntry, create_model, on_register

PREFIX = "hiermlp_"
__all__: list[str] = []
default_cfgs: dict[str, dict[str, Any]] = {}  # read by timm's register_model for pretrained cfgs

_TIMM_ONLY_KWARGS = ("pretrained_cfg", "cache_dir", "scriptable", "exportable", "no_jit")


def _mirror(entry: ModelEntry) -> None:
    timm_name = PREFIX + entry.name

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        for k in _TIMM_ONLY_KWARGS:
            kwargs.pop(k, None)
        return create_model(entry.name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = timm_name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"hiermlp's {entry.name} ({entry.notes or entry.family})."
    cfg = {k: v for k, v in entry.pretrained_cfg.items() if k != "file"}
    cfg["hf_hub_id"] = None  # timm's hub copies are timm-layout files for timm's class; hiermlp loads by url
    default_cfgs[timm_name] = cfg
    globals()[timm_name] = entrypoint
    timm.models.register_model(entrypoint)


on_register(_mirror)
