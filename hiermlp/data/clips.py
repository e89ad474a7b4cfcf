"""Embedded clips: a video classification set generated from the embedded Fashion-MNIST items, where motion matters.

Each clip is ``frames`` gray frames (8 by default) of a ``size x size`` canvas (32) showing two Fashion-MNIST
items of different classes, shrunk to 14x14: one stays still, the other moves in a straight line at -2 to 2
pixels per frame on each axis (never 0 on both), wholly inside the canvas in every frame. Either may be in
front (an item covers the pixels where its value exceeds ``threshold``). The label is the class of the **moving**
item. A single frame cannot tell which item that is, and neither can a model that sees only one window of a few
frames and a few pixels: it must compare frames (across time) and recognise an item that spans several
windows (across space). A per-pixel linear model, which sees neither, is near chance (10 classes); classifying
one centred still item needs none of it.

The same clips with a label per voxel (``data=clip_scenes``, ``task=segment``: 0 background, class + 1 where an
item shows, the front item where both do; :class:`ClipSceneDataset`) are a 3-D segmentation set: a voxel's class
depends on the whole item's shape, and whether it moves does not change it.

Clips are a pure function of the items and ``seed``: a generator seeded by ``(seed, split)`` draws, per clip, the
two items (training clips from the training items, test clips from the test items), their stacking order, the
still item's position and the mover's start and velocity. :func:`make_clips` returns these with the arrays, so
tests can check every frame. docs/ndim.md describes the set and ``hiermlp compare video`` trains on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from hiermlp.data.datasets import DATASET_STATS, IDX_CLASSES, array_digest, read_items, remember
from hiermlp.data.sampling import mix_seed

__all__ = [
    "CLIP_CLASSES",
    "CLIP_FRAMES",
    "CLIP_SIZE",
    "VIDEO_DATASETS",
    "ClipDataset",
    "ClipSceneDataset",
    "Clips",
    "load_clips",
    "make_clips",
    "shrink_items",
]

CLIP_CLASSES = IDX_CLASSES["fashion_mnist"]
CLIP_FRAMES = 8
CLIP_SIZE = 32
SPLIT_SEEDS = {"train": 0, "test": 1}
DEFAULT_COUNTS = {"train": 4000, "test": 1000}
# the trainer's data specs whose samples are (C, T, H, W) clips: labelled per clip, or per voxel (task=segment)
VIDEO_DATASETS = ("clips", "clip_scenes")


@dataclass(frozen=True)
class Clips:
    """Generated clips: ``clips`` (N, T, size, size) uint8, ``labels`` (N,) int64 (the mover's class) and
    ``motion`` (N, 8) int64 rows ``(mover item, still item, mover top, mover left, dy, dx, still top, still left)``
    plus ``mover_in_front`` (N,) bool; item indices are into the shrunk items :func:`make_clips` was given.
    ``masks`` (N, T, size, size) uint8: each voxel's class + 1 where an item covers it (the front item's), else 0."""

    clips: np.ndarray
    labels: np.ndarray
    motion: np.ndarray
    mover_in_front: np.ndarray
    masks: np.ndarray


def shrink_items(items: np.ndarray) -> np.ndarray:
    """(N, 28, 28) uint8 items -> (N, 14, 14): the mean of each 2x2 block, rounded."""
    n, h, w = items.shape
    if h % 2 or w % 2:
        raise ValueError(f"items must have even sides to shrink by 2, got {h}x{w}")
    blocks = items.reshape(n, h // 2, 2, w // 2, 2).astype(np.float32)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


def make_clips(
    items: np.ndarray,
    labels: np.ndarray,
    *,
    count: int,
    seed: int,
    frames: int = CLIP_FRAMES,
    size: int = CLIP_SIZE,
    threshold: int = 32,
) -> Clips:
    """``count`` clips of ``items`` (N, h, w) uint8 with class ``labels`` (N,), see the module docstring.

    Raises:
        ValueError: the canvas cannot hold an item's whole path (``size - side >= 2 * (frames - 1)`` is needed
            for the fastest mover), fewer than 2 classes, or ``count < 0``.
    """
    n, h, w = items.shape
    room = size - max(h, w)
    if frames < 2 or room < 2 * (frames - 1) or count < 0 or len(np.unique(labels)) < 2:
        raise ValueError(
            f"clips need frames >= 2, size - item side >= 2 * (frames - 1) (got size {size}, items {h}x{w}, "
            f"frames {frames}), items of at least 2 classes and count >= 0"
        )
    rng = np.random.default_rng(seed)
    clips = np.zeros((count, frames, size, size), np.uint8)
    masks = np.zeros_like(clips)
    motion = np.zeros((count, 8), np.int64)
    front = np.zeros(count, bool)
    out_labels = np.zeros(count, np.int64)
    steps = np.arange(frames)
    for s in range(count):
        mover = int(rng.integers(n))
        still = int(rng.integers(n))
        while labels[still] == labels[mover]:
            still = int(rng.integers(n))
        speeds = np.zeros(2, np.int64)
        while not speeds.any():  # a mover that stands still would be no mover
            speeds = rng.integers(-2, 3, size=2)
        # start so that the whole path stays inside: top + dy * t in [0, size - h] for every frame t
        starts = [int(rng.integers(max(0, -d * (frames - 1)), room - max(0, d * (frames - 1)) + 1)) for d in speeds]
        still_at = rng.integers(0, room + 1, size=2)
        in_front = bool(rng.integers(2))
        order = [("still", still), ("mover", mover)] if in_front else [("mover", mover), ("still", still)]
        for kind, i in order:
            item = items[i]
            cover = item > threshold
            for t in steps:
                top, left = (
                    (starts[0] + speeds[0] * t, starts[1] + speeds[1] * t) if kind == "mover" else tuple(still_at)
                )
                clips[s, t, top : top + h, left : left + w][cover] = item[cover]
                masks[s, t, top : top + h, left : left + w][cover] = labels[i] + 1
        motion[s] = (mover, still, starts[0], starts[1], speeds[0], speeds[1], still_at[0], still_at[1])
        front[s] = in_front
        out_labels[s] = labels[mover]
    return Clips(clips, out_labels, motion, front, masks)


_cache: dict[tuple, Clips] = {}


def load_clips(
    split: str,
    *,
    count: int = 0,
    seed: int = 0,
    root: str | Path = "",
    frames: int = CLIP_FRAMES,
    size: int = CLIP_SIZE,
) -> Clips:
    """The clips of ``split`` (``train`` / ``test``) from the embedded items (or the npz at ``root``).

    ``count`` 0 is the default count (4000 train, 1000 test); ``size`` the canvas side. Kept in memory under a
    key of every input (the items' and labels' bytes, split, count, seed, frames, size), the last few.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"clips have splits 'train' and 'test', got {split!r}")
    count = count or DEFAULT_COUNTS[split]
    items, labels = read_items(split, root, what="clip")
    key = (array_digest(items), array_digest(labels), split, count, seed, frames, size)
    seed = mix_seed(seed, SPLIT_SEEDS[split])

    def generate() -> Clips:  # only on a cache miss
        return make_clips(shrink_items(items), labels, count=count, seed=seed, frames=frames, size=size)

    return remember(_cache, key, generate)


