"""The block's and the stage's fast paths, each overriding one narrow hook of the plain module, never its forward.

Same function as :class:`~hiermlp.models.block.HierBlock` and :class:`~hiermlp.models.stage.HierStage`
(tests/test_fast_paths.py: values, gradients and random draws):

* ``to_windows`` / ``from_windows``: window geometry (pad + shift + partition, and back + crop) as one indexed
  copy each way (:mod:`hiermlp.accel.gather`) instead of five or six copies; one unshifted window that
  covers the map is a view;
* ``needs_mask``: no mask where it would allow everything (an unshifted window of an unpadded map);
* ``add_residual``: drop path and the residual add as one ``addcmul``;
* ``mlp_residual``: the channel MLP's residual add inside ``fc2``'s kernel (:meth:`FastMlp.forward_residual`);
  with autograd on CPU, the branch a few images at a time (``SETTINGS.mlp_chunk_mib``), so its hidden
  activations stay small enough for glibc to reuse heap memory instead of mapping (and page-faulting) fresh
  memory on every step; only where the branch is per image and draws no random numbers but the drop-path
  factor, which is drawn once for the whole batch;
* ``HierStage.run_blocks``: CPU inference a few images at a time (``SETTINGS.chunk_tokens``): every block is
  independent per image in eval mode, and smaller intermediates stay cache-resident and reuse allocator
  memory.

Traced code (``torch.compile``, ``torch.export``, ONNX) takes the plain geometry, which compilers fuse
themselves, with the same mask rule; ``torch.fx`` symbolic tracing takes the plain modules unchanged.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from timm.layers import DropPath, Mlp
from torch import nn

from hiermlp.accel import settings
from hiermlp.accel.gather import cached_window_index, gather_windows, scatter_windows
from hiermlp.accel.linear import FastMlp
from hiermlp.accel.trace import hooked, is_exporting, is_fx_tracing, is_symbolic, is_tracing
from hiermlp.models.block import HierBlock, WindowLayout
from hiermlp.models.stage import HierStage
from hiermlp.ops import actual_window, cached_window_mask


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


def add_drop_path(x: torch.Tensor, y: torch.Tensor, drop: nn.Module) -> torch.Tensor:
    """``x + drop(y)`` where ``drop`` is timm's ``DropPath`` (or any module), in one pass when it drops.

    Same distribution as ``DropPath``: each sample's branch is kept with probability ``1 - p`` and scaled by
    ``1 / (1 - p)``; ``addcmul`` applies the per-sample factor and the residual add together.
    """
    if not isinstance(drop, DropPath):
        return x + drop(y)
    if not drops_paths(drop):
        return x + y
    return torch.addcmul(x, y, drop_path_factor(drop, y))


def per_image_and_deterministic(*modules: nn.Module) -> bool:
    """Whether these modules compute each image on its own and draw no random numbers: no BatchNorm in
    training (batch statistics) and no active dropout."""
    for m in (sub for module in modules for sub in module.modules()):
        if m.training and (
            isinstance(m, nn.modules.batchnorm._BatchNorm) or (isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0)
        ):
            return False
    return True


class GatherLayout(NamedTuple):
    """How :meth:`FastHierBlock.to_windows` gathered a map (its ``from_windows`` scatters it back)."""

    size: tuple[int, int]  # (H, W) of the map
    window: tuple[int, int]  # the window run
    batch: int
    inverse: torch.Tensor | None  # map position -> window slot; None: the map was one window (a view)


class FastHierBlock(HierBlock):
    """:class:`HierBlock` on the fast paths (see the module docstring)."""

    def to_windows(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, WindowLayout | GatherLayout]:
        if is_fx_tracing() or self.global_window or is_tracing() or not settings.current().gather:
            return super().to_windows(x)
        b, h, w, c = x.shape
        if is_symbolic(h, w):
            return super().to_windows(x)
        ws, shift = actual_window((h, w), self.window_size, self.shift_size, self.crops)
        if (h, w) == ws and not any(shift):
            return x.reshape(b, h * w, c), None, GatherLayout((h, w), ws, b, None)
        fwd, inv, padded_size, padded = cached_window_index((h, w), ws, shift, self.shift_mode, device=x.device)
        mask = None
        if self.shift_mode == "roll" and self.needs_mask((h, w), padded_size, shift):
            mask = cached_window_mask(padded_size, ws, shift, (h, w), device=x.device)
        return gather_windows(x, fwd, ws[0] * ws[1], padded=padded), mask, GatherLayout((h, w), ws, b, inv)

    def from_windows(self, windows: torch.Tensor, layout: WindowLayout | GatherLayout) -> torch.Tensor:
        if not isinstance(layout, GatherLayout):
            return super().from_windows(windows, layout)
        if layout.inverse is None:
            return windows.view(layout.batch, layout.size[0], layout.size[1], windows.shape[-1])
        return scatter_windows(windows, layout.inverse, layout.batch, layout.size)

    def needs_mask(self, size: tuple[int, int], padded_size: tuple[int, int], shift: tuple[int, int]) -> bool:
        # symbolic sizes keep the mask: a branch on them would specialise the traced graph
        if is_fx_tracing() or is_symbolic(*size, *padded_size):
            return True
        return any(shift) or tuple(padded_size) != tuple(size)

    def add_residual(self, x: torch.Tensor, branch: torch.Tensor, drop_path: nn.Module) -> torch.Tensor:
        if is_fx_tracing():
            return super().add_residual(x, branch, drop_path)
        return add_drop_path(x, branch, drop_path)

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        if is_fx_tracing():
            return super().mlp_residual(x)
        images = self._mlp_chunk(x)
        if not images:
            return self._whole_mlp_residual(x)
        # drop path's factor is drawn for the whole batch, as the unsplit branch draws it (nothing else in the
        # branch draws random numbers), so the result is the same function and the same draws
        factor = drop_path_factor(self.drop_path2, x) if drops_paths(self.drop_path2) else None
        parts = x.split(images)
        factors = factor.split(images) if factor is not None else [None] * len(parts)
        return torch.cat(
            [
                self._whole_mlp_residual(part) if f is None else torch.addcmul(part, self.mlp_branch(part), f)
                for part, f in zip(parts, factors)
            ]
        )

    def _whole_mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """``x + drop_path2(mlp_branch(x))``, the add inside ``fc2``'s kernel where nothing comes between."""
        if (
            self.norm_placement == "pre"
            and isinstance(self.mlp, FastMlp)
            and isinstance(self.ls2, nn.Identity)
            and isinstance(self.drop_path2, (DropPath, nn.Identity))
            and not drops_paths(self.drop_path2)
            and not hooked(self.mlp)
        ):
            return self.mlp.forward_residual(self.norm2(x), x)
        return super().mlp_residual(x)

    def _mlp_chunk(self, x: torch.Tensor) -> int:
        """Images per channel-MLP call with autograd on CPU (``SETTINGS.mlp_chunk_mib``); 0: the whole batch."""
        budget = settings.current().mlp_chunk_mib * 2**20
        b, h, w, _ = x.shape
        fc1 = getattr(self.mlp, "fc1", None)
        if (
            not budget
            or b < 2
            or x.device.type != "cpu"
            or not torch.is_grad_enabled()
            or is_exporting()
            or is_symbolic(b, h, w)
            or not isinstance(self.mlp, Mlp)
            or not isinstance(fc1, nn.Linear)
            or not isinstance(self.drop_path2, (DropPath, nn.Identity))
        ):
            return 0
        images = max(1, budget // (h * w * fc1.out_features * x.element_size()))
        if images >= b or not per_image_and_deterministic(self.norm2, self.mlp, self.ls2):
            return 0
        return images


class FastHierStage(HierStage):
    """:class:`HierStage` whose blocks run CPU inference a few whole images at a time (see the module
    docstring); the result is the whole batch's."""

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
        if not chunk or is_fx_tracing() or torch.is_grad_enabled() or is_exporting():
            return 0
        b, h, w, _ = x.shape
        if b < 2 or x.device.type != "cpu" or is_symbolic(b, h, w) or b * h * w <= chunk:
            return 0
        # a hook on a block sees the whole batch, as on the plain stage; training-mode modules (batch
        # statistics, random draws) are not per image
        if hooked(*self.blocks) or any(m.training for m in self.blocks.modules()):
            return 0
        return max(1, chunk // (h * w))
