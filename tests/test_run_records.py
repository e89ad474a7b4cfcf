"""A run's records as a timm user looks for them (summary.csv with train.py's columns, args.yaml, the learning
curves, W&B and TensorBoard as extras), ``hiermlp plot``, and one eval transform for every evaluator: the
checkpoint records it, a model rebuilt from it carries it, so timm's ``resolve_data_config`` reproduces it."""

from __future__ import annotations

import csv
import json
import sys
import types

import pytest
import timm
import torch
import yaml
from PIL import Image

import hiermlp
from hiermlp.cli import main
from hiermlp.data import folder_split
from hiermlp.errors import ConfigError
from hiermlp.train import load_config, train
from hiermlp.train.build import build_datasets, resolve_data_config
from hiermlp.train.records import SUMMARY_COLUMNS, plot_runs, read_run

# the micro Swin of the demos on 16x16 images, 2 epochs of 256 images: a few seconds
RUN = [
    "model=swin_micro_patch2_window4_32",
    "model_kwargs={depths: [1, 1], num_heads: [1, 2], embed_dim: 16}",
    "img_size=16",
    "limit_train=256",
    "limit_test=128",
    "batch_size=64",
    "eval_batch_size=128",
    "epochs=2",
    "no_aug=true",
    "threads=1",
    "progress=false",
    "tensorboard=false",
    "amp=none",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return train(load_config(None, [*RUN, f"out_dir={out}"])), out


def test_summary_csv_has_train_pys_columns_and_the_runs_values(run):
    res, out = run
    with (out / "summary.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames[: len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # counted from 0, as timm's train.py counts
    for row, hist in zip(rows, res.history):
        got = {k: float(row[k]) for k in SUMMARY_COLUMNS[1:]}
        want = dict(train_loss=hist["train_loss"], eval_loss=hist["test_loss"], eval_top1=hist["top1"])
        want |= dict(eval_top5=hist["top5"], lr=hist["lr"])
        assert got == pytest.approx(want, rel=1e-12)
        assert float(row["img_s"]) == pytest.approx(hist["img_s"])  # hiermlp's own columns follow timm's


def test_args_yaml_is_the_resolved_run_and_curves_are_drawn(run):
    res, out = run
    args = yaml.safe_load((out / "args.yaml").read_text())
    cfg = res.config
    assert cfg.interpolation == "" and cfg.crop_pct == 0.0 and cfg.num_classes == 0  # left to model and data
    dc = resolve_data_config(cfg)
    assert (args["interpolation"], args["crop_pct"]) == ("bilinear", 1.0) == (dc["interpolation"], dc["crop_pct"])
    assert args["num_classes"] == 10 and args["mean"] == [pytest.approx(0.286)]
    assert args["run"]["params"] == res.params and args["run"]["steps_per_epoch"] == 4
    assert args["run"]["lr"] == pytest.approx(cfg.lr * 64 / 512)  # scaled to the batch
    assert args["run"]["versions"]["timm"] == timm.__version__
    assert load_config(out / "config.yaml", []) == cfg  # config.yaml stays the file train reads back
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert [r["epochs"] for r in read_run(out)] == [1.0, 2.0]


def test_wandb_logs_timms_rows_offline(tmp_path, monkeypatch):
    calls = []
    fake = types.SimpleNamespace(
        init=lambda **kw: calls.append(("init", kw)),
        log=lambda row: calls.append(("log", row)),
        finish=lambda: calls.append(("finish", None)),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setenv("WANDB_MODE", "offline")
    res = train(load_config(None, [*RUN, "epochs=1", "log_wandb=true", "wandb_project=demo", f"out_dir={tmp_path}"]))
    (_, init), (_, row), (finish, _) = calls
    assert init["project"] == "demo" and init["config"] == yaml.safe_load((tmp_path / "args.yaml").read_text())
    assert tuple(row)[: len(SUMMARY_COLUMNS)] == SUMMARY_COLUMNS and row["eval_top1"] == res.top1
    assert finish == "finish"
    # without the package: one ConfigError naming the extra, before anything is trained
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"log_wandb=true needs the wandb package: pip install 'hiermlp\[wandb\]'"):
        train(load_config(None, [*RUN, "log_wandb=true", f"out_dir={tmp_path / 'b'}"]))


def test_missing_tensorboard_says_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    train(load_config(None, [*RUN, "epochs=1", "tensorboard=true", f"out_dir={tmp_path}"]))
    err = [line for line in capsys.readouterr().err.splitlines() if "tensorboard" in line]
    assert err == [
        "note: tensorboard is not installed, so no TensorBoard events are written "
        "(pip install 'hiermlp[tensorboard]', or tensorboard=false)"
    ]
    assert not (tmp_path / "tb").exists()


def test_plot_overlays_hiermlp_and_timm_runs(run, tmp_path, capsys):
    _, out = run
    timm_run = tmp_path / "timm_run"  # what timm's train.py writes: summary.csv only
    timm_run.mkdir()
    (timm_run / "summary.csv").write_text(
        "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n0,2.1,2.0,30.5,80.0,0.01\n1,1.9,1.8,41.0,88.0,0.005\n"
    )
    assert [r["eval_top1"] for r in read_run(timm_run)] == [30.5, 41.0]
    assert main(["plot", str(out), str(timm_run), "--out", str(tmp_path / "both.png")]) == 0
    assert (tmp_path / "both.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp_path / "nothing"), "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no run: no metrics.jsonl (hiermlp train) or summary.csv" in err
    with pytest.raises(ConfigError, match="2 labels for 1 runs"):
        plot_runs([out], tmp_path / "y.png", labels=["a", "b"])


# ---- one eval transform for every evaluator ------------------------------------------------------------------
def test_checkpoint_records_the_eval_transform_and_timm_resolves_it(run):
    res, out = run
    ckpt = torch.load(out / "best.pth", weights_only=True)
    assert ckpt["data_config"] == resolve_data_config(res.config)
    # the trainer's own eval transform, and the one timm builds for a model rebuilt from the checkpoint
    _, test_ds, _ = build_datasets(res.config)
    model = hiermlp.model_from_checkpoint(out / "best.pth")
    cfg = timm.data.resolve_data_config(model=model)
    assert cfg["input_size"] == (1, 16, 16) and cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 1.0
    timm_tf = timm.data.create_transform(**cfg)
    img = Image.fromarray((torch.rand(28, 28) * 255).byte().numpy(), mode="L")
    assert torch.equal(timm_tf(img), test_ds.transform(img))


def test_trainer_default_follows_the_model_cfg_and_explicit_values_win(tmp_path):
    tiny = load_config(None, ["model=swin_tiny_patch4_window7_224", "img_size=224", "in_chans=3", "data=folder"])
    dc = resolve_data_config(tiny)
    want = hiermlp.create_model("swin_tiny_patch4_window7_224").pretrained_cfg
    assert (dc["interpolation"], dc["crop_pct"], dc["mean"]) == (want["interpolation"], want["crop_pct"], want["mean"])
    mine = resolve_data_config(load_config(None, ["interpolation=nearest", "crop_pct=0.8", "mean=0.5"]))
    assert (mine["interpolation"], mine["crop_pct"], mine["mean"], mine["std"]) == ("nearest", 0.8, (0.5,), (0.5,))
    # the micro rows say what the small-data recipe evaluates with
    assert resolve_data_config(load_config(None, []))["interpolation"] == "bilinear"
    # a timm train.py checkpoint's explicit arguments are its eval transform too
    import argparse

    model = hiermlp.create_model("swin_micro_patch2_window4_32", num_classes=3)
    args = argparse.Namespace(model="hiermlp_swin_micro_patch2_window4_32", interpolation="bicubic", crop_pct=0.75)
    torch.save({"state_dict": model.state_dict(), "arch": args.model, "args": args}, tmp_path / "model_best.pth.tar")
    back = hiermlp.model_from_checkpoint(tmp_path / "model_best.pth.tar")
    assert timm.data.resolve_data_config(model=back)["crop_pct"] == 0.75
    assert back.pretrained_cfg["interpolation"] == "bicubic"


def test_image_folder_splits_follow_timms_names(tmp_path):
    for split in ("training", "valid"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / split / cls / "0.png")
    assert folder_split(tmp_path, "train") == tmp_path / "training"
    assert folder_split(tmp_path, "validation") == folder_split(tmp_path, "val") == tmp_path / "valid"
    cfg = load_config(None, ["data=folder", f"data_root={tmp_path}", "in_chans=3"])  # test_split: validation
    train_ds, test_ds, n = build_datasets(cfg)
    assert n == 2 and len(train_ds) == len(test_ds) == 2
    with pytest.raises(FileNotFoundError, match=r"no 'test' split \(looked for test\); its folders: training, valid"):
        folder_split(tmp_path, "test")
    assert json.dumps(resolve_data_config(cfg))  # plain values: it goes into checkpoints and args.yaml


def test_write_image_folder_gives_timms_layout_of_the_embedded_images(tmp_path):
    import numpy as np

    from hiermlp.data import build_dataset
    from hiermlp.data.folder import write_image_folder

    root = write_image_folder(tmp_path / "tiny", per_class=2, classes=3)
    assert sorted(p.name for p in root.iterdir()) == ["train", "validation"]
    test = build_dataset("embedded", split="test", mode="L")
    classes = sorted(p.name for p in (root / "validation").iterdir())
    assert len(classes) == 3 and all(len(list((root / "validation" / c).iterdir())) == 2 for c in classes)
    first = sorted((root / "validation" / test.classes[0].replace("/", "_")).iterdir())[0]
    img = np.asarray(Image.open(first))
    assert img.shape == (28, 28, 3) and np.array_equal(img[..., 0], test.images[int(first.stem)])
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        write_image_folder(tmp_path / "x", splits=("dev",))