class ClipDataset(Dataset):
    """Clips as ``(clip, label)``: ``clip`` a ``(1, T, H, W)`` float tensor normalised by ``mean``/``std``.

    Deterministic (no augmentation), so the trainer's per-sample seeding changes nothing.
    """

    def __init__(self, clips: Clips, *, mean: float | None = None, std: float | None = None) -> None:
        self.clips, self.labels, self.classes = clips.clips, clips.labels, list(CLIP_CLASSES)
        # default: the clips' pixel statistics (train split, seed 0; tests/test_clips.py recomputes them)
        (own_mean,), (own_std,) = DATASET_STATS["clips"]
        self.mean = float(own_mean if mean is None else mean)
        self.std = float(own_std if std is None else std)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip = torch.from_numpy(self.clips[index]).float().div_(255.0)
        return clip.sub_(self.mean).div_(self.std).unsqueeze(0), int(self.labels[index])


class ClipSceneDataset(Dataset):
    """Clips with a label per voxel, as ``(clip, mask)``: ``clip`` a ``(1, T, H, W)`` float tensor normalised as
    :class:`ClipDataset`'s, ``mask`` a ``(T, H, W)`` int64 tensor of classes (``classes``: background, then the
    ten item classes). Deterministic (no augmentation)."""

    def __init__(self, clips: Clips, *, mean: float | None = None, std: float | None = None) -> None:
        self.frames = ClipDataset(clips, mean=mean, std=std)
        self.masks, self.classes = clips.masks, ["background", *CLIP_CLASSES]

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frames[index][0], torch.from_numpy(self.masks[index].astype(np.int64))
