"""The hierarchical network: stem -> stages -> norm -> head, with timm's model API."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from timm.layers import get_act_layer
from torch import nn

from hiermlp.errors import ConfigError, ShapeError
from hiermlp.layers import STEMS, ClassifierHead, build_layer, make_norm
from hiermlp.models.block import NormPlacement, ShiftMode
from hiermlp.models.stage import HierStage
from hiermlp.ops import resize_rel_pos_table

# parameter names that never get weight decay (besides 1-D tensors, which optimizers skip by rule); Swin V2's
# logit scale and continuous position-bias MLP as in timm and the reference
NO_WEIGHT_DECAY_NAMES = ("relative_position_bias_table", "absolute_pos_embed", "logit_scale")
NO_WEIGHT_DECAY_PARTS = ("cpb_mlp",)

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
    window_size: tuple[int, int]
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


def per_stage(value: Any, n: int, name: str) -> tuple:
    """A scalar (or dict) for every stage, or a tuple/list with exactly one entry per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigError(f"{name} has {len(value)} entries but the model has {n} stages: give one per stage")
        return tuple(value)
    return (value,) * n


def to_2tuple(v: int | Sequence[int], name: str) -> tuple[int, int]:
    t = tuple(v) if isinstance(v, (list, tuple)) else (v, v)
    if len(t) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in t):
        raise ConfigError(f"{name} must be an int or a pair of ints, got {v!r}")
    return t


def _number(value: Any, name: str, *, low: float, high: float = math.inf, integer: bool = False, strict_low=False):
    """``value`` if it is a number in range, else a ConfigError naming ``name``, the value and the range."""
    kind = numbers.Integral if integer else numbers.Real
    bad_type = not isinstance(value, kind) or isinstance(value, bool) or not math.isfinite(value)
    if bad_type or not (value > low if strict_low else value >= low) or value > high:
        bound = f"> {low}" if strict_low else f">= {low}"
        rng = f"{bound}" + (f" and <= {high}" if high != math.inf else "")
        raise ConfigError(f"{name} must be {'an integer' if integer else 'a number'} {rng}, got {value!r}")
    return value


