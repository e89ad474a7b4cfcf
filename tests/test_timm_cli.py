"""The commands speak timm's language: ``hiermlp bench`` writes benchmark.py's columns (per-step milliseconds,
the optimizer it timed), ``info``/``bench``/``export`` take model options as ``--set key=value`` (the one
grammar), and ``hiermlp export`` reads a checkpoint shaped like timm train.py's ``model_best.pth.tar``."""

from __future__ import annotations

import argparse
import csv
import json

import pytest
import torch

import hiermlp
from hiermlp.bench.speed import BenchEntry, benchmark_models
from hiermlp.bench.timm_format import BENCHMARK_PY_COLUMNS
from hiermlp.cli import main

from .conftest import randomize_

MICRO = "swin_micro_patch4_window4_32"
SMALL = {"embed_dim": 16, "depths": (1, 1), "num_heads": (1, 2)}
FAST = dict(batch=2, repeats=3, warmup=1, min_sample_s=0.0, threads=1, in_chans=3, num_classes=10, memory=False)


def test_bench_writes_benchmark_pys_columns(tmp_path):
    report = benchmark_models(
        [BenchEntry(MICRO, "ours", SMALL), BenchEntry("timm:resnet18", "resnet")], img_size=32, opt="sgd", **FAST
    )
    report.save(tmp_path)
    with (tmp_path / "benchmark.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames[: len(BENCHMARK_PY_COLUMNS)]) == BENCHMARK_PY_COLUMNS
    assert [r["model"] for r in rows] == [f"hiermlp_{MICRO}", "resnet18"]  # the names benchmark.py prints
    for r, row in zip(rows, report.rows):
        assert float(r["infer_samples_per_sec"]) == round(row.infer_img_s.median, 2)
        assert float(r["train_step_time"]) == round(row.train_step_ms.median, 3)
        assert int(r["infer_batch_size"]) == 2 and int(r["train_img_size"]) == 32 and r["opt"] == "sgd"
        assert float(r["param_count"]) == round(row.params / 1e6, 2)
        # one sample gives both numbers: an odd count's median step time is exactly batch / median img/s
        assert row.infer_step_ms.median == pytest.approx(1e3 * row.batch / row.infer_img_s.median, rel=1e-9)
        assert row.train_step_ms.median == pytest.approx(1e3 * row.batch / row.train_img_s.median, rel=1e-9)
    assert "sgd step" in report.notes() and "ms/step" in report.table()


def test_bench_times_the_optimizer_it_names(monkeypatch):
    import timm.optim

    built = []
    original = timm.optim.create_optimizer_v2

    def recording(model, opt, **kwargs):
        built.append(opt)
        return original(model, opt=opt, **kwargs)

    monkeypatch.setattr(timm.optim, "create_optimizer_v2", recording)
    benchmark_models([BenchEntry(MICRO, "ours", SMALL)], img_size=32, latency=False, opt="lamb", **FAST)
    assert built == ["lamb"]


def test_set_is_one_grammar_for_info_bench_and_export(tmp_path, capsys):
    items = ["embed_dim=16", "depths=[1, 1]", "num_heads=(1, 2)"]
    assert main(["info", MICRO, "--set", *items, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    want = hiermlp.create_model(MICRO, **SMALL)
    assert info["params"] == sum(p.numel() for p in want.parameters()) and len(info["stages"]) == 2
    assert main(["info", MICRO, "--set", "embed_dmi=16"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "embed_dmi" in err and "Did you mean: embed_dim" in err
    argv = ["bench", MICRO, "--img-size", "32", "--batch", "2", "--repeats", "1", "--threads", "1", "--no-memory"]
    assert main([*argv, "--no-train", "--no-latency", "--set", *items, "--out", str(tmp_path / "b")]) == 0
    row = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"][0]
    assert row["params"] == info["params"] and row["model_kwargs"] == {**SMALL, "depths": [1, 1], "num_heads": [1, 2]}
    out = tmp_path / "m.onnx"
    assert main(["export", MICRO, "--img-size", "32", "--set", *items, "--out", str(out), "--no-verify"]) == 0
    assert out.stat().st_size > 1000


def test_export_reads_a_timm_train_py_checkpoint(tmp_path, capsys):
    # model_best.pth.tar as timm's train.py writes it: the weights beside its argparse.Namespace of every option
    model = randomize_(hiermlp.create_model(MICRO, num_classes=4, **SMALL)).eval()
    args = argparse.Namespace(
        model=f"hiermlp_{MICRO}",
        model_kwargs=dict(SMALL),
        num_classes=4,
        in_chans=None,
        img_size=32,
        input_size=None,
        crop_pct=None,
        interpolation="",
        mean=None,
        std=None,
        scale=[0.08, 1.0],
        ratio=[0.75, 1.3333333333333333],
        decay_milestones=[90, 180, 270],
        opt="sgd",
        opt_kwargs={},
        lr=None,
        momentum=0.9,
        amp=False,
        device="cpu",
        wandb_tags=[],
        experiment="",
    )
    ckpt = {
        "epoch": 1,
        "arch": args.model,
        "state_dict": model.state_dict(),
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
        "version": 2,
        "args": args,
        "metric": 56.25,
    }
    torch.save(ckpt, tmp_path / "model_best.pth.tar")
    out = tmp_path / "best.onnx"
    assert main(["export", str(tmp_path / "model_best.pth.tar"), "--img-size", "32", "--out", str(out)]) == 0
    assert "verified" in capsys.readouterr().out
    rebuilt = hiermlp.model_from_checkpoint(tmp_path / "model_best.pth.tar").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
