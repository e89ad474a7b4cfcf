"""Segmentation metrics from an accumulated confusion matrix (mmsegmentation's definitions).

Per-batch means of per-batch mIoUs are wrong (a class's IoU is a ratio of totals), so every batch adds its
counts to one ``(K, K)`` matrix, summed over DDP ranks, and the metrics are read from the totals:

- per-class IoU = intersection / union = ``M[c, c] / (M[c, :].sum() + M[:, c].sum() - M[c, c])``;
- mIoU = the mean IoU over the classes present (in the labels or the predictions: union > 0; mmseg's nanmean);
- per-class accuracy = ``M[c, c] / M[c, :].sum()``, mAcc its mean over classes present in the labels;
- aAcc (pixel accuracy) = ``trace(M) / M.sum()``; per-class Dice = ``2 M[c, c] / (M[c, :].sum() + M[:, c].sum())``.

Pixels labelled ``ignore_index`` count nowhere. Rows are true classes, columns predictions. Labels may have any
shape (2-D maps, 3-D volumes), predictions the same shape.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from hiermlp.errors import ConfigError

__all__ = ["ConfusionMatrix", "check_labels"]


def check_labels(target: torch.Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise a one-line error when a label is neither a class index nor ``ignore_index``.

    Raises:
        ConfigError: names the offending value and the two settings that could explain it.
    """
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise ConfigError(
            f"a mask holds label {value}, which is neither a class (0..{num_classes - 1}) nor ignore_index="
            f"{ignore_index}: set num_classes to the dataset's class count or ignore_index to its void label"
        )


class ConfusionMatrix:
    """A ``(num_classes, num_classes)`` int64 count of (true, predicted) pixel pairs.

    Args:
        num_classes: K.
        ignore_index: Labels with this value are left out.
        device: Where the counts live (that of the predictions).
    """

    def __init__(self, num_classes: int, *, ignore_index: int = 255, device: torch.device | str = "cpu") -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.mat = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add the pixels of ``pred`` and ``target`` (class indices, the same shape, any shape)."""
        if pred.shape != target.shape:
            raise ConfigError(f"predictions {tuple(pred.shape)} and labels {tuple(target.shape)} differ in shape")
        check_labels(target, self.num_classes, self.ignore_index)
        keep = target != self.ignore_index
        k = self.num_classes
        pairs = target[keep].to(torch.int64) * k + pred[keep].to(torch.int64)
        self.mat += torch.bincount(pairs, minlength=k * k).reshape(k, k).to(self.mat.device)

    def all_reduce(self) -> None:
        """Sum the counts over the ranks of the default process group (nothing when there is none)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(self.mat, op=dist.ReduceOp.SUM)

    def compute(self) -> dict[str, Any]:
        """``miou``, ``macc``, ``aacc``, ``mdice`` in percent, ``class_iou`` (percent per class, None where the
        class is absent from labels and predictions), and ``pixels`` (counted pixels)."""
        m = self.mat.double()
        inter = m.diagonal()
        label, pred = m.sum(1), m.sum(0)
        union = label + pred - inter
        iou = _ratio(inter, union)
        acc = _ratio(inter, label)
        dice = _ratio(2 * inter, label + pred)
        total = float(m.sum())
        return {
            "miou": _nanmean(iou),
            "macc": _nanmean(acc),
            "aacc": 100.0 * float(inter.sum()) / total if total else math.nan,
            "mdice": _nanmean(dice),
            "class_iou": [None if math.isnan(v) else v for v in iou],
            "pixels": int(total),
        }


def _ratio(num: torch.Tensor, den: torch.Tensor) -> list[float]:
    """Elementwise ``100 * num / den``, NaN where ``den`` is 0."""
    return [100.0 * float(n) / float(d) if d > 0 else math.nan for n, d in zip(num, den)]


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan
