"""The machine profile (hiermlp.accel.machine): the per-machine GEMM choice, its cache and where it is recorded.

The timing itself is replaced by a fake that returns fixed rates and counts its calls: these tests check
which decision is taken from which rates, when a profile is measured again and what is written, never a
speed.
"""

from __future__ import annotations

import json

import pytest
import torch

from hiermlp import accel
from hiermlp.accel import machine
from hiermlp.accel.linear import gemm_choice, linear, onednn_available, onednn_enabled
from hiermlp.errors import ConfigError

# GFLOP/s as the timing would report them: a machine where oneDNN wins (bf16 native), one where MKL wins
# (bf16 emulated, 5x slower)
FAST_ONEDNN = dict(mkl=100.0, onednn=220.0, peak_mkl=180.0, peak_onednn=400.0, bf16=90.0, bf16_float32=95.0)
FAST_MKL = dict(mkl=160.0, onednn=130.0, peak_mkl=170.0, peak_onednn=140.0, bf16=30.0, bf16_float32=150.0)


class FakeTiming:
    """Stands in for ``machine._measure``: returns ``rates`` and counts the measurements."""

    def __init__(self, rates: dict[str, float]):
        self.rates, self.calls = dict(rates), 0

    def __call__(self, budget_s: float = machine.BUDGET_S) -> dict[str, float]:
        self.calls += 1
        return dict(self.rates)


@pytest.fixture
def timing(tmp_path, monkeypatch):
    """A fresh cache directory, no profile in memory, the per-machine choice on and a fake timing."""
    monkeypatch.setenv(machine.CACHE_ENV, str(tmp_path))
    fake = FakeTiming(FAST_ONEDNN)
    monkeypatch.setattr(machine, "_measure", fake)
    machine.forget()
    with accel.override(onednn=None):
        yield fake
    machine.forget()


def cached(tmp_path) -> list[dict]:
    return json.loads((tmp_path / "machine.json").read_text())["profiles"]


def test_decision_follows_the_rates_with_a_margin_for_mkl():
    assert machine.decide(FAST_ONEDNN) is True
    assert machine.decide(FAST_MKL) is False
    assert machine.decide({"mkl": 100.0, "onednn": 104.0}) is False  # within the margin: MKL stays
    assert machine.decide({"mkl": 100.0, "onednn": 100.0 * machine.MARGIN}) is True
    assert machine.decide({"mkl": 100.0}) is False  # no oneDNN kernel measured


def test_first_use_measures_once_and_later_processes_read_the_cache(timing, tmp_path):
    p = machine.profile()
    assert (p.source, p.onednn, timing.calls) == ("measured", True, 1)
    assert p.peak == 400.0 and p.bf16_slowdown == pytest.approx(95 / 90)
    assert machine.profile() is p and timing.calls == 1  # this process: from memory
    machine.forget()  # as a new process on the same machine
    q = machine.profile()
    assert (q.source, q.onednn, q.rates, timing.calls) == ("cache", True, FAST_ONEDNN, 1)
    [entry] = cached(tmp_path)
    assert entry["key"] == machine.machine_key() and entry["onednn"] is True and entry["rates"] == FAST_ONEDNN


@pytest.mark.parametrize(
    "change",
    [
        lambda mp: mp.setattr(machine, "cpu_model", lambda: "Another CPU"),
        lambda mp: mp.setattr(machine, "cpu_flags", lambda: frozenset({"avx2"})),
        lambda mp: mp.setattr(machine, "_cores", lambda: 64),
        lambda mp: mp.setattr(machine, "library_versions", lambda: {"torch": "9.9", "mkl": "x", "onednn": "y"}),
        lambda mp: mp.setattr(machine, "SHAPES", ((8, 8, 8),)),
    ],
    ids=["cpu model", "cpu flags", "cores", "library versions", "shapes"],
)
def test_a_changed_key_measures_again_and_keeps_the_other_profile(timing, tmp_path, monkeypatch, change):
    assert machine.profile().onednn and timing.calls == 1
    change(monkeypatch)
    machine.forget()
    timing.rates = FAST_MKL
    p = machine.profile()
    assert (p.source, p.onednn, timing.calls) == ("measured", False, 2)
    entries = cached(tmp_path)
    assert [e["onednn"] for e in entries] == [True, False] and entries[0]["key"] != entries[1]["key"]


def test_each_thread_count_has_its_own_profile(timing, tmp_path):
    threads = torch.get_num_threads()
    machine.profile(threads)
    machine.profile(threads + 1)
    assert timing.calls == 2 and torch.get_num_threads() == threads  # measured at threads + 1, restored
    assert sorted(e["key"]["threads"] for e in cached(tmp_path)) == [threads, threads + 1]


