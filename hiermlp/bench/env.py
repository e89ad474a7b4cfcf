"""The machine and software a measurement ran on: every report starts with it."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from typing import Any

import torch

from hiermlp.accel.machine import cpu_model

__all__ = ["cpu_model", "environment", "finish_environment", "format_environment", "set_threads"]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        if dist == "hiermlp":  # running from a source tree that is not pip-installed
            try:
                import tomllib
                from pathlib import Path

                pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
                return tomllib.loads(pyproject.read_text())["project"]["version"] + " (source)"
            except (OSError, KeyError, ValueError):
                pass
        return "not installed"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op threads explicitly (None = one per available core) and return the count."""
    torch.set_num_threads(available_cores() if threads is None else threads)
    return torch.get_num_threads()


def environment(device: str | torch.device = "cpu", dtype: str = "float32", compile: bool = False) -> dict:
    """Everything needed to reproduce or compare a measurement."""
    device = torch.device(device)
    info: dict[str, Any] = {
        "device": str(device),
        "device_name": cpu_model(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "dtype": dtype,
        "compile": compile,
        "torch": torch.__version__,
        "timm": _version("timm"),
        "hiermlp": _version("hiermlp"),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    from hiermlp.accel import settings
    from hiermlp.accel.linear import gemm_choice, onednn_enabled

    # hiermlp's float32 CPU linears: which GEMM path ran and why (the machine profile or HIERMLP_ACCEL)
    if device.type == "cpu":
        info["onednn_linears"] = settings.current().enabled and onednn_enabled()
        info.update(gemm_choice())
    with contextlib.suppress(AttributeError):  # sched_getaffinity is Linux-only
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(AttributeError, OSError):
        # other processes on a shared machine skew timings: record how busy it was when we started
        info["loadavg_start"] = [round(v, 2) for v in os.getloadavg()]
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        if settings.current().attention == "auto":  # the eager window-attention kernel this GPU measured faster
            from hiermlp.accel.machine import attention_choice

            info["attention_explicit"] = attention_choice(device)
    return info


def finish_environment(info: dict) -> dict:
    """Add the load average at the end of a run (how busy the machine was while measuring)."""
    with contextlib.suppress(AttributeError, OSError):
        info["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return info


GEMM_NAMES = {"onednn": "oneDNN", "mkl": "MKL (F.linear)"}


def _linears(info: dict) -> str:
    if "gemm" in info:
        att = info.get("cpu_attention_explicit")
        kernels = (
            ""
            if att is None
            else "; CPU inference attention: " + ", ".join(f"{t} {'explicit' if e else 'SDPA'}" for t, e in att.items())
        )
        return (
            f"; hiermlp float32 CPU linears: {GEMM_NAMES.get(info['gemm'], info['gemm'])} ({info['gemm_choice']})"
            + kernels
        )
    if "onednn_linears" in info:  # a report recorded before the machine profile
        return f"; hiermlp oneDNN linears: {'on' if info['onednn_linears'] else 'off (HIERMLP_ACCEL)'}"
    return ""


def format_environment(info: dict) -> str:
    """The Markdown header lines of a report."""
    dev = info["device"] if info["device"] == "cpu" else f"{info['device']} ({info['device_name']})"
    lines = [
        f"- device: {dev}; dtype: {info['dtype']}; torch.compile: {'on' if info['compile'] else 'off'}",
        f"- CPU: {info['cpu']} ({info['cpu_cores']} cores visible); torch threads: {info['threads']}" + _linears(info),
        f"- torch {info['torch']}, timm {info['timm']}, hiermlp {info['hiermlp']}, "
        f"Python {info['python']} on {info['platform']}",
    ]
    if "loadavg_start" in info:
        load = f"- load average (1/5/15 min) at start: {'/'.join(map(str, info['loadavg_start']))}"
        if "loadavg_end" in info:
            load += f", at end: {'/'.join(map(str, info['loadavg_end']))}"
        lines.append(load + " (above 0 = other processes shared the CPU)")
    if info.get("gemm_rates"):
        r = info["gemm_rates"]
        lines.append(
            f"- machine profile, float32 GFLOP/s on Swin-T's MLP shapes: MKL {r['mkl']}"
            + (f", oneDNN {r['onednn']}" if "onednn" in r else "")
            + f"; peak (1024^3): {max(v for k, v in r.items() if k.startswith('peak_'))}"
        )
    if "cuda" in info:
        lines.append(f"- CUDA {info['cuda']}, cuDNN {info['cudnn']}")
    if "attention_explicit" in info:
        kernel = {True: "explicit", False: "SDPA"}
        a = info["attention_explicit"]
        lines.append(
            f"- eager window attention (the GPU's attention profile): {kernel[a['infer']]} in inference, "
            f"{kernel[a['train']]} in training"
        )
    return "\n".join(lines)