def check_images(x: torch.Tensor, in_chans: int, weight: torch.Tensor, patch: int = 1) -> torch.Tensor:
    # ``weight``: any parameter of the model, for its dtype
    """``x`` if it is a batch of images this model can take, else a ShapeError that names the fix."""
    if not isinstance(x, torch.Tensor):
        raise ShapeError(f"expected a tensor of images (B, {in_chans}, H, W), got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != in_chans:
        raise ShapeError(
            f"expected images of shape (B, {in_chans}, H, W), got {tuple(x.shape)}; build the model "
            f"with in_chans={x.shape[1] if x.ndim == 4 else '...'} or convert the images"
        )
    if x.shape[0] == 0:
        raise ShapeError("got an empty batch (0 images); pass at least one image")
    if x.shape[-2] < patch or x.shape[-1] < patch:
        raise ShapeError(
            f"image {x.shape[-2]}x{x.shape[-1]} is smaller than one {patch}x{patch} patch; resize it to at "
            f"least {patch}x{patch} (the model was trained near its pretrained_cfg input_size)"
        )
    if not x.is_floating_point():
        raise ShapeError(
            f"images are {x.dtype}, the model takes floating point; convert them, e.g. x.float() / 255 "
            "then normalise with the model's pretrained_cfg mean/std"
        )
    if x.dtype != weight.dtype and not torch.is_autocast_enabled(torch.device(x.device).type):  # input check
        raise ShapeError(
            f"images are {x.dtype} but the model's weights are {weight.dtype}; use x.to({weight.dtype}), "
            f"model.to({x.dtype}), or torch.autocast"
        )
    return x


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
    """A Swin-style hierarchical network for any token mixer, ``(B, C_in, H, W) -> (B, num_classes)``.

    Per-stage arguments take a scalar (same in every stage) or a tuple with one entry per stage, so a
    hybrid is one line: ``mixer=("spatial_mlp", "spatial_mlp", "attention", "attention")``.

    Args:
        img_size: Nominal input size; sets the window rule (clamp, no shift) per stage. Other sizes run too.
        patch_size: Patch size of the ``patch_embed`` stem.
        in_chans: Input channels.
        num_classes: Classes of the head (0: no classifier, features are pooled).
        global_pool: Head pooling (``"avg"``, ``"max"``, ``""`` for none).
        embed_dim: Channels of stage 0 (doubling per stage when downsampling), or one value per stage.
        depths: Blocks per stage.
        num_heads: Heads per stage (passed to mixers that take heads).
        window_size: Window per stage (int, square).
        shift: Use shifted windows (per stage).
        mixer: Mixer name or class per stage; ``mixer_kwargs`` its options per stage.
        mlp_ratio: Channel MLP ratio per stage (0: the mixer block carries its own).
        shift_mode: ``"auto"``/``"roll"``/``"pad"`` per stage, see :class:`~hiermlp.models.block.HierBlock`.
        stem: Registered stem name (``"patch_embed"``, ``"conv_overlap"``, ...) or class; ``stem_kwargs`` its
            options.
        downsample: Downsampler at the start of stages 1.. : True (``"patch_merging"``), a registered name
            (``"patch_merging_v2"``, ``"conv"``, ...) or class, or False/None for an isotropic network;
            ``downsample_kwargs`` its options.
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
    """

    def __init__(
        self,
        *,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
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
        _number(num_classes, "num_classes", low=0, integer=True)
        _number(in_chans, "in_chans", low=1, integer=True)
        _number(patch_size, "patch_size", low=1, integer=True)
        _number(drop_rate, "drop_rate", low=0.0, high=1.0)
        _number(drop_path_rate, "drop_path_rate", low=0.0, high=1.0)
        _number(norm_eps, "norm_eps", low=0.0, strict_low=True)
        img_size = to_2tuple(img_size, "img_size")
        if img_size[0] < patch_size or img_size[1] < patch_size:
            raise ConfigError(f"img_size {img_size} is smaller than one {patch_size}x{patch_size} patch")
        downsample = "patch_merging" if downsample is True else (downsample or None)
        if isinstance(embed_dim, (list, tuple)):
            dims = per_stage(embed_dim, n, "embed_dim")
        else:
            _number(embed_dim, "embed_dim", low=1, integer=True)
            dims = tuple(embed_dim * 2**i if downsample else embed_dim for i in range(n))
        for d in dims:
            _number(d, "embed_dim", low=1, integer=True)
        heads = per_stage(num_heads, n, "num_heads")
        for h in heads:
            _number(h, "num_heads", low=1, integer=True)
        windows = tuple(to_2tuple(w, "window_size") for w in per_stage(window_size, n, "window_size"))
        for w in windows:
            if min(w) < 1:
                raise ConfigError(f"window_size must be >= 1, got {w}")
        mlp_ratios = per_stage(mlp_ratio, n, "mlp_ratio")
        for r in mlp_ratios:
            _number(r, "mlp_ratio", low=0.0)
        scales = per_stage(layer_scale_init, n, "layer_scale_init")
        for v in scales:
            if v is not None:
                _number(v, "layer_scale_init", low=-math.inf)
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
            **(stem_kwargs or {}),
        )
        # the stem's total stride: the input check's minimum size and the first stage's reduction
        self.stem_stride = int(getattr(self.patch_embed, "reduction", patch_size))
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
                downsample_kwargs=downsample_kwargs,
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

    def _build_stages(self, img_size: tuple[int, int]) -> tuple[nn.Sequential, list[dict[str, Any]]]:
        """The stages for a nominal input size (their window rule), from :attr:`stage_specs`."""
        reduction = self.stem_stride
        feat = (math.ceil(img_size[0] / reduction), math.ceil(img_size[1] / reduction))
        stages, info, in_dim = [], [], self.stage_specs[0].dim
        for i, spec in enumerate(self.stage_specs):
            if spec.downsample:
                feat, reduction = (math.ceil(feat[0] / 2), math.ceil(feat[1] / 2)), reduction * 2
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
                )
            )
            info.append(dict(num_chs=spec.dim, reduction=reduction, module=f"stages.{i}"))
            in_dim = spec.dim
        return nn.Sequential(*stages), info

    @torch.jit.ignore
    def set_input_size(self, img_size: int | tuple[int, int] | None = None, window_size: Any = None) -> None:
        """Re-apply the window rule for a new nominal input size (and optionally a new window), timm API.

        Window-tied parameters (relative position tables) are resized by bicubic interpolation, spatial MLP
        weights cannot be and raise; other weights are kept.
        """
        img_size = to_2tuple(img_size, "img_size") if img_size is not None else self.img_size
        if window_size is not None:
            windows = per_stage(window_size, len(self.stage_specs), "window_size")
            self.stage_specs = tuple(
                dataclasses.replace(spec, window_size=to_2tuple(w, "window_size"))
                for spec, w in zip(self.stage_specs, windows)
            )
        old = self.stages.state_dict()
        ref = next(self.parameters())
        with torch.device(ref.device):  # the model's device (meta too: nothing is allocated there)
            stages, self.feature_info = self._build_stages(img_size)
        stages.to(dtype=ref.dtype)
        new = stages.state_dict()
        for key, value in old.items():
            if key not in new:
                continue
            if key.endswith("relative_position_bias_table") and value.shape != new[key].shape:
                side = new[key].shape[0]
                value = resize_rel_pos_table(value, _table_window(side))
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
        return {
            n
            for n, _ in self.named_parameters()
            if n.rsplit(".", 1)[-1] in NO_WEIGHT_DECAY_NAMES or any(f".{p}." in f".{n}" for p in NO_WEIGHT_DECAY_PARTS)
        }

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
        """``(B, C_in, H, W) -> (B, H/r, W/r, C)``: the images, checked (:func:`check_images`), through the stem."""
        return self.patch_embed(check_images(x, self.in_chans, next(self.patch_embed.parameters()), self.stem_stride))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W) -> (B, H/r, W/r, C)`` normalised last-stage map (channels-last)."""
        return self.norm(self.stages(self.embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, h, w, C) -> (B, num_classes)`` (or pooled ``(B, C)`` with ``pre_logits``)."""
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Stage outputs (timm API). ``indices``: an int n takes the last n stages, a sequence picks stages.

        Returns the list of maps in ``output_fmt`` (``"NCHW"`` or ``"NHWC"``), preceded by the final
        normalised features unless ``intermediates_only``. ``norm`` applies the final norm to the last stage.
        """
        take = stage_indices(len(self.stages), indices)
        if output_fmt not in ("NCHW", "NHWC"):
            raise ConfigError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        x = self.embed(x)
        last = len(self.stages) - 1
        stages = self.stages[: max(take) + 1] if stop_early or intermediates_only else self.stages
        intermediates = []
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else y)
        if intermediates_only:
            return intermediates
        return self.norm(x), intermediates

    def prune_intermediate_layers(
        self, indices: int | Sequence[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop stages after the last index (and optionally the norm and head), timm API."""
        take = stage_indices(len(self.stages), indices)
        self.stages = self.stages[: max(take) + 1]
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0, "")
        return take


def stage_indices(n: int, indices: int | Sequence[int] | None) -> list[int]:
    """timm's convention: None -> all, int k -> the last k, sequence -> those (negative from the end)."""
    if indices is None:
        return list(range(n))
    if isinstance(indices, int):
        if not 0 < indices <= n:
            raise ConfigError(f"cannot take the last {indices} of {n} stages")
        return list(range(n - indices, n))
    out = [i % n if -n <= i < n else None for i in indices]
    if None in out:
        raise ConfigError(f"stage indices {tuple(indices)} out of range for {n} stages (0..{n - 1})")
    return out


def _init_weights(m: nn.Module) -> None:
    """Swin's init: trunc-normal(0.02) linear weights, zero biases, unit norms."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm) and m.elementwise_affine:
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _table_window(rows: int) -> tuple[int, int]:
    side = math.isqrt(rows)
    return ((side + 1) // 2, (side + 1) // 2)
