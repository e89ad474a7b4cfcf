"""Multi-scale backbones (``features_only=True``) for detection and segmentation, timm's wrappers included.

``feature_cls`` picks the wrapper, as in timm: hiermlp's :class:`HierFeatures` (``"hiermlp"``, the default of
:func:`hiermlp.create_model`), or timm's ``"list"`` (the default of ``timm.create_model``), ``"dict"``,
``"hook"``, ``"fx"`` and ``"getter"``. timm's list/dict/hook/fx wrappers return the model's native
channels-last maps and only record ``output_fmt``; hiermlp's versions of them (subclasses, same behaviour
otherwise) honour it, so ``output_fmt="NCHW"`` means NCHW whichever wrapper runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models import FeatureDictNet, FeatureGraphNet, FeatureHookNet, FeatureInfo, FeatureListNet
from torch import nn

from hiermlp.errors import ConfigError
from hiermlp.models.inputs import stage_indices
from hiermlp.models.network import HierNet


def _nchw(x: torch.Tensor, fmt: str) -> torch.Tensor:
    # channels first for any number of spatial axes ("NCHW" names the 2-D case, as timm does)
    return x.movedim(-1, 1).contiguous() if fmt == "NCHW" else x


class HierFeatures(nn.Module):
    """The stem and stages of a :class:`HierNet`, returning one map per chosen feature level.

    ``(B, C_in, H, W) -> [(B, C_i, H/r_i, W/r_i), ...]`` (``output_fmt="NCHW"``, what detection and
    segmentation necks expect) or channels-last with ``"NHWC"``. The levels are the stages, or the blocks of
    an isotropic network (:meth:`HierNet.feature_levels`). ``out_indices``: level indices (negative from the
    end) or an int n for the last n levels (timm's convention). Stages after the last index, the final norm
    and the head are dropped. ``feature_info`` is timm's :class:`FeatureInfo` (``.channels()``,
    ``.reduction()``). State-dict keys equal the full model's, so checkpoints load as is.
    """

    def __init__(
        self, model: HierNet, out_indices: int | Sequence[int] | None = None, output_fmt: str = "NCHW"
    ) -> None:
        super().__init__()
        if output_fmt not in ("NCHW", "NHWC"):
            raise ConfigError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take = out_indices if isinstance(out_indices, int) or out_indices is None else tuple(out_indices)
        self.out_indices = tuple(stage_indices(len(model.feature_info), take, model.level_noun))
        self.output_fmt = str(output_fmt)
        self.isotropic = model.isotropic
        self.patch_embed = model.patch_embed
        # an isotropic network keeps its one stage whole (its forward stops after the last block asked for)
        self.stages = model.stages if self.isotropic else model.stages[: max(self.out_indices) + 1]
        self.feature_info = FeatureInfo(model.feature_info, self.out_indices)
        self.pretrained_cfg = getattr(model, "pretrained_cfg", {})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        levels = self.stages[0].blocks if self.isotropic else self.stages
        out = []
        for i, level in enumerate(levels[: max(self.out_indices) + 1]):
            x = level(x)
            if i in self.out_indices:
                out.append(_nchw(x, self.output_fmt))
        return out

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for s in self.stages:
            s.grad_checkpointing = enable


class _Formats:
    """Mixin for timm's wrappers around channels-last models: convert their outputs to ``output_fmt``."""

    output_fmt: str

    def forward(self, x: torch.Tensor):
        out = super().forward(x)
        fmt = str(self.output_fmt.value if hasattr(self.output_fmt, "value") else self.output_fmt)
        if isinstance(out, dict):
            return {k: _nchw(v, fmt) for k, v in out.items()}
        return [_nchw(v, fmt) for v in out]


class HierFeatureListNet(_Formats, FeatureListNet):
    """timm's ``FeatureListNet`` (stages run in order, a list of maps) honouring ``output_fmt``."""


class HierFeatureDictNet(_Formats, FeatureDictNet):
    """timm's ``FeatureDictNet`` (an ordered dict of maps) honouring ``output_fmt``."""


class HierFeatureHookNet(_Formats, FeatureHookNet):
    """timm's ``FeatureHookNet`` (forward hooks on the stages) honouring ``output_fmt``."""


