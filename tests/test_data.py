"""Data: IDX reader, embedded subset, ImageFolder (corrupt files), samplers and seeded augmentation."""

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hiermlp.data import (
    EMBEDDED_PATH,
    CorruptImageError,
    GlobalBatchSampler,
    SeededDataset,
    ShardSampler,
    build_dataset,
    build_transform,
    read_idx,
)
from hiermlp.data.idx import load_idx_split

FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.array(arr.shape, dtype=">u4").tobytes()
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_idx_reader_round_trip_and_checks(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", imgs)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(5, dtype=np.uint8))
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), imgs)
    x, y = load_idx_split(tmp_path, "train")
    assert x.shape == (5, 4, 3) and y.dtype == np.int64
    bad = tmp_path / "bad-idx"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\0" * 8)
    with pytest.raises(ValueError, match="bad-idx is not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short-idx"
    short.write_bytes((tmp_path / "train-labels-idx1-ubyte").read_bytes()[:-2])
    with pytest.raises(ValueError, match="payload is 3 bytes"):
        read_idx(short)
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_idx_split(tmp_path, "test")


def test_embedded_subset_is_stratified():
    with np.load(EMBEDDED_PATH) as z:
        assert z["train_images"].shape == (10000, 28, 28) and z["train_images"].dtype == np.uint8
        assert z["test_images"].shape == (2000, 28, 28)
        assert np.bincount(z["train_labels"]).tolist() == [1000] * 10
        assert np.bincount(z["test_labels"]).tolist() == [200] * 10
    assert (EMBEDDED_PATH.parent / "LICENSE-fashion-mnist.txt").is_file()


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_make_embedded_reproduces_the_shipped_file(tmp_path):
    from hiermlp.data.make_embedded import build

    out = build(FMNIST, tmp_path / "x.npz")
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(EMBEDDED_PATH.read_bytes()).digest()


@pytest.mark.parametrize(("in_chans", "mode"), [(1, "L"), (3, "RGB")])
def test_embedded_transforms_resize_and_channels(in_chans, mode):
    mean, std = (0.5,) * in_chans, (0.5,) * in_chans
    for training in (True, False):
        tf = build_transform(is_training=training, img_size=32, mean=mean, std=std, auto_augment="rand-m9-mstd0.5")
        ds = build_dataset("embedded", split="test", transform=tf, mode=mode)
        x, y = ds[0]
        assert x.shape == (in_chans, 32, 32) and 0 <= y < 10
    assert len(ds) == 2000 and len(ds.classes) == 10


def test_missing_data_paths_are_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset("folder", split="train", root=missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset("fashion_mnist", split="train", root=missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_dataset("torchvision:CIFAR10", split="train", root=missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="CIFAR10 files not found"):
        build_dataset("torchvision:CIFAR10", split="train", root=tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("imagenet", split="train")


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return tmp_path


def test_image_folder_and_corrupt_files(tmp_path):
    root = _folder(tmp_path)
    tf = build_transform(is_training=False, img_size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    ds = build_dataset("folder", split="val", root=root, transform=tf, mode="RGB")
    assert len(ds) == 6 and ds.classes == ["cat", "dog"] and ds[5][0].shape == (3, 16, 16)
    bad = root / "train" / "cat" / "1.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated PNG
    ds = build_dataset("folder", split="train", root=root, transform=tf, mode="RGB")
    with pytest.raises(CorruptImageError, match=r"cat/1\.png"):
        ds[1]
    ds = build_dataset("folder", split="train", root=root, transform=tf, mode="RGB", corrupt="skip")
    with pytest.warns(UserWarning, match=r"skipping corrupt image .*cat/1\.png"):
        x, y = ds[1]
    assert x.shape == (3, 16, 16) and y == 0  # replaced by the next sample, 2.png of cat
    assert len(ds) == 6


def test_global_batches_do_not_depend_on_world_size_or_accumulation():
    idx = np.arange(100)
    one = list(GlobalBatchSampler(indices=idx, batch_size=8, seed=3))
    assert len(one) == 12 and all(len(b) == 8 for b in one)
    assert len({i for b in one for i in b}) == 96  # drop-last, no repeats
    parts = [
        list(GlobalBatchSampler(indices=idx, batch_size=8, world_size=2, rank=r, accum_steps=2, seed=3))
        for r in range(2)
    ]
    for step in range(12):  # micro j of rank r is slice j*world + r of the global batch
        merged = [i for j in range(2) for r in range(2) for i in parts[r][2 * step + j]]
        assert merged == one[step]
    s = GlobalBatchSampler(indices=idx, batch_size=8, seed=3)
    s.set_epoch(0, start_step=5)
    assert list(s) == one[5:]
    s.set_epoch(1)
    assert list(s) != one
    shards = [list(ShardSampler(indices=np.arange(7), world_size=2, rank=r)) for r in range(2)]
    assert sorted(shards[0] + shards[1]) == list(range(7))


def test_seeded_augmentation_is_a_function_of_seed_epoch_index():
    tf = build_transform(is_training=True, img_size=32, mean=(0.5,), std=(0.5,), reprob=0.5)
    ds = SeededDataset(build_dataset("embedded", split="test", transform=tf), seed=0)
    torch.manual_seed(123)
    a = ds[7][0]
    state = torch.get_rng_state()
    ds[3], ds[9]
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert torch.equal(ds[7][0], a)
    ds.set_epoch(1)
    assert not torch.equal(ds[7][0], a)


def test_worker_processes_see_the_same_augmentation():
    tf = build_transform(is_training=True, img_size=16, mean=(0.5,), std=(0.5,), reprob=0.5)
    ds = SeededDataset(build_dataset("embedded", split="test", transform=tf), seed=1)
    ds.set_epoch(2)
    sampler = GlobalBatchSampler(indices=np.arange(64), batch_size=16, seed=1)
    batches = [
        torch.cat([x for x, _ in torch.utils.data.DataLoader(ds, batch_sampler=sampler, num_workers=w)]) for w in (0, 2)
    ]
    assert torch.equal(batches[0], batches[1])


@pytest.mark.skipif(not FMNIST.is_dir(), reason="Debian dataset-fashion-mnist not installed")
def test_full_fashion_mnist_is_found_automatically():
    ds = build_dataset("fashion_mnist", split="test")
    img, label = ds[0]
    assert len(ds) == 10000 and img.size == (28, 28) and ds.classes[label] == "Ankle boot"
