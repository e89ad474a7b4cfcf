"""The training loop: :func:`train` runs a :class:`~hiermlp.train.config.TrainConfig` end to end.

:func:`train` shows the order of effects (join the process group, claim the output directory, build,
resume, wrap in DDP, train, evaluate, checkpoint); :class:`_Run` holds the pieces and its methods are the
steps of one epoch. Reproducibility rests on three rules:

- every sample's augmentation is seeded by ``(seed, epoch, index)`` and every optimizer step's model
  randomness (drop path, mixup) by ``(seed, step, rank)``, so a run resumed at any step replays exactly;
- global batches are cut from one permutation per epoch whatever the world size or accumulation
  (:class:`~hiermlp.data.sampling.GlobalBatchSampler`), so DDP and accumulation see the same samples;
- checkpoints are written atomically (:mod:`hiermlp.io`) and read with ``weights_only=True``;
  the run directory's guarantees (resume only under the same config, ``overwrite`` that keeps the old run
  until the new one has a checkpoint, a ``best.pth`` that a kill cannot leave stale) are
  :mod:`hiermlp.train.rundir`'s.

Nothing poisoned is kept: a non-finite loss, gradient or weight stops the run (or, with
``nan_policy=skip``, skips a step whose loss or gradients are non-finite) before the step's checkpoint or
metrics are written, so ``last.pth`` always holds finite weights.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import sys
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from hiermlp.data import mix_seed
from hiermlp.errors import CheckpointError, ConfigError, NonFiniteError, one_line
from hiermlp.io import atomic_save
from hiermlp.train.build import (
    autocast,
    build_data,
    build_datasets,
    build_loss,
    build_optimization,
    model_from_config,
)
from hiermlp.train.checkpoint import FORMAT, capture_rng, load_training_checkpoint, restore_rng
from hiermlp.train.config import TrainConfig, config_to_dict, save_config
from hiermlp.train.distributed import DistInfo, all_reduce_sum, cleanup_distributed, setup_distributed
from hiermlp.train.optim import restore_scheduler
from hiermlp.train.progress import Progress, Writers
from hiermlp.train.records import resolved_args
from hiermlp.train.rundir import PreviousRun, check_resume, check_same_data, claim_out_dir, repair_best

__all__ = ["TrainResult", "build_datasets", "evaluate", "model_from_config", "train"]

# a run whose every step is skipped (diverged, or an fp16 scale that never recovers) stops instead of idling
MAX_SKIPPED_IN_A_ROW = 25


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
    skipped_steps: int = 0  # optimizer steps skipped (nan_policy=skip, or an fp16 overflow)

    def summary(self) -> str:
        """One line: model, size, time, throughput and accuracy."""
        return (
            f"{self.config.model}: {self.params / 1e6:.2f}M params | {len(self.history)} epochs, "
            f"{self.train_time_s:.0f}s train, {self.img_s:.0f} img/s | test top-1 {self.top1:.2f} "
            f"top-5 {self.top5:.2f} loss {self.loss:.4f} | best top-1 {self.best_top1:.2f} "
            f"(epoch {self.best_epoch})"
            + (f" | {self.skipped_steps} steps skipped" if self.skipped_steps else "")
            + (f" | {self.out_dir}" if self.out_dir else "")
        )


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device | str, *, amp: str = "none", info: DistInfo | None = None
) -> dict[str, float]:
    """Test loss and top-1/top-5 accuracy of ``model`` over ``loader`` (summed over DDP ranks).

    Args:
        model: maps ``(B, C, H, W)`` to logits ``(B, num_classes)``.
        loader: yields ``(images, labels)``.
        device: where to run.
        amp: ``"bf16"`` / ``"fp16"`` to evaluate under autocast, ``"none"`` for float32.
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
        with autocast(device, amp):
            logits = model(x)
        logits = logits.float()
        check_batch_labels(y, logits.shape[1])
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


