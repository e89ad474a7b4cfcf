"""The parts of a run, each built from its :class:`~hiermlp.train.config.TrainConfig`: model (fresh, fine-tuned
from ``initial_checkpoint``, or a trained checkpoint of it), datasets and loaders, optimizer / schedule /
GradScaler / EMA, and the loss (with Mixup/CutMix)."""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hiermlp.accel import machine
from hiermlp.accel.machine import native_bf16
from hiermlp.data import (
    CLIP_FRAMES,
    CLIP_SIZE,
    SEG_DATASETS,
    VIDEO_DATASETS,
    ArrayImageDataset,
    ClipDataset,
    ClipSceneDataset,
    GlobalBatchSampler,
    JointTransform,
    PreparedDataset,
    SeededDataset,
    ShardSampler,
    build_dataset,
    build_seg_dataset,
    build_transform,
    check_labels,
    collate_prepared,
    dataset_stats,
    load_clips,
    num_seg_classes,
    subset_indices,
)
from hiermlp.data.datasets import array_digest
from hiermlp.errors import CheckpointError, HiermlpError
from hiermlp.errors import ConfigError as BaseConfigError
from hiermlp.limits import check_bytes
from hiermlp.train.config import ConfigError, TrainConfig
from hiermlp.train.distributed import DistInfo
from hiermlp.train.optim import build_optimizer, build_scheduler, scaled_lrs

__all__ = [
    "Data",
    "Optimization",
    "autocast",
    "build_datasets",
    "build_eval_dataset",
    "build_loss",
    "build_optimization",
    "input_shape",
    "model_from_config",
    "resolve_data_config",
]


def _plain(v: Any) -> Any:
    """YAML lists -> tuples (hiermlp/timm model kwargs such as depths are tuples)."""
    if isinstance(v, list):
        return tuple(_plain(x) for x in v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def input_shape(cfg: TrainConfig) -> tuple[int, ...]:
    """One sample's input: ``(in_chans, img_size, img_size)``, or ``(in_chans, frames, img_size, img_size)`` for
    a clip dataset (a 3-D model is built for ``img_size=(frames, img_size, img_size)``)."""
    if cfg.data in VIDEO_DATASETS:
        return (cfg.in_chans, CLIP_FRAMES, cfg.img_size, cfg.img_size)
    return (cfg.in_chans, cfg.img_size, cfg.img_size)


def model_from_config(
    cfg: TrainConfig, num_classes: int, *, weights: str | Path | None = None, ema: bool = False
) -> nn.Module:
    """The model ``cfg`` describes: ``cfg.model`` from hiermlp's registry, or timm's if hiermlp does not know
    the name, with ``cfg.model_kwargs`` over the variant (and ``img_size``/``in_chans``/``drop_path_rate``).

    Its weights: fresh (or ``cfg.pretrained``'s); with ``cfg.initial_checkpoint``, that checkpoint's (fine-tuning:
    a new head is left at init, relative position tables are resized to a new window, anything else that does
    not match is an error); with ``weights``, a trained checkpoint of this very model (``ema``: its EMA weights),
    every key matching. Both go through :func:`hiermlp.model_from_checkpoint`.

    Raises:
        ConfigError: the name is in neither registry (with close names), or the model rejects a value of
            ``model_kwargs`` (the message names it).
        CheckpointError: the checkpoint is missing, unreadable or does not match (the message names it).
    """
    kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "in_chans": cfg.in_chans,
        "drop_path_rate": cfg.drop_path_rate,
        "img_size": cfg.img_size if cfg.data not in VIDEO_DATASETS else input_shape(cfg)[1:],
        **_plain(cfg.model_kwargs),
    }
    from hiermlp.factory import resolve_source
    from hiermlp.models.registry import UnknownModelError

    try:
        source, name = resolve_source(cfg.model)
    except UnknownModelError as e:  # a config error of this run: report it as one, naming the key
        raise ConfigError(f"model: {e}") from e
    path = cfg.initial_checkpoint if weights is None else weights
    label = f"initial_checkpoint={str(path)!r}" if weights is None else str(path)
    if path and not Path(path).is_file():
        raise CheckpointError(f"{label} does not exist; give the .pth/.safetensors file of the weights")
    try:
        return _sized(cfg, source, name, kwargs, path, finetune=weights is None, ema=ema)
    except CheckpointError as e:
        if not path:
            raise
        raise CheckpointError(f"{label}: {e}") from e
    except HiermlpError as e:
        if isinstance(e, BaseConfigError):  # the model's own check: say which config it came from
            raise ConfigError(f"model={cfg.model} model_kwargs: {e}") from e
        raise
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, AssertionError) as e:
        # the model's own checks did not catch this value: still name the config it came from
        first = (str(e).splitlines() or [""])[0][:300]
        raise ConfigError(
            f"model={cfg.model} cannot be built with model_kwargs={cfg.model_kwargs} "
            f"(img_size={cfg.img_size}, in_chans={cfg.in_chans}): {type(e).__name__}: {first}; "
            "fix the model_kwargs value it names"
        ) from e


