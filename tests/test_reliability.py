"""Nothing silently wrong, nothing lost (issue 26): one test per numbered defect, each of which failed before.

Kill points are injected deterministically: the package's one atomic writer (``hiermlp.io._write_file``) is
made to raise (or to end the process) at its k-th call, never a timer.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hiermlp
import hiermlp.io
from hiermlp.cli import main
from hiermlp.errors import CheckpointError, ConfigError, OutputError
from hiermlp.train import load_config, train
from hiermlp.train import loop as train_loop

from .test_train import TINY

ROOT = Path(__file__).resolve().parents[1]
# 2 optimizer steps per epoch of 64 images: a run costs about a second
SMALL = [*TINY, "limit_train=128", "limit_test=64", "batch_size=64"]


def small(out, *extra):
    return load_config(None, [*SMALL, f"out_dir={out}", *extra])


class Killed(BaseException):
    """A kill, in process: nothing catches it, as nothing survives a SIGKILL."""


_WRITE = hiermlp.io._write_file


def kill_at_write(monkeypatch, k: int, *, only: str | None = None) -> list[str]:
    """Make the k-th atomic write (of files named ``only``, if given) die before it starts; returns the log
    of the names written before it."""
    write, seen = _WRITE, []

    def dying(tmp, fn):
        name = tmp.name.split(".tmp-")[0].lstrip(".")
        if only is None or name == only:
            if len(seen) + 1 == k:
                raise Killed(f"killed before writing {name}")
            seen.append(name)
        return write(tmp, fn)

    monkeypatch.setattr(hiermlp.io, "_write_file", dying)
    return seen


def _cli(capsys, *argv):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.err.strip(), captured.out


# ---------------------------------------------------------------------------------------------------------
# 1. one class map for every split


def _image_folder(root: Path, splits: dict[str, tuple[str, ...]], n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


FOLDER = ["data=folder", "in_chans=3", "img_size=8", "no_aug=true", "epochs=1", "progress=false"]
FOLDER += ["tensorboard=false", "threads=1", "batch_size=4", "eval_batch_size=8", "num_classes=0"]
FOLDER += ["model_kwargs={patch_size: 2, embed_dim: 8, depths: [1], num_heads: [1], window_size: 4}"]


def test_a_split_without_a_class_keeps_the_training_class_map(tmp_path, capsys):
    root = _image_folder(tmp_path / "data", {"train": ("a", "b", "c"), "val": ("a", "c")})
    cfg = load_config(None, [*FOLDER, f"data_root={root}", f"out_dir={tmp_path / 'run'}"])
    _, test_ds, num_classes = train_loop.build_datasets(cfg)
    assert num_classes == 3 and test_ds.classes == ["a", "b", "c"]
    assert sorted({y for _, y in test_ds.samples}) == [0, 2]  # 'c' is class 2 everywhere, not 1
    res = train(cfg)
    ckpt = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert ckpt["classes"] == ["a", "b", "c"]
    # re-scored independently with the training map: the trainer's accuracy is that one
    model = res.model.eval()
    hits = 0
    for name in ("a", "c"):
        for f in sorted((root / "val" / name).iterdir()):
            x = test_ds.transform(Image.open(f).convert("RGB"))[None]
            hits += int(model(x).argmax(1)) == "abc".index(name)
    assert res.top1 == pytest.approx(100.0 * hits / 8)
    # eval labels the split with the checkpoint's map, even where the training split is gone
    (root / "train").rename(tmp_path / "train_moved")
    rc, err, out = _cli(capsys, "eval", tmp_path / "run" / "last.pth", "--json")
    assert rc == 0, err
    assert json.loads(out.strip().splitlines()[-1])["top1"] == pytest.approx(res.top1)


def test_a_split_with_a_class_the_training_split_lacks_is_one_line(tmp_path, capsys):
    root = _image_folder(tmp_path / "data", {"train": ("a", "b"), "val": ("a", "b", "dog")})
    rc, err, _ = _cli(capsys, "train", *FOLDER, f"data_root={root}", f"out_dir={tmp_path / 'run'}")
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "class(es) 'dog' that the training split lacks" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------
# 2. resume under a changed config: reproduce exactly or refuse naming the keys


def _killed_mid_epoch(tmp_path, monkeypatch, *extra):
    """A run of 4 steps per epoch, killed in its first epoch after step 2 was checkpointed."""
    kill_at_write(monkeypatch, 3, only="last.pth")  # last.pth at steps 1, 2, then killed before step 3's
    with pytest.raises(Killed):
        train(small(tmp_path, "epochs=2", "limit_train=256", "ckpt_every=1", *extra))
    monkeypatch.undo()
    ckpt = torch.load(tmp_path / "last.pth", weights_only=True)
    assert (ckpt["epoch"], ckpt["epoch_step"]) == (0, 2)
    return ckpt


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("batch_size=128", "batch_size=64 but this config has batch_size=128"),
        ("limit_train=128", "limit_train=256 but this config has limit_train=128"),
        ("seed=1", "seed=0 but this config has seed=1"),
        ("model_kwargs.embed_dim=32", "model_kwargs"),
        ("auto_augment=rand-m9", "auto_augment"),
    ],
)
def test_resume_under_a_changed_config_is_refused_naming_the_keys(tmp_path, monkeypatch, capsys, change, named):
    _killed_mid_epoch(tmp_path, monkeypatch)
    args = [*SMALL, f"out_dir={tmp_path}", "epochs=1", "limit_train=256", "resume=auto", change]
    rc, err, _ = _cli(capsys, "train", *args)  # epochs=1: the batch_size=128 case used to exit 0, untrained
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert f"cannot resume {tmp_path / 'last.pth'}" in err and named in err


def test_resume_reproduces_the_run_and_may_change_only_the_listed_keys(tmp_path, monkeypatch, capsys):
    ref = train(small(tmp_path / "ref", "epochs=2", "limit_train=256"))
    _killed_mid_epoch(tmp_path / "run", monkeypatch)
    res = train(small(tmp_path / "run", "epochs=2", "limit_train=256", "resume=auto", "eval_batch_size=32"))
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(res.model.state_dict()[k], v, atol=0, rtol=0, msg=k)
    # the keys that may change on resume are the documented ones
    from hiermlp.train.rundir import RESUMABLE

    doc = (ROOT / "docs" / "training.md").read_text()
    assert all(f"`{k}`" in doc for k in RESUMABLE)
    # epochs and the rest-of-run lr may change, and the log says so
    capsys.readouterr()
    train(small(tmp_path / "run", "epochs=3", "limit_train=256", "resume=auto", "lr=1e-3"))
    assert "resuming with lr 0.08 -> 0.001" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"epochs=2: the run stopped after 3 epochs, so nothing would be trained"):
        train(small(tmp_path / "run", "epochs=2", "limit_train=256", "resume=auto"))


# ---------------------------------------------------------------------------------------------------------
# 3. best.pth never stale, whatever write a kill interrupts


def _rising_accuracy(monkeypatch):
    """Every evaluation scores higher than the one before, so every epoch is the best so far."""
    calls = [0]

    def evaluate(model, loader, device, *, amp="none", info=None):
        calls[0] += 1
        return {"loss": 1.0 / calls[0], "top1": float(calls[0]), "top5": 100.0, "count": 64}

    monkeypatch.setattr(train_loop, "evaluate", evaluate)


def test_best_pth_holds_the_recorded_best_epoch_after_a_kill_at_any_write(tmp_path, monkeypatch):
    _rising_accuracy(monkeypatch)
    writes = kill_at_write(monkeypatch, 10**9)
    ref = train(small(tmp_path / "ref", "epochs=2"))
    n = len(writes)
    assert writes.count("last.pth") == 2 and writes.count("best.pth") == 2
    ref_best = torch.load(tmp_path / "ref" / "best.pth", weights_only=True)["model"]
    for k in range(1, n + 1):
        out = tmp_path / f"kill{k}"
        kill_at_write(monkeypatch, k)
        with pytest.raises(Killed):
            train(small(out, "epochs=2"))
        kill_at_write(monkeypatch, 10**9)  # the rerun is not killed
        train(small(out, "epochs=2", "resume=auto"))
        last = torch.load(out / "last.pth", weights_only=True)
        best = torch.load(out / "best.pth", weights_only=True)
        assert last["best_epoch"] == 2, k
        assert best["step"] == last["history"][1]["step"], f"best.pth stale after a kill before write {k}"
        for name, v in ref_best.items():
            torch.testing.assert_close(best["model"][name], v, atol=0, rtol=0, msg=f"{name} (kill at {k})")
        rows = (out / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
    assert ref.best_epoch == 2


# ---------------------------------------------------------------------------------------------------------
# 4. overwrite=true keeps the old run until the new one's first checkpoint has landed

REPLACE_AND_DIE = """
import os, sys
import hiermlp.io
from hiermlp.train import load_config, train

