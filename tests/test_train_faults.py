"""Nothing lost: every fault of a run leaves the files it had written loadable and finite.

Each test is one row of issue 18's table, written as the command (or snippet) that used to lose or poison
something, asserting the named error and the preserved files.
"""

import errno
import os
import subprocess

import pytest
import torch

import hiermlp.io
from hiermlp.errors import NonFiniteError, OutputError
from hiermlp.train import load_config, train
from hiermlp.train import loop as train_loop
from hiermlp.train.records import RECORD_FILES

from .test_train import TINY

# 4 optimizer steps per epoch of 64 images: a run costs about a second
SMALL = [*TINY, "limit_train=256", "limit_test=64", "batch_size=64"]


def small(out, *extra):
    return load_config(None, [*SMALL, f"out_dir={out}", *extra])


def _all_finite(sd: dict) -> bool:
    return all(torch.isfinite(v).all() for v in sd.values() if torch.is_tensor(v) and v.is_floating_point())


def _files(d):
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def test_diverging_lr_stops_before_the_poisoned_step_is_written(tmp_path):
    # hiermlp train limit_train=256 limit_test=64 batch_size=64 epochs=3 lr=1e6 ckpt_every=1 out_dir=X
    with pytest.raises(NonFiniteError, match=r"at optimizer step (\d+) .*last\.pth \(step \d+\) is the last good"):
        train(small(tmp_path, "epochs=3", "lr=1e6", "ckpt_every=1"))
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert ckpt["step"] >= 1 and _all_finite(ckpt["model"]) and _all_finite(ckpt["optimizer"]["state"][0])
    # resume=auto lr=1e-3: loads the good checkpoint at once; whatever the huge-but-finite weights do next,
    # last.pth stays finite
    try:
        train(small(tmp_path, "epochs=3", "lr=1e-3", "ckpt_every=1", "resume=auto"))
    except NonFiniteError as e:
        assert "is the last good checkpoint" in str(e)
    assert _all_finite(torch.load(tmp_path / "last.pth", weights_only=True)["model"])


def test_nan_policy_skip_skips_bad_steps_and_keeps_training(tmp_path):
    res = train(small(tmp_path, "epochs=1", "lr=1e6", "nan_policy=skip"))
    assert res.skipped_steps > 0 and res.history[-1]["skipped_steps"] == res.skipped_steps
    assert _all_finite(torch.load(tmp_path / "last.pth", weights_only=True)["model"])


def _poison(monkeypatch, *, grads_at=None, weights_at=None):
    """Make gradients (or, after the update, a weight) non-finite at one optimizer step."""
    build = train_loop.model_from_config

    def model_from_config(cfg, num_classes):
        model = build(cfg, num_classes)
        calls = [0]

        def fwd(module, args, out):
            calls[0] += module.training
            return out

        model.register_forward_hook(fwd)
        if grads_at is not None:
            model.head.fc.weight.register_hook(lambda g: g * float("nan") if calls[0] == grads_at else g)
        if weights_at is not None:

            def corrupt(module, args):
                if calls[0] + 1 == weights_at:  # the forward about to run is call number weights_at
                    module.head.fc.bias.data.fill_(float("inf"))

            model.register_forward_pre_hook(corrupt)
        return model

    monkeypatch.setattr(train_loop, "model_from_config", model_from_config)


def test_nonfinite_gradients_stop_or_skip(tmp_path, monkeypatch):
    _poison(monkeypatch, grads_at=2)
    with pytest.raises(NonFiniteError, match=r"gradient norm is nan at optimizer step 2 \(epoch 1, step 2 of 4\)"):
        train(small(tmp_path / "stop", "epochs=1"))
    assert not (tmp_path / "stop" / "last.pth").exists()  # nothing of the run was written
    res = train(small(tmp_path / "skip", "epochs=1", "nan_policy=skip"))
    assert res.skipped_steps == 1 and _all_finite(res.model.state_dict())


def test_nonfinite_weights_are_never_saved(tmp_path, monkeypatch):
    # the forward of step 3 sees an inf bias: a NaN loss (policy stop) or, were it skipped, weights that
    # stay inf; under nan_policy=skip the weights check stops the run instead of writing them
    _poison(monkeypatch, weights_at=3)
    with pytest.raises(NonFiniteError, match=r"weight tensors \(e.g. head.fc.bias\) became non-finite .*step 3"):
        train(small(tmp_path, "epochs=1", "nan_policy=skip", "ckpt_every=1"))
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert ckpt["step"] == 2 and _all_finite(ckpt["model"])


