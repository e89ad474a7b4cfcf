"""Model names for benchmarks: hiermlp's registry first, then timm's, with a ``timm:`` prefix to force timm.

A benchmark table puts hiermlp models next to timm's own as baselines, measured in the same process, so
every entry point of ``hiermlp.bench`` takes a name and resolves it here. A name registered in both
(e.g. ``swin_tiny_patch4_window7_224``) means hiermlp's; ``timm:swin_tiny_patch4_window7_224`` forces
timm's and ``hiermlp:NAME`` forces hiermlp's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hiermlp.errors import ConfigError, UnknownNameError
from hiermlp.factory import create_any_model, resolve_source

__all__ = [
    "ImageSizeError",
    "ModelRef",
    "build_at_size",
    "check_input_size",
    "is_oom",
    "resolve_model",
]


class ImageSizeError(ConfigError):
    """A model cannot be built for, or run on, the requested image size."""


@dataclass(frozen=True)
class ModelRef:
    """A resolved model name.

    Attributes:
        name: The name as the user wrote it (the row label), e.g. ``timm:mixer_b16_224``.
        source: Registry that builds it, ``"hiermlp"`` or ``"timm"``.
        model_name: The name inside that registry (prefix stripped).
    """

    name: str
    source: str
    model_name: str


def resolve_model(name: str) -> ModelRef:
    """Resolve ``name`` to the registry that builds it (:func:`hiermlp.factory.resolve_source`).

    Args:
        name: A hiermlp model name, a timm model name, or either prefixed with ``hiermlp:`` / ``timm:``.

    Raises:
        UnknownNameError: No registry knows the name; the message lists close names from both.
    """
    source, bare = resolve_source(name)
    return ModelRef(name, source, bare)


def is_oom(exc: BaseException) -> bool:
    """True for out-of-memory failures on any device (they differ by backend and allocator)."""
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def build_at_size(
    ref: ModelRef | str,
    *,
    img_size: int | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, bool]:
    """Build a model with random weights, for ``img_size`` when the model has a fixed input size.

    Args:
        ref: A resolved reference or a name to resolve.
        img_size: Side of the square input; None keeps the model's default.
        in_chans: Input channels.
        num_classes: Classifier outputs.
        model_kwargs: Extra constructor options (e.g. ``mixer=...``).

    Returns:
        ``(model, any_size)``: ``any_size`` is True when the constructor takes no ``img_size``, i.e. one
        model serves every input size.

    Raises:
        ImageSizeError: The constructor rejects ``img_size``.
    """
    ref = resolve_model(ref) if isinstance(ref, str) else ref
    kwargs = dict(model_kwargs or {})
    if img_size is not None:
        kwargs["img_size"] = img_size
    try:
        return _create(ref, in_chans, num_classes, kwargs), False
    except TypeError as e:
        # a model without an img_size argument (a CNN, or one that takes any size) is built once
        if img_size is None or "img_size" not in str(e):
            raise
        kwargs.pop("img_size")
        return _create(ref, in_chans, num_classes, kwargs), True
    except (AssertionError, ValueError) as e:
        if img_size is None or isinstance(e, UnknownNameError):
            raise
        raise ImageSizeError(f"{ref.name} cannot be built for {img_size}x{img_size} images: {e}") from e


def _create(ref: ModelRef, in_chans: int, num_classes: int, kwargs: dict[str, Any]) -> nn.Module:
    return create_any_model(f"{ref.source}:{ref.model_name}", num_classes=num_classes, in_chans=in_chans, **kwargs)


def check_input_size(
    model: nn.Module, name: str, input_size: tuple[int, ...], device: str | torch.device = "cpu"
) -> None:
    """Run one batch-1 forward at ``input_size`` and turn a shape failure into a clear message.

    Raises:
        ImageSizeError: The model fails on this input size (out-of-memory errors pass through).
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():  # not inference_mode: caches built here are reused by training
            model(torch.zeros((1, *input_size), device=device))
    except Exception as e:
        if is_oom(e):
            raise
        side = "x".join(str(s) for s in input_size[1:])
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ImageSizeError(f"{name} cannot take {side} images: {type(e).__name__}: {first}") from e
    finally:
        model.train(was_training)
