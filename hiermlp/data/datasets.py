"""Datasets: the embedded Fashion-MNIST subset, MNIST-layout IDX directories, ImageFolder trees and
torchvision datasets whose files are already on disk.

Every dataset returns ``(image, label)`` where ``image`` is whatever the transform makes of a PIL image in
``mode`` (``"L"`` for one channel, ``"RGB"`` for three: gray images are repeated to three channels by PIL's
conversion), and exposes ``classes`` (list of class names). Nothing here downloads.

Spec strings accepted by :func:`build_dataset`:

- ``embedded``: the Fashion-MNIST subset shipped in ``hiermlp/data/embedded`` (10k train / 2k test).
- ``fashion_mnist`` / ``mnist``: the full IDX files, from ``root`` or found automatically
  (``/usr/share/datasets/fashion-mnist`` from Debian's dataset-fashion-mnist, or torchvision's
  ``<root>/FashionMNIST/raw`` layout).
- ``idx``: any MNIST-layout directory of IDX files at ``root``.
- ``folder``: an ImageFolder tree ``root/<split>/<class>/<image>`` (the ImageNet layout).
- ``torchvision:NAME``: ``torchvision.datasets.NAME(root, train=... | split=..., download=False)``.

One class map for every split: the training split's ``classes`` (names, in label order) are passed as
``classes`` to every other split, whose labels are then indices into that list. A split that lacks a class
keeps the training indices of the classes it has (an ImageFolder ``val`` without ``b`` still labels ``c``
as 2); a split with a class the training split lacks is a :class:`~hiermlp.errors.ConfigError` naming it.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from hiermlp.data.idx import load_idx_split
from hiermlp.errors import ConfigError, HiermlpError, NotFoundError

__all__ = [
    "DATASET_STATS",
    "EMBEDDED_PATH",
    "ArrayImageDataset",
    "CorruptImageError",
    "ImageFolderDataset",
    "PreparedDataset",
    "build_dataset",
    "check_labels",
    "collate_prepared",
    "dataset_stats",
    "folder_split",
    "known_labels",
]

EMBEDDED_PATH = Path(__file__).resolve().parent / "embedded" / "fashion_mnist_subset.npz"


def array_digest(a: np.ndarray) -> str:
    """A key of an array's content, dtype and shape (a cache key: a file rewritten in place is new content)."""
    a = np.ascontiguousarray(a)
    return hashlib.blake2b(a.view(np.uint8).reshape(-1).data, digest_size=16).hexdigest() + f"{a.dtype}{a.shape}"


