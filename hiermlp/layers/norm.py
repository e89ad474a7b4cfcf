"""Norms for channels-last maps ``(B, H, W, C)``, chosen by name.

Each is the torch module of the same name (same parameters, buffers and state-dict keys), applied to a
channels-last map: LayerNorm over C; BatchNorm over C with statistics over (B, H, W); GroupNorm(1, C) over
(H, W, C) per sample, which is what ``nn.GroupNorm(1, dim)`` on an NCHW map computes (AS-MLP's norm).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError, suggest

# einops calls run as opaque nodes under torch.fx (it does not know fx proxies): timm/torchvision feature extractors
torch.fx.wrap("rearrange")

NormFactory = Callable[[int], nn.Module]


class BatchNormNHWC(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` on a channels-last map, ``(B, H, W, C) -> (B, H, W, C)`` (also tokens ``(B, N, C)``).

    Statistics over every axis but C, whatever the rank (what ``F.batch_norm`` computes on the channels-first
    view), so the forward has no branch on the rank and traces under torch.fx.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        # BatchNorm2d's 4-D check would refuse the channels-first view of tokens (B, C, N); and it branches
        # on the rank, which torch.fx cannot trace. The rearranges below need a rank >= 2 channels-last input.
        pass

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(super().forward(rearrange(x, "b ... c -> b c ...")), "b c ... -> b ... c")


class GroupNorm1NHWC(nn.GroupNorm):
    """``nn.GroupNorm(1, C)`` on a channels-last map: each sample normalised over all of (H, W, C)."""

    def __init__(self, num_channels: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(1, num_channels, eps=eps, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(super().forward(rearrange(x, "b h w c -> b c h w")), "b c h w -> b h w c")


NORMS: dict[str, type[nn.Module]] = {
    "layernorm": nn.LayerNorm,
    "batchnorm": BatchNormNHWC,
    "groupnorm": GroupNorm1NHWC,
}
_ALIASES = {"ln": "layernorm", "bn": "batchnorm", "gn": "groupnorm"}


def make_norm(norm_layer: str | NormFactory, eps: float | None = None) -> NormFactory:
    """A norm factory ``norm(dim) -> module`` from a name (``layernorm``, ``batchnorm``, ``groupnorm``) or a class.

    ``eps`` (if given) is passed to named norms; a class or callable is used as it is.
    """
    if isinstance(norm_layer, str):
        key = _ALIASES.get(norm_layer.lower(), norm_layer.lower())
        if key not in NORMS:
            raise ConfigError(
                f"unknown norm_layer {norm_layer!r}.{suggest(norm_layer, NORMS)} "
                f"Use one of {', '.join(NORMS)} or pass a class"
            )
        cls = NORMS[key]
        return functools.partial(cls, eps=eps) if eps is not None else cls
    if callable(norm_layer):
        return norm_layer
    raise ConfigError(f"norm_layer must be a name ({', '.join(NORMS)}) or a class, got {norm_layer!r}")
