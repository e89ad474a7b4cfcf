"""The training loop: :func:`train` runs a :class:`~hiermlp.train.config.TrainConfig` end to end.

One function owns the whole run so the order of effects (seed, build, resume, wrap in DDP, train, evaluate,
checkpoint) is visible in one place. Reproducibility rests on three rules:

- every sample's augmentation is seeded by ``(seed, epoch, index)`` and every optimizer step's model
  randomness (drop path, mixup) by ``(seed, step, rank)``, so a run resumed at any step replays exactly;
- global batches are cut from one permutation per epoch whatever the world size or accumulation
  (:class:`~hiermlp.data.sampling.GlobalBatchSampler`), so DDP and accumulation do not change the updates;
- checkpoints are written atomically and read with ``weights_only=True``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hiermlp.data import (
    GlobalBatchSampler,
    SeededDataset,
    ShardSampler,
    build_dataset,
    build_transform,
    dataset_stats,
    mix_seed,
    subset_indices,
)
from hiermlp.errors import CheckpointError
from hiermlp.train.checkpoint import FORMAT, atomic_save, capture_rng, load_training_checkpoint, restore_rng
from hiermlp.train.config import ConfigError, TrainConfig, config_to_dict, save_config
from hiermlp.train.distributed import DistInfo, all_reduce_sum, cleanup_distributed, setup_distributed
from hiermlp.train.optim import build_optimizer, build_scheduler, scaled_lrs

__all__ = ["TrainResult", "build_datasets", "build_model", "evaluate", "train"]


@dataclass(kw_only=True)
class TrainResult:
    """What a finished run returns (rank 0 has the full picture; other ranks get the same metrics)."""

    model: nn.Module  # the trained model (un-wrapped, on its training device)
    config: TrainConfig  # the resolved config of the run
    top1: float  # final test top-1 accuracy, percent
    top5: float  # final test top-5 accuracy, percent
    loss: float  # final test cross-entropy
    best_top1: float  # best test top-1 over the epochs, percent
    best_epoch: int  # epoch (1-based) of best_top1
    history: list[dict[str, Any]] = field(default_factory=list)  # one metrics dict per epoch
    train_time_s: float = 0.0  # wall time of the training epochs of this process (excl. eval)
    img_s: float = 0.0  # training throughput over the run, images per second (all ranks)
    params: int = 0  # number of model parameters
    out_dir: Path | None = None  # where checkpoints and metrics were written (None: nothing written)

    def summary(self) -> str:
        """One line: model, size, time, throughput and accuracy."""
        return (
            f"{self.config.model}: {self.params / 1e6:.2f}M params | {len(self.history)} epochs, "
            f"{self.train_time_s:.0f}s train, {self.img_s:.0f} img/s | test top-1 {self.top1:.2f} "
            f"top-5 {self.top5:.2f} loss {self.loss:.4f} | best top-1 {self.best_top1:.2f} "
            f"(epoch {self.best_epoch})" + (f" | {self.out_dir}" if self.out_dir else "")
        )


# ---------------------------------------------------------------------------------------------------------
# building blocks


def _plain(v: Any) -> Any:
    """YAML lists -> tuples (hiermlp/timm model kwargs such as depths are tuples)."""
    if isinstance(v, list):
        return tuple(_plain(x) for x in v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """Create ``cfg.model`` from hiermlp's registry, or from timm's if hiermlp does not know the name.

    ``cfg.model_kwargs`` override the variant (and ``img_size``/``in_chans``/``drop_path_rate``).

    Raises:
        ConfigError: the name is in neither registry (with close names).
    """
    kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "in_chans": cfg.in_chans,
        "drop_path_rate": cfg.drop_path_rate,
        "img_size": cfg.img_size,
        **_plain(cfg.model_kwargs),
    }
    from hiermlp.models.registry import UnknownModelError, resolve_source

    try:
        source, name = resolve_source(cfg.model)
    except UnknownModelError as e:  # a config error of this run: report it as one, naming the key
        raise ConfigError(f"model: {e}") from e
    if source == "hiermlp":
        import hiermlp

        return hiermlp.create_model(name, pretrained=cfg.pretrained, **kwargs)
    import timm

    try:
        return timm.create_model(name, pretrained=cfg.pretrained, **kwargs)
    except TypeError as e:
        if "img_size" not in str(e) or "img_size" in cfg.model_kwargs:
            raise
        kwargs.pop("img_size")  # e.g. CNNs take any input size and have no img_size argument
        return timm.create_model(name, pretrained=cfg.pretrained, **kwargs)


def build_datasets(cfg: TrainConfig) -> tuple[SeededDataset, Any, int]:
    """(train dataset, test dataset, num_classes) with the config's transforms.

    Raises:
        FileNotFoundError: the data path does not exist (the message names it).
    """
    mode = "L" if cfg.in_chans == 1 else "RGB"
    mean, std = dataset_stats(cfg.data, cfg.in_chans)
    if cfg.mean:
        mean = cfg.mean * cfg.in_chans if len(cfg.mean) == 1 else cfg.mean
        std = (cfg.std * cfg.in_chans if len(cfg.std) == 1 else cfg.std) if cfg.std else mean
    if len(mean) != cfg.in_chans or len(std) != cfg.in_chans:
        raise ConfigError(f"mean/std have {len(mean)}/{len(std)} values but in_chans={cfg.in_chans}")
    common = {"img_size": cfg.img_size, "mean": mean, "std": std, "interpolation": cfg.interpolation}
    train_tf = build_transform(
        is_training=True,
        crop_pct=cfg.crop_pct,
        no_aug=cfg.no_aug,
        scale=cfg.scale,
        hflip=cfg.hflip,
        color_jitter=cfg.color_jitter,
        auto_augment=cfg.auto_augment,
        reprob=cfg.reprob,
        **common,
    )
    test_tf = build_transform(is_training=False, crop_pct=cfg.crop_pct, **common)
    test_split = cfg.test_split or ("val" if cfg.data == "folder" else "test")
    data_kw = {"root": cfg.data_root, "mode": mode, "corrupt": cfg.corrupt}
    train_ds = build_dataset(cfg.data, split=cfg.train_split, transform=train_tf, **data_kw)
    test_ds = build_dataset(cfg.data, split=test_split, transform=test_tf, **data_kw)
    num_classes = cfg.num_classes or len(train_ds.classes)
    return SeededDataset(train_ds, seed=cfg.seed), test_ds, num_classes


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp == "bf16")


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device | str, *, amp: str = "none", info: DistInfo | None = None
) -> dict[str, float]:
    """Test loss and top-1/top-5 accuracy of ``model`` over ``loader`` (summed over DDP ranks).

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, num_classes)``.
        loader: yields ``(images, labels)``.
        device: where to run.
        amp: ``"bf16"`` to evaluate under bf16 autocast, ``"none"`` for float32.
        info: the process group to reduce over (None: this process only).

    Returns:
        ``{"loss", "top1", "top5", "count"}``; accuracies in percent.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loss_sum, c1, c5, n = 0.0, 0.0, 0.0, 0.0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit = top.eq(y[:, None])
        c1 += hit[:, :1].sum().item()
        c5 += hit.any(dim=1).sum().item()
        n += len(y)
    if info is not None:
        loss_sum, c1, c5, n = all_reduce_sum([loss_sum, c1, c5, n], info)
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluation loader is empty")
    return {"loss": loss_sum / n, "top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "count": int(n)}


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _set_deterministic(on: bool) -> None:
    torch.backends.cudnn.benchmark = not on
    torch.backends.cudnn.deterministic = on
    # warn_only: a few kernels have no deterministic version; we prefer a warning to a crash
    torch.use_deterministic_algorithms(on, warn_only=True)


class _Writers:
    """Rank-0 outputs: metrics.jsonl and (when importable) TensorBoard."""

    def __init__(self, out_dir: Path | None, *, tensorboard: bool, history: list[dict[str, Any]]) -> None:
        self.out_dir, self.tb = out_dir, None
        if out_dir is None:
            return
        # rewrite from the checkpoint's history so a resumed run has no lines from lost epochs
        with open(out_dir / "metrics.jsonl", "w") as f:
            f.writelines(json.dumps(h) + "\n" for h in history)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional dependency
                SummaryWriter = None
            if SummaryWriter is not None:
                self.tb = SummaryWriter(log_dir=str(out_dir / "tb"))

    def epoch(self, row: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------------------------------------
# the run


def train(cfg: TrainConfig, *, out_dir: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` and evaluate after every epoch.

    Launched by ``torchrun``, each process runs this; rank 0 writes ``config.yaml``, ``metrics.jsonl``,
    ``last.pth``, ``best.pth`` (and TensorBoard events) to the output directory.

    Args:
        cfg: the run's configuration.
        out_dir: overrides ``cfg.out_dir``.
        progress: show the tqdm bar and print the final summary line (rank 0); ``cfg.progress`` must
            also be true.

    Returns:
        The :class:`TrainResult`.

    Raises:
        FileNotFoundError: missing data path.
        ConfigError: unknown model or inconsistent settings.
        CheckpointError: the checkpoint to resume from is unreadable (it is left as is).
        FloatingPointError: the loss became NaN/inf; the message names the step.
    """
    if out_dir is not None:
        cfg = replace(cfg, out_dir=str(out_dir))
    info = setup_distributed(cfg.device)
    try:
        return _train(cfg, info, progress=progress and cfg.progress)
    finally:
        cleanup_distributed(info)


def _train(cfg: TrainConfig, info: DistInfo, *, progress: bool) -> TrainResult:
    device = info.device
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    _set_deterministic(cfg.deterministic)
    _seed_all(cfg.seed)

    # resume: read (and validate) the checkpoint before anything is written, so a bad file costs nothing
    ckpt = None
    if cfg.resume:
        path = out / "last.pth" if cfg.resume == "auto" else Path(cfg.resume)
        if cfg.resume != "auto" or path.exists():
            ckpt = load_training_checkpoint(path)

    # data
    train_ds, test_ds, num_classes = build_datasets(cfg)
    train_idx = subset_indices(len(train_ds), cfg.limit_train, cfg.seed)
    test_idx = subset_indices(len(test_ds), cfg.limit_test, cfg.seed)
    sampler = GlobalBatchSampler(
        indices=train_idx,
        batch_size=cfg.batch_size,
        world_size=info.world_size,
        rank=info.rank,
        accum_steps=cfg.accum_steps,
        seed=cfg.seed,
    )
    loader_kw = {"num_workers": cfg.num_workers, "pin_memory": device.type == "cuda"}
    train_loader = DataLoader(train_ds, batch_sampler=sampler, **loader_kw)
    eval_bs = max(1, cfg.eval_batch_size // info.world_size)
    test_loader = DataLoader(
        test_ds,
        batch_size=eval_bs,
        sampler=ShardSampler(indices=test_idx, world_size=info.world_size, rank=info.rank),
        **loader_kw,
    )

    # model, optimizer, schedule
    model = build_model(cfg, num_classes).to(device)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    n_params = sum(p.numel() for p in model.parameters())
    lr, warmup_lr, min_lr = scaled_lrs(
        lr=cfg.lr,
        warmup_lr=cfg.warmup_lr,
        min_lr=cfg.min_lr,
        batch_size=cfg.batch_size,
        base_batch=cfg.lr_base_batch,
    )
    optimizer = build_optimizer(model, opt=cfg.opt, lr=lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.eps)
    steps_per_epoch = sampler.steps_per_epoch
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

    mixup_fn, criterion = None, None
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
        criterion = SoftTargetCrossEntropy()
    elif cfg.label_smoothing > 0:
        from timm.loss import LabelSmoothingCrossEntropy

        criterion = LabelSmoothingCrossEntropy(smoothing=cfg.label_smoothing)
    else:
        criterion = nn.CrossEntropyLoss()

    # state to continue from
    epoch, epoch_step, step, best_top1, best_epoch = 0, 0, 0, -1.0, 0
    history: list[dict[str, Any]] = []
    resumed_partial: tuple[float, int] | None = None
    if ckpt is not None:
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if ema is not None:
                if ckpt.get("model_ema") is None:
                    raise CheckpointError("ema=true but the checkpoint has no EMA weights")
                ema.module.load_state_dict(ckpt["model_ema"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(f"checkpoint does not match this config/model: {e}") from e
        epoch, epoch_step, step = int(ckpt["epoch"]), int(ckpt["epoch_step"]), int(ckpt["step"])
        best_top1, best_epoch = float(ckpt["best_top1"]), int(ckpt["best_epoch"])
        history = list(ckpt.get("history", []))
        if epoch_step > 0:
            s_, n_ = ckpt.get("epoch_partial_loss", (0.0, 0.0))
            resumed_partial = (float(s_), int(n_))
        restore_rng(ckpt["rng"])
    if epoch_step >= steps_per_epoch:  # a checkpoint taken after the last step of an epoch
        epoch, epoch_step = epoch + 1, 0

    ddp_model: nn.Module = model
    if info.distributed:
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    writers = None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        writers = _Writers(out, tensorboard=cfg.tensorboard, history=history)

    def checkpoint(name: str, *, at_epoch: int, at_epoch_step: int, partial: tuple = (0.0, 0.0)) -> None:
        if not info.is_main:
            return
        atomic_save(
            {
                "format": FORMAT,
                "model": model.state_dict(),
                "model_ema": ema.module.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": at_epoch,
                "epoch_step": at_epoch_step,
                "step": step,
                "best_top1": best_top1,
                "best_epoch": best_epoch,
                "history": history,
                "rng": capture_rng(),
                "config": config_to_dict(cfg),
                "num_classes": num_classes,
                "epoch_partial_loss": list(partial),  # (sum, count) of a mid-epoch checkpoint's epoch
            },
            out / name,
        )

    bar = tqdm(
        total=total_steps,
        initial=step,
        disable=not (progress and info.is_main),
        dynamic_ncols=True,
        unit="step",
        desc=cfg.model,
    )
    train_time, train_images = 0.0, 0
    ddp_model.train()
    try:
        while epoch < cfg.epochs:
            sampler.set_epoch(epoch, epoch_step)
            train_ds.set_epoch(epoch)
            bar.set_description(f"epoch {epoch + 1}/{cfg.epochs}")
            loss_sum, loss_n, seen = 0.0, 0, 0
            if resumed_partial is not None:  # the loss of the steps before a mid-epoch resume
                loss_sum, loss_n = resumed_partial if info.is_main else (0.0, 0)
                resumed_partial = None
            t0 = time.perf_counter()
            for micro, (x, y) in enumerate(train_loader):
                j = micro % cfg.accum_steps
                if j == 0:
                    _seed_all(mix_seed(cfg.seed, step, info.rank, 2))  # drop path / mixup of this step
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                target = y
                if mixup_fn is not None:
                    x, target = mixup_fn(x, y)
                last_micro = j == cfg.accum_steps - 1
                sync = contextlib.nullcontext()
                if info.distributed and not last_micro:
                    sync = ddp_model.no_sync()  # only the last micro-step all-reduces gradients
                with sync:
                    with _autocast(device, cfg.amp):
                        loss = criterion(ddp_model(x), target)
                    (loss / cfg.accum_steps).backward()
                loss_value = loss.item()
                bad = not math.isfinite(loss_value)
                if info.distributed and last_micro:
                    bad = all_reduce_sum([float(bad)], info)[0] > 0  # every rank stops together
                if bad:
                    raise FloatingPointError(
                        f"loss is {loss_value} at optimizer step {step + 1} (epoch {epoch + 1}, "
                        f"step {epoch_step + 1} of {steps_per_epoch}); stopping. Try a lower lr, "
                        "clip_grad, or amp=none."
                    )
                loss_sum += loss_value * len(x)
                loss_n += len(x)
                seen += len(x) * info.world_size
                if not last_micro:
                    continue
                if cfg.clip_grad > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                epoch_step += 1
                if ema is not None:
                    ema.update(model, step=step)
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss_sum / loss_n:.4f}",
                    lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                    img_s=f"{seen / elapsed:.0f}",
                    refresh=False,
                )
                if cfg.ckpt_every and step % cfg.ckpt_every == 0 and epoch_step < steps_per_epoch:
                    partial = all_reduce_sum([loss_sum, float(loss_n)], info)
                    checkpoint("last.pth", at_epoch=epoch, at_epoch_step=epoch_step, partial=tuple(partial))
            epoch_time = time.perf_counter() - t0
            train_time += epoch_time
            train_images += seen

            # epoch metrics (all ranks take part in the reductions)
            tr_loss_sum, tr_n = all_reduce_sum([loss_sum, float(loss_n)], info)
            metrics = evaluate(model, test_loader, device, amp=cfg.amp, info=info)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "step": step,
                "train_loss": tr_loss_sum / max(tr_n, 1.0),
                "test_loss": metrics["loss"],
                "top1": metrics["top1"],
                "top5": metrics["top5"],
                "lr": optimizer.param_groups[0]["lr"],
                "epoch_time_s": epoch_time,
                "img_s": seen / epoch_time if epoch_time > 0 else 0.0,
            }
            if ema is not None:
                ema_metrics = evaluate(ema.module, test_loader, device, amp=cfg.amp, info=info)
                row.update(ema_top1=ema_metrics["top1"], ema_top5=ema_metrics["top5"])
            history.append(row)
            is_best = row["top1"] > best_top1
            if is_best:
                best_top1, best_epoch = row["top1"], epoch + 1
            epoch, epoch_step = epoch + 1, 0
            checkpoint("last.pth", at_epoch=epoch, at_epoch_step=0)
            if is_best:
                checkpoint("best.pth", at_epoch=epoch, at_epoch_step=0)
            if writers is not None:
                writers.epoch(row)
            if info.is_main and progress:
                bar.write(
                    f"epoch {row['epoch']}/{cfg.epochs} train_loss {row['train_loss']:.4f} "
                    f"test_loss {row['test_loss']:.4f} top1 {row['top1']:.2f} top5 {row['top5']:.2f} "
                    f"({epoch_time:.1f}s, {row['img_s']:.0f} img/s)"
                )
    finally:
        bar.close()
        if writers is not None:
            writers.close()

    if history:
        final = history[-1]
        top1, top5, loss = final["top1"], final["top5"], final["test_loss"]
    else:  # nothing left to train (e.g. resumed a finished run)
        m = evaluate(model, test_loader, device, amp=cfg.amp, info=info)
        top1, top5, loss = m["top1"], m["top5"], m["loss"]
    result = TrainResult(
        model=model,
        config=cfg,
        top1=top1,
        top5=top5,
        loss=loss,
        best_top1=max(best_top1, top1),
        best_epoch=best_epoch,
        history=history,
        train_time_s=train_time,
        img_s=train_images / train_time if train_time > 0 else 0.0,
        params=n_params,
        out_dir=out if info.is_main else None,
    )
    if info.is_main and progress:
        print(result.summary(), flush=True)
    return result
