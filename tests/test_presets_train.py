"""Every shipped training preset trains: each configs/train/*.yaml runs a few optimizer steps, its recipe intact
(augmentation, Mixup/CutMix, model), on tiny synthetic data with the installed Pillow and timm.

Only where the data comes from is changed (a preset's torchvision or ImageFolder dataset is not on a test
machine), and the run is shortened. Augmentations fire at random, so a few steps may miss an op's failure at
its extreme magnitude; every auto-augment op of every preset is also run at its extremes directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from timm.data import auto_augment

from hiermlp.train import load_config, train
from hiermlp.train.build import build_datasets

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / "configs" / "train").glob("*.yaml"))
SHORT = ["epochs=1", "batch_size=8", "eval_batch_size=8", "limit_train=16", "limit_test=8", "num_workers=0"]
SHORT += ["progress=false", "tensorboard=false", "threads=1", "warmup_epochs=0"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A tiny RGB ImageFolder with train and val splits of 3 classes."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b", "c"):
            (root / split / c).mkdir(parents=True)
            for i in range(6):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return root


def _config(preset: Path, folder: Path, out: Path, *extra: str):
    cfg = load_config(preset, [*SHORT, f"out_dir={out}", *extra])
    moved = []
    if cfg.data not in ("embedded",):  # torchvision files or an ImageFolder: the synthetic folder instead
        moved += ["data=folder", f"data_root={folder}", "test_split=val"]
    if cfg.img_size > 64:  # the preset's model and recipe, at a size a CPU test can afford
        moved.append("img_size=64")
    return load_config(preset, [*SHORT, f"out_dir={out}", *moved, *extra])


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_every_shipped_preset_trains(preset, folder, tmp_path):
    extra = []
    if load_config(preset, []).initial_checkpoint:  # fine-tuning: from a checkpoint of the demo preset
        base = train(_config(ROOT / "configs" / "train" / "fmnist_swin_micro.yaml", folder, tmp_path / "base"))
        extra.append(f"initial_checkpoint={base.out_dir / 'best.pth'}")
    res = train(_config(preset, folder, tmp_path / "run", *extra))
    assert len(res.history) == 1 and res.history[0]["step"] == 2
    assert np.isfinite(res.history[0]["train_loss"]) and (tmp_path / "run" / "last.pth").is_file()


def _ops(transform) -> list:
    found, stack = [], [transform]
    while stack:
        t = stack.pop()
        if isinstance(t, auto_augment.AugmentOp):
            found.append(t)
            continue
        for attr in ("transforms", "ops", "policy"):
            inner = getattr(t, attr, None)
            if isinstance(inner, list | tuple):
                stack.extend(inner)
    return found


@pytest.mark.parametrize("preset", [p for p in PRESETS if load_config(p, []).auto_augment], ids=lambda p: p.stem)
def test_every_auto_augment_op_of_a_preset_runs_at_its_extremes(preset, folder, tmp_path):
    cfg = _config(preset, folder, tmp_path)
    train_ds, _, _ = build_datasets(cfg)
    ops = _ops(train_ds.dataset.transform)
    assert any("Posterize" in op.name for op in ops), [op.name for op in ops]
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    images = [rgb if cfg.in_chans == 3 else rgb.convert("L"), Image.new("RGB" if cfg.in_chans == 3 else "L", (24, 24))]
    for op in ops:
        for magnitude in (0.0, op.magnitude_max or 10.0):  # the clip bounds of timm's magnitude noise
            op.prob, op.magnitude, op.magnitude_std = 1.0, magnitude, 0.0
            for img in images:
                out = op(img)
                assert out.size == img.size and out.mode == img.mode, (op.name, magnitude)
    posterize = next(op for op in ops if op.name == "PosterizeIncreasing")
    posterize.magnitude = 10.0  # keeps 0 bits: Pillow 12 gave a black image, which is what it gives here
    assert np.asarray(posterize(images[0])).max() == 0
