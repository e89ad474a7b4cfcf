"""FLOP counting with ``torch.utils.flop_counter``.

:func:`register_flop_formulas` adds the formulas PyTorch lacks, and :func:`count_flops` calls it before it
counts: CPU SDPA (PyTorch has formulas for its CUDA kernels only, so timm's Swin-T would count 4.35 GMACs
instead of 4.49) and the speed layer's oneDNN linears (:func:`hiermlp.accel.linear.register_flop_formulas`).
Call it yourself before making a plain ``FlopCounterMode`` (which copies the registry when it is made).

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

from hiermlp.accel.linear import register_flop_formulas as register_onednn_flop_formulas


def register_flop_formulas() -> None:
    """Register the FLOP formulas ``torch.utils.flop_counter`` lacks (CPU SDPA, the oneDNN linears); once."""
    aten = torch.ops.aten
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd not in fc.flop_registry:

        @fc.register_flop_formula(fwd, get_raw=True)
        def _sdpa_cpu_fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_flop_count(query.shape, key.shape, value.shape)

    if bwd is not None and bwd not in fc.flop_registry:

        @fc.register_flop_formula(bwd, get_raw=True)
        def _sdpa_cpu_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)

    register_onednn_flop_formulas()


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
    register_flop_formulas()
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
