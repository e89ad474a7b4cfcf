"""The hierarchical network: stem -> stages -> norm -> head, with timm's model API."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from timm.layers import get_act_layer
from torch import nn
from torch.utils.checkpoint import checkpoint

from hiermlp.errors import ConfigError
from hiermlp.layers import STEMS, ClassifierHead, RelativePositionBias, build_layer, make_norm
from hiermlp.models.block import NormPlacement, ShiftMode
from hiermlp.models.inputs import check_images, check_number, per_stage, stage_indices, to_ntuple
from hiermlp.models.stage import HierStage
from hiermlp.ops import resize_rel_pos_table

# parameter names that never get weight decay (besides 1-D tensors, which optimizers skip by rule); Swin V2's
# logit scale and continuous position-bias MLP as in timm and the reference
NO_WEIGHT_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed", "logit_scale")
NO_WEIGHT_DECAY_PARTS = ("cpb_mlp",)


def no_weight_decay_names(module: nn.Module) -> set[str]:
    """Names of ``module``'s position tables and V2 scale/bias-MLP parameters, excluded from weight decay."""
    return {
        n
        for n, _ in module.named_parameters()
        if n.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES or any(f".{p}." in f".{n}" for p in NO_WEIGHT_DECAY_PARTS)
    }


# the input check runs as one opaque node under torch.fx (it branches on the input's shape and dtype)
torch.fx.wrap("check_images")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """What one stage is built from: :class:`HierNet`'s per-stage arguments resolved for stage ``i``, with the
    network-wide ones it needs. Sizes are not part of it: the stage's map size follows the input size
    (:meth:`HierNet.set_input_size` rebuilds the stages from the same specs)."""

    dim: int
    depth: int
    num_heads: int
    window_size: tuple[int, ...]  # one size per spatial axis
    shift: bool
    mixer: Any
    mixer_kwargs: dict[str, Any] | None
    mlp_ratio: float
    shift_mode: ShiftMode
    norm_placement: NormPlacement
    layer_scale_init: float | None
    drop_path: tuple[float, ...]  # one rate per block
    downsample: str | Callable[..., nn.Module] | None  # None in the first stage
    downsample_kwargs: dict[str, Any] | None
    norm_layer: Callable[[int], nn.Module]
    mlp_norm_layer: Callable[[int], nn.Module] | None
    act_layer: type[nn.Module]


def init_tree(module: nn.Module, init: Callable[[nn.Module], None]) -> None:
    """The one initialisation protocol: a module with ``init_weights()`` initialises its own subtree, once;
    every other module gets ``init`` after its children (the order of ``nn.Module.apply``)."""
    for child in module.children():
        if hasattr(child, "init_weights"):
            child.init_weights()
        else:
            init_tree(child, init)
    init(module)


