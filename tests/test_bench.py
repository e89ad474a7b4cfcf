"""hiermlp.bench: every field of a benchmark row, name resolution, bad input, and the resolution sweep.

No assertion depends on speed: timings on a shared CI machine are only checked to be finite and positive.
"""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import hiermlp
from hiermlp.bench import count_gmacs
from hiermlp.bench.memory import MemoryResult
from hiermlp.bench.resolve import ImageSizeError, build_at_size, resolve_model
from hiermlp.bench.speed import BenchEntry, BenchReport, benchmark_model, benchmark_models
from hiermlp.bench.sweep import fit_exponent, run_sweep
from hiermlp.bench.timing import Stats
from hiermlp.cli import main
from hiermlp.cli.bench import bench_entries, parse_model_arg
from hiermlp.errors import UnknownNameError

# a micro Swin: 2 stages, window 4, 16x16 input (tens of thousands of parameters)
MICRO = {"patch_size": 2, "embed_dim": 16, "depths": (1, 1), "num_heads": (1, 2), "window_size": 4}
FAST = dict(batch=2, repeats=2, warmup=1, min_sample_s=0.0, threads=1, in_chans=1, num_classes=10)


def micro(mixer: str = "attention", label: str | None = None) -> BenchEntry:
    return BenchEntry("swin_tiny_patch4_window7_224", label or mixer, {**MICRO, "mixer": mixer})


def _positive_stats(s: Stats | None) -> None:
    assert s is not None and s.n == FAST["repeats"]
    for v in (s.median, s.q1, s.q3, s.min, s.max):
        assert math.isfinite(v) and v > 0
    assert s.min <= s.q1 <= s.median <= s.q3 <= s.max


def test_benchmark_model_fields_are_sane():
    row = benchmark_model(micro(), img_size=16, memory=True, **FAST)
    model = hiermlp.create_model(
        "swin_tiny_patch4_window7_224", num_classes=10, in_chans=1, img_size=16, **{**MICRO, "mixer": "attention"}
    )
    assert row.status == "ok", row.error
    assert row.source == "hiermlp" and row.img_size == 16 and row.batch == 2
    assert row.params == sum(p.numel() for p in model.parameters())
    assert row.gmacs == pytest.approx(count_gmacs(model, (1, 16, 16)), rel=1e-9)
    for s in (row.infer_img_s, row.latency_ms, row.train_img_s):
        _positive_stats(s)
    assert row.infer_rel == row.train_rel == row.latency_rel == 1.0
    for mem in (row.mem_infer_mb, row.mem_train_mb):
        assert mem is not None and math.isfinite(mem) and mem > 0
    assert "fresh process" in row.mem_method


def test_report_files_parse(tmp_path):
    report = benchmark_models([micro("attention"), micro("pool")], img_size=16, memory=False, **FAST)
    assert [r.model for r in report.rows] == ["attention", "pool"]
    assert report.rows[1].infer_rel is not None and report.rows[1].infer_rel > 0
    for key in ("device", "threads", "dtype", "torch", "timm", "hiermlp", "cpu"):
        assert key in report.env
    assert report.env["threads"] == 1
    md = report.markdown(command="hiermlp bench ...")
    assert "| `attention` |" in md and "torch" in md
    paths = report.save(tmp_path / "out", command="hiermlp bench ...")
    assert {p.suffix for p in paths} == {".md", ".csv", ".json", ".png"}
    rows = list(csv.DictReader((tmp_path / "out" / "bench.csv").open()))
    assert [r["model"] for r in rows] == ["attention", "pool"]
    assert float(rows[0]["infer_img_s_median"]) > 0
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert data["rows"][1]["params"] == report.rows[1].params
    assert (tmp_path / "out" / "bench.png").stat().st_size > 1000
    again = BenchReport.from_dict(data)  # a saved report loads back (and can be re-plotted)
    assert again.rows[0].infer_img_s == report.rows[0].infer_img_s and again.table() == report.table()


def test_names_resolve_hiermlp_first_then_timm():
    assert resolve_model("swin_tiny_patch4_window7_224").source == "hiermlp"
    ref = resolve_model("timm:swin_tiny_patch4_window7_224")
    assert (ref.source, ref.model_name) == ("timm", "swin_tiny_patch4_window7_224")
    assert resolve_model("resnet18").source == "timm"
    assert resolve_model("hiermlp:swin_tiny_patch4_window7_224").source == "hiermlp"


@pytest.mark.parametrize(
    ("name", "close"),
    [
        ("swin_tiny_patch4_window7_22", "swin_tiny_patch4_window7_224"),
        ("timm:resnet19", "resnet18"),
        ("convnext_tinyy", "convnext_tiny"),  # only timm has it: suggestions come from timm's list too
    ],
)
def test_unknown_model_suggests_close_names(name, close):
    with pytest.raises(UnknownNameError, match="Did you mean") as info:
        resolve_model(name)
    assert close in str(info.value)