class HierFeatureGraphNet(_Formats, FeatureGraphNet):
    """timm's ``FeatureGraphNet`` (an FX graph cut at the stages) honouring ``output_fmt``."""


FEATURE_CLASSES: dict[str, type[nn.Module] | str] = {
    "hiermlp": HierFeatures,
    "list": HierFeatureListNet,
    "dict": HierFeatureDictNet,
    "hook": HierFeatureHookNet,
    "fx": HierFeatureGraphNet,
    "getter": "getter",  # timm's FeatureGetterNet (resolved by timm's builder): forward_intermediates honours it
}


def resolve_feature_cls(spec: str | type[nn.Module] | None) -> type[nn.Module] | str:
    """A ``feature_cls`` name (timm's, plus ``"hiermlp"``) or class -> the class; None -> ``"list"`` (timm's)."""
    if spec is None:
        return HierFeatureListNet
    if isinstance(spec, type):
        return spec
    key = str(spec).lower()
    if key not in FEATURE_CLASSES:
        raise ConfigError(f"unknown feature_cls {spec!r}; choose one of {', '.join(FEATURE_CLASSES)} or pass a class")
    return FEATURE_CLASSES[key]


class AttentionRecorder:
    """Forward hooks on every window-attention mixer that record its attention weights, for visualisation.

    ``with record_attention(model) as maps: model(x)`` then ``maps["stages.0.blocks.1.mixer"]`` is the
    ``(B, nW, heads, N, N)`` softmax of that block (windows in row-major grid order, ``N = wh*ww`` tokens of a
    window in row-major order; for shifted blocks the windows of the rolled map, with the shift mask applied).
    The hook recomputes ``softmax(q k^T / sqrt(d) + bias)`` from the mixer's own inputs and weights (``qkv``,
    its position bias and mask through ``attn_bias``), so the kernel the mixer runs is untouched and the
    recorded weights are exactly those it applies (tests/test_detection.py checks ``attn @ v`` against it).
    """

    def __init__(self, model: nn.Module) -> None:
        from hiermlp.mixers import MIXERS

        kinds = tuple({MIXERS[k] for k in ("attention", "global_attention") if k in MIXERS})
        self.maps: dict[str, torch.Tensor] = {}
        self._handles = []
        for name, m in model.named_modules():
            if isinstance(m, kinds):
                self._handles.append(m.register_forward_hook(self._hook(name), with_kwargs=True))
        if not self._handles:
            raise ConfigError(f"{type(model).__name__} has no attention mixer whose weights could be recorded")

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
            x = args[0]
            mask = args[1] if len(args) > 1 else kwargs.get("mask")
            window = args[2] if len(args) > 2 else kwargs.get("window_size")
            self.maps[name] = attention_weights(module, x, mask, window).detach()

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def __enter__(self) -> dict[str, torch.Tensor]:
        return self.maps

    def __exit__(self, *exc: object) -> None:
        self.remove()


def record_attention(model: nn.Module) -> AttentionRecorder:
    """Record every attention mixer's weights during the forwards inside ``with`` (see :class:`AttentionRecorder`)."""
    return AttentionRecorder(model)


def attention_weights(
    mixer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None, window_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """``(B*nW, N, C)`` windows -> ``(B, nW, heads, N, N)`` attention weights of a window-attention mixer.

    The plain :class:`~hiermlp.mixers.attention.WindowAttention` definitions (its ``attn_bias``), whichever
    kernel the speed layer runs for the mixer itself.
    """
    from einops import rearrange

    from hiermlp.mixers.attention import WindowAttention

    with torch.no_grad():
        nw = 1 if mask is None else mask.shape[0]
        q, k, _ = rearrange(
            mixer.qkv(x), "(b w) n (three heads d) -> three b w heads n d", w=nw, three=3, heads=mixer.num_heads
        )
        attn = torch.matmul(q, k.transpose(-2, -1)) * getattr(mixer, "scale", q.shape[-1] ** -0.5)
        bias = WindowAttention.attn_bias(
            mixer, mask, attn.dtype, window_size
        )  # nW (or 1) x heads maps of (N, N), or None
        if bias is not None:  # whichever way the mixer lays them out, (w, heads) per window and head
            attn = attn + bias.reshape(-1, mixer.num_heads, *bias.shape[-2:])
        return attn.softmax(-1)
