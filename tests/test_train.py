"""Training engine, in process: a short run learns, checkpoints load, bad input fails clearly."""

import json
import shutil

import pytest
import torch

import hiermlp
from hiermlp.data import subset_indices
from hiermlp.errors import CheckpointError
from hiermlp.train import ConfigError, evaluate, load_config, train
from hiermlp.train import loop as train_loop

# a 2-stage Swin on 16x16 inputs: an epoch of 1024 images takes about 3 s on one CPU thread
TINY = [
    "model=swin_tiny_patch4_window7_224",
    "model_kwargs={patch_size: 2, embed_dim: 16, depths: [1, 1], num_heads: [1, 2], window_size: 4}",
    "img_size=16",
    "limit_train=1024",
    "limit_test=500",
    "batch_size=64",
    "eval_batch_size=250",
    "lr=8e-2",  # per 512 images: 1e-2 at batch 64, high enough for a 19k-param model to move in 30 steps
    "warmup_epochs=0.5",
    "no_aug=true",
    "epochs=2",
    "threads=1",  # test machines are shared; oversubscribed threads are slower than one
    "progress=false",
    "tensorboard=false",
]


def tiny(tmp_path, *extra):
    return load_config(None, [*TINY, f"out_dir={tmp_path}", *extra])


def test_short_run_learns_and_writes_outputs(tmp_path):
    res = train(tiny(tmp_path, "limit_train=2048", "label_smoothing=0", "drop_path_rate=0"))
    assert res.top1 > 30.0, res.history  # chance is 10%; this run measured 47%
    assert res.best_top1 >= res.top1 and 1 <= res.best_epoch <= 2
    assert len(res.history) == 2 and res.img_s > 0 and res.train_time_s > 0
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "test_loss", "top1", "top5", "lr", "epoch_time_s", "img_s"} <= set(rows[0])
    assert load_config(tmp_path / "config.yaml", []) == res.config

    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 2 * 32 and ckpt["config"]["model"] == res.config.model
    # the weights load through the library's own loader into a freshly built model
    model = train_loop.model_from_config(res.config, 10)
    hiermlp.load_checkpoint(model, tmp_path / "last.pth")
    for k, v in res.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    _, test_ds, _ = train_loop.build_datasets(res.config)
    picked = subset_indices(len(test_ds), res.config.limit_test, res.config.seed)  # the trainer's test subset
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(test_ds, picked), batch_size=250)
    m = evaluate(model, loader, "cpu", amp=res.config.amp)
    # the same weights on the same images; batching may flip a near-tie under bf16, never more than two
    assert m["count"] == len(picked) == 500 and abs(m["top1"] - res.top1) <= 0.4


def test_accumulation_gives_the_same_updates(tmp_path):
    common = ("amp=none", "drop_path_rate=0", "epochs=1", "limit_train=256", "no_aug=false")
    a = train(tiny(tmp_path / "a", *common))
    b = train(tiny(tmp_path / "b", *common, "accum_steps=4"))
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(va, vb, atol=2e-5, rtol=1e-4, msg=k)


def test_ema_grad_checkpointing_mixup_and_timm_fallback(tmp_path):
    res = train(tiny(tmp_path, "epochs=1", "ema=true", "ema_decay=0.9", "mixup=0.8"))
    assert "ema_top1" in res.history[0]
    assert torch.load(tmp_path / "last.pth", weights_only=True)["model_ema"] is not None
    res = train(
        tiny(
            tmp_path / "g", "epochs=1", "grad_checkpointing=true", "cutmix=1.0", "auto_augment=rand-m9", "num_workers=2"
        )
    )
    assert res.history[0]["top1"] >= 0
    cfg = tiny(tmp_path / "t", "epochs=1", "model=test_vit", "model_kwargs={}", "limit_train=128")
    assert train(cfg).history[0]["top1"] >= 0  # a timm-only name falls back to timm
    with pytest.raises(ConfigError, match=r"unknown model 'swin_tinny_patch4_window7_224'.*Did you mean: swin_tiny"):
        train(tiny(tmp_path / "u", "model=swin_tinny_patch4_window7_224"))


def test_nan_loss_stops_naming_the_step(tmp_path, monkeypatch):
    build = train_loop.model_from_config

    def nan_after_two_steps(cfg, num_classes):
        model, calls = build(cfg, num_classes), [0]

        def hook(module, args, out):
            calls[0] += module.training
            return out * float("nan") if calls[0] == 3 else out

        model.register_forward_hook(hook)
        return model

    monkeypatch.setattr(train_loop, "model_from_config", nan_after_two_steps)
    with pytest.raises(FloatingPointError, match=r"loss is nan at optimizer step 3 \(epoch 1, step 3 of 16\)"):
        train(tiny(tmp_path))


def test_missing_data_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        train(tiny(tmp_path, "data=folder", f"data_root={tmp_path / 'no_such_dir'}"))


def test_corrupt_checkpoint_on_resume_keeps_the_good_ones(tmp_path):
    train(tiny(tmp_path, "epochs=1"))
    best = (tmp_path / "best.pth").read_bytes()
    last = tmp_path / "last.pth"
    last.write_bytes(last.read_bytes()[: len(best) // 2])  # a torn file, e.g. from another tool
    torn = last.read_bytes()
    with pytest.raises(CheckpointError, match=r"cannot load checkpoint .*last\.pth: it is corrupt or truncated"):
        train(tiny(tmp_path, "epochs=2", "resume=auto"))
    assert last.read_bytes() == torn and (tmp_path / "best.pth").read_bytes() == best
    # the good checkpoint still resumes
    shutil.copy(tmp_path / "best.pth", tmp_path / "good.pth")
    res = train(tiny(tmp_path, "resume=" + str(tmp_path / "good.pth")))
    assert [h["epoch"] for h in res.history] == [1, 2]
    with pytest.raises(CheckpointError, match="does not exist"):
        train(tiny(tmp_path, "resume=" + str(tmp_path / "missing.pth")))


def test_cli_train_and_eval(tmp_path, capsys):
    from hiermlp.cli import main

    assert main(["train", *TINY, "epochs=1", f"out_dir={tmp_path}"]) == 0
    assert "test top-1" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "last.pth"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["count"] == 2000 and m["top1"] > 10
    assert main(["train", "lrr=1"]) == 2
    assert "Did you mean: lr" in capsys.readouterr().err
    assert main(["train", "fmnist_swin_micro", "--print-config"]) == 0
    assert "model_kwargs:" in capsys.readouterr().out
