"""Generic modules shared by every model: stem, merging, channel MLP, position bias, head."""

from timm.layers import ClassifierHead, DropPath, GluMlp

from hiermlp.layers.cpb import ContinuousPositionBias
from hiermlp.layers.embed import PatchEmbed, PatchMerging
from hiermlp.layers.linear import Linear, Mlp
from hiermlp.layers.pos import RelativePositionBias

__all__ = [
    "ClassifierHead",
    "ContinuousPositionBias",
    "DropPath",
    "GluMlp",
    "Linear",
    "Mlp",
    "PatchEmbed",
    "PatchMerging",
    "RelativePositionBias",
]
