"""Generic modules shared by every model: stem, merging, channel MLP, position bias, head."""

from timm.layers import ClassifierHead, DropPath, GluMlp, Mlp

from hiermlp.layers.embed import PatchEmbed, PatchMerging
from hiermlp.layers.pos import RelativePositionBias

__all__ = [
    "ClassifierHead",
    "DropPath",
    "GluMlp",
    "Mlp",
    "PatchEmbed",
    "PatchMerging",
    "RelativePositionBias",
]
