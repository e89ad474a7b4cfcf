"""Reader for the IDX format of MNIST-style datasets (LeCun's ``*-idx3-ubyte``, optionally gzipped).

The format: a 4-byte magic number ``0x00 0x00 <dtype> <ndim>``, then ``ndim`` big-endian uint32 sizes,
then the data in C order. Only the dtypes of the specification are accepted; a file that does not start
with a valid magic number or whose payload size disagrees with its header is rejected with an error
naming the file, so a truncated download never turns into silently wrong data.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

# IDX dtype byte -> numpy dtype (big-endian where it matters)
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# the four files of an MNIST-layout directory: split -> (images, labels) base names
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (plain or ``.gz``) into a numpy array.

    Args:
        path: the file.

    Returns:
        Array of the shape and dtype in the header, e.g. ``(N, 28, 28) uint8`` for images, ``(N,) uint8``
        for labels. Multi-byte types are converted to native byte order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: bad magic number, unknown dtype, or a payload size that disagrees with the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # a truncated gzip stream lands here
        raise ValueError(f"cannot read IDX file {path}: {e}") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()!r})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: payload is {len(raw) - header} bytes but header shape {shape} needs {expected}")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def find_idx_file(root: str | os.PathLike, base: str) -> Path:
    """Locate ``base`` or ``base.gz`` under ``root`` (also accepting torchvision's ``-idx3-ubyte`` naming).

    Raises:
        FileNotFoundError: neither exists; the message lists what was tried.
    """
    root = Path(root)
    tried = []
    for sub in ("", "raw"):  # torchvision keeps the IDX files under <root>/<Name>/raw
        for name in (base, base + ".gz"):
            p = root / sub / name
            tried.append(str(p))
            if p.is_file():
                return p
    raise FileNotFoundError(f"IDX file {base}[.gz] not found; tried: {', '.join(tried)}")


def load_idx_split(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of an MNIST-layout directory.

    Args:
        root: directory holding the four IDX files.
        split: ``"train"`` or ``"test"``.

    Returns:
        ``images (N, H, W) uint8`` and ``labels (N,) int64``.
    """
    if split not in IDX_FILES:
        raise ValueError(f"split must be one of {sorted(IDX_FILES)}, got {split!r}")
    img_name, lbl_name = IDX_FILES[split]
    images = read_idx(find_idx_file(root, img_name))
    labels = read_idx(find_idx_file(root, lbl_name)).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(
            f"{root}: {split} images {images.shape} and labels {labels.shape} do not form an image dataset"
        )
    return images, labels