write = hiermlp.io._write_file

def dying(tmp, fn):
    if tmp.name.startswith(".last.pth.tmp-"):
        os._exit(9)  # as SIGKILL: no handler, no cleanup
    return write(tmp, fn)

hiermlp.io._write_file = dying
train(load_config(None, sys.argv[1:]))
"""


def _run_files(d: Path) -> dict[str, bytes]:
    return {n: (d / n).read_bytes() for n in ("last.pth", "best.pth", "metrics.jsonl", "config.yaml")}


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(tmp_path, monkeypatch):
    train(small(tmp_path, "epochs=1"))
    old = _run_files(tmp_path)
    # the new run fails (disk full) at its first checkpoint: the old run is back, byte for byte
    write = hiermlp.io._write_file

    def full(tmp, fn):
        if tmp.name.startswith(".last.pth.tmp-"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return write(tmp, fn)

    monkeypatch.setattr(hiermlp.io, "_write_file", full)
    with pytest.raises(OutputError, match="No space left"):
        train(small(tmp_path, "epochs=1", "seed=1", "overwrite=true"))
    monkeypatch.undo()
    assert _run_files(tmp_path) == old and not list(tmp_path.glob(".previous-run*"))
    # the new run is killed hard before its first checkpoint: the next run in the directory puts the old back
    script = tmp_path / "die.py"
    script.write_text(REPLACE_AND_DIE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [*SMALL, f"out_dir={tmp_path}", "epochs=1", "seed=1", "overwrite=true"]
    proc = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert not (tmp_path / "last.pth").exists() and list(tmp_path.glob(".previous-run.tmp-*"))
    res = train(small(tmp_path, "epochs=2", "resume=auto"))  # continues the old run
    assert res.history[0] == json.loads(old["metrics.jsonl"].decode().splitlines()[0])
    assert not list(tmp_path.glob(".previous-run*"))
    # a replacement that lands replaces it, and nothing of the old run is left behind
    res = train(small(tmp_path, "epochs=1", "seed=1", "overwrite=true"))
    assert torch.load(tmp_path / "best.pth", weights_only=True)["config"]["seed"] == 1
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert not list(tmp_path.glob(".previous-run*"))


# ---------------------------------------------------------------------------------------------------------
# 5. export is atomic: a failure leaves the previous file (or none) and says so


def _trained_checkpoint(path: Path) -> Path:
    """A trainer-layout checkpoint of a tiny model (its config names the architecture)."""
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **TINY_MODEL, num_classes=3)
    kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY_MODEL.items() if k != "img_size"}
    config = {"model": "swin_tiny_patch4_window7_224", "model_kwargs": kwargs, "in_chans": 3, "img_size": 16}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config, "classes": ["x", "y", "z"]}, path)
    return path


def test_export_failures_leave_the_previous_file(tmp_path, monkeypatch, capsys):
    ckpt = _trained_checkpoint(tmp_path / "ckpt" / "best.pth")
    EXPORT = ["export", ckpt, "--format", "torch-export", "--img-size", "16", "--no-dynamic-batch"]
    tmp_path = tmp_path / "exports"
    tmp_path.mkdir()
    out = tmp_path / "m.pt2"
    assert _cli(capsys, *EXPORT, "--out", out)[0] == 0
    good = out.read_bytes()
    extra = {"label_names.json": ""}
    torch.export.load(str(out), extra_files=extra)
    assert json.loads(extra["label_names.json"]) == ["x", "y", "z"]  # the checkpoint's class map travels
    write = hiermlp.io._write_file

    def full(tmp, fn):  # the disk fills up halfway through the file
        with open(tmp, "wb") as f:
            f.write(b"x" * 5900)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hiermlp.io, "_write_file", full)
    rc, err, _ = _cli(capsys, *EXPORT, "--out", out)
    assert rc == 2 and len(err.splitlines()) == 1 and "No space left on device" in err, err
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["m.pt2"]
    monkeypatch.setattr(hiermlp.io, "_write_file", write)
    # a failed verification writes nothing, keeps the earlier file, and says so
    rc, err, _ = _cli(capsys, *EXPORT, "--out", out, "--atol", "-1")
    assert rc == 1 and "was not written (an earlier file there is left as it was)" in err
    assert out.read_bytes() == good
    fresh = tmp_path / "new.pt2"
    rc, err, _ = _cli(capsys, *EXPORT, "--out", fresh, "--atol", "-1")
    assert rc == 1 and "no file was written" in err and not fresh.exists()


def test_a_failed_onnx_check_writes_no_file(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    import onnx

    from hiermlp.errors import HiermlpError
    from hiermlp.export import export_model

    def invalid(*a, **k):
        raise onnx.checker.ValidationError("Field 'type' of 'value_info' is required but missing.")

    monkeypatch.setattr(onnx.checker, "check_model", invalid)
    model = hiermlp.HierNet(img_size=16, patch_size=4, embed_dim=8, depths=(1,), num_heads=(1,), window_size=4)
    with pytest.raises(HiermlpError, match=r"ONNX export or its check failed .*ValidationError.*nothing was written"):
        export_model(model.eval(), "onnx", 16, out=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------
# 6. compare run directories: one per label, or the preset is refused naming the pair


@pytest.mark.parametrize(("a", "b"), [("lin ear", "lin_ear"), ("Swin", "swin"), ("a/b", "a:b")])
def test_labels_that_would_share_a_run_directory_are_refused(tmp_path, a, b):
    from hiermlp.study.preset import load_preset, run_dir_name

    preset = tmp_path / "p.yaml"
    preset.write_text(
        json.dumps({"entries": [{"label": a, "model": "linear_pixels"}, {"label": b, "model": "linear_pixels"}]})
    )
    with pytest.raises(ConfigError, match=f"entry labels {a!r} and {b!r} would share the run directory"):
        load_preset(preset)
    assert run_dir_name("window-attention_v2.1") == "window-attention_v2.1"
    preset.write_text(json.dumps({"entries": [{"label": "..", "model": "linear_pixels"}]}))
    with pytest.raises(ConfigError, match="cannot name a run directory"):
        load_preset(preset)


# ---------------------------------------------------------------------------------------------------------
# 7. the compare lock is atomic


def test_the_run_lock_is_exclusive_between_threads(tmp_path):
    import hiermlp.study.runner as runner

    run_dir = tmp_path / "entry" / "seed0"
    held, tried = threading.Event(), threading.Event()
    outcome = {}

    def holder():
        with runner._run_lock(run_dir):
            held.set()
            tried.wait(30)

    def contender():
        held.wait(30)
        try:
            with runner._run_lock(run_dir):
                outcome["b"] = "acquired while held"
        except ConfigError as e:
            outcome["b"] = str(e)
        tried.set()

    threads = [threading.Thread(target=holder), threading.Thread(target=contender)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert f"is being trained by process {os.getpid()}" in outcome["b"]
    with runner._run_lock(run_dir):  # released: free again
        pass


CONTEND = """
import os, sys, time
from pathlib import Path
from hiermlp.errors import ConfigError
from hiermlp.study.runner import _run_lock