def _sized(
    cfg: TrainConfig, source: str, name: str, kwargs: dict[str, Any], path: Any, *, finetune: bool, ema: bool
) -> nn.Module:
    """The model, without ``img_size`` for a timm model that takes none (CNNs take any input size)."""
    try:
        return _create(cfg, f"{source}:{name}", kwargs, path, finetune=finetune, ema=ema)
    except TypeError as e:
        if source == "hiermlp" or "img_size" not in str(e) or "img_size" in cfg.model_kwargs:
            raise
        kwargs = {k: v for k, v in kwargs.items() if k != "img_size"}
        return _create(cfg, f"{source}:{name}", kwargs, path, finetune=finetune, ema=ema)


def _create(cfg: TrainConfig, target: str, kwargs: dict[str, Any], path: Any, *, finetune: bool, ema: bool):
    from hiermlp.factory import create_any_model, model_from_checkpoint

    if path:
        return model_from_checkpoint(path, target, ema=ema, finetune=finetune, **kwargs)
    return create_any_model(target, pretrained=cfg.pretrained, **kwargs)


def resolve_data_config(cfg: TrainConfig) -> dict[str, Any]:
    """The run's eval transform in timm's data-config keys: ``input_size``, ``interpolation``, ``crop_pct``,
    ``crop_mode``, ``mean``, ``std``.

    What the config leaves unset (``interpolation=""``, ``crop_pct=0``, no ``mean``) is the model's pretrained
    cfg's, as timm's train.py resolves it; ``mean``/``std`` default to the dataset's own statistics where hiermlp
    has them (Fashion-MNIST, CIFAR). Checkpoints record the result, and a model rebuilt from one carries it in
    its pretrained cfg, so ``hiermlp eval`` and timm's ``resolve_data_config`` reproduce the trainer's transform.

    Raises:
        ConfigError: ``mean``/``std`` have neither one value nor one per input channel.
    """
    from hiermlp.factory import registered_cfg

    model_cfg = registered_cfg(cfg.model)
    default = (model_cfg["mean"], model_cfg["std"]) if model_cfg.get("mean") and model_cfg.get("std") else None
    mean, std = dataset_stats(cfg.data, cfg.in_chans, default)
    if cfg.mean:
        mean = cfg.mean * cfg.in_chans if len(cfg.mean) == 1 else cfg.mean
        std = (cfg.std * cfg.in_chans if len(cfg.std) == 1 else cfg.std) if cfg.std else mean
    if len(mean) != cfg.in_chans or len(std) != cfg.in_chans:
        raise ConfigError(
            f"mean/std have {len(mean)}/{len(std)} values but in_chans={cfg.in_chans}; give one value or in_chans"
        )
    return dict(
        input_size=input_shape(cfg),
        interpolation=cfg.interpolation or model_cfg.get("interpolation") or "bilinear",
        crop_pct=cfg.crop_pct or model_cfg.get("crop_pct") or 1.0,
        crop_mode=model_cfg.get("crop_mode") or "center",
        mean=tuple(float(m) for m in mean),
        std=tuple(float(v) for v in std),
    )


