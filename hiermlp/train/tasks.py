"""What the one trainer learns: a label per image (``task: classify``) or per pixel (``task: segment``).

The loop (:mod:`hiermlp.train.loop`) is the same for both: resume, DDP, AMP, EMA, non-finite checks and
checkpoints do not know the task. A task object supplies the rest: the loss of a micro-batch (it runs the
forward), the evaluation over a loader (summed over DDP ranks), the metrics of a history row and the score
that ranks epochs (``best.pth``) and studies.

- :class:`ClassifyTask`: cross-entropy (label smoothing, or timm's Mixup/CutMix with soft targets); top-1/top-5.
- :class:`SegmentTask`: pixel cross-entropy that skips ``ignore_index``, plus ``aux_weight`` times the
  auxiliary head's; metrics from one confusion matrix over the whole evaluation set
  (:mod:`hiermlp.train.metrics`), logits from whole images or mmseg's sliding window
  (:func:`hiermlp.models.segment.segment_logits`) at any input size. Losses and metrics take labels of any
  shape ``(B, *spatial)`` against logits ``(B, K, *spatial)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from hiermlp.models.segment import segment_logits
from hiermlp.train.build import autocast, build_loss, input_shape
from hiermlp.train.config import ConfigError, TrainConfig
from hiermlp.train.distributed import DistInfo, all_reduce_sum
from hiermlp.train.metrics import ConfusionMatrix, check_labels

__all__ = [
    "TASKS",
    "ClassifyTask",
    "SegmentTask",
    "build_task",
    "check_batch_labels",
    "evaluate",
    "segmentation_loss",
]


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, device: torch.device | str, *, amp: str = "none", info: DistInfo | None = None
) -> dict[str, float]:
    """Test loss and top-1/top-5 accuracy of a classifier over ``loader`` (summed over DDP ranks).

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


