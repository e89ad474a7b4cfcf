"""Build the embedded Fashion-MNIST subset shipped with hiermlp.

Run ``python -m hiermlp.data.make_embedded [--src DIR]``. It reads the gzipped IDX files of Debian's
``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``) and writes
``hiermlp/data/embedded/fashion_mnist_subset.npz`` with a stratified, seeded selection of
1,000 train and 200 test images per class (10k / 2k, 28x28 uint8). The output is byte-for-byte
deterministic for a given source and seed, so re-running it leaves git clean.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from hiermlp.data.datasets import IDX_CLASSES
from hiermlp.data.idx import load_idx_split

DEFAULT_SRC = Path("/usr/share/datasets/fashion-mnist")
OUT_DIR = Path(__file__).resolve().parent / "embedded"
OUT_NAME = "fashion_mnist_subset.npz"
CLASSES = IDX_CLASSES["fashion_mnist"]


def stratified_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Pick ``per_class`` indices of each label at random (seeded), returned sorted.

    Args:
        labels: ``(N,)`` integer labels.
        per_class: how many to take from each class.
        seed: seed of the numpy generator.

    Returns:
        ``(per_class * num_classes,)`` int64 indices in increasing order.
    """
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f"class {c} has only {len(idx)} samples, need {per_class}")
        picks.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(picks)).astype(np.int64)


def build(src: Path, out: Path, train_per_class: int = 1000, test_per_class: int = 200, seed: int = 0) -> Path:
    """Write the subset to ``out`` and return its path."""
    arrays: dict[str, np.ndarray] = {}
    for split, per_class, split_seed in (
        ("train", train_per_class, seed),
        ("test", test_per_class, seed + 1),
    ):
        images, labels = load_idx_split(src, split)
        idx = stratified_indices(labels, per_class, split_seed)
        arrays[f"{split}_images"] = np.ascontiguousarray(images[idx], dtype=np.uint8)
        arrays[f"{split}_labels"] = labels[idx].astype(np.uint8)
    arrays["classes"] = np.array(CLASSES)
    # np.savez_compressed stamps the current time into the zip; write entries by hand with a fixed
    # date so the file is reproducible.
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=DEFAULT_SRC, help="directory with the Fashion-MNIST IDX files")
    p.add_argument("--out", type=Path, default=OUT_DIR / OUT_NAME)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    out = build(args.src, args.out, seed=args.seed)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {digest})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
