"""FLOP counting with ``torch.utils.flop_counter`` that is right on every device.

PyTorch registers FLOP formulas for the CUDA SDPA kernels but not for the CPU one
(``aten._scaled_dot_product_flash_attention_for_cpu``), so on CPU attention would count as zero
(timm's Swin-T on its SDPA path counts 4.35 GMACs instead of 4.49). We register the same formula
PyTorch uses for the CUDA kernels, once, at import; likewise for the oneDNN linear kernels that
hiermlp's CPU linears call (``mkldnn::_linear_pointwise`` and ``hiermlp::onednn_linear``), which
PyTorch's counter would also count as zero.
"""

from __future__ import annotations

import math

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


def _register_onednn_linear() -> None:
    import hiermlp.layers.linear  # noqa: F401 - registers hiermlp::onednn_linear

    def formula(x, *args, out_shape=None, **kwargs) -> int:
        # _linear_pointwise(x, W, B, attr, ...) and hiermlp::onednn_linear(x, W, B, activation, residual) carry
        # a string third; _linear_pointwise.binary(x, other, W, B, attr) has the weight one place later
        weight = args[0] if isinstance(args[2], str) else args[1]
        return 2 * math.prod(x.shape) * weight.shape[0]

    packets = [torch.ops.hiermlp.onednn_linear]
    pointwise = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if pointwise is not None:
        packets.append(pointwise)
    for packet in packets:
        if packet not in fc.flop_registry:
            fc.register_flop_formula(packet, get_raw=True)(formula)


_register_onednn_linear()


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