def test_remeasure_replaces_the_profile_of_the_same_key(timing, tmp_path):
    machine.profile()
    timing.rates = FAST_MKL
    assert machine.profile(remeasure=True).onednn is False and timing.calls == 2
    [entry] = cached(tmp_path)
    assert entry["onednn"] is False


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        "[]",
        json.dumps({"format": "something else", "profiles": []}),
        json.dumps({"format": machine.FORMAT, "profiles": [{"key": {}, "onednn": "yes"}]}),
        json.dumps({"format": machine.FORMAT, "profiles": [{"key": {}, "onednn": True, "measured": "", "rates": {}}]}),
    ],
    ids=["not json", "a list", "another format", "a wrong type", "no rates"],
)
def test_a_corrupt_cache_file_is_ignored_and_rewritten(timing, tmp_path, content):
    (tmp_path / "machine.json").write_text(content)
    assert machine.profile().source == "measured" and timing.calls == 1
    [entry] = cached(tmp_path)  # the file holds profiles again: the next process reads it
    assert entry["onednn"] is True
    machine.forget()
    assert machine.profile().source == "cache" and timing.calls == 1


def test_the_cache_is_bounded(timing, tmp_path):
    for threads in range(1, machine.MAX_ENTRIES + 4):
        machine.profile(threads)
    entries = cached(tmp_path)
    assert len(entries) == machine.MAX_ENTRIES
    assert [e["key"]["threads"] for e in entries] == list(range(4, machine.MAX_ENTRIES + 4))  # the oldest went


