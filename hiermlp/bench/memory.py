"""Peak memory of one inference batch or one training step, measured in a fresh subprocess.

What the number is:

- **CUDA**: ``torch.cuda.max_memory_allocated()`` in a fresh process, counted from before the model is
  built: weights + activations + workspace (+ gradients and AdamW state for a training step). Memory held
  by the caching allocator but not allocated to tensors, and the CUDA context, are not counted.
- **CPU**: the growth of the process's resident set, ``VmHWM`` (peak RSS) minus ``VmRSS`` just before
  the model is built, in a fresh process: the same items as on CUDA, plus allocator slack and any
  scratch memory of oneDNN/MKL kernels, i.e. what the operating system actually had to provide. Torch's
  CPU allocator is plain ``malloc``, invisible to ``tracemalloc``, and ``ru_maxrss`` in a long-lived
  process also remembers every earlier model, hence a new process per measurement. The transient peak of
  building the model is excluded by resetting the peak counter (``/proc/self/clear_refs``) after the
  build; torch's thread pools and kernel code are warmed up before the baseline is read, so their
  one-off cost is not charged to the model. Where ``clear_refs`` is unavailable ``ru_maxrss`` is used.

Because each measurement runs in its own process, a model that exhausts memory kills only that process:
the caller records OOM and carries on (the resolution sweep uses this as a canary before timing a point).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["MemoryResult", "measure_peak_memory"]

CPU_METHOD = "peak RSS growth (VmHWM - VmRSS before build), fresh process"
CUDA_METHOD = "torch.cuda.max_memory_allocated, fresh process"


@dataclass
class MemoryResult:
    """Outcome of one memory measurement.

    Attributes:
        status: ``ok``, ``oom``, ``timeout``, ``unsupported`` (bad image size) or ``error``.
        peak_mb: Peak memory in MiB (None unless ok).
        step_s: Seconds of the last step in the child (a rough, unwarmed time; used to cap sweeps).
        method: How ``peak_mb`` was measured.
        error: Message when not ok.
    """

    status: str
    peak_mb: float | None = None
    step_s: float | None = None
    method: str = ""
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_peak_memory(
    name: str,
    *,
    img_size: int | None,
    batch: int,
    mode: str = "infer",
    device: str = "cpu",
    dtype: str = "float32",
    threads: int | None = None,
    in_chans: int = 3,
    num_classes: int = 1000,
    model_kwargs: dict[str, Any] | None = None,
    compile: bool = False,
    opt: str = "adamw",
    timeout_s: float = 600.0,
) -> MemoryResult:
    """Measure the peak memory of ``mode`` (``infer`` or ``train``) for a model in a fresh subprocess.

    Args:
        name: Model name (resolved as in :func:`hiermlp.bench.resolve.resolve_model`).
        img_size: Image side (None: the model's default).
        batch: Batch size.
        mode: ``infer`` (one forward under no_grad) or ``train`` (two forward/backward/``opt``
            steps; the second one holds the optimizer state, so the peak is the steady-state one).
        device: ``cpu`` or ``cuda``.
        dtype: ``float32`` or an autocast dtype.
        threads: Intra-op threads in the child.
        in_chans: Input channels.
        num_classes: Classifier outputs.
        model_kwargs: Extra constructor options.
        compile: Run the model through ``torch.compile``.
        opt: The training step's optimizer (a timm name).
        timeout_s: Give up (status ``timeout``) after this many seconds.

    Returns:
        The measurement; never raises for OOM, timeouts or child failures.
    """
    spec = {
        "name": name,
        "img_size": img_size,
        "batch": batch,
        "mode": mode,
        "device": device,
        "dtype": dtype,
        "threads": threads,
        "in_chans": in_chans,
        "num_classes": num_classes,
        "model_kwargs": model_kwargs or {},
        "compile": compile,
        "opt": opt,
    }
    env = dict(os.environ)
    # the child must import this very hiermlp even when it is run from a source tree, not installed
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    method = CUDA_METHOD if device.startswith("cuda") else CPU_METHOD
    try:
        proc = subprocess.run(
            # -c, not -m: the package __init__ imports this module, and runpy warns about re-running it
            [
                sys.executable,
                "-c",
                "import sys; from hiermlp.bench.memory import main; main(sys.argv[1])",
                json.dumps(spec),
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return MemoryResult("timeout", method=method, error=f"no result within {timeout_s:.0f}s")
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return MemoryResult(**json.loads(line))
    if proc.returncode in (-9, 137):  # SIGKILL: on Linux almost always the kernel's OOM killer
        return MemoryResult("oom", method=method, error="killed by SIGKILL (out of memory)")
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return MemoryResult("error", method=method, error=f"exit {proc.returncode}: {tail}")


def read_status_kb(field: str) -> int:
    """A ``/proc/self/status`` field in kB (``VmRSS``, ``VmHWM``: Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _warm_torch(device: Any) -> None:
    """Touch the kernels and thread pools every model uses so their one-off memory precedes the baseline."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(2, 3, 32, 32, device=device, requires_grad=True)
    w = torch.randn(8, 3, 4, 4, device=device, requires_grad=True)
    y = F.conv2d(x, w, stride=4).flatten(2).transpose(1, 2)  # (2, 64, 8)
    y = F.layer_norm(y, (8,))
    q = y.unflatten(-1, (2, 4)).transpose(1, 2)
    y = F.scaled_dot_product_attention(q, q, q).transpose(1, 2).flatten(2)
    y = F.gelu(F.linear(y, torch.randn(16, 8, device=device))).softmax(-1)
    y.sum().backward()


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    import resource

    import torch

    from hiermlp.bench.env import set_threads
    from hiermlp.bench.resolve import ImageSizeError, build_at_size, is_oom
    from hiermlp.bench.workload import infer_step, train_step

    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    method = CUDA_METHOD if cuda else CPU_METHOD
    set_threads(spec["threads"])
    _warm_torch(device)
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = read_status_kb("VmRSS") * 1024
    try:
        model, _ = build_at_size(
            spec["name"],
            img_size=spec["img_size"],
            in_chans=spec["in_chans"],
            num_classes=spec["num_classes"],
            model_kwargs=spec["model_kwargs"],
        )
        model = model.to(device)
        size = spec["img_size"] or _default_size(model)
        x = torch.randn(spec["batch"], spec["in_chans"], size, size, device=device)
        fwd = torch.compile(model) if spec["compile"] else None
        if spec["mode"] == "train":
            step, n_steps = train_step(model, x, spec["num_classes"], spec["dtype"], fwd, spec.get("opt", "adamw")), 2
        else:
            step, n_steps = infer_step(model, x, spec["dtype"], fwd), 1
        reset = cuda or reset_peak_rss()
        if not cuda and not reset:
            method = "peak RSS growth (ru_maxrss - VmRSS before build), fresh process"
        for _ in range(n_steps):
            t0 = time.perf_counter()
            step()
            if cuda:
                torch.cuda.synchronize(device)
            step_s = time.perf_counter() - t0
    except ImageSizeError as e:
        return {"status": "unsupported", "method": method, "error": str(e)}
    except Exception as e:
        if is_oom(e):
            return {"status": "oom", "method": method, "error": str(e).splitlines()[0][:200]}
        return {"status": "error", "method": method, "error": f"{type(e).__name__}: {e}"[:500]}
    if cuda:
        peak = torch.cuda.max_memory_allocated(device) - base
    elif reset:
        peak = read_status_kb("VmHWM") * 1024 - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"status": "ok", "peak_mb": peak / 2**20, "step_s": step_s, "method": method}


def _default_size(model: Any) -> int:
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    return int(cfg.get("input_size", (3, 224, 224))[-1])


def main(spec_json: str) -> None:
    """Child entry point: measure the JSON spec and print the result as one JSON line."""
    print(json.dumps(_child(json.loads(spec_json))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
