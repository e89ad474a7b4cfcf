"""Block, stage, the hierarchical network, the variant table and the registries."""

from hiermlp.models import timm_mirror as _timm_mirror  # noqa: F401  (mirrors it into timm)
from hiermlp.models import zoo as _zoo  # noqa: F401  (fills the registry)
from hiermlp.models import zoo_swinv2 as _zoo_swinv2  # noqa: F401  (Swin V2 rows)
from hiermlp.models.block import HierBlock
from hiermlp.models.features import HierFeatures
from hiermlp.models.network import HierNet
from hiermlp.models.registry import (
    UnknownModelError,
    create_model,
    is_model,
    list_models,
    register_model,
)
from hiermlp.models.stage import HierStage

__all__ = [
    "HierBlock",
    "HierFeatures",
    "HierNet",
    "HierStage",
    "UnknownModelError",
    "create_model",
    "is_model",
    "list_models",
    "register_model",
]
