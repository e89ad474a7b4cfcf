"""Image transforms, all through timm's ``create_transform`` (RandAugment, random erasing, eval crop).

Small images (28x28 Fashion-MNIST) are resized to ``img_size``: training uses RandomResizedCrop to
``img_size``, evaluation resizes to ``img_size / crop_pct`` and centre-crops ``img_size``.
"""

from __future__ import annotations

from collections.abc import Callable

from timm.data import create_transform

__all__ = ["build_transform"]


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
    return create_transform(
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