def test_temp_files_of_killed_writes_are_removed_by_the_next_run(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid now names no process
    tmp_path.mkdir(exist_ok=True)
    stale = [tmp_path / f".last.pth.tmp-{dead.pid}", tmp_path / f".best.pth.tmp-{dead.pid}"]
    live = tmp_path / f".last.pth.tmp-{os.getppid()}"  # a write still in progress elsewhere
    for p in [*stale, live]:
        p.write_bytes(b"partial")
    train(small(tmp_path, "epochs=1"))
    assert not any(p.exists() for p in stale) and live.exists()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted([live.name, "best.pth", "config.yaml", "last.pth", "metrics.jsonl", *RECORD_FILES])


def test_a_new_run_refuses_a_previous_runs_out_dir(tmp_path):
    train(small(tmp_path, "epochs=1"))
    before = _files(tmp_path)
    previous = r"holds a previous run \(last.pth, best.pth, metrics.jsonl\); pass resume=auto"
    with pytest.raises(OutputError, match=previous):
        train(small(tmp_path, "epochs=1", "seed=1"))
    assert _files(tmp_path) == before  # best.pth not overwritten, metrics.jsonl not truncated
    res = train(small(tmp_path, "epochs=2", "resume=auto"))
    assert [h["epoch"] for h in res.history] == [1, 2]
    res = train(small(tmp_path, "epochs=1", "seed=1", "overwrite=true"))
    assert [h["epoch"] for h in res.history] == [1]
    assert torch.load(tmp_path / "best.pth", weights_only=True)["config"]["seed"] == 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def _fail_writes_of(monkeypatch, name, err):
    write = hiermlp.io._write_file

    def failing(tmp, fn):
        if tmp.name.startswith(f".{name}.tmp-"):
            raise err
        return write(tmp, fn)

    monkeypatch.setattr(hiermlp.io, "_write_file", failing)


def test_disk_full_while_checkpointing_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    train(small(tmp_path, "epochs=1"))
    before = _files(tmp_path)
    _fail_writes_of(monkeypatch, "last.pth", OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OutputError) as e:
        train(small(tmp_path, "epochs=2", "resume=auto"))
    msg = str(e.value)
    assert "\n" not in msg and f"cannot write checkpoint {tmp_path / 'last.pth'}: No space left" in msg
    assert "(ENOSPC); free disk space" in msg
    after = _files(tmp_path)
    assert after["last.pth"] == before["last.pth"] and after["best.pth"] == before["best.pth"]
    assert not [n for n in after if ".tmp-" in n]
    # the good checkpoint resumes once there is space again
    monkeypatch.undo()
    assert [h["epoch"] for h in train(small(tmp_path, "epochs=2", "resume=auto")).history] == [1, 2]


def test_read_only_or_missing_directory_is_one_named_line(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=r"cannot write output directory .*a_file/run: .*a parent .* is a file"):
        train(small(blocker / "run", "epochs=1"))
    _fail_writes_of(monkeypatch, "config.yaml", OSError(errno.EROFS, "Read-only file system"))
    with pytest.raises(OutputError, match=r"config .*config.yaml: Read-only file system \(EROFS\); the file system"):
        train(small(tmp_path / "ro", "epochs=1"))
    assert not (tmp_path / "ro" / "last.pth").exists()


def test_atomic_writer_unit(tmp_path, monkeypatch):
    p = hiermlp.io.atomic_write_text(tmp_path / "sub" / "a.txt", "one")
    assert p.read_text() == "one"
    _fail_writes_of(monkeypatch, "a.txt", OSError(errno.EDQUOT, "Disk quota exceeded"))
    with pytest.raises(OutputError, match="quota"):
        hiermlp.io.atomic_write_text(p, "two")
    assert p.read_text() == "one" and os.listdir(p.parent) == ["a.txt"]
    with pytest.raises(OutputError, match="is a directory"):
        hiermlp.io.atomic_write_text(tmp_path / "sub", "x")
