"""FLOP counting with ``torch.utils.flop_counter`` that is right on every device.

PyTorch registers FLOP formulas for the CUDA SDPA kernels but not for the CPU one
(``aten._scaled_dot_product_flash_attention_for_cpu``), so on CPU attention would count as zero
(timm's Swin-T on its SDPA path counts 4.35 GMACs instead of 4.49). We register the same formula
PyTorch uses for the CUDA kernels, once, at import.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils import flop_counter as fc

_aten = torch.ops.aten


def _register_cpu_sdpa() -> None:
    fwd = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(_aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None and fwd not in fc.flop_registry:

        @fc.register_flop_formula(fwd, get_raw=True)
        def _sdpa_cpu_fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_flop_count(query.shape, key.shape, value.shape)

    if bwd is not None and bwd not in fc.flop_registry:

        @fc.register_flop_formula(bwd, get_raw=True)
        def _sdpa_cpu_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            return fc.sdpa_backward_flop_count(grad_out.shape, query.shape, key.shape, value.shape)


_register_cpu_sdpa()


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