def build_datasets(cfg: TrainConfig) -> tuple[SeededDataset, Any, int]:
    """(train dataset, test dataset, num_classes) with the config's transforms (:func:`resolve_data_config`;
    joint image/mask transforms for ``task=segment``).

    The test split's labels index the training split's class map (:func:`hiermlp.data.build_dataset`).

    Raises:
        FileNotFoundError: the data path does not exist (the message names it).
        ConfigError: the test split has a class the training split lacks, a dataset of the other task, or a
            segmentation folder that names no classes.
    """
    if cfg.task == "segment":
        return _segmentation_datasets(cfg)
    if cfg.data in SEG_DATASETS or cfg.data == "clip_scenes":
        raise ConfigError(f"data={cfg.data} is a segmentation dataset: set task=segment (and a segmentation model)")
    if cfg.data in VIDEO_DATASETS:
        return _clip_datasets(cfg)
    train_tf, test_tf = _transforms(cfg)
    train_ds = build_dataset(cfg.data, split=cfg.train_split, transform=train_tf, **_data_kw(cfg))
    test_ds = build_dataset(
        cfg.data, split=_test_split(cfg), transform=test_tf, classes=train_ds.classes, **_data_kw(cfg)
    )
    num_classes = cfg.num_classes or len(train_ds.classes)
    return SeededDataset(train_ds, seed=cfg.seed), test_ds, num_classes


def build_eval_dataset(cfg: TrainConfig, classes: list[str] | None) -> tuple[Any, int]:
    """(test dataset, num_classes): labelled with ``classes``, the class map a trained checkpoint stores
    (None: the training split's, as :func:`build_datasets`). A segmentation mask's values are its classes, so
    there the map only sizes the head.

    Raises:
        ConfigError: the split has a class the map lacks.
    """
    if not classes or cfg.task == "segment" or cfg.data in VIDEO_DATASETS:
        _, test_ds, num_classes = build_datasets(cfg)
        return test_ds, cfg.num_classes or len(classes or []) or num_classes
    _, test_tf = _transforms(cfg)
    test_ds = build_dataset(cfg.data, split=_test_split(cfg), transform=test_tf, classes=list(classes), **_data_kw(cfg))
    return test_ds, cfg.num_classes or len(classes)


def _test_split(cfg: TrainConfig) -> str:
    if cfg.test_split:
        return cfg.test_split
    if cfg.task == "segment":
        return "test" if cfg.data in ("scenes", "clip_scenes") else "val"
    # a folder's split is found under timm's names too (val, validation): hiermlp.data.folder_split
    return "validation" if cfg.data == "folder" else "test"


def _data_kw(cfg: TrainConfig) -> dict[str, Any]:
    return {"root": cfg.data_root, "mode": "L" if cfg.in_chans == 1 else "RGB", "corrupt": cfg.corrupt}


def _transforms(cfg: TrainConfig) -> tuple[Any, Any]:
    """(train transform, test transform) of the config, both on :func:`resolve_data_config`'s eval geometry."""
    dc = resolve_data_config(cfg)
    common = {key: dc[key] for key in ("mean", "std", "interpolation", "crop_pct", "crop_mode")}
    common["img_size"] = cfg.img_size
    train_tf = build_transform(
        is_training=True,
        no_aug=cfg.no_aug,
        scale=cfg.scale,
        hflip=cfg.hflip,
        color_jitter=cfg.color_jitter,
        auto_augment=cfg.auto_augment,
        reprob=cfg.reprob,
        **common,
    )
    test_tf = build_transform(is_training=False, **common)
    return train_tf, test_tf


def _segmentation_datasets(cfg: TrainConfig) -> tuple[SeededDataset, Any, int]:
    if cfg.data == "clip_scenes":
        return _clip_datasets(cfg)
    if cfg.data not in SEG_DATASETS:
        raise ConfigError(
            f"data={cfg.data} is a classification dataset; task=segment reads one of "
            f"{', '.join(SEG_DATASETS)}, clip_scenes"
        )
    dc = resolve_data_config(cfg)  # the normalisation checkpoints record
    common = {"img_size": cfg.img_size, "mean": dc["mean"], "std": dc["std"], "ignore_index": cfg.ignore_index}
    train_tf = JointTransform(is_training=True, scale=cfg.seg_scale, hflip=cfg.hflip, no_aug=cfg.no_aug, **common)
    test_tf = JointTransform(is_training=False, **common)
    kw = {"root": cfg.data_root, "mode": "L" if cfg.in_chans == 1 else "RGB", "ignore_index": cfg.ignore_index}
    train_ds = build_seg_dataset(cfg.data, split=cfg.train_split, transform=train_tf, **kw)
    test_ds = build_seg_dataset(cfg.data, split=_test_split(cfg), transform=test_tf, **kw)
    num_classes = cfg.num_classes or num_seg_classes(train_ds)
    if not num_classes:
        raise ConfigError(f"data_root={cfg.data_root!r} names no classes (no classes.txt): set num_classes")
    return SeededDataset(train_ds, seed=cfg.seed), test_ds, num_classes