class ClassifyTask:
    """One label per image: cross-entropy (Mixup/CutMix or label smoothing as configured); top-1 and top-5."""

    name = "classify"
    score = "top1"  # the history key that ranks epochs and studies
    score_label = "top-1"
    summary_keys = ("top1", "top5")  # what an EMA evaluation adds to the row (as ema_top1, ...)

    def __init__(self, cfg: TrainConfig, num_classes: int) -> None:
        self.cfg, self.num_classes = cfg, num_classes
        self.mixup_fn, self.criterion = build_loss(cfg, num_classes)

    def check_model(self, model: nn.Module) -> None:
        if getattr(model, "task", "classify") != "classify":
            raise ConfigError(
                f"model={self.cfg.model} is a {model.task} model; task=classify needs a classifier (set "
                f"task={model.task} with a {model.task} dataset, or pick a classifier: `hiermlp list`)"
            )

    def check_batch(self, y: torch.Tensor) -> None:
        """A training batch's labels are outputs of the head (ConfigError otherwise)."""
        check_batch_labels(y, self.num_classes)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward and loss of one micro-batch (under the caller's autocast)."""
        target = y
        if self.mixup_fn is not None:
            x, target = self.mixup_fn(x, y)
        return self.criterion(model(x), target)

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, *, amp: str, info: DistInfo):
        return evaluate(model, loader, device, amp=amp, info=info)

    def metrics(self, m: dict[str, Any]) -> dict[str, Any]:
        """The row entries of an evaluation ``m`` (besides ``test_loss``)."""
        return {"top1": m["top1"], "top5": m["top5"]}

    def line(self, row: dict[str, Any]) -> str:
        return f"top1 {row['top1']:.2f} top5 {row['top5']:.2f}"


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean pixel cross-entropy of ``(B, K, *spatial)`` logits against ``(B, *spatial)`` labels, over the pixels
    not labelled ``ignore_index`` (0, with a gradient of zeros, when every pixel is ignored)."""
    check_labels(target, logits.shape[1], ignore_index)
    total = F.cross_entropy(
        logits.float(), target, ignore_index=ignore_index, reduction="sum", label_smoothing=label_smoothing
    )
    return total / (target != ignore_index).sum().clamp_min(1)


class SegmentTask:
    """One label per pixel: pixel cross-entropy (+ ``aux_weight`` x the auxiliary head's); mIoU, accuracies, Dice."""

    name = "segment"
    score = "miou"
    score_label = "mIoU"
    summary_keys = ("miou", "aacc")

    def __init__(self, cfg: TrainConfig, num_classes: int) -> None:
        self.cfg, self.num_classes = cfg, num_classes
        self.ignore_index = cfg.ignore_index
        crop = input_shape(cfg)[1:]  # the trained size per axis (T, H, W for clips)
        stride = tuple(min(cfg.slide_stride, c) for c in crop) if cfg.slide_stride else None
        self.inference = dict(mode=cfg.inference, crop=crop, stride=stride)

    def check_model(self, model: nn.Module) -> None:
        if getattr(model, "task", "classify") != "segment":
            raise ConfigError(
                f"model={self.cfg.model} is a classifier; task=segment needs a segmentation model, e.g. "
                "upernet_swin_tiny_patch4_window7_512 with model_kwargs for any backbone "
                "(`hiermlp list --task segment`)"
            )

    def check_batch(self, y: torch.Tensor) -> None:
        """A training batch's mask values are classes or ``ignore_index`` (ConfigError otherwise)."""
        check_labels(y, self.num_classes, self.ignore_index)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Decode-head loss plus ``aux_weight`` times the auxiliary head's (mmseg's ``loss_weight=0.4``)."""
        logits, aux = model(x, aux=True)
        kw = dict(ignore_index=self.ignore_index, label_smoothing=self.cfg.label_smoothing)
        loss = segmentation_loss(logits, y, **kw)
        if aux is not None and self.cfg.aux_weight:
            loss = loss + self.cfg.aux_weight * segmentation_loss(aux, y, **kw)
        return loss

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, *, amp: str, info: DistInfo | None):
        """Pixel loss and the confusion matrix's metrics over ``loader`` (summed over DDP ranks).

        A batch of one size runs at once; a list (images of several sizes) one image at a time.
        """
        device = torch.device(device)
        was_training = model.training
        model.eval()
        cm = ConfusionMatrix(self.num_classes, ignore_index=self.ignore_index, device=device)
        loss_sum, pixels, images = 0.0, 0.0, 0.0
        for xs, ys in loader:
            # a list holds images of several sizes: each runs as a batch of one
            batches = [(x[None], y[None]) for x, y in zip(xs, ys)] if isinstance(xs, list) else [(xs, ys)]
            for x, y in batches:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with autocast(device, amp):
                    logits = segment_logits(model, x, **self.inference)
                logits = logits.float()
                check_labels(y, self.num_classes, self.ignore_index)
                loss_sum += F.cross_entropy(logits, y, ignore_index=self.ignore_index, reduction="sum").item()
                pixels += float((y != self.ignore_index).sum())
                images += len(y)
                cm.update(logits.argmax(1), y)
        if info is not None and info.distributed:
            cm.all_reduce()
            loss_sum, pixels, images = all_reduce_sum([loss_sum, pixels, images], info)
        model.train(was_training)
        if images == 0:
            raise ValueError("evaluation loader is empty")
        return {"loss": loss_sum / pixels if pixels else math.nan, **cm.compute(), "count": int(images)}

    def metrics(self, m: dict[str, Any]) -> dict[str, Any]:
        return {k: m[k] for k in ("miou", "macc", "aacc", "mdice", "class_iou")}

    def line(self, row: dict[str, Any]) -> str:
        return f"mIoU {row['miou']:.2f} mAcc {row['macc']:.2f} aAcc {row['aacc']:.2f}"


TASKS = {"classify": ClassifyTask, "segment": SegmentTask}


def build_task(cfg: TrainConfig, num_classes: int) -> ClassifyTask | SegmentTask:
    """The task object of ``cfg.task``."""
    return TASKS[cfg.task](cfg, num_classes)
