"""FLOP counting with ``torch.utils.flop_counter``.

The formulas PyTorch lacks are registered beside the ops they count, at import of hiermlp: CPU SDPA
(``hiermlp.accel.attention``; PyTorch has formulas for the CUDA kernels only, so timm's Swin-T would count
4.35 GMACs instead of 4.49) and the oneDNN linears (``hiermlp.accel.linear``). A plain ``FlopCounterMode``
therefore counts hiermlp (and timm) models correctly; this module only adds the convenience wrappers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import flop_counter as fc

import hiermlp.accel  # noqa: F401 - registers the FLOP formulas PyTorch lacks

_aten = torch.ops.aten


def count_flops(
    model: nn.Module,
    input_size: tuple[int, ...] = (3, 224, 224),
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
) -> int:
    """FLOPs of one forward pass (a multiply-add counts 2) at ``(batch_size, *input_size)``.

    Runs the model under ``no_grad`` in eval mode on a zero input; the mode is restored after.
    """
    was_training = model.training
    model.eval()
    x = torch.zeros((batch_size, *input_size), device=device)
    try:
        with torch.no_grad(), fc.FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops()


def count_gmacs(model: nn.Module, input_size: tuple[int, ...] = (3, 224, 224), **kwargs) -> float:
    """Giga multiply-accumulates per image, the unit papers call "FLOPs" (FLOPs / 2 / 1e9)."""
    batch_size = kwargs.get("batch_size", 1)
    return count_flops(model, input_size, **kwargs) / 2 / 1e9 / batch_size
