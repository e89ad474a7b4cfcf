"""``task=segment`` in the one trainer: a short run learns, a killed run resumes to the same weights, checkpoints
evaluate through the CLI, DDP's confusion matrix equals one process's, and mismatches fail in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hiermlp
from hiermlp.cli import main
from hiermlp.errors import ConfigError, ShapeError
from hiermlp.train import load_config, train
from hiermlp.train import loop as train_loop

ROOT = Path(__file__).resolve().parents[1]
# a 2-stage micro Swin with UPerNet and the auxiliary head on 64x64 scenes: about 2 s per epoch on one thread
SEG = [
    "task=segment",
    "data=scenes",
    "model=upernet_swin_tiny_patch4_window7_512",
    "model_kwargs={patch_size: 4, embed_dim: 16, depths: [1, 1], num_heads: [1, 2], window_size: 4, "
    "channels: 16, aux_channels: 8, aux_index: 0, pool_scales: [1, 2]}",
    "img_size=64",
    "limit_train=192",
    "limit_test=64",
    "batch_size=16",
    "eval_batch_size=32",
    "lr=0.02",
    "warmup_epochs=0.2",
    "epochs=2",
    "no_aug=true",
    "label_smoothing=0",
    "drop_path_rate=0",
    "amp=none",
    "threads=1",
    "progress=false",
    "tensorboard=false",
]


def seg(tmp_path, *extra):
    return load_config(None, [*SEG, f"out_dir={tmp_path}", *extra])


def test_short_segmentation_run_learns_and_its_checkpoint_evaluates(tmp_path, capsys):
    # a per-pixel linear model learns in seconds what a pixel's value says: most background, some classes.
    # Predicting background everywhere scores aAcc 78.3 and mIoU 7.1 on these scenes; masks that did not line
    # up with their images would leave the model there
    run = ["model=pixel_linear", "model_kwargs={}", "limit_train=1000", "limit_test=200", "lr=0.3", "epochs=3"]
    res = train(seg(tmp_path, *run))
    assert res.task == "segment" and res.score == res.history[-1]["miou"] == res.metrics["miou"]
    assert res.metrics["aacc"] > 80.5 and res.score > 9.5, res.history
    assert res.best_score >= res.score and 1 <= res.best_epoch <= 3 and res.top1 != res.top1  # top-1 is NaN
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"miou", "macc", "aacc", "mdice", "class_iou", "test_loss"} <= set(rows[-1])
    assert len(rows[-1]["class_iou"]) == 11
    assert "mIoU" in res.summary()
    # the checkpoint rebuilds the trained model; `hiermlp eval` scores it on the whole test split (1000 scenes,
    # of which the run evaluated 200)
    assert main(["eval", str(tmp_path / "last.pth"), "--json"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["count"] == 1000 and abs(m["miou"] - res.score) < 1.0 and len(m["class_iou"]) == 11
    # bare weights under a segmentor's name evaluate per pixel too: the registry says what the model learns
    weights = hiermlp.weights.save_weights(res.model, tmp_path / "pixel.safetensors")
    assert main(["eval", "pixel_linear", "--checkpoint", str(weights), "--data", "scenes", "--json"]) == 0
    bare = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert bare["miou"] == m["miou"] and bare["count"] == 1000
    model = hiermlp.model_from_checkpoint(tmp_path / "best.pth")
    assert model.task == "segment" and model.num_classes == 11


@pytest.mark.parametrize("where", ["mid-epoch", "epoch end"])
def test_killed_segmentation_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch, where):
    # augmentation, drop path, EMA and the auxiliary loss all on: each draws from the RNG the resume restores
    recipe = ["no_aug=false", "drop_path_rate=0.1", "ema=true", "ema_decay=0.9", "ckpt_every=5", "epochs=2"]
    ref = train(seg(tmp_path / "ref", *recipe))

    kill_after = 7 if where == "mid-epoch" else 12  # 12 steps per epoch: step 12 ends epoch 1
    real = train_loop._Run.optimizer_step

    def dies(self, losses):
        if self.state.step == kill_after:
            raise KeyboardInterrupt  # the process dies here; files written so far stay
        return real(self, losses)

    monkeypatch.setattr(train_loop._Run, "optimizer_step", dies)
    with pytest.raises(KeyboardInterrupt):
        train(seg(tmp_path / "run", *recipe))
    monkeypatch.setattr(train_loop._Run, "optimizer_step", real)
    resumed = train(seg(tmp_path / "run", *recipe, "resume=auto"))

    assert [h["step"] for h in resumed.history] == [h["step"] for h in ref.history]
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, atol=1e-6, rtol=1e-5, msg=k)
    for a, b in zip(resumed.history, ref.history):
        assert a["miou"] == pytest.approx(b["miou"], abs=1e-4) and a["ema_miou"] == pytest.approx(b["ema_miou"])


def test_sliding_window_evaluation_at_a_size_the_model_did_not_train_at(tmp_path):
    # trained on 32x32 crops of the 64x64 scenes, evaluated on whole scenes by 32x32 windows every 16 pixels
    res = train(seg(tmp_path, "img_size=32", "no_aug=false", "seg_scale=[0.5, 0.5]", "inference=slide",
                    "slide_stride=16", "epochs=1"))  # fmt: skip
    assert res.metrics["miou"] == res.metrics["miou"] and res.metrics["aacc"] > 50.0


def test_mismatched_task_model_and_data_fail_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="is a classifier; task=segment needs a segmentation model"):
        train(
            seg(
                tmp_path,
                "model=swin_tiny_patch4_window7_224",
                "model_kwargs={embed_dim: 16, depths: [1], num_heads: 1}",
            )
        )
    with pytest.raises(ConfigError, match="data=scenes is a segmentation dataset: set task=segment"):
        train(load_config(None, ["data=scenes", f"out_dir={tmp_path}", "progress=false"]))
    with pytest.raises(ConfigError, match="data=embedded is a classification dataset; task=segment reads"):
        train(seg(tmp_path, "data=embedded"))
    with pytest.raises(ConfigError, match=r"mixup=0\.8 is a classification augmentation"):
        seg(tmp_path, "mixup=0.8")
    with pytest.raises(ShapeError, match="at least 2 images per training step"):
        train(seg(tmp_path, "batch_size=1", "limit_train=4"))


def test_bf16_autocast_segmentation_run_stays_finite(tmp_path):
    res = train(seg(tmp_path, "amp=bf16", "epochs=1", "limit_train=64"))
    assert all(torch.isfinite(v).all() for v in res.model.state_dict().values() if v.is_floating_point())
    assert res.history[-1]["test_loss"] == res.history[-1]["test_loss"]


@pytest.mark.slow
def test_torchrun_two_processes_give_the_one_process_segmentation_run(tmp_path):
    # a per-pixel linear model (no BatchNorm, whose statistics are per process) on unpadded scenes: every rank has
    # as many labelled pixels, so the mean of the ranks' losses is the global mean and the weights agree
    run = [*SEG, "model=pixel_linear", "model_kwargs={}", "epochs=2", "limit_test=96", "eval_batch_size=24"]
    single = train(load_config(None, [*run, f"out_dir={tmp_path / 'one'}"]))
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = subprocess.run(
        [*cmd, "-m", "hiermlp", "train", *run, f"out_dir={out}"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for a, b in zip(rows, single.history):
        # the test set is sharded over the ranks: the summed confusion matrix gives the one-process metrics
        assert a["miou"] == pytest.approx(b["miou"], abs=1e-3) and a["aacc"] == pytest.approx(b["aacc"], abs=1e-3)
        assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-4)
    ckpt = torch.load(out / "last.pth", weights_only=True)
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ckpt["model"][k], v, atol=1e-5, rtol=1e-4, msg=k)