def _clip_datasets(cfg: TrainConfig) -> tuple[SeededDataset, Any, int]:
    """The embedded clips (:mod:`hiermlp.data.clips`): 1 x 8 x S x S gray clips (S = img_size, 32 and up), no
    augmentation, labelled per clip (``clips``) or per voxel (``clip_scenes``: background, ten item classes)."""
    if cfg.img_size < CLIP_SIZE or cfg.in_chans != 1:
        raise ConfigError(
            f"data={cfg.data} holds 1 x {CLIP_FRAMES} x S x S gray clips on a canvas of S >= {CLIP_SIZE}, got "
            f"img_size={cfg.img_size} in_chans={cfg.in_chans}: set img_size={CLIP_SIZE} (or more) in_chans=1"
        )
    if cfg.mixup > 0 or cfg.cutmix > 0:
        raise ConfigError(f"mixup/cutmix mix images, not clips: set mixup=0 cutmix=0 for data={cfg.data}")
    dc = resolve_data_config(cfg)
    norm = {"mean": dc["mean"][0], "std": dc["std"][0]}
    kind = ClipSceneDataset if cfg.data == "clip_scenes" else ClipDataset
    size = dict(root=cfg.data_root, size=cfg.img_size)  # img_size > 32: the same generator on a larger canvas
    train_ds = kind(load_clips(cfg.train_split, **size), **norm)
    test_ds = kind(load_clips(_test_split(cfg), **size), **norm)
    return SeededDataset(train_ds, seed=cfg.seed), test_ds, cfg.num_classes or len(train_ds.classes)


# an in-memory dataset without augmentation is transformed once up to this size (full Fashion-MNIST at
# 32x32 float32 is 245 MB); a larger one is transformed per sample, as a streamed dataset always is
PREPARE_MAX_BYTES = 1 << 30
# prepared sets kept for the next run of this process (a compare worker trains every entry on the same
# seeds' subsets and the same test set), least recently used first out
PREPARED_CACHE_BYTES = 512 << 20
_prepared_cache: OrderedDict[tuple, PreparedDataset] = OrderedDict()


def _prepare(ds: Any, indices: Any, cfg: TrainConfig) -> PreparedDataset | None:
    """``ds`` (an in-memory dataset with a deterministic transform) transformed once, or None.

    Kept for later runs under a key of everything the result depends on: the images' and labels' bytes
    (not a path: a file rewritten in place is new content), the indices, the PIL mode and the config
    fields the transform is built from.
    """
    base = ds.dataset if isinstance(ds, SeededDataset) else ds
    if not isinstance(base, ArrayImageDataset) or len(indices) == 0:
        return None
    size = PreparedDataset.nbytes(base, len(indices))
    if size > PREPARE_MAX_BYTES:
        return None
    # the deterministic (eval / no_aug) transform is the resolved data config's (the model's cfg fills it in)
    fields = tuple(sorted(resolve_data_config(cfg).items()))
    indices = np.asarray(indices, dtype=np.int64)
    key = (cfg.data, fields, base.mode, array_digest(base.images), array_digest(base.labels), array_digest(indices))
    if key in _prepared_cache:
        _prepared_cache.move_to_end(key)
        return _prepared_cache[key]
    prepared = PreparedDataset(base, indices)
    if size <= PREPARED_CACHE_BYTES:
        _prepared_cache[key] = prepared
        while sum(p.images.nbytes for p in _prepared_cache.values()) > PREPARED_CACHE_BYTES:
            _prepared_cache.popitem(last=False)
    return prepared


@dataclass(kw_only=True)
class Data:
    """The run's data: the seeded (or prepared) train set, its global-batch sampler, and both loaders."""

    train_ds: SeededDataset | PreparedDataset
    sampler: GlobalBatchSampler
    train_loader: DataLoader
    test_loader: DataLoader
    num_classes: int
    data_config: dict[str, Any]  # the eval transform (resolve_data_config), recorded in every checkpoint
    classes: list[str]  # the training split's class names in label order (stored in checkpoints)


