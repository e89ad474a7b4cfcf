"""Segmentor checkpoints: mmsegmentation's ``EncoderDecoder`` layout (and hiermlp's, which shares its names).

A segmentor's state dict is ``backbone.*`` (in any backbone layout hiermlp converts: mmseg's Swin, the
official Swin segmentation release's Microsoft names, hiermlp's own), and the heads under mmseg's names,
``neck.*``, ``decode_head.*`` and ``auxiliary_head.*`` (:mod:`hiermlp.models.decode` uses the same names). The
backbone part is converted by the converter that detects it; the heads pass through unchanged. Registered first,
so a whole mmseg model is not taken for a bare mmpretrain backbone (whose converter drops the heads).
"""

from __future__ import annotations

# every other reader registers before this one (some also with first=True), so this one is tried before them
from hiermlp.weights import layouts as _layouts  # noqa: F401
from hiermlp.weights import literature as _literature  # noqa: F401
from hiermlp.weights import swinv2 as _swinv2  # noqa: F401
from hiermlp.weights.convert import StateDict, convert_state_dict, register_converter

HEAD_PREFIXES = ("neck.", "decode_head.", "auxiliary_head.")


def _is_segmentor(sd: StateDict) -> bool:
    return any(k.startswith("backbone.") for k in sd) and any(k.startswith(HEAD_PREFIXES[1:]) for k in sd)


@register_converter("segmentor", _is_segmentor, first=True)
def convert_segmentor(sd: StateDict) -> StateDict:
    """``backbone.*`` through its own layout's converter, heads as they are; anything else (an mmseg file's
    ``data_preprocessor`` buffers, say) is dropped."""
    backbone = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    _, backbone = convert_state_dict(backbone)
    heads = {k: v for k, v in sd.items() if k.startswith(HEAD_PREFIXES)}
    return {f"backbone.{k}": v for k, v in backbone.items()} | heads
