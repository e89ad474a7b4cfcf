"""Block, stage, the hierarchical network, the variant tables and the name registry (data; models are
built by :mod:`hiermlp.factory`)."""

from hiermlp.models import baselines as _baselines  # noqa: F401  (linear_pixels, resnet_micro, in timm's registry)
from hiermlp.models import zoo as _zoo  # noqa: F401  (fills the registry)
from hiermlp.models import zoo_literature as _zoo_literature  # noqa: F401  (CycleMLP, AS-MLP, Wave-MLP, sMLPNet)
from hiermlp.models import zoo_micro as _zoo_micro  # noqa: F401  (micro, pico and nano rows)
from hiermlp.models import zoo_segment as _zoo_segment  # noqa: F401  (UPerNet / Semantic FPN rows, task "segment")
from hiermlp.models import zoo_swinv2 as _zoo_swinv2  # noqa: F401  (Swin V2 rows)
from hiermlp.models import zoo_video as _zoo_video  # noqa: F401  (Video Swin rows, 3-D)
from hiermlp.models import zoo_volume as _zoo_volume  # noqa: F401  (SwinUNETR rows, 1-D rows)
from hiermlp.models.block import HierBlock
from hiermlp.models.features import HierFeatures
from hiermlp.models.network import HierNet
from hiermlp.models.registry import UnknownModelError, is_model, list_models, register_model
from hiermlp.models.segment import HierSegmentor, segment_logits
from hiermlp.models.stage import HierStage

__all__ = [
    "HierBlock",
    "HierFeatures",
    "HierNet",
    "HierSegmentor",
    "HierStage",
    "UnknownModelError",
    "is_model",
    "list_models",
    "register_model",
    "segment_logits",
]