run_dir, inside = Path(sys.argv[1]), Path(sys.argv[1]) / "inside"
got = doubles = 0
for _ in range(int(sys.argv[2])):
    try:
        with _run_lock(run_dir):
            got += 1
            try:  # a second holder would find the marker of the first
                fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                doubles += 1
                continue
            os.close(fd)
            time.sleep(0.0005)
            os.unlink(inside)
    except ConfigError:
        pass
print(got, doubles)
"""


def test_the_run_lock_under_contention_between_processes(tmp_path):
    script = tmp_path / "contend.py"
    script.write_text(CONTEND)
    run_dir = tmp_path / "entry" / "seed0"
    run_dir.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(run_dir), "200"], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [tuple(map(int, p.communicate(timeout=300)[0].split())) for p in procs]
    assert sum(d for _, d in results) == 0, results
    assert sum(g for g, _ in results) >= 30, results  # the lock was taken, and often


# ---------------------------------------------------------------------------------------------------------
# 8. every option has a type, checked at every entry point

TINY_MODEL = dict(img_size=16, patch_size=4, embed_dim=8, depths=(1, 1), num_heads=(1, 2), window_size=2)


@pytest.mark.parametrize(
    ("build", "named"),
    [
        (lambda: hiermlp.HierNet(**TINY_MODEL, shift="False"), "shift expects bool"),
        (lambda: hiermlp.HierNet(**TINY_MODEL, shift=5), "shift expects bool"),
        (lambda: hiermlp.HierNet(**TINY_MODEL, shift=[True, "no"]), "shift expects bool"),
        (lambda: hiermlp.HierNet(**TINY_MODEL, patch_norm="yes"), "patch_norm expects bool"),
        (lambda: hiermlp.HierNet(**TINY_MODEL, mixer_kwargs={"qkv_bias": "False"}), "qkv_bias expects bool"),
        (lambda: hiermlp.HierNet(**TINY_MODEL, mixer="spatial_mlp", shift_mode="rol"), "shift_mode expects one of"),
        (lambda: hiermlp.create_model("swin_tiny_patch4_window7_224", **TINY_MODEL, qkv_bias="False"), "qkv_bias"),
        (lambda: hiermlp.create_model("swin_tiny_patch4_window7_224", features_only="no"), "features_only"),
        (lambda: hiermlp.create_model("swin_tiny_patch4_window7_224", dynamic_img_size="False"), "dynamic_img_size"),
        (lambda: hiermlp.mixers.MIXERS["attention"](8, window_size=(2, 2), num_heads=2, qkv_bias="False"), "qkv_bias"),
        (lambda: hiermlp.mixers.MIXERS["spatial_mlp"](8, window_size=(2, 2), num_heads=2.0), "num_heads expects int"),
        (lambda: hiermlp.mixers.MIXERS["gmlp"](8, window_size=(2, 2), num_heads=1, ffn_ratio="6"), "ffn_ratio expects"),
    ],
)
def test_python_api_options_are_typed(build, named):
    with pytest.raises(ConfigError, match=named):
        build()


def test_timm_kwargs_are_typed():
    import timm

    with pytest.raises(ConfigError, match="qkv_bias expects bool, got str 'False'"):
        timm.create_model("hiermlp_swin_tiny_patch4_window7_224", qkv_bias="False")
    with pytest.raises(ConfigError, match="shift expects bool"):
        timm.create_model("hiermlp_swin_tiny_patch4_window7_224", shift=5)


def test_yaml_and_key_value_options_are_typed(tmp_path, capsys):
    preset = tmp_path / "p.yaml"
    preset.write_text("model_kwargs: {patch_size: 2, embed_dim: 16, depths: [1], num_heads: [1], shift: 'False'}\n")
    rc, err, _ = _cli(capsys, "train", preset, "epochs=1", f"out_dir={tmp_path / 'a'}", "progress=false")
    assert rc == 2 and "shift expects bool or a list of bool, got str 'False'" in err, err
    for item in ("model_kwargs.shift=5", "model_kwargs.shift='False'", "model_kwargs.mixer_kwargs={qkv_bias: 'no'}"):
        rc, err, _ = _cli(capsys, "train", *SMALL, item, f"out_dir={tmp_path / 'b'}")
        assert rc == 2 and len(err.splitlines()) == 1 and "expects bool" in err, (item, err)
    rc, err, _ = _cli(capsys, "bench", "swin_tiny_patch4_window7_224", "-k", "shift='False'", "--no-memory")
    assert rc == 2 and "shift expects bool" in err, err


# ---------------------------------------------------------------------------------------------------------
# 9. a compare run's identity holds everything that changes its result, and the report says what


def test_compare_run_identity_holds_the_thread_count_and_the_report_says_so(tmp_path, monkeypatch):
    import hiermlp.study.runner as runner

    real, calls = runner._train_run, []
    monkeypatch.setattr(runner, "_train_run", lambda c, d, p: (calls.append(d), real(c, d, p))[1])
    base = ["compare", "smoke", "only=linear", "seeds=1", "epochs=1", "bench.skip=true", "--no-progress"]
    out = ["--out", str(tmp_path / "cmp")]
    assert main([*base, "--threads", "1", *out]) == 0 and main([*base, "--threads", "1", *out]) == 0
    assert len(calls) == 1  # the identical rerun reused
    assert main([*base, "--threads", "2", *out]) == 0
    assert len(calls) == 2  # another thread count is another run
    env = runner.run_environment("cpu", 2)
    assert {"threads", "device", "accel", "torch", "timm", "numpy", "pillow"} <= set(env)
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "reused only when its whole config" in md and "threads=2" in md and f"torch={torch.__version__}" in md
    with hiermlp.accel.override(chunk_tokens=0):
        assert runner.run_environment("cpu", 2)["accel"] != env["accel"]


# ---------------------------------------------------------------------------------------------------------
# 10. weight files whose tensors cannot be weights


def _weights(tmp_path, **broken):
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **TINY_MODEL, num_classes=3)
    sd = model.state_dict()
    for key, value in broken.items():
        sd[key.replace("__", ".")] = value(sd[key.replace("__", ".")])
    path = tmp_path / "w.pth"
    torch.save(sd, path)
    return path


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        ({"head__fc__weight": lambda t: t.to(torch.int64)}, "head.fc.weight (torch.int64)"),
        ({"head__fc__bias": lambda t: torch.ones_like(t, dtype=torch.bool)}, "hold integers"),
        ({"head__fc__weight": lambda t: t.index_fill(0, torch.tensor([1]), float("nan"))}, "head.fc.weight (16 NaN"),
        ({"patch_embed__proj__weight": lambda t: t.index_fill(0, torch.tensor([0]), float("inf"))}, "non-finite"),
    ],
)
def test_weights_that_cannot_be_weights_are_named(tmp_path, capsys, broken, named):
    path = _weights(tmp_path, **broken)
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **TINY_MODEL, num_classes=3)
    with pytest.raises(CheckpointError, match=named.replace("(", r"\(").replace(")", r"\)")):
        hiermlp.load_checkpoint(model, path)
    sets = [f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in TINY_MODEL.items()]
    rc, err, _ = _cli(
        capsys, "convert", path, tmp_path / "out.pth", "--layout", "timm", "--model", "swin_tiny_patch4_window7_224",
        "--set", *sets, "num_classes=3",
    )  # fmt: skip
    assert rc == 2 and len(err.splitlines()) == 1 and named in err, err
    assert not (tmp_path / "out.pth").exists()


# ---------------------------------------------------------------------------------------------------------
# a compare worker killed by the system (the out-of-memory killer's SIGKILL) is named, finished runs kept


@pytest.mark.slow
def test_a_killed_compare_worker_names_its_run_and_the_finished_runs_are_kept(tmp_path):
    import signal
    import time

    out = tmp_path / "cmp"
    base = ["compare", "smoke", "only=linear,window-attention", "seeds=[0]", "bench.skip=true", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "hiermlp", *base, "epochs=40", "--jobs", "2", "--threads", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs, victim = out / "runs", None
    deadline = time.monotonic() + 600
    while proc.poll() is None and victim is None and time.monotonic() < deadline:
        if (runs / "linear" / "seed0" / "compare_run.json").is_file():  # one run has finished: kill the other
            lock = runs / "window-attention" / "seed0" / "compare.lock"
            text = lock.read_text().strip() if lock.is_file() else ""
            if text.isdigit():
                os.kill(int(text), signal.SIGKILL)
                victim = int(text)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=600)
    assert victim is not None, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, err[-3000:]
    assert "the worker training entry 'window-attention' seed 0 (killed by SIGKILL, e.g. by the out-of-memory " in err
    assert "finished runs are kept in" in err
    # the rerun reuses the run that had finished
    rerun = [sys.executable, "-m", "hiermlp", *base, "epochs=40", "only=linear", "--jobs", "1", "--threads", "1"]
    subprocess.run([*rerun, "--out", str(out)], env=env, check=True, capture_output=True)
    (row,) = json.loads((out / "compare.json").read_text())["rows"]
    assert row["label"] == "linear" and row["runs"][0]["reused"]
