"""The block's and the stage's CPU chunking levers, each overriding one narrow hook of the plain module.

Same function as :class:`~hiermlp.models.block.HierBlock` and :class:`~hiermlp.models.stage.HierStage`
(tests/test_fast_paths.py: values, gradients and random draws); both measured in benchmarks/results/perf_cpu:

* ``HierStage.run_blocks``: CPU inference a few whole images at a time (``SETTINGS.chunk_tokens``): in eval
  mode every block is independent per image, and smaller intermediates stay cache-resident and reuse
  allocator memory; not under CPU autocast (``SETTINGS.chunk_autocast``), where every linear casts and
  repacks its weight per call, so each further chunk repeats that work;
* ``HierBlock.mlp_residual``: with autograd on CPU, the channel-MLP branch a few images at a time
  (``SETTINGS.mlp_chunk_mib``), so its hidden activations stay small enough for glibc to reuse heap memory
  instead of mapping (and page-faulting) fresh memory on every step; only where the branch is per image and
  draws no random numbers but the drop-path factor, which is drawn once for the whole batch.

Traced code (``torch.compile`` with symbolic sizes, ``torch.export``, ONNX, ``torch.fx``) is never split.
"""

from __future__ import annotations

import math

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from hiermlp.accel import settings
from hiermlp.accel.trace import hooked, is_fx_tracing, is_symbolic, is_tracing
from hiermlp.models.block import HierBlock
from hiermlp.models.stage import HierStage


def drops_paths(drop: nn.Module) -> bool:
    """Whether ``drop`` is a ``DropPath`` that currently drops anything (training, with a rate above 0)."""
    return isinstance(drop, DropPath) and drop.training and drop.drop_prob > 0.0


def drop_path_factor(drop: DropPath, y: torch.Tensor) -> torch.Tensor:
    """``DropPath``'s per-sample factor for a batch like ``y``: 0, or ``1 / (1 - p)`` with probability
    ``1 - p`` (the same draws as ``DropPath`` itself)."""
    keep = 1.0 - drop.drop_prob
    factor = y.new_empty((y.shape[0],) + (1,) * (y.ndim - 1)).bernoulli_(keep)
    if keep > 0.0 and drop.scale_by_keep:
        factor.div_(keep)
    return factor


def per_image_and_deterministic(*modules: nn.Module) -> bool:
    """Whether these modules compute each image on its own and draw no random numbers: no BatchNorm in
    training (batch statistics) and no active dropout."""
    for m in (sub for module in modules for sub in module.modules()):
        if m.training and (
            isinstance(m, nn.modules.batchnorm._BatchNorm) or (isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0)
        ):
            return False
    return True


class FastHierBlock(HierBlock):
    """:class:`HierBlock` whose channel-MLP residual runs a few images at a time under CPU autograd."""

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        images = self._mlp_chunk(x)
        if not images:
            return super().mlp_residual(x)
        # drop path's factor is drawn for the whole batch, as the unsplit branch draws it (nothing else in the
        # branch draws random numbers), so the result is the same function and the same draws
        factor = drop_path_factor(self.drop_path2, x) if drops_paths(self.drop_path2) else None
        parts = x.split(images)
        factors = factor.split(images) if factor is not None else [None] * len(parts)
        return torch.cat(
            [
                super(FastHierBlock, self).mlp_residual(part)
                if f is None
                else torch.addcmul(part, self.mlp_branch(part), f)
                for part, f in zip(parts, factors)
            ]
        )

    def _mlp_chunk(self, x: torch.Tensor) -> int:
        """Images per channel-MLP call with autograd on CPU (``SETTINGS.mlp_chunk_mib``); 0: the whole batch."""
        budget = settings.current().mlp_chunk_mib * 2**20
        # traced code never chunks: a compiler would unroll the loop and specialise the symbolic batch to it
        if not budget or is_fx_tracing() or not torch.is_grad_enabled() or is_tracing():
            return 0
        b, spatial = x.shape[0], tuple(x.shape[1:-1])  # any number of spatial axes
        fc1 = getattr(self.mlp, "fc1", None)
        if (
            b < 2
            or x.device.type != "cpu"
            or is_symbolic(b, *spatial)
            or not isinstance(self.mlp, Mlp)
            or not isinstance(fc1, nn.Linear)
            or not isinstance(self.drop_path2, (DropPath, nn.Identity))
        ):
            return 0
        images = max(1, budget // (math.prod(spatial) * fc1.out_features * x.element_size()))
        if images >= b or not per_image_and_deterministic(self.norm2, self.mlp, self.ls2):
            return 0
        return images


class FastHierStage(HierStage):
    """:class:`HierStage` whose blocks run CPU inference a few whole images at a time; the result is the
    whole batch's."""

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        images = self._inference_chunk(x)
        if not images:
            return super().run_blocks(x)
        parts = []
        for part in x.split(images):
            parts.append(super().run_blocks(part))
        return torch.cat(parts)

    def _inference_chunk(self, x: torch.Tensor) -> int:
        """Images per call in CPU inference (``SETTINGS.chunk_tokens`` tokens at most); 0: the whole batch."""
        chunk = settings.current().chunk_tokens
        # traced code never chunks: a compiler would unroll the loop and specialise the symbolic batch to it
        if not chunk or is_fx_tracing() or torch.is_grad_enabled() or is_tracing():
            return 0
        if torch.is_autocast_enabled("cpu") and not settings.current().chunk_autocast:
            return 0
        b, spatial = x.shape[0], tuple(x.shape[1:-1])  # any number of spatial axes
        if b < 2 or x.device.type != "cpu" or is_symbolic(b, *spatial) or b * math.prod(spatial) <= chunk:
            return 0
        # a hook on a block sees the whole batch, as on the plain stage; training-mode modules (batch
        # statistics, random draws) are not per image
        if hooked(*self.blocks) or any(m.training for m in self.blocks.modules()):
            return 0
        return max(1, chunk // math.prod(spatial))
