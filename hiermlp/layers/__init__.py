"""Generic modules shared by every model: stems, downsamplers, norms, position bias, channels-last convs, head."""

from timm.layers import ClassifierHead, DropPath, GluMlp, LayerScale, Mlp

from hiermlp.layers.conv import ConvCL
from hiermlp.layers.cpb import ContinuousPositionBias
from hiermlp.layers.embed import (
    DOWNSAMPLERS,
    STEMS,
    ConvDownsample,
    ConvStem,
    PatchEmbed,
    PatchMerging,
    PatchMergingV2,
    build_layer,
    register_downsample,
    register_stem,
)
from hiermlp.layers.norm import NORMS, BatchNormNHWC, GroupNorm1NHWC, make_norm
from hiermlp.layers.pos import RelativePositionBias

__all__ = [
    "DOWNSAMPLERS",
    "NORMS",
    "STEMS",
    "BatchNormNHWC",
    "ClassifierHead",
    "ContinuousPositionBias",
    "ConvCL",
    "ConvDownsample",
    "ConvStem",
    "DropPath",
    "GluMlp",
    "GroupNorm1NHWC",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "PatchMerging",
    "PatchMergingV2",
    "RelativePositionBias",
    "build_layer",
    "make_norm",
    "register_downsample",
    "register_stem",
]
