"""Two-process DDP on CPU (gloo, started by torchrun) matches a one-process run of the same global batch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hiermlp
from hiermlp.train import load_config, train
from hiermlp.train.loop import model_from_config
from hiermlp.train.records import RECORD_FILES

from .test_train import TINY

ROOT = Path(__file__).resolve().parents[1]
# the README's scope for equal weights: amp=none and no drop path (whose masks are drawn per rank); the
# batches and their augmentation are the same under any recipe (test_train_recipes checks the default one)
RUN = [*TINY, "epochs=2", "amp=none", "drop_path_rate=0", "no_aug=false", "limit_train=512"]


@pytest.mark.slow
def test_torchrun_two_processes_matches_one(tmp_path):
    single = train(load_config(None, [*RUN, f"out_dir={tmp_path / 'one'}"]))

    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    # compiled under DDP (the eager backend traces with dynamo and DDPOptimizer but adds no codegen)
    cmd += ["-m", "hiermlp", "train", *RUN, f"out_dir={out}", "compile=true", "compile_backend=eager"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("test top-1") == 1  # only rank 0 reports

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for a, b in zip(rows, single.history):
        assert a["step"] == b["step"]
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-3
        assert abs(a["test_loss"] - b["test_loss"]) < 1e-3
        assert abs(a["top1"] - b["top1"]) <= 0.4  # 500 test images: at most 2 flips from float noise

    ckpt = torch.load(out / "last.pth", weights_only=True)
    model = model_from_config(single.config, 10)
    hiermlp.load_checkpoint(model, out / "last.pth")
    for k, v in single.model.state_dict().items():
        torch.testing.assert_close(ckpt["model"][k], v, atol=1e-4, rtol=1e-3, msg=k)
    # rank 0 alone writes: the run files and the run records, no other rank's copy
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.pth", "config.yaml", "last.pth", "metrics.jsonl", *RECORD_FILES]
    )
