"""FLOP counting with ``torch.utils.flop_counter``.

The formulas PyTorch lacks are registered beside the ops they count, at import of hiermlp: CPU SDPA
(``hiermlp.accel.attention``; PyTorch has formulas for the CUDA kernels only, so timm's Swin-T would count
4.35 GMACs instead of 4.49) and the oneDNN linears (``hiermlp.accel.linear``). A plain ``FlopCounterMode``
therefore counts hiermlp (and timm) models correctly; this module only adds the convenience wrappers.

One convention for every family: a multiply-add of a tensor product counts one MAC (linear maps, every
convolution, grouped and depthwise ones by their real kernel, (batched) matrix products such as sMLPNet's
row/column maps, attention's two products); elementwise ops, norms, activations, softmax, pooling and pure
reads (cyclic shifts, Cycle FC's and AS-MLP's channel shifts, padding, gathers) count zero. Cycle FC's
deformable-conv formulation is a read followed by a CxC linear map: the read is free, the map counts C^2 per
token, as the official 1x1 convolution does. Every zoo row with a paper figure is within 2% of it under this count (its
test checks it), except Wave-MLP-T and -T-dw: their own code has 2.4615 and 2.1631
GMACs of products (by hand too, tests/test_literature.py), 2.6% and 3.0% above the papers' 2.4 and 2.1, and
the tools that add norms and pooling count more still (thop, which the official README installs: 2.478 and
2.179; fvcore: 2.471 and 2.172).
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