class HierNet(nn.Module):
    """A Swin-style hierarchical network for any token mixer, ``(B, C_in, *spatial) -> (B, num_classes)``.

    ``spatial_dims`` sets the number of spatial axes: 2 for images ``(B, C, H, W)`` (the default), 3 for
    videos and volumes ``(B, C, T, H, W)`` (Video Swin, SwinUNETR's encoder), 1 for sequences ``(B, C, L)``.
    Sizes, patches, windows and downsampling factors are per axis (an int means the same on every axis).

    Per-stage arguments take a scalar (same in every stage) or a tuple with one entry per stage, so a
    hybrid is one line: ``mixer=("spatial_mlp", "spatial_mlp", "attention", "attention")``.

    Args:
        img_size: Nominal input size (per axis); sets the window rule (clamp, no shift) per stage. Other sizes
            run too.
        patch_size: Patch size of the ``patch_embed`` stem, per axis (Video Swin: ``(2, 4, 4)``).
        in_chans: Input channels.
        num_classes: Classes of the head (0: no classifier, features are pooled).
        global_pool: Head pooling (``"avg"``, ``"max"``, ``""`` for none).
        embed_dim: Channels of stage 0 (doubling per stage when downsampling), or one value per stage.
        depths: Blocks per stage.
        num_heads: Heads per stage (passed to mixers that take heads).
        window_size: Window per stage: an int (the same on every axis) or one int per axis.
        shift: Use shifted windows (per stage).
        mixer: Mixer name or class per stage; ``mixer_kwargs`` its options per stage.
        mlp_ratio: Channel MLP ratio per stage (0: the mixer block carries its own).
        shift_mode: ``"auto"``/``"roll"``/``"pad"`` per stage, see :class:`~hiermlp.models.block.HierBlock`.
        stem: Registered stem name (``"patch_embed"``, ``"conv_overlap"``, ...) or class; ``stem_kwargs`` its
            options.
        downsample: Downsampler at the start of stages 1.. : True (``"patch_merging"``), a registered name
            (``"patch_merging_v2"``, ``"conv"``, ...) or class, or False/None for an isotropic network;
            ``downsample_kwargs`` its options; ``downsample_kwargs["factors"]`` (patch merging) the per-axis
            factors, e.g. ``(1, 2, 2)`` to keep time (Video Swin), 2 on every axis by default.
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, growing linearly over all blocks.
        norm_layer: ``"layernorm"``, ``"batchnorm"``, ``"groupnorm"`` or a norm class, for blocks, stem,
            downsamplers and the final norm; ``norm_eps`` the epsilon of named norms.
        mlp_norm_layer: The norm before each channel MLP, where it differs from ``norm_layer`` (None: the same).
        patch_norm: Norm after the stem.
        head_norm: Norm after the last stage.
        norm_placement: ``"pre"`` or ``"res_post"`` per stage.
        layer_scale_init: Layer-scale init value per stage, None for none.
        act_layer: Activation of the channel MLPs (a name timm knows, or a class).
        spatial_dims: Spatial axes of the input: 1, 2 or 3.
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, ...] = 224,
        patch_size: int | tuple[int, ...] = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        embed_dim: int | Sequence[int] = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: int | Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 7,
        shift: bool | Sequence[bool] = True,
        mixer: Any = "attention",
        mixer_kwargs: dict[str, Any] | Sequence[dict[str, Any] | None] | None = None,
        mlp_ratio: float | Sequence[float] = 4.0,
        shift_mode: ShiftMode | Sequence[ShiftMode] = "auto",
        stem: str | Callable[..., nn.Module] = "patch_embed",
        stem_kwargs: dict[str, Any] | None = None,
        downsample: bool | str | Callable[..., nn.Module] | None = True,
        downsample_kwargs: dict[str, Any] | None = None,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        norm_layer: str | Callable[[int], nn.Module] = "layernorm",
        norm_eps: float = 1e-5,
        mlp_norm_layer: str | Callable[[int], nn.Module] | None = None,
        patch_norm: bool = True,
        head_norm: bool = True,
        norm_placement: NormPlacement | Sequence[NormPlacement] = "pre",
        layer_scale_init: float | Sequence[float | None] | None = None,
        act_layer: str | type[nn.Module] = "gelu",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        from hiermlp.schema import check_arguments  # pydantic loads on first construction, not with hiermlp

        check_arguments(HierNet, {k: v for k, v in locals().items() if k not in ("self", "__class__")}, what="HierNet")
        if isinstance(depths, (str, bytes)) or not isinstance(depths, Sequence):
            raise ConfigError(f"depths must be a list of block counts, one per stage, got {depths!r}")
        depths = tuple(depths)
        n = len(depths)
        if n == 0 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths):
            raise ConfigError(f"depths must list at least one stage of >= 1 block (integers), got {depths}")
        check_number(num_classes, "num_classes", low=0, integer=True)
        check_number(in_chans, "in_chans", low=1, integer=True)
        if spatial_dims not in (1, 2, 3):
            raise ConfigError(
                f"spatial_dims must be 1, 2 or 3 (sequences, images, videos/volumes), got {spatial_dims!r}"
            )
        patch = to_ntuple(patch_size, spatial_dims, "patch_size")
        for p in patch:
            check_number(p, "patch_size", low=1, integer=True)
        check_number(drop_rate, "drop_rate", low=0.0, high=1.0)
        check_number(drop_path_rate, "drop_path_rate", low=0.0, high=1.0)
        check_number(norm_eps, "norm_eps", low=0.0, strict_low=True)
        img_size = to_ntuple(img_size, spatial_dims, "img_size")
        if any(s < p for s, p in zip(img_size, patch)):
            raise ConfigError(f"img_size {img_size} is smaller than one {'x'.join(map(str, patch))} patch")
        downsample = "patch_merging" if downsample is True else (downsample or None)
        if isinstance(embed_dim, (list, tuple)):
            dims = per_stage(embed_dim, n, "embed_dim")
        else:
            check_number(embed_dim, "embed_dim", low=1, integer=True)
            dims = tuple(embed_dim * 2**i if downsample else embed_dim for i in range(n))
        for d in dims:
            check_number(d, "embed_dim", low=1, integer=True)
        heads = per_stage(num_heads, n, "num_heads")
        for h in heads:
            check_number(h, "num_heads", low=1, integer=True)
        windows = per_stage_windows(window_size, n, spatial_dims)
        mlp_ratios = per_stage(mlp_ratio, n, "mlp_ratio")
        for r in mlp_ratios:
            check_number(r, "mlp_ratio", low=0.0)
        scales = per_stage(layer_scale_init, n, "layer_scale_init")
        for v in scales:
            if v is not None:
                check_number(v, "layer_scale_init", low=-math.inf)
        try:
            act = get_act_layer(act_layer) if isinstance(act_layer, str) else act_layer
        except Exception as e:  # timm raises a bare KeyError/ValueError for unknown names
            raise ConfigError(f"unknown act_layer {act_layer!r}; use a name timm knows (gelu, relu, silu, ...)") from e
        norm = make_norm(norm_layer, norm_eps)

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.img_size = img_size
        self.patch_size = patch_size
        self.spatial_dims = spatial_dims
        self.num_features = self.head_hidden_size = dims[-1]
        self.output_fmt = "NHWC"
        self.feature_dim = -1  # the channel axis of forward_features' output (timm reads it for NHWC models)
        self.grad_checkpointing = False

        self.patch_embed = build_layer(
            STEMS,
            "stem",
            stem,
            in_chans=in_chans,
            embed_dim=dims[0],
            norm_layer=norm if patch_norm else None,
            **({"patch_size": patch_size} if stem == "patch_embed" else {}),
            **({"spatial_dims": spatial_dims} if spatial_dims != 2 else {}),
            **(stem_kwargs or {}),
        )
        # the stem's total stride per axis: the input check's minimum size and the first stage's reduction
        strides = getattr(self.patch_embed, "strides", None)
        self.stem_strides = (
            tuple(strides)
            if strides is not None
            else (int(getattr(self.patch_embed, "reduction", patch[0])),) * spatial_dims
        )
        self.stem_stride = self.stem_strides[-1]
        factors = (downsample_kwargs or {}).get("factors", 2) if downsample else 1
        self.downsample_factors = to_ntuple(factors, spatial_dims, "downsample factors")
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        shifts, mixers = per_stage(shift, n, "shift"), per_stage(mixer, n, "mixer")
        kwargs, shift_modes = per_stage(mixer_kwargs, n, "mixer_kwargs"), per_stage(shift_mode, n, "shift_mode")
        placements = per_stage(norm_placement, n, "norm_placement")
        mlp_norm = make_norm(mlp_norm_layer, norm_eps) if mlp_norm_layer is not None else None
        self.stage_specs = tuple(
            StageSpec(
                dim=dims[i],
                depth=depths[i],
                num_heads=heads[i],
                window_size=windows[i],
                shift=shifts[i],
                mixer=mixers[i],
                mixer_kwargs=kwargs[i],
                mlp_ratio=mlp_ratios[i],
                shift_mode=shift_modes[i],
                norm_placement=placements[i],
                layer_scale_init=scales[i],
                drop_path=tuple(dpr[sum(depths[:i]) : sum(depths[: i + 1])]),
                downsample=downsample if i > 0 else None,
                downsample_kwargs=(downsample_kwargs or {})
                | ({"spatial_dims": spatial_dims} if spatial_dims != 2 else {})
                if downsample
                else None,
                norm_layer=norm,
                mlp_norm_layer=mlp_norm,
                act_layer=act,
            )
            for i in range(n)
        )
        self.stages, self.feature_info = self._build_stages(img_size)
        self.norm = norm(self.num_features) if head_norm else nn.Identity()
        self.head = ClassifierHead(
            self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate, input_fmt="NHWC"
        )
        init_tree(self, _init_weights)
        for stage in self.stages:  # timm's / the reference's Swin V2 init: res-post norms start at zero
            for block in stage.blocks:
                if block.norm_placement == "res_post":
                    for norm in (block.norm1, block.norm2):
                        if norm is not None and getattr(norm, "weight", None) is not None:
                            nn.init.zeros_(norm.weight)
                            nn.init.zeros_(norm.bias)

    def _build_stages(self, img_size: tuple[int, ...]) -> tuple[nn.Sequential, list[dict[str, Any]]]:
        """The stages for a nominal input size (their window rule), from :attr:`stage_specs`."""
        reduction = self.stem_strides
        feat = tuple(math.ceil(s / r) for s, r in zip(img_size, reduction))
        stages, info, in_dim = [], [], self.stage_specs[0].dim
        for i, spec in enumerate(self.stage_specs):
            if spec.downsample:
                feat = tuple(math.ceil(f / k) for f, k in zip(feat, self.downsample_factors))
                reduction = tuple(r * k for r, k in zip(reduction, self.downsample_factors))
            stages.append(
                HierStage(
                    in_dim=in_dim,
                    dim=spec.dim,
                    depth=spec.depth,
                    downsample=spec.downsample,
                    downsample_kwargs=spec.downsample_kwargs,
                    feat_size=feat,
                    num_heads=spec.num_heads,
                    window_size=spec.window_size,
                    shift=spec.shift,
                    mixer=spec.mixer,
                    mixer_kwargs=spec.mixer_kwargs,
                    mlp_ratio=spec.mlp_ratio,
                    drop_path=spec.drop_path,
                    norm_layer=spec.norm_layer,
                    mlp_norm_layer=spec.mlp_norm_layer,
                    act_layer=spec.act_layer,
                    norm_placement=spec.norm_placement,
                    layer_scale_init=spec.layer_scale_init,
                    shift_mode=spec.shift_mode,
                    spatial_dims=self.spatial_dims,
                )
            )
            # timm's int reduction is the last axis's (W); other dims also list every axis's
            per_axis = {} if self.spatial_dims == 2 else {"reductions": reduction}
            # an isotropic network's levels are its blocks (as timm lists MlpMixer's and ViT's)
            modules = [f"stages.0.blocks.{j}" for j in range(spec.depth)] if self.isotropic else [f"stages.{i}"]
            info += [dict(num_chs=spec.dim, reduction=reduction[-1], module=m, **per_axis) for m in modules]
            in_dim = spec.dim
        return nn.Sequential(*stages), info

    @torch.jit.ignore
    def set_input_size(self, img_size: int | tuple[int, ...] | None = None, window_size: Any = None) -> None:
        """Re-apply the window rule for a new nominal input size (and optionally a new window), timm API.

        Window-tied parameters (relative position tables) are resized by interpolation (bicubic in 2-D,
        trilinear in 3-D), spatial MLP weights cannot be and raise; other weights are kept.
        """
        d = self.spatial_dims
        img_size = to_ntuple(img_size, d, "img_size") if img_size is not None else self.img_size
        if window_size is not None:
            windows = per_stage_windows(window_size, len(self.stage_specs), d)
            self.stage_specs = tuple(
                dataclasses.replace(spec, window_size=w) for spec, w in zip(self.stage_specs, windows)
            )
        old, old_windows = self.stages.state_dict(), _table_windows(self.stages)
        ref = next(self.parameters())
        with torch.device(ref.device):  # the model's device (meta too: nothing is allocated there)
            stages, self.feature_info = self._build_stages(img_size)
        stages.to(dtype=ref.dtype)
        new, new_windows = stages.state_dict(), _table_windows(stages)
        for key, value in old.items():
            if key not in new:
                continue
            if key in new_windows and value.shape != new[key].shape:
                value = resize_rel_pos_table(value, new_windows[key], old_windows[key])
            if value.shape != new[key].shape:
                raise ConfigError(
                    f"set_input_size: {key} is {tuple(value.shape)} for the old size and {tuple(new[key].shape)} "
                    "for the new one, and has no resize rule (window-tied weights such as a spatial MLP's)"
                )
            new[key] = value
        stages.load_state_dict(new)
        # the rebuilt stages keep what the old ones were: frozen parameters stay frozen, eval mode stays eval
        frozen = {n for n, p in self.stages.named_parameters() if not p.requires_grad}
        for n, p in stages.named_parameters():
            p.requires_grad_(n not in frozen)
        self.stages = stages.train(self.stages.training)
        self.img_size = img_size

    # ---- timm model API -------------------------------------------------------------------------------
    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Names of parameters excluded from weight decay (position tables)."""
        return no_weight_decay_names(self)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for layer-wise lr decay (timm convention)."""
        return dict(
            stem=r"^patch_embed",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [
                (r"^stages\.(\d+)\.downsample", (0,)),
                (r"^stages\.(\d+)\.\w+\.(\d+)", None),
                (r"^norm", (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for s in self.stages:
            s.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head.reset(num_classes, pool_type=global_pool)
        ref = next(self.parameters(), None)  # a new classifier lives where the model does, in its mode
        if ref is not None:
            self.head.to(device=ref.device, dtype=ref.dtype)
        self.head.train(self.training)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *spatial) -> (B, *spatial/r, C)``: the input, checked (:func:`check_images`), then the stem."""
        if self.spatial_dims == 2:
            return self.patch_embed(
                check_images(x, self.in_chans, next(self.patch_embed.parameters()), self.stem_stride)
            )
        weight = next(self.patch_embed.parameters())
        return self.patch_embed(check_images(x, self.in_chans, weight, self.stem_strides, self.spatial_dims))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, *spatial) -> (B, *spatial/r, C)`` normalised last-stage map (channels-last)."""
        return self.norm(self.stages(self.embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, *spatial, C) -> (B, num_classes)`` (or pooled ``(B, C)`` with ``pre_logits``)."""
        if self.spatial_dims != 2:  # timm's head pools the two axes of an NHWC map: pool every token the same
            x = x.reshape(x.shape[0], -1, 1, x.shape[-1])
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @property
    def isotropic(self) -> bool:
        """One stage and no downsampling (MLP-Mixer, gMLP): the feature levels are its blocks, not its stages."""
        return len(self.stage_specs) == 1

    @property
    def level_noun(self) -> str:
        """What the feature levels are, for messages: ``"blocks"`` or ``"stages"``."""
        return "blocks" if self.isotropic else "stages"

    def feature_levels(self) -> list[nn.Module]:
        """The modules whose outputs are the feature levels (``feature_info``, ``forward_intermediates``'
        indices): the stages of a hierarchy, the blocks of an isotropic network."""
        return list(self.stages[0].blocks) if self.isotropic else list(self.stages)

    def run_level(self, level: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One feature level; an isotropic network's blocks honour grad checkpointing as its stage does."""
        if self.isotropic and self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            return checkpoint(level, x, use_reentrant=False)
        return level(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Feature-level outputs (timm API): stages, or an isotropic network's blocks (:meth:`feature_levels`).
        ``indices``: an int n takes the last n levels, a sequence picks levels.

        Returns the list of maps in ``output_fmt`` (``"NCHW"`` or ``"NHWC"``), preceded by the final
        normalised features unless ``intermediates_only``. ``norm`` applies the final norm to the last level.
        """
        levels = self.feature_levels()
        take = stage_indices(len(levels), indices, self.level_noun)
        if output_fmt not in ("NCHW", "NHWC"):
            raise ConfigError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        x = self.embed(x)
        last = len(levels) - 1
        run = levels[: max(take) + 1] if stop_early or intermediates_only else levels
        intermediates = []
        for i, level in enumerate(run):
            x = self.run_level(level, x)
            if i in take:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y.movedim(-1, 1).contiguous() if output_fmt == "NCHW" else y)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop feature levels after the last index (and optionally the norm and head), timm API."""
        take = stage_indices(len(self.feature_levels()), indices, self.level_noun)
        if self.isotropic:
            self.stages[0].blocks = self.stages[0].blocks[: max(take) + 1]
        else:
            self.stages = self.stages[: max(take) + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take


def _init_weights(m: nn.Module) -> None:
    """Swin's init: trunc-normal(0.02) linear weights, zero biases, unit norms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _table_windows(stages: nn.Module) -> dict[str, tuple[int, ...]]:
    """The window of every relative position table under ``stages``, by state-dict key."""
    return {
        f"{name}.relative_position_bias_table": tuple(m.window_size)
        for name, m in stages.named_modules()
        if isinstance(m, RelativePositionBias)
    }


def per_stage_windows(window_size: Any, n: int, spatial_dims: int) -> tuple[tuple[int, ...], ...]:
    """One window per stage, each with one size >= 1 per spatial axis.

    In 1-D and 3-D a flat tuple of ``spatial_dims`` ints is one window for every stage (``(8, 7, 7)``); in 2-D
    a flat tuple lists one window per stage (hiermlp's 2-D convention). Otherwise a tuple has one entry (an
    int or a per-axis tuple) per stage."""
    flat = isinstance(window_size, (list, tuple)) and all(isinstance(w, int) for w in window_size)
    if flat and spatial_dims != 2 and len(window_size) == spatial_dims:
        window_size = (tuple(window_size),) * n
    windows = tuple(to_ntuple(w, spatial_dims, "window_size") for w in per_stage(window_size, n, "window_size"))
    for w in windows:
        if min(w) < 1:
            raise ConfigError(f"window_size must be >= 1, got {w}")
    return windows
