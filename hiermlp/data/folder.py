"""Write a dataset hiermlp reads as an ImageFolder tree, the layout timm's scripts and ``data=folder`` read.

``root/<split>/<class>/<index>.png`` with timm's split names (``train`` and ``validation``), so timm's
train.py, validate.py and inference.py run on the embedded Fashion-MNIST subset with no download::

    python -c "from hiermlp.data.folder import write_image_folder; write_image_folder('tiny_fmnist', per_class=20)"
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from hiermlp.data.datasets import ArrayImageDataset, build_dataset

__all__ = ["write_image_folder"]

# hiermlp's split each ImageFolder split is drawn from
_SOURCE_SPLIT = {"train": "train", "validation": "test", "val": "test", "test": "test"}


def write_image_folder(
    root: str | os.PathLike,
    *,
    data: str = "embedded",
    data_root: str = "",
    splits: Sequence[str] = ("train", "validation"),
    per_class: int = 20,
    classes: int | None = None,
    mode: str = "RGB",
) -> Path:
    """Write the first ``per_class`` images of each class of ``data`` as PNG files under ``root``.

    Args:
        root: the tree's root (created; existing files of the same names are overwritten).
        data: an in-memory dataset spec of :func:`hiermlp.data.build_dataset` (``embedded``, ``fashion_mnist``,
            ``mnist``, ``idx``).
        data_root: its directory ("" = its default location).
        splits: the folders to write; ``train`` draws from the dataset's training split, the others
            (``validation``, ``val``, ``test``) from its test split.
        per_class: images per class and split.
        classes: only the first this many classes (None: all).
        mode: PIL mode of the files (``"RGB"``: three channels, as timm's scripts read images by default).

    Returns:
        ``root``.

    Raises:
        ValueError: an unknown split name, a dataset not held in memory, or ``per_class`` < 1.
    """
    if per_class < 1:
        raise ValueError(f"per_class={per_class} is invalid: write at least one image per class")
    root = Path(root)
    for split in splits:
        if split not in _SOURCE_SPLIT:
            raise ValueError(f"unknown split {split!r}; use {', '.join(_SOURCE_SPLIT)}")
        ds = build_dataset(data, split=_SOURCE_SPLIT[split], root=data_root, mode="L")
        if not isinstance(ds, ArrayImageDataset):
            raise ValueError(f"data={data!r} is not held in memory; write_image_folder takes embedded, mnist, idx")
        names = ds.classes[:classes] if classes else ds.classes
        for label, name in enumerate(names):
            folder = root / split / str(name).replace("/", "_").replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            for i in np.flatnonzero(ds.labels == label)[:per_class]:
                Image.fromarray(ds.images[i]).convert(mode).save(folder / f"{int(i):05d}.png")
    return root
