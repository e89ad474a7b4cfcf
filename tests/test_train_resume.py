"""Kill -9 mid-epoch, resume, and land on the same weights as an uninterrupted run.

While the killed run trains, every ``*.pth`` in its output directory is loaded again and again: a
checkpoint is never seen half-written, and temporary files never carry a ``.pth`` name.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hiermlp.train import load_config, train

from .test_train import TINY

ROOT = Path(__file__).resolve().parents[1]
# the default recipe (bf16 autocast, random-resized-crop + flip), with a larger drop path so it matters
RUN = [*TINY, "epochs=3", "ckpt_every=3", "drop_path_rate=0.1", "no_aug=false", "limit_train=448"]


def _launch(out_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "hiermlp", "train", *RUN, f"out_dir={out_dir}", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _load_all(out_dir: Path) -> dict[str, dict]:
    """Load every .pth now present; a partial file would raise here."""
    found = {}
    for p in out_dir.glob("*.pth"):
        try:
            found[p.name] = torch.load(p, weights_only=True)
        except FileNotFoundError:  # replaced between glob and open: fine, the new one is checked next round
            continue
    return found


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    ref = train(load_config(None, [*RUN, f"out_dir={tmp_path / 'ref'}"]))

    out = tmp_path / "killed"
    proc = _launch(out)
    killed_at = None
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        ckpts = _load_all(out) if out.exists() else {}
        last = ckpts.get("last.pth")
        if last is not None and last["epoch"] >= 1 and last["epoch_step"] > 0:  # mid-epoch 2 or later
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_at = (last["epoch"], last["epoch_step"])
            break
        time.sleep(0.02)
    assert killed_at is not None, f"run ended before it could be killed: {proc.communicate()[0][-2000:]}"
    assert proc.returncode == -signal.SIGKILL
    assert not any(p.suffix == ".pth" for p in out.iterdir() if p.name.startswith("."))
    # a write the kill interrupted leaves .last.pth.tmp-<pid>; plant one for certain: the resume removes it
    (out / f".last.pth.tmp-{proc.pid}").write_bytes(b"torn")

    proc = _launch(out, "resume=auto")
    while proc.poll() is None:  # keep checking that no checkpoint is ever partial
        _load_all(out)
        time.sleep(0.05)
    log = proc.communicate()[0]
    assert proc.returncode == 0, log[-3000:]

    assert not list(out.glob(".*.tmp-*"))
    final = torch.load(out / "last.pth", weights_only=True)
    assert final["epoch"] == 3 and final["step"] == ref.history[-1]["step"]
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(final["model"][k], v, atol=1e-5, rtol=1e-4, msg=f"{k} (killed at {killed_at})")
    assert [h["epoch"] for h in final["history"]] == [1, 2, 3]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 3  # no duplicated epochs from the killed attempt
    for got, want in zip(lines, ref.history):  # the interrupted epoch's loss counts the steps before the kill
        assert abs(got["train_loss"] - want["train_loss"]) < 1e-4 and abs(got["top1"] - want["top1"]) <= 0.4