def check_batch_labels(y: torch.Tensor, num_classes: int) -> None:
    """A ConfigError when a batch has a label outside the head's outputs (a dataset that cannot list its
    labels up front, see :func:`hiermlp.data.check_labels`), instead of an index error deep in torch."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ConfigError(
            f"a batch has label {int(y.max()) if int(y.max()) >= num_classes else int(y.min())} but the head has "
            f"num_classes={num_classes} outputs; set num_classes=0 to take the dataset's class count, or raise it"
        )


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


# ---------------------------------------------------------------------------------------------------------
# the run


def train(cfg: TrainConfig, *, out_dir: str | Path | None = None, progress: bool = True) -> TrainResult:
    """Train ``cfg.model`` on ``cfg.data`` and evaluate after every epoch.

    Launched by ``torchrun``, each process runs this; rank 0 writes ``config.yaml``, ``metrics.jsonl``,
    ``last.pth``, ``best.pth`` (and TensorBoard events) to the output directory.

    Args:
        cfg: the run's configuration. A directory that holds another run is refused unless
            ``cfg.resume`` continues it (``"auto"``) or ``cfg.overwrite`` is true.
        out_dir: overrides ``cfg.out_dir``.
        progress: show progress and print the final summary line (rank 0); ``cfg.progress`` must also be
            true. On a terminal a tqdm bar, otherwise one line per epoch.

    Returns:
        The :class:`TrainResult`.

    Raises:
        FileNotFoundError: missing data path.
        ConfigError: unknown model or inconsistent settings; a device that is not there.
        OutputError: ``out_dir`` holds another run, or a file cannot be written (earlier files are kept).
        CheckpointError: the checkpoint to resume from is unreadable (it is left as is).
        NonFiniteError: the loss, gradients or weights became NaN/inf; the message names the step. Nothing
            of that step was written (a ``FloatingPointError``).
    """
    if out_dir is not None:
        cfg = replace(cfg, out_dir=str(out_dir))
    info = setup_distributed(cfg.device)
    try:
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        _set_deterministic(cfg.deterministic)
        _seed_all(cfg.seed)
        resume = claim_out_dir(cfg, info)
        # read (and validate) the checkpoint before anything is written, so a bad file costs nothing
        ckpt = load_training_checkpoint(resume) if resume is not None else None
        notes = check_resume(ckpt, cfg, resume) if ckpt is not None else []
        run = _Run(cfg, info, progress=progress and cfg.progress)
        if ckpt is not None:
            run.restore(ckpt, resume)
            run.last_saved = (resume, run.state.step)
            if info.is_main:
                for note in notes:
                    print(f"note: {note}", file=sys.stderr, flush=True)
                reset = repair_best(run.out, ckpt, resume)
                if reset is not None:
                    run.state.best_top1, run.state.best_epoch = reset
        return run.fit()
    finally:
        cleanup_distributed(info)


@dataclass(kw_only=True)
class _State:
    """Where the run stands; all of it goes into every checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    epoch_step: int = 0  # optimizer steps already taken in it
    step: int = 0  # optimizer steps taken in the run
    best_top1: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    partial: tuple[float, int] = (0.0, 0)  # (loss sum, count) of this epoch's steps before a mid-epoch resume
    skipped: int = 0  # optimizer steps skipped over the run


