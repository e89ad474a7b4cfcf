"""A stage: optional downsampling, then blocks alternating unshifted and shifted windows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from hiermlp.layers import DOWNSAMPLERS, build_layer
from hiermlp.models.block import HierBlock, NormPlacement, ShiftMode


def stage_window(
    feat_size: tuple[int, ...], window_size: tuple[int, ...], shift: bool
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The reference rule at the stage's nominal size: clamp the window to a map not larger than it, and
    then do not shift.

    Per axis (as timm): for a square map this is exactly the reference's ``min(H, W) <= window`` rule, e.g.
    stage 4 of Swin-T at 224 (7x7 map, window 7) has no shift and no mask. This fixes the configured window
    (the mixers' parameter shapes) and shift; every block applies the same rule again to the map it actually
    gets (:func:`hiermlp.ops.actual_window`), so a smaller input is never padded up to a nominal window
    (``window_size=1000`` at 224 is a 56x56 window in stage 1; a 32x32 input runs 8x8 windows there).
    """
    ws = tuple(min(w, f) for w, f in zip(window_size, feat_size))
    ss = tuple(0 if (f <= w or not shift) else w // 2 for w, f in zip(ws, feat_size))
    return ws, ss


class HierStage(nn.Module):
    """``(B, *spatial, C_in) -> (B, *spatial', C)`` with ``ceil(size / factor)`` per axis when downsampling
    (timm's layout: the downsampler at the start of the stage).

    Args:
        in_dim: Channels coming in.
        dim: Channels of the blocks (the downsampler maps in_dim -> dim).
        depth: Number of blocks.
        downsample: A registered downsampler name (``"patch_merging"``, ``"patch_merging_v2"``, ``"conv"``, ...)
            or class, or None; ``downsample_kwargs`` its options.
        feat_size: Nominal map size of the blocks (after downsampling), used for the window rule.
        num_heads: Heads of every block's mixer (for mixers that take heads).
        window_size: Target window, clamped by :func:`stage_window` (and by each block at the actual size).
        shift: Alternate shifted blocks (odd blocks shift by window // 2).
        mixer: Mixer name or class; ``mixer_kwargs`` its options.
        mlp_ratio: Channel MLP ratio (0: none).
        drop_path: One rate per block.
        norm_layer: Norm factory of the blocks and the downsampler; ``mlp_norm_layer`` the blocks' MLP norm if
            it differs.
        act_layer: Activation of the channel MLPs.
        norm_placement: ``"pre"`` or ``"res_post"``.
        layer_scale_init: Layer-scale init value, or None.
        shift_mode: See :class:`HierBlock`.
        spatial_dims: Spatial axes of the maps (1, 2 or 3); sizes and windows have one entry per axis.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        dim: int,
        depth: int,
        downsample: str | Callable[..., nn.Module] | None,
        downsample_kwargs: dict[str, Any] | None = None,
        feat_size: tuple[int, ...],
        num_heads: int,
        window_size: tuple[int, ...],
        shift: bool = True,
        mixer: Any = "attention",
        mixer_kwargs: dict[str, Any] | None = None,
        mlp_ratio: float = 4.0,
        drop_path: Sequence[float] = (),
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
        mlp_norm_layer: Callable[[int], nn.Module] | None = None,
        act_layer: type[nn.Module] = nn.GELU,
        norm_placement: NormPlacement = "pre",
        layer_scale_init: float | None = None,
        shift_mode: ShiftMode = "auto",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.downsample = (
            build_layer(
                DOWNSAMPLERS,
                "downsampler",
                downsample,
                dim=in_dim,
                out_dim=dim,
                norm_layer=norm_layer,
                **(downsample_kwargs or {}),
            )
            if downsample
            else nn.Identity()
        )
        ws, ss = stage_window(feat_size, window_size, shift)
        self.window_size, self.shift_size = ws, ss
        drop_path = tuple(drop_path) or (0.0,) * depth
        self.blocks = nn.Sequential(
            *(
                HierBlock(
                    dim=dim,
                    mixer=mixer,
                    mixer_kwargs=mixer_kwargs,
                    num_heads=num_heads,
                    window_size=ws,
                    shift_size=ss if j % 2 else (0,) * len(ss),
                    feat_size=feat_size,
                    mlp_ratio=mlp_ratio,
                    drop_path=drop_path[j],
                    norm_layer=norm_layer,
                    mlp_norm_layer=mlp_norm_layer,
                    act_layer=act_layer,
                    norm_placement=norm_placement,
                    layer_scale_init=layer_scale_init,
                    shift_mode=shift_mode,
                    spatial_dims=spatial_dims,
                )
                for j in range(depth)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_blocks(self.downsample(x))

    def run_blocks(self, x: torch.Tensor) -> torch.Tensor:
        """The blocks in order, ``(B, *spatial', C) -> same``, each under activation checkpointing
        while ``grad_checkpointing`` is on (a hook: the speed layer runs inference a few images at a time)."""
        if self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            for block in self.blocks:
                x = checkpoint(block, x, use_reentrant=False)
            return x
        return self.blocks(x)
