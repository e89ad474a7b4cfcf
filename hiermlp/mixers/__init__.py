"""Token mixers on one contract (see :mod:`hiermlp.mixers.base`), one file each, in ``MIXERS``."""

from hiermlp.mixers.attention import WindowAttention
from hiermlp.mixers.axial_shift import AxialShift
from hiermlp.mixers.base import MIXERS, build_mixer, get_mixer, mixer_name, register_mixer
from hiermlp.mixers.baselines import GlobalAttention, IdentityMixer, PoolMixer
from hiermlp.mixers.cosine_attention import CosineWindowAttention
from hiermlp.mixers.cycle_mlp import CycleMlp
from hiermlp.mixers.gmlp import GatedMlp, SpatialGatingUnit
from hiermlp.mixers.smlp import SparseMlp
from hiermlp.mixers.spatial_mlp import SpatialMlp
from hiermlp.mixers.token_mlp import TokenMlp
from hiermlp.mixers.wave_mlp import PhaseAwareMixing

__all__ = [
    "MIXERS",
    "AxialShift",
    "CosineWindowAttention",
    "CycleMlp",
    "GatedMlp",
    "GlobalAttention",
    "IdentityMixer",
    "PhaseAwareMixing",
    "PoolMixer",
    "SparseMlp",
    "SpatialGatingUnit",
    "SpatialMlp",
    "TokenMlp",
    "WindowAttention",
    "build_mixer",
    "get_mixer",
    "mixer_name",
    "register_mixer",
]
