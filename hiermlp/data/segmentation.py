"""Segmentation data: paired image / mask datasets and the joint transforms that keep them aligned.

Every dataset here returns ``(image, mask)``: ``image`` what the joint transform makes of a PIL image in ``mode``
(a normalised ``(C, H, W)`` float tensor), ``mask`` a ``(H, W)`` int64 tensor of class indices in which
``ignore_index`` marks pixels that count nowhere (no loss, no metric). ``classes`` names the classes. Nothing
here downloads. Spec strings of :func:`build_seg_dataset`:

- ``scenes``: the embedded scenes (:mod:`hiermlp.data.scenes`): 64x64 gray, background + 10 classes.
- ``seg_folder``: ``root/<split>/images/NAME.*`` with ``root/<split>/masks/NAME.png`` (matched by name; a mask's
  pixel value is the class index, 255 by default ignored); class names from ``root/classes.txt`` (one per
  line) if present.
- ``ade20k``: the ADEChallengeData2016 layout ``root/images/{training,validation}/*.jpg`` and
  ``root/annotations/{training,validation}/*.png``; 150 classes, ``reduce_zero_label`` as mmseg (label 0,
  "other", is ignored and the rest shift down by one).
- ``cityscapes``: ``root/leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
  ``root/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (mmseg's converted masks) or, where those are
  missing, ``*_gtFine_labelIds.png`` mapped to the 19 train ids (every other id ignored).

:class:`JointTransform` resizes, crops, pads and flips image and mask with the same geometry (bilinear for the
image, nearest for the mask, padding the mask with ``ignore_index``), so a pixel keeps its label.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from hiermlp.data.datasets import CorruptImageError
from hiermlp.data.scenes import SCENE_CLASSES, load_scenes

__all__ = [
    "ADE20K_CLASSES",
    "CITYSCAPES_CLASSES",
    "SEG_DATASETS",
    "JointTransform",
    "PairedFolderDataset",
    "SegArrayDataset",
    "build_seg_dataset",
    "collate_pairs",
    "num_seg_classes",
]

SEG_DATASETS = ("scenes", "seg_folder", "ade20k", "cityscapes")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool",
    "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food",
    "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier",
    "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)  # fmt: skip
# Cityscapes label id -> train id (cityscapesscripts' labels.py); every other id is ignored
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14,
    28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


class JointTransform:
    """``(PIL image, mask array) -> (image (C, h, w) float, mask (h, w) int64)``, one geometry for both.

    Training (unless ``no_aug``): resize so the shorter side is ``img_size * r``, ``r`` uniform in ``scale``;
    crop ``img_size x img_size`` at a uniformly drawn position, padding (image 0 after normalisation, mask
    ``ignore_index``) where the resized image is smaller; flip horizontally with probability ``hflip``. The
    random draws use torch's global generator (seeded per sample by :class:`~hiermlp.data.SeededDataset`).
    ``no_aug`` training: resize the shorter side to ``img_size`` and centre-crop. Evaluation: the image at its own
    size (whole-image or sliding-window inference handles any size).

    Args:
        is_training: Augment (see above) or keep the image as it is.
        img_size: Crop side.
        mean: Per-channel mean; its length is the number of channels.
        std: Per-channel std.
        ignore_index: The mask value of pixels that count nowhere (also the mask's padding).
        scale: Range of the resize ratio ``r``.
        hflip: Horizontal flip probability.
        no_aug: Deterministic training crops.
    """

    def __init__(
        self,
        *,
        is_training: bool,
        img_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        ignore_index: int = 255,
        scale: tuple[float, float] = (0.5, 2.0),
        hflip: float = 0.5,
        no_aug: bool = False,
    ) -> None:
        self.is_training, self.img_size, self.no_aug = is_training, img_size, no_aug
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]
        self.ignore_index, self.scale, self.hflip = ignore_index, tuple(scale), hflip

    def __call__(self, img: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.array(img, dtype=np.float32, copy=True)) / 255.0
        x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
        if tuple(x.shape[1:]) != tuple(mask.shape):
            raise ValueError(f"image {tuple(x.shape[1:])} and mask {tuple(mask.shape)} differ in size")
        y = torch.as_tensor(np.asarray(mask), dtype=torch.int64)
        x = (x - self.mean) / self.std
        if not self.is_training:
            return x, y
        if self.no_aug:
            x, y = self.resize(x, y, self.img_size / min(x.shape[1:]))
            return self.crop(x, y, [(n - self.img_size) // 2 for n in x.shape[1:]])
        r = self.scale[0] + (self.scale[1] - self.scale[0]) * float(torch.rand(()))
        x, y = self.resize(x, y, self.img_size * r / min(x.shape[1:]))
        starts = [int(torch.randint(0, max(n - self.img_size, 0) + 1, ())) for n in x.shape[1:]]
        x, y = self.crop(x, y, starts)
        if float(torch.rand(())) < self.hflip:
            x, y = x.flip(-1), y.flip(-1)
        return x, y

    @staticmethod
    def resize(x: torch.Tensor, y: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Both scaled by ``factor``: bilinear (align_corners=False) image, nearest (exact) mask."""
        size = [max(1, round(n * factor)) for n in x.shape[1:]]
        if size == list(x.shape[1:]):
            return x, y
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False)[0]
        y = F.interpolate(y[None, None].double(), size=size, mode="nearest-exact")[0, 0].long()
        return x, y

    def crop(self, x: torch.Tensor, y: torch.Tensor, starts: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``img_size`` window at ``starts`` (clamped at 0), padded bottom/right to ``img_size``."""
        s = self.img_size
        t, left = (max(v, 0) for v in starts)
        x, y = x[:, t : t + s, left : left + s], y[t : t + s, left : left + s]
        pad = (0, s - x.shape[2], 0, s - x.shape[1])
        if any(pad):
            x = F.pad(x, pad, value=0.0)
            y = F.pad(y, pad, value=self.ignore_index)
        return x, y


def collate_pairs(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[Any, Any]:
    """Stack ``(image, mask)`` pairs of one size; pairs of several sizes stay lists (evaluation at native size)."""
    images, masks = zip(*batch)
    if len({tuple(x.shape) for x in images}) == 1:
        return torch.stack(images), torch.stack(masks)
    return list(images), list(masks)


class SegArrayDataset(Dataset):
    """Images and masks held in memory: ``images`` (N, H, W) or (N, H, W, 3) uint8, ``masks`` (N, H, W)."""

    collate_fn = staticmethod(collate_pairs)  # the DataLoader's: pairs of several sizes stay lists

    def __init__(
        self,
        *,
        images: np.ndarray,
        masks: np.ndarray,
        classes: Sequence[str],
        transform: Callable | None = None,
        mode: str = "L",
    ) -> None:
        if len(images) != len(masks):
            raise ValueError(f"{len(images)} images but {len(masks)} masks")
        self.images, self.masks, self.classes = images, masks, list(classes)
        self.transform, self.mode = transform, mode

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        img = Image.fromarray(self.images[index])
        if img.mode != self.mode:
            img = img.convert(self.mode)
        mask = self.masks[index].astype(np.int64)
        return self.transform(img, mask) if self.transform else (img, mask)


class PairedFolderDataset(Dataset):
    """Image files with mask files beside them: ``pairs`` of (image path, mask path).

    A mask is read as a single-channel PNG of class indices; ``label_map`` (a 256-entry lookup table) maps its
    raw values to classes or to ``ignore_index`` (ADE20K's reduce_zero_label, Cityscapes' train ids).
    """

    collate_fn = staticmethod(collate_pairs)

    def __init__(
        self,
        *,
        pairs: Sequence[tuple[Path, Path]],
        classes: Sequence[str],
        transform: Callable | None = None,
        mode: str = "RGB",
        label_map: np.ndarray | None = None,
    ) -> None:
        self.pairs, self.classes, self.transform, self.mode = list(pairs), list(classes), transform, mode
        self.label_map = label_map

    def __len__(self) -> int:
        return len(self.pairs)

    def _read(self, path: Path, mode: str | None) -> Image.Image:
        try:
            with Image.open(path) as f:
                return f.convert(mode) if mode else f.copy()
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise CorruptImageError(f"cannot decode {path}: {e}") from e

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        image_path, mask_path = self.pairs[index]
        img = self._read(image_path, self.mode)
        raw = np.array(self._read(mask_path, None))
        if raw.ndim != 2:
            raise CorruptImageError(f"mask {mask_path} has {raw.shape[2]} channels; a mask is one channel of labels")
        mask = self.label_map[raw] if self.label_map is not None else raw.astype(np.int64)
        return self.transform(img, mask) if self.transform else (img, mask)


def _lut(mapping: dict[int, int], ignore_index: int) -> np.ndarray:
    lut = np.full(256, ignore_index, dtype=np.int64)
    for raw, label in mapping.items():
        lut[raw] = label
    return lut


def _pairs(images: Path, masks: Path, mask_name: Callable[[Path], str]) -> list[tuple[Path, Path]]:
    if not images.is_dir():
        raise FileNotFoundError(f"image directory not found: {images}")
    if not masks.is_dir():
        raise FileNotFoundError(f"mask directory not found: {masks}")
    found = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not found:
        raise FileNotFoundError(f"no images under {images}")
    pairs, missing = [], []
    for p in found:
        m = masks / p.parent.relative_to(images) / mask_name(p)
        (pairs if m.is_file() else missing).append((p, m))
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(found)} images under {images} have no mask, e.g. {missing[0][1]}; every image "
            "needs its mask (the same name, .png)"
        )
    return pairs


def build_seg_dataset(
    name: str,
    *,
    split: str,
    root: str | os.PathLike = "",
    transform: Callable | None = None,
    mode: str = "L",
    ignore_index: int = 255,
    seed: int = 0,
) -> Dataset:
    """A paired dataset from its spec string (see the module docstring).

    Args:
        name: ``scenes``, ``seg_folder``, ``ade20k`` or ``cityscapes``.
        split: ``train``/``test`` for scenes; the split directory for folders (``train``/``val`` map to ADE20K's
            ``training``/``validation``).
        root: Dataset directory (scenes: the items npz; "" = the embedded one).
        transform: A :class:`JointTransform` (or any ``(image, mask) -> pair`` callable).
        mode: PIL mode of the images (``"L"`` or ``"RGB"``).
        ignore_index: The label of pixels that count nowhere (ADE20K's "other", Cityscapes' void ids).
        seed: The scenes' generator seed (other datasets ignore it).

    Raises:
        FileNotFoundError: a directory, an image or an image's mask is missing (the message names it).
        ValueError: unknown spec or split.
    """
    root = Path(root) if root else None
    if name == "scenes":
        scenes = load_scenes(split, root=root or "", seed=seed)
        return SegArrayDataset(
            images=scenes.images, masks=scenes.masks, classes=SCENE_CLASSES, transform=transform, mode=mode
        )
    if name not in SEG_DATASETS:
        raise ValueError(f"unknown segmentation dataset {name!r}; use one of {', '.join(SEG_DATASETS)}")
    if root is None:
        raise ValueError(f"data={name} needs data_root=<the dataset directory>")
    if not root.is_dir():
        raise FileNotFoundError(f"data path not found: {root}")
    if name == "seg_folder":
        pairs = _pairs(root / split / "images", root / split / "masks", lambda p: p.stem + ".png")
        names = root / "classes.txt"
        classes = [c.strip() for c in names.read_text().splitlines() if c.strip()] if names.is_file() else []
        return PairedFolderDataset(pairs=pairs, classes=classes, transform=transform, mode=mode)
    if name == "ade20k":
        d = {"train": "training", "val": "validation", "test": "validation"}.get(split, split)
        pairs = _pairs(root / "images" / d, root / "annotations" / d, lambda p: p.stem + ".png")
        lut = _lut({v: v - 1 for v in range(1, 151)}, ignore_index)  # reduce_zero_label: 0 -> ignored
        return PairedFolderDataset(pairs=pairs, classes=ADE20K_CLASSES, transform=transform, mode=mode, label_map=lut)
    d = {"test": "val"}.get(split, split)
    images = root / "leftImg8bit" / d

    def mask(p: Path) -> str:
        stem = p.name.replace("_leftImg8bit" + p.suffix, "")
        return f"{stem}_gtFine_labelTrainIds.png"

    try:
        pairs = _pairs(images, root / "gtFine" / d, mask)
        lut = None
    except FileNotFoundError:
        pairs = _pairs(images, root / "gtFine" / d, lambda p: mask(p).replace("labelTrainIds", "labelIds"))
        lut = _lut(CITYSCAPES_TRAIN_IDS, ignore_index)
    if lut is None:  # train-id masks already use 255 for void
        lut = _lut({v: v for v in range(19)} | {255: ignore_index}, ignore_index)
    return PairedFolderDataset(pairs=pairs, classes=CITYSCAPES_CLASSES, transform=transform, mode=mode, label_map=lut)


def num_seg_classes(dataset: Any) -> int:
    """The class count a segmentation dataset states (0 when it names none, e.g. a folder without classes.txt)."""
    return len(getattr(dataset, "classes", []) or [])
