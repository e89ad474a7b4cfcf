"""The work a benchmark times: one inference batch, one training step.

Shared by the in-process timer and the memory-measuring subprocess so both run exactly the same thing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DTYPES", "autocast", "infer_step", "train_step"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """Mixed precision for ``bfloat16``/``float16`` (weights and optimizer stay float32, as in AMP
    training); a no-op for ``float32``."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[dtype])


def infer_step(
    model: nn.Module, x: torch.Tensor, dtype: str = "float32", forward: nn.Module | None = None
) -> Callable[[], object]:
    """One forward pass in eval mode under ``no_grad`` (no autograd bookkeeping).

    Not ``inference_mode``: the same model is also timed training, round-robin, and a tensor a model
    caches during an inference-mode forward (window indices, masks keyed by feature size) is an inference
    tensor that autograd then refuses to save for backward. ``no_grad`` costs the same within noise.

    Args:
        model: The module (switched to eval mode on every call, since training steps share it).
        x: Input batch.
        dtype: ``float32``, or an autocast dtype.
        forward: What to call instead of ``model`` (its ``torch.compile`` wrapper).
    """
    fwd = forward if forward is not None else model

    def step() -> object:
        model.eval()
        with torch.no_grad(), autocast(x.device, dtype):
            return fwd(x)

    return step


def train_step(
    model: nn.Module,
    x: torch.Tensor,
    num_classes: int,
    dtype: str = "float32",
    forward: nn.Module | None = None,
    opt: str = "adamw",
) -> Callable[[], object]:
    """One optimisation step: forward, cross-entropy, backward and an update by ``opt``.

    ``opt`` is a timm optimizer name (``timm.optim.create_optimizer_v2``, as the trainer and timm's
    benchmark.py build theirs): AdamW, the Swin recipe's, by default; benchmark.py's default is ``sgd``.
    Stateful optimizers create their buffers on the first step, so a warm-up step is needed before memory or
    time is representative.
    """
    from timm.optim import create_optimizer_v2

    fwd = forward if forward is not None else model
    y = torch.randint(0, num_classes, (x.shape[0],), device=x.device)
    # small lr: random data must not drive the weights to inf/nan (denormals would skew CPU timings)
    opt = create_optimizer_v2(model, opt=opt, lr=1e-5, weight_decay=0.05)

    def step() -> object:
        model.train()
        with autocast(x.device, dtype):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step
