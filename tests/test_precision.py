"""Precision by capability (amp: auto) and the record of the fast path a run took (checkpoints, compare).

Whether a CPU has native bf16 is faked through the flag check; the measured bf16 cost comes from a fake
machine-profile timing: nothing here times anything.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from hiermlp.accel import machine
from hiermlp.train import TrainConfig, load_config, train
from hiermlp.train import build as train_build
from hiermlp.train.build import autocast, resolve_amp
from tests.test_machine import FAST_MKL, FakeTiming
from tests.test_train import tiny

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))


@pytest.fixture
def emulating_cpu(monkeypatch, tmp_path):
    """A CPU without native bf16 whose profile measured bf16 GEMMs 5x slower than float32's."""
    monkeypatch.setattr(train_build, "native_bf16", lambda device: False)
    monkeypatch.setenv(machine.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(machine, "_measure", FakeTiming(FAST_MKL))
    monkeypatch.setattr(train_build, "_warned_emulated_bf16", False)
    machine.forget()
    yield
    machine.forget()


def test_auto_is_bf16_only_where_the_device_computes_it_natively(monkeypatch):
    monkeypatch.setattr(train_build, "native_bf16", lambda device: True)
    assert resolve_amp("auto", "cpu") == "bf16"
    with autocast(torch.device("cpu"), "auto"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(train_build, "native_bf16", lambda device: False)
    assert resolve_amp("auto", "cpu") == "none"
    with autocast(torch.device("cpu"), "auto"):
        assert not torch.is_autocast_enabled("cpu")
    for explicit in ("fp16", "none"):
        assert resolve_amp(explicit, "cpu") == explicit


def test_native_bf16_on_cpu_follows_the_flags(monkeypatch):
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert resolve_amp("auto", "cpu") == "none"
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert resolve_amp("auto", "cpu") == "bf16"


def test_explicit_bf16_on_an_emulating_cpu_warns_once_with_the_measured_cost(emulating_cpu):
    with pytest.warns(UserWarning, match=r"amp=bf16 on a CPU without native bf16.*5\.0x slower than float32"):
        assert resolve_amp("bf16", "cpu") == "bf16"  # warned, not refused: the user asked for it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resolve_amp("bf16", "cpu")  # once per process
        resolve_amp("auto", "cpu")  # auto never warns: it picks float32 here


def test_the_presets_and_the_config_default_to_auto_and_compare_stays_float32():
    from hiermlp.study import load_preset
    from hiermlp.study.report import PRECISION, CompareResult

    assert TrainConfig().amp == "auto"
    assert PRESETS and all(load_config(p, []).amp == "auto" for p in PRESETS)
    preset = load_preset("default")
    assert preset.recipe["amp"] == "none"
    notes = CompareResult("t", [], {}, dict(preset.recipe), {}).notes()
    assert PRECISION["none"] in notes and "float32" in PRECISION["none"]


def test_a_training_checkpoint_records_the_precision_and_gemm_path(tmp_path):
    res = train(tiny(tmp_path, "limit_train=128", "limit_test=64", "epochs=1"))
    speed = torch.load(tmp_path / "last.pth", weights_only=True)["speed"]
    assert speed["amp_config"] == res.config.amp == "auto"
    assert speed["amp"] == resolve_amp("auto", "cpu") and speed["native_bf16"] is machine.native_bf16("cpu")
    # the suite pins MKL (tests/conftest.py): the record says so, and why
    assert speed["gemm"] == "mkl" and speed["gemm_choice"] == "pinned (HIERMLP_ACCEL onednn=0)"
    assert "onednn=False" in speed["accel"]