def build_data(cfg: TrainConfig, info: DistInfo) -> Data:
    """Datasets and loaders: global batches cut from one permutation per epoch, test set sharded by rank.

    Raises:
        ConfigError: the (limited) training set is smaller than one global batch.
    """
    train_ds, test_ds, num_classes = build_datasets(cfg)
    check_labels(train_ds, num_classes, f"data={cfg.data} split {cfg.train_split!r}")
    check_labels(test_ds, num_classes, f"data={cfg.data} split {_test_split(cfg)!r}")
    train_idx = subset_indices(len(train_ds), cfg.limit_train, cfg.seed)
    test_idx = subset_indices(len(test_ds), cfg.limit_test, cfg.seed)
    try:
        sampler = GlobalBatchSampler(
            indices=train_idx,
            batch_size=cfg.batch_size,
            world_size=info.world_size,
            rank=info.rank,
            accum_steps=cfg.accum_steps,
            seed=cfg.seed,
        )
    except ValueError as e:
        raise ConfigError(f"batch_size={cfg.batch_size}: {e}; lower batch_size or raise limit_train") from e
    pixels = math.prod(input_shape(cfg)) * 4  # one float32 input image (or clip)
    check_bytes(
        sampler.micro * pixels,
        f"batch_size={cfg.batch_size} (accum_steps={cfg.accum_steps}) at img_size={cfg.img_size}",
        "lower img_size or batch_size, or raise accum_steps",
    )
    check_bytes(
        min(cfg.eval_batch_size, len(test_idx)) * pixels,
        f"eval_batch_size={cfg.eval_batch_size} at img_size={cfg.img_size}",
        "lower img_size or eval_batch_size",
    )
    loader_kw: dict[str, Any] = {"num_workers": cfg.num_workers, "pin_memory": info.device.type == "cuda"}
    # a dataset that batches its own way says so (segmentation pairs of several sizes stay lists)
    loader_kw["collate_fn"] = getattr(test_ds, "collate_fn", None)
    # the same tensors either way: the test transform never draws random numbers, the train one not under
    # no_aug (then SeededDataset's per-sample seeding has nothing to seed); batches are index lookups, so
    # loader workers would only add copies
    prepared_kw = {**loader_kw, "num_workers": 0, "collate_fn": collate_prepared}
    shard = ShardSampler(indices=test_idx, world_size=info.world_size, rank=info.rank)
    test_prepared = _prepare(test_ds, shard.indices, cfg)
    test_loader = DataLoader(
        test_prepared or test_ds,
        batch_size=max(1, cfg.eval_batch_size // info.world_size),
        sampler=shard,
        **(prepared_kw if test_prepared is not None else loader_kw),
    )
    train_prepared = _prepare(train_ds, train_idx, cfg) if cfg.no_aug else None
    if train_prepared is not None:
        train_ds = train_prepared
    train_loader = DataLoader(
        train_ds, batch_sampler=sampler, **(prepared_kw if train_prepared is not None else loader_kw)
    )
    classes = list(getattr(train_ds, "classes", None) or getattr(getattr(train_ds, "dataset", None), "classes", []))
    return Data(
        train_ds=train_ds,
        sampler=sampler,
        train_loader=train_loader,
        test_loader=test_loader,
        num_classes=num_classes,
        data_config=resolve_data_config(cfg),
        classes=classes,
    )


@dataclass(kw_only=True)
class Optimization:
    """Optimizer, per-step schedule, fp16 GradScaler (disabled unless amp=fp16) and optional EMA."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    ema: nn.Module | None
    steps_per_epoch: int
    total_steps: int


def build_optimization(cfg: TrainConfig, model: nn.Module, steps_per_epoch: int, device: torch.device) -> Optimization:
    """AdamW (or any timm optimizer, with layer-wise lr decay), warmup + cosine, GradScaler, EMA.

    Raises:
        ConfigError: timm does not know ``opt``, or ``layer_decay`` needs a model without ``group_matcher``.
    """
    lr, warmup_lr, min_lr = scaled_lrs(
        lr=cfg.lr, warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, batch_size=cfg.batch_size, base_batch=cfg.lr_base_batch
    )
    if cfg.layer_decay and not hasattr(model, "group_matcher"):
        raise ConfigError(
            f"layer_decay={cfg.layer_decay} needs model.group_matcher(), which {cfg.model} lacks; set layer_decay=0"
        )
    try:
        optimizer = build_optimizer(
            model,
            opt=cfg.opt,
            lr=lr,
            weight_decay=cfg.weight_decay,
            betas=cfg.betas,
            eps=cfg.eps,
            layer_decay=cfg.layer_decay or None,
        )
    except (AssertionError, ValueError, KeyError) as e:
        import timm.optim

        raise ConfigError(
            f"opt={cfg.opt!r} cannot be built ({e}); use one of timm's optimizers, e.g. "
            f"{', '.join(timm.optim.list_optimizers()[:8])} ..."
        ) from e
    total_steps = cfg.epochs * steps_per_epoch
    scheduler = build_scheduler(
        optimizer,
        lr=lr,
        warmup_lr=warmup_lr,
        min_lr=min_lr,
        total_steps=total_steps,
        warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
    )
    ema = None
    if cfg.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema_decay)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    return Optimization(
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        ema=ema,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
    )


def build_loss(cfg: TrainConfig, num_classes: int) -> tuple[Any, nn.Module]:
    """(mixup_fn or None, criterion): timm's Mixup/CutMix with soft targets, else label smoothing."""
    if cfg.mixup > 0 or cfg.cutmix > 0:
        from timm.data import Mixup
        from timm.loss import SoftTargetCrossEntropy

        mixup_fn = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            prob=cfg.mixup_prob,
            switch_prob=cfg.mixup_switch_prob,
            label_smoothing=cfg.label_smoothing,
            num_classes=num_classes,
        )
        return mixup_fn, SoftTargetCrossEntropy()
    if cfg.label_smoothing > 0:
        from timm.loss import LabelSmoothingCrossEntropy

        return None, LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing)
    return None, nn.CrossEntropyLoss()


