"""Embedded scenes: a segmentation set generated from the embedded Fashion-MNIST items, where context matters.

Each scene is a ``size x size`` gray canvas (64 by default) with 2 to 4 Fashion-MNIST items pasted at random
positions, wholly inside, in order: a later item occludes an earlier one. An item covers the pixels where its
own value exceeds ``threshold``; there the canvas takes the item's value and the label its class + 1. Every
other pixel is background: value 0, label 0. So a scene's mask has ``1 + 10`` classes, and a pixel's class is a
property of the whole item it belongs to: shirt, T-shirt, pullover and coat differ in sleeves and collars,
sandals and sneakers in their outlines, mostly far from any one pixel. A model labels a pixel well only by
looking across the item, past the borders of a small window: the information shifted windows and a hierarchy
carry, which classifying one centred 28x28 item hardly needs.

Scenes are a pure function of the items and ``seed``: a generator seeded by ``(seed, split)`` draws, per
scene, the item count, the items (training scenes from the training items, test scenes from the test items) and
their positions. :func:`make_scenes` returns the placements with the arrays, so tests can check every label.
docs/segmentation.md describes the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hiermlp.data.datasets import IDX_CLASSES, array_digest, read_items, remember
from hiermlp.data.sampling import mix_seed

__all__ = ["SCENE_CLASSES", "Scenes", "load_scenes", "make_scenes"]

SCENE_CLASSES = ("background", *IDX_CLASSES["fashion_mnist"])
SPLIT_SEEDS = {"train": 0, "test": 1}
DEFAULT_COUNTS = {"train": 4000, "test": 1000}


@dataclass(frozen=True)
class Scenes:
    """Generated scenes: ``images`` (N, size, size) uint8, ``masks`` (N, size, size) uint8 labels (0 background,
    c + 1 for Fashion-MNIST class c), and ``placements`` (N, max_items, 3) int64 rows ``(item index, top, left)``
    in paste order, ``-1`` rows past a scene's item count."""

    images: np.ndarray
    masks: np.ndarray
    placements: np.ndarray


def make_scenes(
    items: np.ndarray,
    labels: np.ndarray,
    *,
    count: int,
    seed: int,
    size: int = 64,
    items_per_scene: tuple[int, int] = (2, 4),
    threshold: int = 32,
) -> Scenes:
    """``count`` scenes of ``items`` (N, h, w) uint8 with class ``labels`` (N,), see the module docstring.

    Args:
        items: The items to paste, uint8.
        labels: Their classes (0-based).
        count: Scenes to make.
        seed: The generator's seed (the same seed, items and options give the same scenes).
        size: Canvas side; at least the item's side.
        items_per_scene: Inclusive range of the number of items in a scene.
        threshold: An item covers the pixels where its value is above this.
    """
    n, h, w = items.shape
    lo, hi = items_per_scene
    if size < max(h, w) or not 1 <= lo <= hi or count < 0:
        raise ValueError(f"scenes need size >= {max(h, w)}, 1 <= min items <= max items, count >= 0")
    rng = np.random.default_rng(seed)
    images = np.zeros((count, size, size), np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    placements = np.full((count, hi, 3), -1, np.int64)
    for s in range(count):
        k = int(rng.integers(lo, hi + 1))
        chosen = rng.choice(n, size=k, replace=False)
        tops = rng.integers(0, size - h + 1, size=k)
        lefts = rng.integers(0, size - w + 1, size=k)
        for j, (i, top, left) in enumerate(zip(chosen, tops, lefts)):
            item = items[i]
            cover = item > threshold
            images[s, top : top + h, left : left + w][cover] = item[cover]
            masks[s, top : top + h, left : left + w][cover] = labels[i] + 1
            placements[s, j] = (i, top, left)
    return Scenes(images, masks, placements)


_cache: dict[tuple, Scenes] = {}


def load_scenes(split: str, *, count: int = 0, seed: int = 0, root: str | Path = "", size: int = 64) -> Scenes:
    """The scenes of ``split`` (``train`` / ``test``) from the embedded items (or the npz at ``root``).

    ``count`` 0 is the default count (4000 train, 1000 test). Kept in memory under a key of every input (the
    items' and labels' bytes, split, count, seed, size), the last few.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"scenes have splits 'train' and 'test', got {split!r}")
    count = count or DEFAULT_COUNTS[split]
    items, labels = read_items(split, root, what="scene")
    key = (array_digest(items), array_digest(labels), split, count, seed, size)
    seed = mix_seed(seed, SPLIT_SEEDS[split])
    return remember(_cache, key, lambda: make_scenes(items, labels, count=count, seed=seed, size=size))
