"""Token mixers on one contract (see :mod:`hiermlp.mixers.base`), one file each, in ``MIXERS``."""

from hiermlp.mixers.attention import WindowAttention
from hiermlp.mixers.base import MIXERS, build_mixer, get_mixer, mixer_name, register_mixer

__all__ = ["MIXERS", "WindowAttention", "build_mixer", "get_mixer", "mixer_name", "register_mixer"]
