"""Optimizer and learning-rate schedule.

AdamW (or any timm optimizer) with weight decay off for 1-D parameters (norms), biases and every name in
``model.no_weight_decay()`` (relative position tables, position embeddings), through timm's
``create_optimizer_v2``. The schedule is per optimizer step: linear warmup from ``warmup_lr`` to ``lr``,
then cosine to ``min_lr``; all three are scaled linearly by ``batch_size / lr_base_batch`` (the Swin
recipe: 5e-4 per 512 images).
"""

from __future__ import annotations

import math

import torch
from timm.optim import create_optimizer_v2
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["build_optimizer", "build_scheduler", "lr_factor", "restore_scheduler", "scaled_lrs"]


def scaled_lrs(*, lr: float, warmup_lr: float, min_lr: float, batch_size: int, base_batch: int) -> tuple:
    """(lr, warmup_lr, min_lr) scaled by ``batch_size / base_batch`` (unscaled when base_batch is 0)."""
    s = batch_size / base_batch if base_batch > 0 else 1.0
    return lr * s, warmup_lr * s, min_lr * s


def build_optimizer(
    model: nn.Module,
    *,
    opt: str = "adamw",
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """timm optimizer with no decay on norms, biases and ``model.no_weight_decay()`` names.

    ``layer_decay`` (e.g. 0.9) is timm's layer-wise lr decay: ``model.group_matcher()`` numbers the layers
    from the stem to the head and layer ``i`` of ``L`` gets ``lr * layer_decay ** (L - i)``. timm stores that
    factor as each group's ``lr_scale`` and leaves applying it to its schedulers; hiermlp's schedule scales
    each group's own initial lr, so the factor is folded into it here.
    """
    kwargs: dict = {"betas": tuple(betas), "eps": eps} if opt.lower() in ("adamw", "adam", "nadamw") else {}
    if opt.lower() in ("adamw", "adam") and _fusable(model):
        # torch's fused kernel: one C++ loop per step instead of the per-tensor Python loop torch picks on
        # CPU (the same update to float rounding; tests/test_train_recipes.py checks it against the loop)
        kwargs["fused"] = True
    # filter_bias_and_bn=True is timm's param_groups_weight_decay: 1-D params + no_weight_decay() names
    optimizer = create_optimizer_v2(
        model, opt=opt, lr=lr, weight_decay=weight_decay, filter_bias_and_bn=True, layer_decay=layer_decay, **kwargs
    )
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return optimizer


def _fusable(model: nn.Module) -> bool:
    """Every trainable parameter is a floating tensor on CPU or CUDA (where torch has fused AdamW)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, start: float, end: float) -> float:
    """Multiplier of the peak lr at optimizer step ``step``: linear ``start -> 1`` then cosine ``1 -> end``.

    Args:
        step: optimizer steps taken so far.
        total_steps: steps of the whole run.
        warmup_steps: length of the linear warmup.
        start: warmup_lr / lr.
        end: min_lr / lr.
    """
    if step < warmup_steps:
        return start + (1.0 - start) * step / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    lr: float,
    warmup_lr: float,
    min_lr: float,
    total_steps: int,
    warmup_steps: int,
) -> LambdaLR:
    """Per-step warmup + cosine as a ``LambdaLR`` (its state dict is plain numbers, safe for weights_only).

    Every parameter group follows the same multiplier of its own initial lr (layer decay keeps its ratios).
    """
    start, end = (warmup_lr / lr, min_lr / lr) if lr > 0 else (1.0, 1.0)

    def fn(step: int) -> float:
        return lr_factor(step, total_steps=total_steps, warmup_steps=warmup_steps, start=start, end=end)

    return LambdaLR(optimizer, fn)


def restore_scheduler(scheduler: LambdaLR, state: dict) -> None:
    """Load a checkpoint's schedule position, keeping this run's lrs.

    ``LambdaLR.load_state_dict`` would bring back the old run's base lrs, so ``resume=auto lr=1e-3`` would
    silently continue at the old rate. The step count comes from the checkpoint; the base lrs, warmup and
    cosine come from the current config (identical values when the config is unchanged, so an exact resume
    stays exact).
    """
    base_lrs = list(scheduler.base_lrs)
    scheduler.load_state_dict(state)
    scheduler.base_lrs = base_lrs
    for group, base, fn in zip(scheduler.optimizer.param_groups, base_lrs, scheduler.lr_lambdas):
        group["initial_lr"] = base
        group["lr"] = base * fn(scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]