def test_cli_unknown_model_is_a_message_not_a_traceback(capsys):
    assert main(["bench", "swim_tiny_patch4_window7_224", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'swim_tiny_patch4_window7_224'" in err and "swin_tiny_patch4_window7_224" in err
    assert "Traceback" not in err


def test_image_size_the_model_cannot_take():
    with pytest.raises(ImageSizeError, match="cannot be built for 1x1"):
        build_at_size("swin_tiny_patch4_window7_224", img_size=1, model_kwargs=MICRO)
    row = benchmark_model(micro(), img_size=1, memory=False, **FAST)
    assert row.status == "unsupported" and "1x1" in row.error and row.infer_img_s is None


def test_cli_bad_image_size_reports_and_fails(capsys, tmp_path):
    micro_kwargs = ["patch_size=2", "embed_dim=16", "depths=[1, 1]", "num_heads=[1, 2]", "window_size=4"]
    argv = ["bench", "swin_tiny_patch4_window7_224", "--img-size", "1", "--no-memory", "--no-progress"]
    argv += ["--threads", "1", *(a for kv in micro_kwargs for a in ("-k", kv))]
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 1
    assert "unsupported" in out.out and "cannot be built for 1x1" in out.out
    assert "Traceback" not in out.err


def test_sweep_records_fake_oom_and_goes_on(monkeypatch, tmp_path):
    import hiermlp.bench.sweep as sweep_mod

    real = sweep_mod.check_input_size

    def fake(model, name, input_size, device="cpu"):
        if input_size[-1] == 32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 9.00 GiB (injected)")
        return real(model, name, input_size, device)

    monkeypatch.setattr(sweep_mod, "check_input_size", fake)
    report = run_sweep([micro("attention"), micro("spatial_mlp")], [16, 32, 48], memory=False, **FAST)
    status = {(p.model, p.img_size): p.status for p in report.points}
    assert status[("attention", 32)] == "oom" and status[("spatial_mlp", 32)] == "oom"
    assert status[("attention", 16)] == status[("attention", 48)] == "ok"
    assert all(f.time_exp is not None and math.isfinite(f.time_exp) for f in report.fits)
    assert all(f.gmacs_exp is not None and f.gmacs_exp > 0.5 for f in report.fits)
    assert "OOM" in report.table()
    paths = report.save(tmp_path)
    rows = list(csv.DictReader((tmp_path / "sweep.csv").open()))
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok", "oom"}
    assert len(json.loads((tmp_path / "sweep.json").read_text())["fits"]) == 2
    assert (tmp_path / "sweep.png").stat().st_size > 1000 and len(paths) == 4


def test_sweep_memory_canary_oom_and_time_cap(monkeypatch):
    import hiermlp.bench.sweep as sweep_mod

    def fake_memory(name, *, img_size, **kwargs):
        if img_size == 24:
            return MemoryResult("oom", method="fake", error="killed by SIGKILL (out of memory)")
        return MemoryResult("ok", peak_mb=float(img_size), step_s=0.01, method="fake")

    monkeypatch.setattr(sweep_mod, "measure_peak_memory", fake_memory)
    report = run_sweep([micro()], [16, 24, 32], **FAST)
    assert [p.status for p in report.points] == ["ok", "oom", "ok"]
    assert report.fits[0].mem_exp == pytest.approx(0.5)  # fake peak ∝ side = pixels^0.5

    capped = run_sweep([micro()], [16, 32], max_point_s=1e-9, memory=False, **FAST)
    assert [p.status for p in capped.points] == ["time cap", "skipped"]


def test_fit_exponent_recovers_a_power_law():
    pixels = [64**2, 128**2, 224**2, 384**2]
    assert fit_exponent(pixels, [3.0 * p**1.5 for p in pixels]) == pytest.approx(1.5)
    assert fit_exponent(pixels, [None, 1.0, None, None]) is None


def test_stats_quartiles_and_inverse_map():
    s = Stats.of([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s.median, s.q1, s.q3, s.min, s.max, s.n) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    inv = s.map(lambda t: 1 / t)  # time -> throughput flips the ends
    assert inv.q1 == pytest.approx(0.25) and inv.q3 == pytest.approx(0.5) and inv.max == 1.0


def _bench_args(*argv: str):
    from hiermlp.cli import _parser_for

    return _parser_for("bench").parse_args(["bench", *argv])


def test_model_kwargs_are_typed_by_the_override_grammar():
    items = ("mixer=gmlp", "window_size=8", "depths=[2, 2]", "shift=false", "mixer_kwargs.ratio=1e-3")
    (e,) = bench_entries(_bench_args("m", *[a for kv in items for a in ("-k", kv)]))
    assert e.model_kwargs == {
        "mixer": "gmlp",
        "window_size": 8,
        "depths": [2, 2],
        "shift": False,
        "mixer_kwargs": {"ratio": 0.001},
    }
    with pytest.raises(ValueError, match="key=value"):
        bench_entries(_bench_args("m", "-k", "mixer"))


def test_model_argument_with_label_and_own_options():
    e = parse_model_arg("global=swin_tiny_patch4_window7_224{mixer: global_attention}", {"window_size": 4})
    assert (e.model, e.label) == ("swin_tiny_patch4_window7_224", "global")
    assert e.model_kwargs == {"window_size": 4, "mixer": "global_attention"}
    assert parse_model_arg("timm:resnet18").model == "timm:resnet18"
    with pytest.raises(ValueError, match="YAML mapping"):
        parse_model_arg("swin_tiny_patch4_window7_224{mixer")


def test_perf_gpu_report_renders_from_the_committed_json(tmp_path, monkeypatch):
    """benchmarks/perf_gpu.py needs a GPU to measure, not to report: its Markdown renders from the committed
    JSON (as `--render` does), with the ratios the README quotes."""
    import importlib.util
    import json
    import shutil
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("perf_gpu", root / "benchmarks" / "perf_gpu.py")
    perf_gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_gpu)
    src = root / "benchmarks" / "results" / "perf_gpu" / "perf.json"
    res = json.loads(src.read_text())
    text = perf_gpu.markdown(res, res["command"])
    assert "NVIDIA H200" in text and "all pass" in text
    assert "| 128 | inference | 7344.0 | 5492.1 | **1.34x** |" in text
    assert "compiled hiermlp / compiled timm: **1.00x**" in text
    shutil.copy(src, tmp_path / "perf.json")
    monkeypatch.setattr(sys, "argv", ["perf_gpu.py", "--render", str(tmp_path / "perf.json")])
    perf_gpu.main()
    assert (tmp_path / "perf.md").read_text() == text
    assert (root / "benchmarks" / "results" / "perf_gpu" / "perf.md").read_text() == text  # committed = rendered


def test_perf_cpu_report_renders_from_the_committed_json(tmp_path, monkeypatch):
    """benchmarks/perf_cpu.py --render writes perf.md again from its JSON: every measurement section, the
    lever table (lines of code as the code is now) and the compile times, cold first compile and recompiles."""
    import importlib.util
    import json
    import shutil
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("perf_cpu", root / "benchmarks" / "perf_cpu.py")
    perf_cpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_cpu)
    src = root / "benchmarks" / "results" / "perf_cpu" / "perf.json"
    shutil.copy(src, tmp_path / "perf.json")
    monkeypatch.setattr(sys, "argv", ["perf_cpu.py", "--render", str(tmp_path / "perf.json")])
    perf_cpu.main()
    text = (tmp_path / "perf.md").read_text()
    res = json.loads(src.read_text())
    for heading in ("## Swin-T 224", "## Levers", "## Swin-MLP-T/C24", "## GEMM efficiency", "## bf16 autocast"):
        assert heading in text
    assert all(f"| {lever} |" in text for lever in perf_cpu.LEVERS)
    first, again = res["compiled"]["compile_s"], res["compiled"]["recompile_s"]
    assert f"first compile at 224x224 **{first:.0f} s**" in text
    assert "recompile at 448x448" in text and f"**{again['padded']:.0f} s**" in text
    # a report from before the cold-cache measurement (one recompile, at 256) still renders
    res["compiled"]["recompile_s"] = 67.0
    assert "recompile at 256x256 67 s" in perf_cpu.markdown(res, "env", res["command"])


def test_perf_cpu_lever_table_where_the_profile_chose_sdpa():
    """Where the machine profile kept SDPA for CPU inference in a dtype, the SDPA-pinned variant runs the default's
    code: the attention lever reads '-' (does not act) in that mode, and the caption gives the pair's ratio as the
    run's noise; where it chose explicit attention, the lever's gain is the pair's ratio."""
    import copy
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("perf_cpu", root / "benchmarks" / "perf_cpu.py")
    perf_cpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_cpu)
    res = json.loads((root / "benchmarks" / "results" / "perf_cpu" / "perf.json").read_text())
    lever = "explicit attention (inference: per machine and dtype; a trainable bias: always)"

    def row(r):
        return next(line for line in perf_cpu.lever_lines(r) if line.startswith(f"| {lever} |")).split(" | ")

    s, b = res["swin_t"], res["bf16"]["infer"]
    infer = perf_cpu.ratio(s["infer"], "hiermlp", "hiermlp, attention=sdpa")
    bf16 = perf_cpu.ratio(b, "hiermlp bf16", "hiermlp bf16, attention=sdpa")
    train = perf_cpu.ratio(s["train"], "hiermlp", "hiermlp, attention=sdpa")
    chose = copy.deepcopy(res)
    chose["env"]["cpu_attention_explicit"] = {"float32": True, "bfloat16": True}
    assert row(chose)[2:4] == [f"{infer:.2f}x, {bf16:.2f}x (bf16)", f"{train:.2f}x"]
    kept = copy.deepcopy(res)
    kept["env"]["cpu_attention_explicit"] = {"float32": False, "bfloat16": True}
    assert row(kept)[2:4] == [f"{bf16:.2f}x (bf16)", f"{train:.2f}x"]  # training trains the bias: explicit
    caption = "\n".join(perf_cpu.lever_lines(kept))
    assert "float32 SDPA, bfloat16 explicit" in caption and f"float32 {infer:.2f}x: noise" in caption
    kept["env"]["cpu_attention_explicit"] = {"float32": False, "bfloat16": False}
    assert row(kept)[2] == "-"