def test_an_unwritable_cache_directory_keeps_the_profile_in_the_process(timing, tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(machine.CACHE_ENV, str(tmp_path / "file" / "sub"))  # a parent that is a file
    p = machine.profile()
    assert p.onednn and p.path is None and timing.calls == 1


def test_the_cache_directory_follows_xdg_and_the_override(monkeypatch, tmp_path):
    monkeypatch.delenv(machine.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert machine.cache_path() == tmp_path / "xdg" / "hiermlp" / "machine.json"
    monkeypatch.setenv(machine.CACHE_ENV, str(tmp_path / "mine"))
    assert machine.cache_path() == tmp_path / "mine" / "machine.json"


needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this PyTorch build has no oneDNN linear kernel")


def _path_taken(x: torch.Tensor, w: torch.Tensor) -> str:
    x = x.clone().requires_grad_()
    name = linear(x, w).grad_fn.name()
    return "onednn" if "onednn" in name else "mkl"


@needs_onednn
@pytest.mark.parametrize(("rates", "expected"), [(FAST_ONEDNN, "onednn"), (FAST_MKL, "mkl")])
def test_linears_take_the_path_the_profile_chose(timing, rates, expected):
    timing.rates = rates
    x, w = torch.randn(4, 8), torch.randn(3, 8)
    assert _path_taken(x, w) == expected and onednn_enabled() is (expected == "onednn")
    assert gemm_choice()["gemm"] == expected and "machine profile" in gemm_choice()["gemm_choice"]
    assert timing.calls == 1


@needs_onednn
@pytest.mark.parametrize("pin", [True, False])
def test_a_pin_overrides_the_profile_and_measures_nothing(timing, pin):
    timing.rates = FAST_MKL if pin else FAST_ONEDNN  # the profile would choose the other path
    x, w = torch.randn(4, 8), torch.randn(3, 8)
    with accel.override(onednn=pin, attention="sdpa"):
        assert _path_taken(x, w) == ("onednn" if pin else "mkl")
        choice = gemm_choice()
    assert choice["gemm_choice"] == f"pinned (HIERMLP_ACCEL onednn={int(pin)})" and choice["gemm_rates"] is None
    assert "cpu_attention_explicit" not in choice  # pinned too: no profile is needed for either choice
    assert timing.calls == 0
    with accel.override(onednn=pin):  # the attention kernel still left to the machine: its profile is read
        assert gemm_choice()["cpu_attention_explicit"] == {"float32": False, "bfloat16": False}
    assert timing.calls == 1


def test_the_environment_variable_pins_or_leaves_the_choice_to_the_machine():
    from hiermlp.accel.settings import from_env

    assert from_env("onednn=1").onednn is True and from_env("onednn=0").onednn is False
    assert from_env("onednn=auto").onednn is None and from_env("").onednn is None
    with pytest.raises(ConfigError, match="onednn expects bool or auto"):
        from_env("onednn=fast")


def test_reports_record_the_path_and_why(timing):
    from hiermlp.bench.env import environment, format_environment

    env = environment("cpu")
    assert env["gemm"] == ("onednn" if onednn_available() else "mkl")
    if onednn_available():
        assert env["gemm_rates"]["onednn"] == FAST_ONEDNN["onednn"]
        text = format_environment(env)
        assert "float32 CPU linears: oneDNN (machine profile (measured by this process" in text
        assert "MKL 100.0, oneDNN 220.0; peak (1024^3): 400.0" in text
    with accel.override(onednn=False):
        assert "float32 CPU linears: MKL (F.linear) (pinned (HIERMLP_ACCEL onednn=0))" in format_environment(
            environment("cpu")
        )
    with accel.override(enabled=False):
        assert environment("cpu")["gemm_choice"].startswith("speed layer off")


# attention GFLOP/s: explicit wins in bfloat16 by more than the margin, ties in float32
ATTENTION_RATES = dict(attn_sdpa=30.0, attn_explicit=31.0, attn_sdpa_bf16=30.0, attn_explicit_bf16=40.0)


def test_the_attention_decision_needs_the_margin_and_both_kernels():
    assert machine.decide_attention(ATTENTION_RATES) == {"float32": False, "bfloat16": True}
    at_margin = dict(attn_sdpa=10.0, attn_explicit=10.0 * machine.MARGIN)
    assert machine.decide_attention(at_margin) == {"float32": True, "bfloat16": False}
    assert machine.decide_attention({"attn_explicit": 50.0}) == {"float32": False, "bfloat16": False}
    assert machine.decide_attention(FAST_ONEDNN) == {"float32": False, "bfloat16": False}  # not timed: SDPA


def test_cpu_inference_attention_follows_the_profile_per_dtype(timing, tmp_path):
    from hiermlp.accel.attention import use_explicit

    timing.rates = {**FAST_ONEDNN, **ATTENTION_RATES}
    cpu = torch.device("cpu")
    with torch.no_grad():
        assert use_explicit("cpu", 49, False, device=cpu, dtype=torch.bfloat16)
        assert not use_explicit("cpu", 49, False, device=cpu, dtype=torch.float32)
        assert not use_explicit("cpu", 49, False, device=cpu, dtype=torch.float64)  # a dtype it did not time
        assert not use_explicit("cpu", 3136, False, device=cpu, dtype=torch.bfloat16)  # global: never N x N
        assert not use_explicit("cpu", 49, False, tracing=True, device=cpu, dtype=torch.bfloat16)  # compilers: SDPA
        with accel.override(attention="sdpa"):
            assert not use_explicit("cpu", 49, False, device=cpu, dtype=torch.bfloat16)
    with torch.enable_grad():  # autograd: SDPA's fused backward unless the bias trains (then always explicit)
        assert not use_explicit("cpu", 49, False, device=cpu, dtype=torch.bfloat16)
        assert use_explicit("cpu", 49, True, device=cpu, dtype=torch.float32)
    assert timing.calls == 1
    [entry] = cached(tmp_path)
    assert entry["attention"] == {"float32": False, "bfloat16": True}
    machine.forget()  # a later process reads the decision, not the rates
    assert machine.profile().attention == {"float32": False, "bfloat16": True} and timing.calls == 1
    assert gemm_choice()["cpu_attention_explicit"] == {"float32": False, "bfloat16": True}


def test_a_profile_from_before_the_attention_choice_is_measured_again(timing, tmp_path):
    old = {"key": machine.machine_key(), "onednn": True, "measured": "", "rates": dict(FAST_ONEDNN)}
    (tmp_path / "machine.json").write_text(json.dumps({"format": "hiermlp machine profiles 1", "profiles": [old]}))
    assert machine.profile().source == "measured" and timing.calls == 1
    old_entry_now = json.dumps({"format": machine.FORMAT, "profiles": [old]})  # no attention field: not valid
    (tmp_path / "machine.json").write_text(old_entry_now)
    machine.forget()
    assert machine.profile().source == "measured" and timing.calls == 2


def test_the_real_measurement_returns_every_rate_and_no_flop_counter_sees_it(monkeypatch):
    """The timing code runs (on tiny shapes: nothing about speed is asserted), under a flop counter too."""
    from torch.utils.flop_counter import FlopCounterMode

    monkeypatch.setattr(machine, "SHAPES", ((16, 8, 8), (16, 8, 8), (16, 8, 8), (16, 8, 8)))
    monkeypatch.setattr(machine, "PEAK_SIDE", 16)
    monkeypatch.setattr(machine, "CPU_ATTENTION_SHAPE", (3, 2, 5, 4))
    with FlopCounterMode(display=False) as counter:
        rates = machine._measure(budget_s=0.0)
    assert counter.get_total_flops() == 0
    expected = {"mkl", "peak_mkl", "bf16", "bf16_float32", "attn_sdpa", "attn_explicit"}
    expected |= {"attn_sdpa_bf16", "attn_explicit_bf16"}
    expected |= {"onednn", "peak_onednn"} if onednn_available() else set()
    assert set(rates) == expected and all(v > 0 for v in rates.values())


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert not machine.native_bf16("cpu")
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert machine.native_bf16("cpu")
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    assert machine.native_bf16(torch.device("cpu"))


# --- CUDA: the window-attention kernel (timing faked; no GPU needed) --------------------------------------

GPU = torch.device("cuda", 0)
# seconds: explicit attention faster in training, SDPA faster in inference
ATTENTION_SECONDS = dict(sdpa_infer=1.0, explicit_infer=1.2, sdpa_train=3.0, explicit_train=2.0)


@pytest.fixture
def gpu_timing(tmp_path, monkeypatch):
    monkeypatch.setenv(machine.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(machine, "gpu_key", lambda device: {"gpu": "Fake GPU", "capability": [9, 0]})
    calls = []

    def fake(device, budget_s=machine.BUDGET_S):
        calls.append(device)
        return dict(ATTENTION_SECONDS)

    monkeypatch.setattr(machine, "_measure_attention", fake)
    machine.forget()
    with accel.override(attention="auto"):
        yield calls
    machine.forget()


def test_the_gpu_attention_choice_is_timed_once_per_gpu_and_cached(gpu_timing, tmp_path, monkeypatch):
    assert machine.attention_choice(GPU) == {"infer": False, "train": True}
    assert machine.attention_choice(GPU) == {"infer": False, "train": True} and len(gpu_timing) == 1
    machine.forget()  # a new process: reads gpu.json
    assert machine.attention_choice(GPU) == {"infer": False, "train": True} and len(gpu_timing) == 1
    [entry] = json.loads((tmp_path / "gpu.json").read_text())["profiles"]
    assert entry["seconds"] == ATTENTION_SECONDS
    monkeypatch.setattr(machine, "gpu_key", lambda device: {"gpu": "Another GPU", "capability": [8, 0]})
    machine.forget()
    machine.attention_choice(GPU)
    assert len(gpu_timing) == 2  # another GPU: measured again


def test_use_explicit_follows_the_gpu_profile_in_eager_mode_only(gpu_timing):
    from hiermlp.accel.attention import use_explicit

    with torch.no_grad():
        assert not use_explicit("cuda", 49, trains_bias=False, device=GPU)
    with torch.enable_grad():
        assert use_explicit("cuda", 49, trains_bias=True, device=GPU)
    assert use_explicit("cuda", 49, trains_bias=False, tracing=True, device=GPU)  # compiled: the static rule
    assert not use_explicit("cuda", 3136, trains_bias=False, device=GPU)  # global attention: never N x N logits
    with accel.override(attention="sdpa"):
        assert not use_explicit("cuda", 49, trains_bias=True, device=GPU)
    assert len(gpu_timing) == 1


def test_a_gpu_timing_that_fails_keeps_sdpa(gpu_timing, monkeypatch):
    def broken(device, budget_s=machine.BUDGET_S):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(machine, "_measure_attention", broken)
    assert machine.attention_choice(GPU) == {"infer": False, "train": False}


def test_info_machine_prints_the_rates_the_peak_and_the_choice(timing, capsys):
    from hiermlp.cli import main

    assert main(["info", "--machine"]) == 0
    out = capsys.readouterr().out
    assert "MKL (F.linear) 100.0, oneDNN 220.0" in out and "peak      400.0 GFLOP/s" in out
    in_force = "oneDNN: machine profile" if onednn_available() else "MKL (F.linear): this PyTorch build"
    assert f"in force  {in_force}" in out and "HIERMLP_ACCEL=onednn=1" in out
    # the fake timing has no attention rates: SDPA in both dtypes, and the line says what was (not) measured
    assert "float32 not timed -> SDPA; bfloat16 not timed -> SDPA" in out
    machine.forget()  # as a later process
    assert main(["info", "--machine", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["rates_gflops"] == FAST_ONEDNN and m["peak_gflops"] == 400.0 and m["source"] == "cache"
    assert timing.calls == 1  # the second call read the cache
    assert main(["info", "--machine", "--remeasure"]) == 0 and timing.calls == 2


def test_info_without_a_model_or_machine_is_one_line(capsys):
    from hiermlp.cli import main

    assert main(["info"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "needs a model name" in err and "--machine" in err


def test_a_compare_run_identity_holds_the_gemm_path(timing):
    from hiermlp.study import runner

    assert runner.run_environment("cpu", 1)["gemm"] == ("onednn" if onednn_available() else "mkl")
    with accel.override(onednn=False):
        assert runner.run_environment("cpu", 1)["gemm"] == "mkl"
