"""Image transforms, all through timm's ``create_transform`` (RandAugment, random erasing, eval crop).

Small images (28x28 Fashion-MNIST) are resized to ``img_size``: training uses RandomResizedCrop to
``img_size``, evaluation resizes to ``img_size / crop_pct`` and centre-crops ``img_size``.

One repair of timm's auto-augment ops: at the top magnitudes timm's posterize keeps 0 bits (the "increasing"
variant of ``rand-m9-mstd0.5-inc1`` at magnitude 10, the plain one at 0), which Pillow up to 12 turned into a
black image and Pillow 13 refuses with "bits must be between or equal to 1 and 8". Every posterize op of a
built transform gets :func:`posterize`, which keeps Pillow 12's result on any Pillow.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PIL import Image, ImageOps
from timm.data import auto_augment, create_transform

__all__ = ["build_transform", "posterize"]


def posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's posterize op with Pillow 12's meaning at every bit count: >= 8 keeps the image, 0 (or fewer)
    keeps no bit (a black image), 1..7 keep that many most significant bits."""
    bits = int(bits_to_keep)
    if bits >= 8:
        return img
    if bits <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits)


def _repair_posterize(transform: Any) -> None:
    """Give every timm posterize op inside ``transform`` (Compose, RandAugment, AutoAugment, AugMix)
    :func:`posterize`."""
    stack = [transform]
    while stack:
        t = stack.pop()
        if isinstance(t, auto_augment.AugmentOp):
            if t.aug_fn is auto_augment.posterize:
                t.aug_fn = posterize
            continue
        for attr in ("transforms", "ops", "policy"):
            inner = getattr(t, attr, None)
            if isinstance(inner, list | tuple):
                stack.extend(inner)


def build_transform(
    *,
    is_training: bool,
    img_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
    crop_mode: str = "center",
    no_aug: bool = False,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    color_jitter: float = 0.0,
    auto_augment: str = "",
    reprob: float = 0.0,
) -> Callable:
    """PIL image -> normalized tensor ``(C, img_size, img_size)``; C = len(mean).

    Args:
        is_training: random crop/flip/augment (unless ``no_aug``) versus resize + centre crop.
        img_size: output side.
        mean: per-channel mean, its length is the number of channels.
        std: per-channel std.
        interpolation: resize interpolation name.
        crop_pct: eval crop fraction.
        crop_mode: eval crop (timm's ``center``, ``squash`` or ``border``).
        no_aug: use the eval transform for training too.
        scale: RandomResizedCrop area range.
        hflip: horizontal flip probability.
        color_jitter: colour jitter strength.
        auto_augment: timm spec such as ``"rand-m9-mstd0.5-inc1"``; empty for none.
        reprob: random erasing probability.
    """
    if not is_training or no_aug:
        return create_transform(
            img_size,
            is_training=False,
            interpolation=interpolation,
            mean=mean,
            std=std,
            crop_pct=crop_pct,
            crop_mode=crop_mode,
        )
    transform = create_transform(
        img_size,
        is_training=True,
        scale=tuple(scale),
        hflip=hflip,
        color_jitter=color_jitter,
        auto_augment=auto_augment or None,
        interpolation=interpolation,
        mean=mean,
        std=std,
        re_prob=reprob,
        re_mode="pixel",  # random noise is on the normalized scale for any channel count
    )
    _repair_posterize(transform)
    return transform