def test_perf_cpu_says_which_forced_gemm_path_is_the_default():
    """The default runs one of the two forced GEMM paths' code: the report names it, so the gap to it reads as
    the run's noise, not as a lever."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("perf_cpu", root / "benchmarks" / "perf_cpu.py")
    perf_cpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_cpu)
    res = json.loads((root / "benchmarks" / "results" / "perf_cpu" / "perf.json").read_text())
    for gemm, path in (("onednn", "forced onednn=1 (oneDNN)"), ("mkl", "forced onednn=0 (MKL)")):
        res["env"]["gemm"] = gemm
        text = perf_cpu.default_vs_forced_lines(res)[0]
        assert f"runs the code `hiermlp, {path}` runs" in text and "noise" in text
    res["env"].pop("gemm")
    assert "noise" not in perf_cpu.default_vs_forced_lines(res)[0]


def test_perf_cpu_gemm_fraction_and_bf16_ratio_are_paired_per_run():
    """The GEMM-efficiency fraction is the median of each run's own fraction (Swin-T inference timed round-robin
    with the GEMMs in that run), and the bf16 ratio the median of each run's paired ratio; a report from before
    (one GEMM process, one bf16 run) still renders and says where its numbers came from."""
    import importlib.util
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("perf_cpu", root / "benchmarks" / "perf_cpu.py")
    perf_cpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(perf_cpu)

    runs = [
        dict(gemm_gflops=200.0, onednn_gflops=None, best_gflops=200.0, swin_t_gflops=100.0, fraction=0.5),
        dict(gemm_gflops=300.0, onednn_gflops=None, best_gflops=300.0, swin_t_gflops=240.0, fraction=0.8),
        dict(gemm_gflops=250.0, onednn_gflops=None, best_gflops=250.0, swin_t_gflops=175.0, fraction=0.7),
    ]
    g = perf_cpu.merge_gemm(runs)
    # the median of the runs' own fractions, not the ratio of the median rates (175 / 250 = 0.70 here too, so
    # the second check below uses a set where they differ)
    assert g["fraction"] == 0.7 and g["run_fractions"] == [0.5, 0.8, 0.7] and g["gemm_gflops"] == 250.0
    runs[2].update(swin_t_gflops=100.0, fraction=0.4)
    assert perf_cpu.merge_gemm(runs)["fraction"] == 0.5

    def t(per_s):
        return {"median_s": 8 / per_s, "per_s": per_s}

    bf16_runs = [
        {"native": True, "infer": {"hiermlp bf16": t(30.0), "timm bf16": t(20.0)}},
        {"native": True, "infer": {"hiermlp bf16": t(26.0), "timm bf16": t(20.0)}},
        {"native": True, "infer": {"hiermlp bf16": t(40.0), "timm bf16": t(25.0)}},
    ]
    b = perf_cpu.merge_runs(bf16_runs, perf_cpu.BF16_PAIR)
    assert b["native"] is True and b["runs"] == 3
    assert [round(r, 2) for r in b["run_ratios"]["infer"]] == [1.5, 1.3, 1.6]

    res = json.loads((root / "benchmarks" / "results" / "perf_cpu" / "perf.json").read_text())
    old = perf_cpu.markdown(res, "env", res["command"])
    assert "the GEMMs' from a later process" in old and "hiermlp / timm under the same autocast: **" in old
    res["gemm"], res["bf16"] = perf_cpu.merge_gemm(runs), b
    new = perf_cpu.markdown(res, "env", res["command"])
    assert "**50%** of the machine's best" in new and "(runs: 50%, 80%, 40%;" in new
    assert "under the same autocast: **1.50x** (runs: 1.50, 1.30, 1.60)" in new