def read_items(split: str, root: str | os.PathLike = "", *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(items, labels)`` of ``split`` from the embedded Fashion-MNIST npz (or the npz at ``root``): the items
    the generated sets (``what``: scenes, clips) are made of."""
    path = Path(root) if root else EMBEDDED_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{what} items file not found: {path} (the embedded Fashion-MNIST npz)")
    with np.load(path, allow_pickle=False) as z:
        return z[f"{split}_images"], z[f"{split}_labels"].astype(np.int64)


def remember(cache: dict, key: tuple, build: Callable[[], Any], *, keep: int = 4) -> Any:
    """``cache[key]``, built by ``build()`` on a miss; the cache keeps the last ``keep`` entries."""
    if key not in cache:
        if len(cache) >= keep:
            cache.pop(next(iter(cache)))
        cache[key] = build()
    return cache[key]


# per-dataset (mean, std) of one channel or of RGB; gray stats are repeated when in_chans=3
DATASET_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "embedded": ((0.2860,), (0.3530,)),
    "scenes": ((0.1356,), (0.2826,)),  # the embedded scenes (hiermlp.data.scenes): mostly background
    "clips": ((0.0973,), (0.2363,)),  # the embedded clips (hiermlp.data.clips): mostly background
    "clip_scenes": ((0.0973,), (0.2363,)),  # the same clips, labelled per voxel
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "torchvision:FashionMNIST": ((0.2860,), (0.3530,)),
    "torchvision:MNIST": ((0.1307,), (0.3081,)),
    "torchvision:CIFAR10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "torchvision:CIFAR100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

_DEFAULT_ROOTS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist", "data/FashionMNIST/raw", "data/fashion-mnist"),
    "mnist": ("/usr/share/datasets/mnist", "data/MNIST/raw", "data/mnist"),
}
IDX_CLASSES = {
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "mnist": tuple(str(i) for i in range(10)),
}


class CorruptImageError(HiermlpError, RuntimeError):
    """An image file of an ImageFolder could not be decoded; the message names the file."""


def dataset_stats(
    name: str, in_chans: int, default: tuple[Sequence[float], Sequence[float]] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalization (mean, std) for dataset ``name`` with ``in_chans`` channels; for a dataset hiermlp has no
    statistics of (an ImageFolder), ``default`` (a model's pretrained cfg's), else ImageNet's."""
    mean, std = DATASET_STATS.get(name, default or _IMAGENET_STATS)
    if len(mean) != in_chans:
        # gray stats repeated for RGB; RGB stats averaged for a gray conversion
        mean, std = (float(np.mean(mean)),) * in_chans, (float(np.mean(std)),) * in_chans
    return tuple(mean), tuple(std)


class ArrayImageDataset(Dataset):
    """Images held in memory as a uint8 array.

    Args:
        images: ``(N, H, W)`` gray or ``(N, H, W, 3)`` RGB, uint8.
        labels: ``(N,)`` integer labels.
        classes: class names, ``classes[label]``.
        transform: applied to the PIL image.
        mode: PIL mode the image is converted to before the transform (``"L"`` or ``"RGB"``).
    """

    def __init__(
        self,
        *,
        images: np.ndarray,
        labels: np.ndarray,
        classes: list[str],
        transform: Callable | None = None,
        mode: str = "L",
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, np.asarray(labels, dtype=np.int64)
        self.targets = self.labels.tolist()
        self.classes, self.transform, self.mode = list(classes), transform, mode

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img = Image.fromarray(self.images[index])
        if img.mode != self.mode:
            img = img.convert(self.mode)
        return (self.transform(img) if self.transform else img), int(self.labels[index])


class PreparedDataset(Dataset):
    """The samples ``indices`` of a dataset with a deterministic transform, transformed once and held as
    one tensor.

    An in-memory dataset without augmentation gives the same tensor for an image every epoch; preparing
    it once saves the per-sample PIL conversion, transform and collation of every epoch (on the micro
    models of ``hiermlp compare`` that was a fifth of a run). ``prepared[i]`` equals ``dataset[i]``
    exactly for ``i`` in ``indices`` (other indices raise ``IndexError``), so samplers over those indices
    see the same data as before. ``__getitems__`` returns a whole batch at once; use it with
    :func:`collate_prepared` as the DataLoader's ``collate_fn``.

    Args:
        dataset: a map-style dataset of ``(tensor, int label)`` whose transform draws no random numbers.
        indices: the samples to prepare.
    """

    def __init__(self, dataset: Dataset, indices: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        samples = [dataset[int(i)] for i in indices]
        self.images = torch.stack([x for x, _ in samples]) if samples else torch.empty(0)
        self.labels = torch.tensor([int(y) for _, y in samples], dtype=torch.int64)
        self.classes = list(getattr(dataset, "classes", []))
        self._size = len(dataset)  # type: ignore[arg-type]
        self._row = torch.full((self._size,), -1, dtype=torch.int64)  # dataset index -> row of self.images
        self._row[torch.from_numpy(indices)] = torch.arange(len(indices))

    def __len__(self) -> int:
        return self._size

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: the samples do not depend on the epoch (the interface of SeededDataset)."""

    def _rows(self, indices: list[int]) -> torch.Tensor:
        rows = self._row[torch.as_tensor(indices, dtype=torch.int64)]
        if bool((rows < 0).any()):
            bad = [i for i, r in zip(indices, rows.tolist()) if r < 0]
            raise IndexError(f"sample(s) {bad[:5]} were not prepared (only the given indices are)")
        return rows

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not -self._size <= index < self._size:
            raise IndexError(f"index {index} out of range for {self._size} samples")
        row = int(self._rows([index % self._size]))
        return self.images[row], int(self.labels[row])

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = self._rows(indices)
        return self.images[rows], self.labels[rows]

    @staticmethod
    def nbytes(dataset: Dataset, n: int) -> int:
        """Bytes that preparing ``n`` samples of ``dataset`` would hold (from its first sample)."""
        x, _ = dataset[0]
        return int(x.numel() * x.element_size() * n) if isinstance(x, torch.Tensor) else 0


def collate_prepared(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """DataLoader ``collate_fn`` for :class:`PreparedDataset`, whose ``__getitems__`` is already a batch."""
    return batch


class ImageFolderDataset(Dataset):
    """An ImageFolder tree ``root/<class>/<image>`` (torchvision's file discovery and class order).

    Corrupt files: a file that fails to decode is handled by ``corrupt``:

    - ``"error"`` (default): raise :class:`CorruptImageError` naming the file, so a broken dataset never
      trains silently on fewer images than the user thinks.
    - ``"skip"``: warn once per file (naming it) and return the next decodable sample instead. The epoch
      keeps its length and batch shapes (required for DDP, where all ranks must run the same number of
      steps), and the substitution is deterministic, so resume stays exact.

    Files are not pre-scanned (that would read every ImageNet JPEG before step 1); corruption is found on
    first read.

    Args:
        root: the split's directory, holding one sub-directory per class.
        transform: applied to the PIL image.
        mode: PIL mode images are converted to (``"RGB"`` or ``"L"``).
        corrupt: ``"error"`` or ``"skip"``, see above.
        classes: the class map (names in label order) of the training split; None: this tree's own folders.
            Every folder must name one of them (a ConfigError names the one that does not).
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike,
        transform: Callable | None = None,
        mode: str = "RGB",
        corrupt: str = "error",
        classes: list[str] | None = None,
    ) -> None:
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"ImageFolder directory not found: {root}")
        if corrupt not in ("error", "skip"):
            raise ValueError(f"corrupt must be 'error' or 'skip', got {corrupt!r}")
        try:
            own, _ = find_classes(str(root))
            self.classes = list(own) if classes is None else list(classes)
            _check_subset(own, self.classes, f"{root}")
            self.class_to_idx = {c: self.classes.index(c) for c in own}
            self.samples = make_dataset(str(root), self.class_to_idx, extensions=IMG_EXTENSIONS)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{root}: not an ImageFolder tree ({e})") from e
        self.targets = [t for _, t in self.samples]
        self.root, self.transform, self.mode, self.corrupt = root, transform, mode, corrupt
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: str) -> Image.Image:
        try:
            with Image.open(path) as img:
                return img.convert(self.mode)  # convert() forces a full decode, so truncation shows here
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise CorruptImageError(f"cannot decode image file {path}: {e}") from e

    def __getitem__(self, index: int) -> tuple[Any, int]:
        for k in range(len(self.samples)):
            path, target = self.samples[(index + k) % len(self.samples)]
            try:
                img = self._load(path)
            except CorruptImageError as e:
                if self.corrupt == "error":
                    raise CorruptImageError(f"{e} (set corrupt=skip to skip unreadable files)") from e.__cause__
                if path not in self._warned:
                    self._warned.add(path)
                    warnings.warn(f"skipping corrupt image {path}: {e.__cause__}", stacklevel=2)
                continue
            return (self.transform(img) if self.transform else img), target
        raise CorruptImageError(f"no image under {self.root} could be decoded")


class _TorchvisionWrapper(Dataset):
    """A torchvision dataset whose images are converted to ``mode`` before ``transform``."""

    def __init__(
        self, *, dataset: Dataset, transform: Callable | None, mode: str, classes: list[str] | None = None
    ) -> None:
        self.dataset, self.transform, self.mode = dataset, transform, mode
        self.classes = list(getattr(dataset, "classes", []))
        targets = getattr(dataset, "targets", None)
        if targets is None:
            targets = getattr(dataset, "labels", None)
        self.targets = [int(t) for t in targets] if targets is not None else None
        if not self.classes and self.targets:
            self.classes = [str(c) for c in range(max(self.targets) + 1)]
        self._index: list[int] | None = None  # this split's label -> the training map's
        if classes is not None and self.classes and list(classes) != self.classes:
            _check_subset(self.classes, list(classes), type(dataset).__name__)
            self._index = [list(classes).index(c) for c in self.classes]
            if self.targets is not None:
                self.targets = [self._index[t] for t in self.targets]
        if classes is not None:
            self.classes = list(classes)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        img, target = self.dataset[index]
        if not isinstance(img, Image.Image):
            img = Image.fromarray(np.asarray(img))
        if img.mode != self.mode:
            img = img.convert(self.mode)
        target = int(target) if self._index is None else self._index[int(target)]
        return (self.transform(img) if self.transform else img), target


def _check_subset(own: list[str], classes: list[str], where: str) -> None:
    """A split may have fewer classes than the training split, never another one."""
    extra = [c for c in own if c not in classes]
    if extra:
        shown = ", ".join(repr(c) for c in extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise ConfigError(
            f"{where} has class(es) {shown} that the training split lacks (its classes: "
            f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}); evaluate on a split whose classes "
            "the model was trained on, or train on data that has them"
        )