class _Run:
    """One training run's pieces, built from the config; :meth:`fit` trains them."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, *, progress: bool) -> None:
        self.cfg, self.info, self.progress = cfg, info, progress
        self.device, self.out = info.device, Path(cfg.out_dir)
        self.data = build_data(cfg, info)
        self.model = self._build_model()
        self.opt = build_optimization(cfg, self.model, self.data.sampler.steps_per_epoch, self.device)
        self.mixup_fn, self.criterion = build_loss(cfg, self.data.num_classes)
        self.state = _State()
        self.last_saved: tuple[Path, int] | None = None  # (file, step) of the latest checkpoint written
        self.previous: PreviousRun | None = None  # overwrite=true: the replaced run, until our first checkpoint
        self.skipped_in_a_row = 0
        self.n_params = sum(p.numel() for p in self.model.parameters())

    def _build_model(self) -> nn.Module:
        model = model_from_config(self.cfg, self.data.num_classes)
        if self.cfg.grad_checkpointing:
            model.set_grad_checkpointing(True)
        model = model.to(self.device)
        if self.cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    # --- resume -------------------------------------------------------------------------------------------

    def restore(self, ckpt: dict[str, Any], path: Path) -> None:
        """Continue from a training checkpoint (model, optimizer, schedule position, scaler, EMA, RNG).

        Raises:
            ConfigError: the training data is not the data the checkpoint was trained on.
            CheckpointError: the checkpoint does not fit the model or optimizer.
        """
        check_same_data(ckpt, steps_per_epoch=self.opt.steps_per_epoch, classes=self.data.classes, path=path)
        opt = self.opt
        try:
            self.model.load_state_dict(ckpt["model"])
            opt.optimizer.load_state_dict(ckpt["optimizer"])
            restore_scheduler(opt.scheduler, ckpt["scheduler"])
            if ckpt.get("scaler"):
                opt.scaler.load_state_dict(ckpt["scaler"])
            if opt.ema is not None:
                if ckpt.get("model_ema") is None:
                    raise CheckpointError("ema=true but the checkpoint has no EMA weights; resume with ema=false")
                opt.ema.module.load_state_dict(ckpt["model_ema"])
        except (RuntimeError, KeyError, ValueError) as e:
            what = one_line(e)[:600]  # torch's message lists the missing, unexpected and mismatched keys
            raise CheckpointError(
                f"{path} does not match this config/model: {what}; resume with the config it was written by"
            ) from e
        s = self.state
        s.epoch, s.epoch_step, s.step = int(ckpt["epoch"]), int(ckpt["epoch_step"]), int(ckpt["step"])
        s.best_top1, s.best_epoch = float(ckpt["best_top1"]), int(ckpt["best_epoch"])
        s.history = list(ckpt.get("history", []))
        s.skipped = int(ckpt.get("skipped_steps", 0))
        if s.epoch_step > 0:
            loss_sum, count = ckpt.get("epoch_partial_loss", (0.0, 0.0))
            s.partial = (float(loss_sum), int(count))
        if s.epoch_step >= opt.steps_per_epoch:  # a checkpoint taken after the last step of an epoch
            s.epoch, s.epoch_step, s.partial = s.epoch + 1, 0, (0.0, 0)
        restore_rng(ckpt["rng"])

    # --- checkpoints --------------------------------------------------------------------------------------

    def save(self, name: str, *, partial: tuple[float, float] = (0.0, 0.0)) -> None:
        if not self.info.is_main:
            return
        s, opt = self.state, self.opt
        path = atomic_save(
            {
                "format": FORMAT,
                "model": self.model.state_dict(),
                "model_ema": opt.ema.module.state_dict() if opt.ema is not None else None,
                "optimizer": opt.optimizer.state_dict(),
                "scheduler": opt.scheduler.state_dict(),
                "scaler": opt.scaler.state_dict(),
                "epoch": s.epoch,
                "epoch_step": s.epoch_step,
                "step": s.step,
                "best_top1": s.best_top1,
                "best_epoch": s.best_epoch,
                "history": s.history,
                "skipped_steps": s.skipped,
                "rng": capture_rng(),
                "config": config_to_dict(self.cfg),
                "data_config": self.data.data_config,  # the eval transform, for every evaluator of the weights
                "num_classes": self.data.num_classes,
                "classes": self.data.classes,  # the class map every split and evaluation uses
                "steps_per_epoch": opt.steps_per_epoch,
                "epoch_partial_loss": list(partial),  # (sum, count) of a mid-epoch checkpoint's epoch
            },
            self.out / name,
        )
        self.last_saved = (path, s.step)
        if self.previous is not None and name == "last.pth":  # the new run is safe on disk: drop the old one
            self.previous.commit()
            self.previous = None

    # --- one optimizer step -------------------------------------------------------------------------------

    def _where(self) -> str:
        s = self.state
        return (
            f"optimizer step {s.step + 1} (epoch {s.epoch + 1}, step {s.epoch_step + 1} of {self.opt.steps_per_epoch})"
        )

    def _kept(self) -> str:
        if self.last_saved is None:
            return "no checkpoint of this run was written"
        path, step = self.last_saved
        return f"{path} (step {step}) is the last good checkpoint"

    def _grad_norm(self) -> torch.Tensor:
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.cfg.clip_grad > 0:
            return torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        return torch.nn.utils.get_total_norm([p.grad for p in params])

    def _nonfinite_weights(self) -> list[str]:
        tensors = [(n, t) for n, t in self.model.state_dict().items() if t.is_floating_point()]
        # one fused norm over every tensor is finite exactly when all are (NaN and inf propagate); only a
        # non-finite total (which overflow of huge finite weights can also give) is looked into per tensor
        if bool(torch.isfinite(torch.nn.utils.get_total_norm([t for _, t in tensors]))):
            return []
        ok = torch.stack([torch.isfinite(t).all() for _, t in tensors])
        if bool(ok.all()):
            return []
        return [n for (n, _), good in zip(tensors, ok.tolist()) if not good]

    def micro_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, last: bool) -> float:
        """Forward and backward of one micro-batch; returns its loss (gradients accumulate)."""
        cfg = self.cfg
        target = y
        if self.mixup_fn is not None:
            x, target = self.mixup_fn(x, y)
        sync = contextlib.nullcontext()
        if self.info.distributed and not last:
            sync = self.ddp.no_sync()  # only the last micro-step all-reduces gradients
        with sync:
            with autocast(self.device, cfg.amp):
                loss = self.criterion(model(x), target)
            self.opt.scaler.scale(loss / cfg.accum_steps).backward()
        return loss.item()

    def optimizer_step(self, losses: list[float]) -> bool:
        """Check, then take (or skip) the optimizer step of the accumulated gradients.

        Returns:
            True when the step was taken, False when it was skipped.

        Raises:
            NonFiniteError: a NaN/inf loss or gradient under ``nan_policy=stop``, or non-finite weights
                after the update (under either policy: a step cannot be undone).
        """
        cfg, opt = self.cfg, self.opt
        opt.scaler.unscale_(opt.optimizer)
        norm = float(self._grad_norm())
        bad_loss = not all(math.isfinite(v) for v in losses)
        bad_grad = not math.isfinite(norm)
        if self.info.distributed:  # every rank decides the same
            n_loss, n_grad = all_reduce_sum([float(bad_loss), float(bad_grad)], self.info)
            bad_loss, bad_grad = n_loss > 0, n_grad > 0
        overflow = bad_grad and not bad_loss and opt.scaler.is_enabled()  # fp16: the scaler's business
        what = "gradient overflow in fp16"
        if bad_loss:
            what = f"loss is {next((v for v in losses if not math.isfinite(v)), 'non-finite on another rank')}"
        elif bad_grad and not overflow:
            what = f"gradient norm is {norm}"
        if (bad_loss or bad_grad) and not overflow and cfg.nan_policy == "stop":
            raise NonFiniteError(
                f"{what} at {self._where()}; stopped before writing anything of this step: {self._kept()}. "
                "Try a lower lr, clip_grad, amp=none, or nan_policy=skip."
            )
        taken = not (bad_loss or bad_grad)
        if taken:
            opt.scaler.step(opt.optimizer)  # plain optimizer.step() unless amp=fp16
        opt.scaler.update()  # after an fp16 overflow: a lower scale for the next step
        opt.optimizer.zero_grad(set_to_none=True)
        self.skipped_in_a_row = 0 if taken else self.skipped_in_a_row + 1
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW:
            raise NonFiniteError(
                f"{self.skipped_in_a_row} optimizer steps in a row were skipped ({what}) up to {self._where()}: "
                f"the run has diverged; {self._kept()}. Try a lower lr, clip_grad or amp=bf16/none."
            )
        bad_weights = self._nonfinite_weights()
        if bad_weights:
            raise NonFiniteError(
                f"{len(bad_weights)} weight tensors (e.g. {bad_weights[0]}) became non-finite by the end of "
                f"{self._where()}{' (its update overflowed)' if taken else ''}; stopped before writing them: "
                f"{self._kept()}. Lower lr (now {opt.optimizer.param_groups[0]['lr']:.3g})."
            )
        return taken

    # --- epochs -------------------------------------------------------------------------------------------

    def train_epoch(self, model: nn.Module, bar: Progress) -> dict[str, float]:
        """The optimizer steps of the current epoch (from ``epoch_step``, after a resume)."""
        cfg, s, data = self.cfg, self.state, self.data
        data.sampler.set_epoch(s.epoch, s.epoch_step)
        data.train_ds.set_epoch(s.epoch)
        bar.describe(f"epoch {s.epoch + 1}/{cfg.epochs}")
        loss_sum, loss_n = s.partial if self.info.is_main else (0.0, 0)
        s.partial, seen, losses = (0.0, 0), 0, []
        t0 = time.perf_counter()
        for micro, (x, y) in enumerate(data.train_loader):
            j = micro % cfg.accum_steps
            if j == 0:
                _seed_all(mix_seed(cfg.seed, s.step, self.info.rank, 2))  # drop path / mixup of this step
                losses = []
            check_batch_labels(y, self.data.num_classes)
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            last = j == cfg.accum_steps - 1
            losses.append(self.micro_step(model, x, y, last=last))
            if not last:
                continue
            taken = self.optimizer_step(losses)
            if taken:
                micro_n = len(x)
                loss_sum += sum(losses) * micro_n
                loss_n += micro_n * len(losses)
            else:
                s.skipped += 1
            seen += len(x) * len(losses) * self.info.world_size
            opt = self.opt
            with warnings.catch_warnings():  # a skipped step still advances the schedule, as timm's does
                warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"))
                opt.scheduler.step()
            s.step, s.epoch_step = s.step + 1, s.epoch_step + 1
            if opt.ema is not None and taken:
                opt.ema.update(self.model, step=s.step)
            bar.step(
                loss=f"{loss_sum / max(loss_n, 1):.4f}",
                lr=f"{opt.optimizer.param_groups[0]['lr']:.2e}",
                img_s=f"{seen / (time.perf_counter() - t0):.0f}",
            )
            if cfg.ckpt_every and s.step % cfg.ckpt_every == 0 and s.epoch_step < opt.steps_per_epoch:
                self.save("last.pth", partial=tuple(all_reduce_sum([loss_sum, float(loss_n)], self.info)))
        return {"loss_sum": loss_sum, "loss_n": float(loss_n), "seen": seen, "time": time.perf_counter() - t0}

    def end_epoch(self, stats: dict[str, float], writers: Writers | None, bar: Progress) -> None:
        """Evaluate, record the epoch's row, write last.pth (and best.pth), print the epoch's line."""
        cfg, s, opt = self.cfg, self.state, self.opt
        tr_loss_sum, tr_n = all_reduce_sum([stats["loss_sum"], stats["loss_n"]], self.info)
        m = evaluate(self.model, self.data.test_loader, self.device, amp=cfg.amp, info=self.info)
        row: dict[str, Any] = {
            "epoch": s.epoch + 1,
            "step": s.step,
            "train_loss": tr_loss_sum / max(tr_n, 1.0),
            "test_loss": m["loss"],
            "top1": m["top1"],
            "top5": m["top5"],
            "lr": opt.optimizer.param_groups[0]["lr"],
            "epoch_time_s": stats["time"],
            "img_s": stats["seen"] / stats["time"] if stats["time"] > 0 else 0.0,
            "skipped_steps": s.skipped,
        }
        if opt.ema is not None:
            em = evaluate(opt.ema.module, self.data.test_loader, self.device, amp=cfg.amp, info=self.info)
            row.update(ema_top1=em["top1"], ema_top5=em["top5"])
        s.history.append(row)
        is_best = row["top1"] > s.best_top1
        if is_best:
            s.best_top1, s.best_epoch = row["top1"], s.epoch + 1
        s.epoch, s.epoch_step = s.epoch + 1, 0
        self.save("last.pth")
        if is_best:
            self.save("best.pth")
        if writers is not None:
            writers.epoch(row)
        bar.line(
            f"epoch {row['epoch']}/{cfg.epochs} train_loss {row['train_loss']:.4f} "
            f"test_loss {row['test_loss']:.4f} top1 {row['top1']:.2f} top5 {row['top5']:.2f} "
            f"({stats['time']:.1f}s, {row['img_s']:.0f} img/s)" + (f" skipped {s.skipped} steps" if s.skipped else "")
        )

    def _wrap(self) -> nn.Module:
        """The module that runs forward: DDP around the model, then torch.compile around that (timm's order,
        so DDP's bucketing sees the compiled graph's gradients)."""
        model: nn.Module = self.model
        if self.info.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(self.model, device_ids=ids)
        self.ddp = model
        if self.cfg.compile:
            model = torch.compile(model, backend=self.cfg.compile_backend)
        return model

    def _open_outputs(self) -> Writers | None:
        if not self.info.is_main:
            return None
        if self.cfg.overwrite and self.last_saved is None:
            self.previous = PreviousRun.set_aside(self.out)
        save_config(self.cfg, self.out / "config.yaml")
        run = resolved_args(self.cfg, self.data, self.opt, params=self.n_params, world_size=self.info.world_size)
        return Writers(self.out, history=self.state.history, cfg=self.cfg, resolved=run)

    def fit(self) -> TrainResult:
        """Train the remaining epochs, evaluating and checkpointing after each."""
        cfg, s = self.cfg, self.state
        model = self._wrap()
        bar = Progress(
            enabled=self.progress and self.info.is_main, total=self.opt.total_steps, initial=s.step, desc=cfg.model
        )
        train_time, train_images = 0.0, 0
        model.train()
        writers = None
        try:
            writers = self._open_outputs()  # overwrite=true sets the replaced run aside here
            while s.epoch < cfg.epochs:
                stats = self.train_epoch(model, bar)
                train_time += stats["time"]
                train_images += stats["seen"]
                self.end_epoch(stats, writers, bar)
        except BaseException:
            if self.previous is not None:  # failed before its first checkpoint: the replaced run comes back
                if writers is not None:
                    writers.close()
                    writers = None
                self.previous.restore()
                self.previous = None
            raise
        finally:
            bar.close()
            if writers is not None:
                writers.close()
        return self._result(train_time, train_images)

    def _result(self, train_time: float, train_images: int) -> TrainResult:
        s = self.state
        if s.history:
            final = s.history[-1]
            top1, top5, loss = final["top1"], final["top5"], final["test_loss"]
        else:  # nothing left to train (e.g. resumed a finished run)
            m = evaluate(self.model, self.data.test_loader, self.device, amp=self.cfg.amp, info=self.info)
            top1, top5, loss = m["top1"], m["top5"], m["loss"]
        result = TrainResult(
            model=self.model,
            config=self.cfg,
            top1=top1,
            top5=top5,
            loss=loss,
            best_top1=max(s.best_top1, top1),
            best_epoch=s.best_epoch,
            history=s.history,
            train_time_s=train_time,
            img_s=train_images / train_time if train_time > 0 else 0.0,
            params=self.n_params,
            out_dir=self.out if self.info.is_main else None,
            skipped_steps=s.skipped,
        )
        if self.info.is_main and self.progress:
            print(result.summary(), flush=True)
        return result