_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_warned_emulated_bf16 = False


def resolve_amp(amp: str, device: torch.device | str) -> str:
    """The precision ``amp`` means on ``device``: ``"auto"`` is ``"bf16"`` where the device computes bf16
    natively (a CPU with AVX512-BF16 or AMX, a CUDA GPU of compute capability 8.0 or later) and ``"none"``
    (float32) elsewhere; the others are themselves. An explicit ``"bf16"`` on a CPU that emulates it warns
    once, quoting the machine profile's measured slowdown."""
    device = torch.device(device)
    if amp == "auto":
        return "bf16" if native_bf16(device) else "none"
    if amp == "bf16" and device.type == "cpu" and not native_bf16(device):
        _warn_emulated_bf16()
    return amp


def _warn_emulated_bf16() -> None:
    global _warned_emulated_bf16
    if _warned_emulated_bf16:
        return
    _warned_emulated_bf16 = True
    slowdown = machine.profile().bf16_slowdown
    cost = f"its bf16 GEMMs ran {slowdown:.1f}x slower than float32's (the machine profile)" if slowdown else ""
    warnings.warn(
        f"amp=bf16 on a CPU without native bf16 (no avx512_bf16 or amx_bf16): emulated, {cost}; "
        "amp=auto (the presets' default) trains in float32 here",
        stacklevel=3,
    )


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """bf16 / fp16 autocast on ``device``, or nothing for float32 (``amp="none"``, or ``"auto"`` where the
    device has no native bf16: :func:`resolve_amp`)."""
    amp = resolve_amp(amp, device)
    return torch.autocast(device_type=device.type, dtype=_AMP_DTYPES.get(amp, torch.bfloat16), enabled=amp != "none")


def speed_record(device: torch.device | str, amp: str) -> dict[str, Any]:
    """Which exact fast path a run takes on ``device`` (every training checkpoint stores it): the precision
    ``amp`` resolved to, the speed layer's settings and, on CPU, the float32 GEMM path and why."""
    from dataclasses import asdict

    from hiermlp.accel import settings
    from hiermlp.accel.linear import gemm_choice

    device = torch.device(device)
    record: dict[str, Any] = {
        "device": str(device),
        "amp": resolve_amp(amp, device),
        "amp_config": amp,
        "native_bf16": native_bf16(device),
        "accel": ",".join(f"{k}={v}" for k, v in asdict(settings.current()).items()),
    }
    if device.type == "cpu":
        record.update(gemm_choice())
    elif device.type == "cuda" and settings.current().attention == "auto":
        record["attention_explicit"] = machine.attention_choice(device)
    return record