def _remap(labels: np.ndarray, own: list[str], classes: list[str] | None, where: str) -> tuple[np.ndarray, list[str]]:
    """An array split's labels as indices into the training split's class map ``classes``."""
    if classes is None or list(classes) == list(own):
        return labels, list(own)
    _check_subset([own[i] for i in np.unique(labels) if 0 <= i < len(own)], list(classes), where)
    index = np.array([list(classes).index(c) if c in classes else -1 for c in own], dtype=np.int64)
    return index[labels], list(classes)


def known_labels(ds: Any) -> np.ndarray | None:
    """Every label of a dataset when it knows them without loading images (None when it does not)."""
    for base in (ds, getattr(ds, "dataset", None)):  # a SeededDataset wraps the dataset that knows them
        for attr in ("labels", "targets"):
            values = getattr(base, attr, None)
            if values is not None and not callable(values):
                return np.asarray(values, dtype=np.int64).reshape(-1)
    return None


def check_labels(ds: Any, num_classes: int, where: str) -> None:
    """A ConfigError when a label of ``ds`` is outside the head's ``num_classes`` outputs (nothing when the
    dataset cannot tell its labels without loading every image: the trainer checks each batch then)."""
    labels = known_labels(ds)
    if labels is None or labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ConfigError(
            f"{where} has labels {lo}..{hi} but the head has num_classes={num_classes} outputs (labels "
            f"0..{num_classes - 1}); set num_classes=0 to take the dataset's class count, or num_classes >= {hi + 1}"
        )


