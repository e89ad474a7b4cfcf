"""The speed layer: faster implementations of the plain modules' functions, applied by one mechanism.

:func:`accelerate` swaps the class of every plain module that has a fast twin (``nn.Linear`` -> :class:`FastLinear`,
timm ``Mlp`` -> :class:`FastMlp`, ``WindowAttention`` -> :class:`FastWindowAttention`, ``HierBlock`` ->
:class:`FastHierBlock`, ``HierStage`` -> :class:`FastHierStage`, ``ConvCL`` -> :class:`FastConvCL`, UNETR's
``UnetConv3d``, ``nn.ConvTranspose3d`` and ``nn.InstanceNorm3d`` -> their channels-last twins
:class:`FastUnetConv3d`, :class:`FastConvTranspose3d`, :class:`FastInstanceNorm3d`); parameters, buffers, state-dict
keys and hooks stay as they are. The twin of a hiermlp module overrides a narrow step of its plain class (the
block's channel-MLP residual, the stage's loop over its blocks, the attention kernel, the convolution), never the
forward that composes them, so a change to a plain module holds on both paths; torch's and timm's modules
(``nn.Linear``, ``Mlp``, ``nn.ConvTranspose3d``, ``nn.InstanceNorm3d``), which have no such steps, get a forward of
their own. Only modules of exactly those classes are swapped, so a subclass, a wrapped or a replaced module (LoRA,
quantisation) keeps its own forward. :func:`plain` swaps back. ``hiermlp.create_model`` accelerates the models it
builds unless ``SETTINGS.enabled`` is off (``HIERMLP_ACCEL=0``). Every fast path is tested equal to the plain one,
forward and backward (tests/test_fast_paths.py, tests/test_linear.py). Each lever is kept only where a measurement
shows it pays (benchmarks/perf_cpu.py, benchmarks/perf_gpu.py). Nothing runs at import: the oneDNN probe and the
machine profile (:mod:`hiermlp.accel.machine`: which float32 GEMM path is fastest here) run on first use.
:func:`compile_model` is ``torch.compile`` with static sizes and the batch marked dynamic.
"""

from __future__ import annotations

from timm.layers import Mlp, register_notrace_module
from torch import nn

from hiermlp.accel import settings
from hiermlp.accel.attention import FastGlobalAttention, FastWindowAttention
from hiermlp.accel.block import FastHierBlock, FastHierStage
from hiermlp.accel.compiling import compile_model
from hiermlp.accel.conv import FastConvCL
from hiermlp.accel.linear import FastLinear, FastMlp, onednn_available, onednn_enabled
from hiermlp.accel.settings import AccelSettings, override
from hiermlp.accel.volume import FastConvTranspose3d, FastInstanceNorm3d, FastUnetConv3d
from hiermlp.layers import ConvCL
from hiermlp.layers.unet import UnetConv3d
from hiermlp.mixers.attention import WindowAttention
from hiermlp.mixers.baselines import GlobalAttention
from hiermlp.models.block import HierBlock
from hiermlp.models.stage import HierStage

# plain class -> fast twin (exact types only)
FAST: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: FastLinear,
    Mlp: FastMlp,
    WindowAttention: FastWindowAttention,
    GlobalAttention: FastGlobalAttention,
    HierBlock: FastHierBlock,
    HierStage: FastHierStage,
    ConvCL: FastConvCL,
    UnetConv3d: FastUnetConv3d,
    nn.ConvTranspose3d: FastConvTranspose3d,
    nn.InstanceNorm3d: FastInstanceNorm3d,
}
PLAIN: dict[type[nn.Module], type[nn.Module]] = {fast: slow for slow, fast in FAST.items()}

# timm's FX tracer (its feature extraction and its model tests, which ask a traced graph to equal the eager model
# bit for bit) keeps the twins whose kernels differ from their plain class's whole: the graph calls them, so it
# runs the very kernels eager runs. Other tracers (torch.fx.symbolic_trace, torchvision's) trace into them and
# get the plain modules' function (their forward checks is_fx_tracing). The stage's inference chunking and the
# block's training MLP chunking act only on batches of 2 or more, and stay traceable.
for _twin in (FastLinear, FastMlp, FastWindowAttention, FastGlobalAttention):
    register_notrace_module(_twin)


def _swap(model: nn.Module, classes: dict[type[nn.Module], type[nn.Module]]) -> nn.Module:
    """Give every module whose exact class is a key of ``classes`` the class it maps to, in place."""
    for module in model.modules():
        target = classes.get(type(module))
        if target is not None:
            module.__class__ = target
    return model


def accelerate(model: nn.Module) -> nn.Module:
    """Swap every plain module of ``model`` that has a fast twin for it, in place; returns ``model``."""
    return _swap(model, FAST)


def plain(model: nn.Module) -> nn.Module:
    """Undo :func:`accelerate`: every fast module back to its plain class, in place; returns ``model``."""
    return _swap(model, PLAIN)


def is_accelerated(model: nn.Module) -> bool:
    return any(type(m) in PLAIN for m in model.modules())


def register_fast(plain_cls: type[nn.Module], fast_cls: type[nn.Module]) -> None:
    """Give a plain module class a fast twin (a subclass computing the same function)."""
    if not issubclass(fast_cls, plain_cls):
        raise TypeError(f"{fast_cls.__name__} must subclass {plain_cls.__name__} (same parameters and state dict)")
    FAST[plain_cls] = fast_cls
    PLAIN[fast_cls] = plain_cls


__all__ = [
    "FAST",
    "PLAIN",
    "AccelSettings",
    "FastConvCL",
    "FastConvTranspose3d",
    "FastGlobalAttention",
    "FastHierBlock",
    "FastHierStage",
    "FastInstanceNorm3d",
    "FastLinear",
    "FastMlp",
    "FastUnetConv3d",
    "FastWindowAttention",
    "accelerate",
    "compile_model",
    "is_accelerated",
    "onednn_available",
    "onednn_enabled",
    "override",
    "plain",
    "register_fast",
    "settings",
]
