"""The bad-input table: every row is a command a hostile user typed, exit code 2 and the one line it must print.

No row may end in a traceback, a torch error from deep inside, a segfault or an allocation of terabytes: each
value is checked where it is parsed (``hiermlp.limits`` bounds thread counts and what an input batch needs).
``{tmp}`` in a row is a scratch directory holding ``a_file`` (a plain file), ``bare.npz`` (an .npz without the
embedded layout's arrays) and ``tiny.pth`` (a trained checkpoint of a tiny model).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import hiermlp
from hiermlp.cli import main

from .test_train import TINY

MODEL = "swin_tiny_patch4_window7_224"
# a micro run on the embedded data: fails (if it must) within a second
RUN = [*TINY, "epochs=1", "limit_train=64", "limit_test=16", "batch_size=16"]

TABLE = [
    # --- train: data and labels
    (["train", *RUN, "in_chans=2"], "in_chans=2 is invalid: in_chans must be one of 1, 3"),
    (["train", *RUN, "num_classes=3"], "has labels 0..9 but the head has num_classes=3 outputs"),
    (["train", *RUN, "data_root={tmp}/bare.npz"], "bare.npz lacks the array(s) train_images, train_labels"),
    (["train", *RUN, "data=torchvision:NoSuchSet"], "torchvision.datasets has no dataset 'NoSuchSet'"),
    (["train", *RUN, "data=torchvision:Kinetics", "data_root={tmp}"], "is not supported: it needs frames_per_clip"),
    (["train", *RUN, "data=torchvision:VisionDataset", "data_root={tmp}"], "exposes no classes or targets"),
    (["train", *RUN, "data=torchvision:utils"], "torchvision.datasets has no dataset 'utils'"),
    # --- train: numbers out of range, sizes that would need terabytes
    (["train", *RUN, "threads=100000"], "threads=100000 is invalid: threads must be in [0, 1024]"),
    (["train", *RUN, "threads=-1"], "threads=-1 is invalid"),
    (["train", *RUN, "num_workers=1000000"], "num_workers=1000000 is invalid"),
    (["train", *RUN, "img_size=300000"], "at img_size=300000 needs"),
    (["train", *RUN, "epochs=0"], "epochs=0 is invalid"),
    (["train", *RUN, "seed=-1"], "seed=-1 is invalid"),
    (["train", *RUN, "model_kwargs.shift=2"], "shift expects bool or a list of bool, got int 2"),
    # --- eval
    (["eval", "{tmp}/tiny.pth", "--img-size", "300000"], "--img-size 300000 needs"),
    (["eval", "{tmp}/tiny.pth", "--in-chans", "2"], "in_chans=2 is invalid"),
    (["eval", "{tmp}/tiny.pth", "--set", "model_kwargs.embed_dim=32"], "drop them to evaluate the model as trained"),
    # --- bench
    (["bench", MODEL, "--out", "{tmp}/a_file"], "--out {tmp}/a_file is a file"),
    (["bench", MODEL, "--out", "{tmp}/a_file/sub"], "a parent of the path is a file"),
    (["bench", MODEL, "--threads", "100000"], "--threads 100000 is invalid: torch threads must be an integer"),
    (["bench", MODEL, "--threads", "0"], "--threads 0 is invalid"),
    (["bench", MODEL, "--batch", "1000000", "--img-size", "4096"], "--batch 1000000 at image side 4096 needs"),
    (["bench", "--sweep", "64,1000000", MODEL], "at image side 1000000 needs"),
    (["bench", MODEL, "--min-sample-seconds", "inf"], "--min-sample-seconds inf is invalid"),
    (["bench", MODEL, "--no-progress", "-k", "qkv_bias='no'"], "qkv_bias expects bool, got str 'no'"),
    # --- compare
    (["compare", "smoke", "--threads", "-1"], "--threads -1 is invalid: torch threads must be an integer in [1, 1024]"),
    (["compare", "smoke", "--threads", "100000"], "--threads 100000 is invalid"),
    (["compare", "smoke", "--out", "{tmp}/a_file"], "--out {tmp}/a_file is a file"),
    (["compare", "smoke", "--runs-dir", "{tmp}/a_file"], "--runs-dir {tmp}/a_file is a file"),
    (["compare", "smoke", "jobs=100000"], "jobs must be a count >= 1 or 'auto', got 100000 (at most 1024)"),
    (["compare", "smoke", "bench.threads=100000"], "bench.threads 100000 is invalid"),
    (["compare", "smoke", "bench.batch=0"], "bench.batch=0 is invalid"),
    (["compare", "smoke", "in_chans=2"], "in_chans=2 is invalid"),
    # --- info, export, convert
    (["info", MODEL, "--img-size", "300000", "--batch", "64"], "--batch 64 --img-size 300000 300000 needs"),
    (["export", MODEL, "--img-size", "300000"], "--img-size 300000 300000 needs"),
    (["export", MODEL, "--img-size", "32", "--opset", "99"], "--opset 99 is invalid: the installed onnx knows opsets"),
    (["export", MODEL, "--img-size", "32", "--atol", "nan"], "--atol nan is invalid"),
    (["convert", "{tmp}/tiny.pth", "{tmp}/out.pth", "--layout", "timm", "--model", MODEL, "--set", "shift=5"],
     "shift expects bool"),
]  # fmt: skip


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("bad")
    (d / "a_file").write_text("")
    np.savez(d / "bare.npz", images=np.zeros((2, 4, 4), np.uint8))
    kwargs = {"patch_size": 2, "embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4}
    model = hiermlp.create_model(MODEL, **kwargs, img_size=16, in_chans=1, num_classes=10)
    config = {"model": MODEL, "model_kwargs": kwargs, "in_chans": 1, "img_size": 16, "limit_test": 16}
    torch.save({"model": model.state_dict(), "config": config, "optimizer": {}, "scheduler": {}, "epoch": 1,
                "step": 1, "rng": {}, "num_classes": 10}, d / "tiny.pth")  # fmt: skip
    return d


@pytest.mark.parametrize(("argv", "line"), TABLE, ids=[" ".join(a[:1] + a[-2:]) for a, _ in TABLE])
def test_bad_input_is_one_line_and_exit_code_2(argv, line, tmp, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default --out (runs/...) lands in the test's directory
    argv = [a.replace("{tmp}", str(tmp)) for a in argv]
    if argv[0] == "train":
        argv.append(f"out_dir={tmp_path / 'run'}")
    rc = main(argv)
    err = capsys.readouterr().err
    ours = [ln for ln in err.splitlines() if ln.strip() and not re.match(r"[WI]\d{4} ", ln)]
    assert rc == 2, err
    assert len(ours) == 1 and "Traceback" not in err, err
    assert ours[0].startswith(f"hiermlp {argv[0]}: error: "), ours[0]
    assert line.replace("{tmp}", str(tmp)) in ours[0], ours[0]


# ---------------------------------------------------------------------------------------------------------
# beyond one command each


def test_overrides_after_options_are_accepted(tmp, capsys):
    assert main(["train", "fmnist_swin_micro", "--print-config", "epochs=2", "lr=1e-3"]) == 0
    out = capsys.readouterr().out
    assert "epochs: 2" in out and "lr: 0.001" in out
    assert main(["eval", str(tmp / "tiny.pth"), "--json", "eval_batch_size=8"]) == 0  # lands in --set
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["count"] == 2000
    with pytest.raises(SystemExit):  # argparse's own error, naming where overrides go
        main(["info", MODEL, "--batch", "1", "epochs=2"])
    assert "unrecognized arguments: epochs=2" in capsys.readouterr().err


def test_eval_mismatch_lists_keys_and_blames_only_options_given(tmp, tmp_path, capsys):
    sd = torch.load(tmp / "tiny.pth", weights_only=True)
    sd["model"] = {k.replace("stages.1.", "stages.9."): v for k, v in sd["model"].items()}
    torch.save(sd, tmp_path / "renamed.pth")
    assert main(["eval", str(tmp_path / "renamed.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing (" in err and "stages.1." in err and "unexpected (" in err, err
    assert "--set" not in err and "--img-size" not in err  # nothing was given, nothing is blamed
    assert main(["eval", str(tmp / "tiny.pth"), "--set", "model_kwargs.depths=[2, 1]"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model was built with --set model_kwargs.depths=[2, 1]" in err and "missing (" in err, err


def test_a_diverged_compare_run_names_its_entry_and_seed(tmp_path, capsys):
    args = ["compare", "smoke", "only=window-attention", "seeds=[3]", "epochs=1", "lr=1e9", "bench.skip=true"]
    assert main([*args, "--no-progress", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "entry 'window-attention' seed 3 failed:" in err, err
    assert "non-finite" in err or "is nan" in err or "is inf" in err, err