def _read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(images, labels, classes)`` of ``split`` from an .npz in the embedded set's layout."""
    want = [f"{split}_images", f"{split}_labels", "classes"]
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in want if k not in z.files]
            if missing:
                raise ConfigError(
                    f"{path} lacks the array(s) {', '.join(missing)} (it has {', '.join(z.files) or 'none'}); "
                    f"data=embedded reads an .npz with {', '.join(want)} (see hiermlp/data/make_embedded.py)"
                )
            images, labels, classes = z[want[0]], z[want[1]], z["classes"].tolist()
    except (OSError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        first = (str(e).splitlines() or [""])[0][:200]
        raise ConfigError(f"{path} is not a readable .npz file ({first}); give an .npz in the embedded layout") from e
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or len(images) != len(labels):
        raise ConfigError(
            f"{path}: {want[0]} must be uint8 (N, H, W) or (N, H, W, 3) with one label each, got {images.dtype} "
            f"{images.shape} and {len(labels)} labels"
        )
    if not isinstance(classes, list) or (
        labels.size and not 0 <= int(labels.min()) <= int(labels.max()) < len(classes)
    ):
        raise ConfigError(
            f"{path}: {want[1]} must index its {len(classes) if isinstance(classes, list) else 0} classes"
        )
    return images, np.asarray(labels, dtype=np.int64), [str(c) for c in classes]


def _find_idx_root(name: str, root: str) -> Path:
    candidates = [root] if root else list(_DEFAULT_ROOTS.get(name, ()))
    for c in candidates:
        p = Path(c)
        if p.is_dir():
            return p
    hint = " (install Debian's dataset-fashion-mnist or pass data_root)" if name == "fashion_mnist" else ""
    raise FileNotFoundError(f"data path for {name!r} not found: tried {', '.join(map(str, candidates))}{hint}")


# timm's split names (timm.data.create_dataset): a split is found under any name of its group
TRAIN_SPLITS = ("train", "training")
EVAL_SPLITS = ("validation", "val", "valid", "eval", "evaluation")


def folder_split(root: str | os.PathLike, split: str) -> Path:
    """The folder of ``split`` under an ImageFolder ``root``: ``root/split`` if it exists, else the first of
    timm's other names for it (``validation``, ``val``, ``valid``, ``eval``, ``evaluation``; ``train``,
    ``training``), as timm's scripts search.

    Raises:
        FileNotFoundError: no folder of that split; the message lists the folders there are.
    """
    root = Path(root)
    group = next((g for g in (TRAIN_SPLITS, EVAL_SPLITS) if split in g), (split,))
    for name in (split, *group):
        if (root / name).is_dir():
            return root / name
    there = sorted(p.name for p in root.iterdir() if p.is_dir())
    raise FileNotFoundError(
        f"ImageFolder {root} has no {split!r} split (looked for {', '.join(dict.fromkeys((split, *group)))}); "
        f"its folders: {', '.join(there) or 'none'}; pass the split's folder name (test_split=NAME / --split NAME)"
    )


def build_dataset(
    name: str,
    *,
    split: str,
    root: str | os.PathLike = "",
    transform: Callable | None = None,
    mode: str = "L",
    corrupt: str = "error",
    classes: list[str] | None = None,
) -> Dataset:
    """Build a dataset from its spec string (see the module docstring).

    Args:
        name: ``embedded``, ``fashion_mnist``, ``mnist``, ``idx``, ``folder`` or ``torchvision:NAME``.
        split: ``train``/``test`` for array datasets, the sub-folder for ``folder`` (e.g. ``validation``, found
            under any of timm's names for it: :func:`folder_split`).
        root: dataset directory ("" = the dataset's default location).
        transform: applied to each PIL image.
        mode: PIL mode (``"L"`` for in_chans=1, ``"RGB"`` for 3).
        corrupt: ImageFolder policy for undecodable files, ``"error"`` or ``"skip"``.
        classes: the training split's class map (names in label order); None: this split's own.

    Returns:
        A map-style dataset of ``(transform(image), label)`` with a ``classes`` attribute (``classes`` when
        given: labels index the training map).

    Raises:
        FileNotFoundError: the data path or its files do not exist (the message names the path).
        ConfigError: a class the training map lacks, a file without the expected arrays, a torchvision
            dataset hiermlp cannot build.
        ValueError: unknown spec or split.
    """
    root = str(root or "")
    if name == "embedded":
        if split not in ("train", "test"):
            raise ValueError(f"embedded data has splits 'train' and 'test', got {split!r}")
        path = Path(root) if root else EMBEDDED_PATH
        if not path.is_file():
            raise FileNotFoundError(f"embedded data file not found: {path}")
        images, labels, own = _read_npz(path, split)
        labels, own = _remap(labels, own, classes, f"split {split!r} of {path}")
        return ArrayImageDataset(images=images, labels=labels, classes=own, transform=transform, mode=mode)
    if name in ("fashion_mnist", "mnist", "idx"):
        if name == "idx" and not root:
            raise ValueError("data=idx needs data_root=<directory of IDX files>")
        idx_root = _find_idx_root(name, root)
        images, labels = load_idx_split(idx_root, split)
        own = list(IDX_CLASSES.get(name, [str(c) for c in range(int(labels.max()) + 1)]))
        labels, own = _remap(labels, own, classes, f"split {split!r} of {idx_root}")
        return ArrayImageDataset(images=images, labels=labels, classes=own, transform=transform, mode=mode)
    if name == "folder":
        if not root:
            raise ValueError("data=folder needs data_root=<ImageFolder root with one folder per split>")
        if not Path(root).is_dir():
            raise FileNotFoundError(f"data path not found: {root}")
        return ImageFolderDataset(
            root=folder_split(root, split), transform=transform, mode=mode, corrupt=corrupt, classes=classes
        )
    if name.startswith("torchvision:"):
        import torchvision.datasets as tvd

        cls_name = name.split(":", 1)[1]
        cls = getattr(tvd, cls_name, None)
        if cls is None or not isinstance(cls, type) or not issubclass(cls, Dataset):
            raise ConfigError(
                f"data={name}: torchvision.datasets has no dataset {cls_name!r}; use a classification dataset "
                "such as torchvision:CIFAR10, torchvision:MNIST or torchvision:Flowers102"
            )
        root = root or "data"
        if not Path(root).is_dir():
            raise FileNotFoundError(f"data path for {name} not found: {root}")
        params = inspect.signature(cls).parameters
        kwargs: dict[str, Any] = {"download": False} if "download" in params else {}
        if "train" in params:
            if split not in ("train", "test", "val"):
                raise ValueError(f"{name} has splits 'train' and 'test', got {split!r}")
            kwargs["train"] = split == "train"
        elif "split" in params:
            kwargs["split"] = split
        required = [
            p
            for p in list(params)[1:]
            if params[p].default is inspect.Parameter.empty and params[p].kind is not params[p].VAR_KEYWORD
        ]
        if required:
            raise ConfigError(
                f"data={name} is not supported: it needs {', '.join(required)}, which hiermlp does not pass "
                "(it builds NAME(root, train=/split=, download=False)); use a classification dataset such as "
                "torchvision:CIFAR10, or data=folder for an ImageFolder tree"
            )
        try:
            ds = cls(root, **kwargs)
        except RuntimeError as e:  # torchvision's "Dataset not found or corrupted"
            raise NotFoundError(f"{name} files not found under {root} (download=False): {e}") from e
        except (TypeError, ValueError) as e:
            first = (str(e).splitlines() or [""])[0][:200]
            call = ", ".join([repr(root), *(f"{k}={v!r}" for k, v in kwargs.items())])
            raise ConfigError(
                f"data={name} cannot be built as {cls_name}({call}): {first}; use a classification dataset such "
                "as torchvision:CIFAR10"
            ) from e
        ds = _TorchvisionWrapper(dataset=ds, transform=transform, mode=mode, classes=classes)
        if not ds.classes:
            raise ConfigError(
                f"data={name} is not supported: it exposes no classes or targets (not an image classification "
                "dataset); use one such as torchvision:CIFAR10, or data=folder"
            )
        return ds
    raise ValueError(f"unknown dataset {name!r}; use embedded, fashion_mnist, mnist, idx, folder or torchvision:NAME")
