"""The machine profile: this machine's fastest exact float32 GEMM path, measured once and cached.

The fastest float32 linear differs between CPUs: MKL's ``sgemm`` (``F.linear``) runs its AVX2 code on AMD
processors, where oneDNN's inner product runs AVX-512; on other machines MKL wins. Both compute the same
products (to float32 rounding), so the speed layer picks per machine. On first use it times both paths on
the linear shapes of a Swin-T's channel MLPs (well under a second), decides, and stores the decision with
the rates in the user's cache directory, keyed by everything it depends on (:func:`machine_key`: CPU model
and flags, cores, torch threads, torch, MKL and oneDNN versions). Later processes on the machine read it,
so a machine keeps one path and its runs stay reproducible. ``HIERMLP_ACCEL=onednn=1`` (or ``0``) pins the
path and nothing is measured (:mod:`hiermlp.accel.linear` applies the decision).

The cache file is ``machine.json`` in ``$HIERMLP_CACHE_DIR``, else ``$XDG_CACHE_HOME/hiermlp``, else the
platform's user cache directory (``~/.cache/hiermlp`` on Linux). It holds at most :data:`MAX_ENTRIES`
profiles (one per key, the newest kept), is written atomically under a file lock (processes starting
together measure once), and a file that does not read as a profile list is ignored and rewritten. Where
the directory cannot be written the profile lives in the process only.

A profile also holds the machine's float32 peak (a square GEMM, best path) and the bf16 GEMM rate under
autocast beside float32's on the same shapes: the measured cost an emulated ``amp: bf16`` is warned with.
Whether bf16 is native is read from the CPU flags (:func:`native_bf16`), not timed.

It also times window attention for CPU inference, SDPA against the explicit form the speed layer runs
(:func:`hiermlp.accel.explicit.explicit_attention`), in float32 and bfloat16, on Swin-T's stage-1 window
batch, and keeps the faster per dtype (:func:`decide_attention`; SDPA unless explicit wins by :data:`MARGIN`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import json
import os
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hiermlp.io import atomic_write_text

__all__ = [
    "CACHE_ENV",
    "MARGIN",
    "MAX_ENTRIES",
    "Profile",
    "cache_path",
    "cpu_attention_explicit",
    "cpu_flags",
    "cpu_model",
    "decide",
    "decide_attention",
    "forget",
    "machine_key",
    "native_bf16",
    "prefers_onednn",
    "profile",
    "window_attention_explicit",
]

CACHE_ENV = "HIERMLP_CACHE_DIR"
FORMAT = "hiermlp machine profiles 2"  # 2: with the CPU attention choice
# profiles kept in the cache file: a few thread counts and library versions of one machine, or the machines
# sharing one home directory
MAX_ENTRIES = 16
# oneDNN is chosen only when it beats MKL by this factor: a smaller lead is within the noise of a shared
# machine, and the default then stays within 5% of the best path either way
MARGIN = 1.05
# Swin-T's channel-MLP linears at batch 2 (rows = tokens per stage; fc1 and fc2): the shapes that dominate
# the models' time, in both orientations a training step also runs (an input gradient is the transposed GEMM)
SHAPES: tuple[tuple[int, int, int], ...] = (
    (6272, 96, 384),
    (6272, 384, 96),
    (1568, 192, 768),
    (1568, 768, 192),
    (392, 384, 1536),
    (392, 1536, 384),
    (98, 768, 3072),
    (98, 3072, 768),
)
PEAK_SIDE = 1024  # the square GEMM whose best rate is reported as the machine's float32 peak
# Swin-T's stage-1 window batch at batch 4 as the CPU inference kernel sees it in an unshifted block (windows,
# heads, tokens, head dim): 7 MB of float32 logits, over a core's cache, where explicit attention runs in slices
CPU_ATTENTION_SHAPE = (4 * 64, 3, 49, 32)
# the dtypes CPU attention is timed in, each with the suffix of its rates' keys (attn_sdpa_bf16, ...)
ATTENTION_DTYPES = {"float32": "", "bfloat16": "_bf16"}
BF16_SHAPES = SHAPES[2:4]  # bf16 is timed on the stage-2 pair only: an emulating CPU runs it 5x slower
BUDGET_S = 0.5  # timing rounds go on while under this budget, between MIN_ROUNDS and MAX_ROUNDS
MIN_ROUNDS, MAX_ROUNDS = 3, 9

# native bf16 arithmetic in the CPU flags (x86: AVX512-BF16, AMX-BF16; Arm: the BF16 extension)
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@dataclasses.dataclass(frozen=True)
class Profile:
    """One machine's measured GEMM rates (GFLOP/s) and the path chosen from them."""

    key: dict[str, Any]
    onednn: bool  # float32 CPU linears on oneDNN (True) or MKL's F.linear (False)
    # mkl, onednn (model shapes), peak_mkl, peak_onednn, bf16, bf16_float32; attention GFLOP/s: attn_sdpa,
    # attn_explicit and the same with a _bf16 suffix
    rates: dict[str, float]
    measured: str  # when (UTC, ISO 8601)
    source: str  # "measured" (by this process) or "cache"
    path: Path | None  # the cache file it was read from or written to (None: kept in the process only)
    load: list[float] | None = None  # the load averages (1/5/15 min) while it was measured
    # CPU inference's window attention per dtype name ("float32", "bfloat16"): explicit (True) or SDPA
    attention: dict[str, bool] = dataclasses.field(default_factory=dict)

    @property
    def peak(self) -> float:
        """The best float32 rate this machine's GEMM paths reached on the square product."""
        return max(v for k, v in self.rates.items() if k.startswith("peak_"))

    @property
    def bf16_slowdown(self) -> float | None:
        """How many times longer a bf16 autocast GEMM took than the float32 one on the same shapes."""
        bf16, f32 = self.rates.get("bf16"), self.rates.get("bf16_float32")
        return f32 / bf16 if bf16 and f32 else None


# --- the machine's facts ----------------------------------------------------------------------------------


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "model name" and not model:
                    model = value.strip()
                elif name in ("flags", "features") and not flags:  # x86 "flags", Arm "Features"
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown", flags


def cpu_model() -> str:
    """CPU model name (``/proc/cpuinfo`` on Linux, ``platform`` elsewhere)."""
    return _cpuinfo()[0]


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where the OS does not list them)."""
    return _cpuinfo()[1]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@functools.cache
def library_versions() -> dict[str, str]:
    """torch's version and the MKL and oneDNN versions it was built with (from its build configuration)."""
    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.\-]+)", config)
    dnn = re.search(r"MKL-DNN v([\w.\-]+)", config)
    return {
        "torch": torch.__version__,
        "mkl": mkl.group(1) if mkl else "none",
        "onednn": dnn.group(1) if dnn else "none",
    }


def machine_key(threads: int | None = None) -> dict[str, Any]:
    """Everything a GEMM timing depends on: a profile is reused only where all of it matches."""
    return {
        "cpu": cpu_model(),
        "flags": " ".join(sorted(cpu_flags())),
        "cores": _cores(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "capability": torch.backends.cpu.get_cpu_capability(),
        **library_versions(),
        "shapes": ",".join("x".join(map(str, s)) for s in SHAPES),
        "attention": "x".join(map(str, CPU_ATTENTION_SHAPE)),
    }


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively (CPU: its flags; CUDA: compute capability 8.0 and later)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return bool(cpu_flags() & BF16_FLAGS)
    return False


# --- the measurement --------------------------------------------------------------------------------------


def _onednn_kernel() -> Callable[..., torch.Tensor] | None:
    """oneDNN's inner product (a private op: None where this build lacks it or it computes wrong here)."""
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        x, w = torch.randn(8, 16, device="cpu"), torch.randn(4, 16, device="cpu")
        if not torch.allclose(op(x, w, None, "none", [], ""), F.linear(x, w), atol=1e-4):
            return None
    except Exception:  # any failure means: not usable here
        return None
    return lambda x, w, b: op(x, w, b, "none", [], "")


@contextlib.contextmanager
def _plain_eager() -> Iterator[None]:
    """Measure outside whatever the caller runs under: no grad, no autocast, no dispatch modes (a flop
    counter or a fake-tensor mode must not see these products)."""
    from torch.utils._python_dispatch import _disable_current_modes

    with _disable_current_modes(), torch.no_grad(), torch.autocast("cpu", enabled=False):
        yield


def _flops(shapes: tuple[tuple[int, int, int], ...]) -> int:
    return sum(2 * r * i * o for r, i, o in shapes)


def _measure(budget_s: float = BUDGET_S) -> dict[str, float]:
    """GFLOP/s of each candidate path, timed round-robin (medians over rounds), in at most about ``budget_s``."""
    with _plain_eager():
        gen = torch.Generator().manual_seed(0)
        cpu = {"generator": gen, "device": "cpu"}  # whatever default device the caller set
        data = [(torch.randn(r, i, **cpu), torch.randn(o, i, **cpu), torch.randn(o, **cpu)) for r, i, o in SHAPES]
        half = data[2:4]
        a, b = torch.randn(PEAK_SIDE, PEAK_SIDE, **cpu), torch.randn(PEAK_SIDE, PEAK_SIDE, **cpu)
        paths = {"mkl": F.linear}
        kernel = _onednn_kernel()
        if kernel is not None:
            paths["onednn"] = kernel

        def over(fn: Callable[..., torch.Tensor], items: list) -> Callable[[], None]:
            def run() -> None:
                for x, w, bias in items:
                    fn(x, w, bias)

            return run

        def bf16() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                for x, w, bias in half:
                    F.linear(x, w, bias)

        tasks: dict[str, tuple[Callable[[], None], int]] = {}
        for name, fn in paths.items():
            tasks[name] = (over(fn, data), _flops(SHAPES))
            tasks[f"peak_{name}"] = (over(fn, [(a, b, None)]), 2 * PEAK_SIDE**3)
        tasks["bf16_float32"] = (over(F.linear, half), _flops(BF16_SHAPES))
        tasks["bf16"] = (bf16, _flops(BF16_SHAPES))
        tasks.update(_attention_tasks(gen))
        samples: dict[str, list[float]] = {name: [] for name in tasks}
        for fn, _ in tasks.values():  # warm-up: first calls pay for primitive creation and page faults
            fn()
        start = time.perf_counter()
        rounds = 0
        while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and time.perf_counter() - start < budget_s):
            for name, (fn, _) in tasks.items():
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
            rounds += 1
    return {name: flops / statistics.median(samples[name]) / 1e9 for name, (_, flops) in tasks.items()}


def _attention_tasks(gen: torch.Generator) -> dict[str, tuple[Callable[[], None], int]]:
    """Window attention with an additive bias (inference), SDPA and the speed layer's explicit kernel, in
    float32 and bfloat16 (``attn_sdpa``, ``attn_explicit``, ``..._bf16``), with their flops."""
    from hiermlp.accel.explicit import explicit_attention

    b, h, n, d = CPU_ATTENTION_SHAPE
    tasks = {}
    for name, suffix in ATTENTION_DTYPES.items():
        dtype = getattr(torch, name)
        # strided views of one qkv projection, as an unshifted block hands them over: (b w) n (three heads d)
        qkv = torch.randn(b, n, 3, h, d, generator=gen, device="cpu").to(dtype)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        bias = torch.randn(1, h, n, n, generator=gen, device="cpu").to(dtype)

        def sdpa(q=q, k=k, v=v, bias=bias) -> None:
            F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=d**-0.5)

        def explicit(q=q, k=k, v=v, bias=bias) -> None:
            explicit_attention(q, k, v, bias, d**-0.5)

        tasks[f"attn_sdpa{suffix}"] = (sdpa, 4 * b * h * n * n * d)
        tasks[f"attn_explicit{suffix}"] = (explicit, 4 * b * h * n * n * d)
    return tasks


def _load() -> list[float] | None:
    """The 1-minute load average when measuring (other processes skew a timing: ``hiermlp info --machine``
    shows it, and ``--remeasure`` measures again on a quieter machine)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def decide(rates: dict[str, float]) -> bool:
    """oneDNN (True) only where it beat MKL by :data:`MARGIN` on the model shapes; MKL on a tie."""
    onednn = rates.get("onednn")
    return onednn is not None and onednn >= MARGIN * rates["mkl"]


def decide_attention(rates: dict[str, float]) -> dict[str, bool]:
    """Per dtype name, explicit window attention (True) only where it beat SDPA by :data:`MARGIN`; SDPA on a tie
    or where either was not measured."""
    choice = {}
    for dtype, suffix in ATTENTION_DTYPES.items():
        explicit, sdpa = rates.get(f"attn_explicit{suffix}"), rates.get(f"attn_sdpa{suffix}")
        choice[dtype] = explicit is not None and sdpa is not None and explicit >= MARGIN * sdpa
    return choice


# --- the cache --------------------------------------------------------------------------------------------


def cache_path() -> Path:
    """The profile cache file (see the module docstring for where it lives)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]) / "machine.json"
    if os.environ.get("XDG_CACHE_HOME"):
        base = Path(os.environ["XDG_CACHE_HOME"])
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path.home() / ".cache"
    return base / "hiermlp" / "machine.json"


def _valid(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("key"), dict)
        and isinstance(entry.get("onednn"), bool)
        and isinstance(entry.get("measured"), str)
        and isinstance(entry.get("rates"), dict)
        and isinstance(entry.get("attention"), dict)
        and all(isinstance(entry["attention"].get(t), bool) for t in ("float32", "bfloat16"))
        and all(isinstance(v, int | float) and v > 0 for v in entry["rates"].values())
        and "mkl" in entry["rates"]
        and any(k.startswith("peak_") for k in entry["rates"])
    )


def _read(path: Path, valid: Callable[[Any], bool] | None = None) -> list[dict]:
    """The file's profiles; none where it is missing, unreadable or not a profile list (it is rewritten)."""
    valid = valid or _valid
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    entries = data.get("profiles") if isinstance(data, dict) and data.get("format") == FORMAT else None
    if not isinstance(entries, list) or not all(valid(e) for e in entries):
        return []
    return entries


def _write(path: Path, entries: list[dict]) -> bool:
    try:
        atomic_write_text(path, json.dumps({"format": FORMAT, "profiles": entries[-MAX_ENTRIES:]}, indent=1))
    except Exception:  # an unwritable cache directory costs a re-measurement per process, nothing more
        return False
    return True


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold the cache file's lock (processes starting together measure once); nothing where it cannot be
    taken (an unwritable directory) or is held past 60 s."""
    from filelock import FileLock, Timeout

    lock = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock", timeout=60)
        lock.acquire()
    except (OSError, Timeout):
        lock = None
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


# process-wide: torch threads -> the profile used at that thread count
_profiles: dict[int, Profile] = {}


def profile(threads: int | None = None, *, remeasure: bool = False) -> Profile:
    """This machine's profile at ``threads`` torch threads (None: the current count), measured at most once.

    Read from this process's memory, else from the cache file, else measured (at the current thread count)
    and written to the cache. ``remeasure`` measures again and replaces the cached profile.
    """
    threads = torch.get_num_threads() if threads is None else threads
    if not remeasure and threads in _profiles:
        return _profiles[threads]
    key = machine_key(threads)
    path = cache_path()
    with _locked(path):
        entries = _read(path)
        match = next((e for e in reversed(entries) if e["key"] == key), None)
        if match is not None and not remeasure:
            found = Profile(
                key,
                match["onednn"],
                dict(match["rates"]),
                match["measured"],
                "cache",
                path,
                match.get("load"),
                dict(match["attention"]),
            )
        else:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                rates = _measure()
            finally:
                torch.set_num_threads(previous)
            measured = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
            entry = {
                "key": key,
                "onednn": decide(rates),
                "attention": decide_attention(rates),
                "rates": rates,
                "measured": measured,
                "load": _load(),
            }
            written = _write(path, [e for e in entries if e["key"] != key] + [entry])
            where = path if written else None
            found = Profile(key, entry["onednn"], rates, measured, "measured", where, entry["load"], entry["attention"])
    _profiles[threads] = found
    return found


# a compiler tracing a model runs this once, eagerly, and takes its answer as a constant
@torch.compiler.assume_constant_result
def prefers_onednn() -> bool:
    """The profile's decision at the current thread count: float32 CPU linears on oneDNN (True) or MKL."""
    known = _profiles.get(torch.get_num_threads())
    return (known or profile()).onednn


def cpu_attention_explicit(dtype: torch.dtype) -> bool:
    """The profile's choice for CPU inference's window attention in ``dtype`` at the current thread count:
    explicit (True) or SDPA; SDPA for a dtype it did not time. Eager only (traced graphs keep SDPA)."""
    name = str(dtype).removeprefix("torch.")
    if name not in ATTENTION_DTYPES:
        return False
    known = _profiles.get(torch.get_num_threads())
    return (known or profile()).attention.get(name, False)


def forget() -> None:
    """Drop this process's profiles (the next use reads the cache files again); for tests and re-measuring."""
    _profiles.clear()
    _attention.clear()


# --- CUDA: the window-attention kernel ---------------------------------------------------------------------

# Swin-T's stage-1 window batch at batch 8 (windows, heads, tokens, head dim), the shape that dominates its
# attention time; bf16 as under autocast
ATTENTION_SHAPE = (512, 3, 49, 32)


def gpu_key(device: torch.device) -> dict[str, Any]:
    """Everything an attention timing on ``device`` depends on."""
    return {
        "gpu": torch.cuda.get_device_name(device),
        "capability": list(torch.cuda.get_device_capability(device)),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda),
        "cudnn": str(torch.backends.cudnn.version()),
        "shape": list(ATTENTION_SHAPE),
    }


def _valid_gpu(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("key"), dict)
        and isinstance(entry.get("explicit"), dict)
        and all(isinstance(entry["explicit"].get(m), bool) for m in ("infer", "train"))
        and isinstance(entry.get("seconds"), dict)
    )


def _measure_attention(device: torch.device, budget_s: float = BUDGET_S) -> dict[str, float]:
    """Median seconds of window attention with an additive bias on ``device``: SDPA and the explicit form,
    forward alone (inference) and forward plus backward (training)."""
    from torch.utils._python_dispatch import _disable_current_modes

    b, h, n, d = ATTENTION_SHAPE
    with _disable_current_modes(), torch.autocast("cuda", enabled=False), torch.enable_grad():
        q, k, v = (torch.randn(b, h, n, d, device=device, dtype=torch.bfloat16, requires_grad=True) for _ in "qkv")
        bias = torch.randn(1, h, n, n, device=device, dtype=torch.bfloat16)
        scale = d**-0.5

        def sdpa() -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)

        def explicit() -> torch.Tensor:
            return torch.matmul((torch.matmul(q, k.transpose(-2, -1)) * scale + bias).softmax(-1), v)

        def step(fn: Callable[[], torch.Tensor], train: bool) -> Callable[[], None]:
            def run() -> None:
                if train:
                    fn().sum().backward()
                else:
                    with torch.no_grad():
                        fn()

            return run

        tasks = {
            f"{name}_{mode}": step(fn, mode == "train")
            for name, fn in (("sdpa", sdpa), ("explicit", explicit))
            for mode in ("infer", "train")
        }
        samples: dict[str, list[float]] = {name: [] for name in tasks}
        for fn in tasks.values():
            fn()
        start, rounds = time.perf_counter(), 0
        while rounds < MIN_ROUNDS or (rounds < MAX_ROUNDS and time.perf_counter() - start < budget_s):
            for name, fn in tasks.items():
                torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize(device)
                samples[name].append(time.perf_counter() - t0)
            rounds += 1
    return {name: statistics.median(v) for name, v in samples.items()}


# process-wide: CUDA device index -> {"infer": explicit?, "train": explicit?}
_attention: dict[int, dict[str, bool]] = {}


def attention_choice(device: torch.device) -> dict[str, bool]:
    """Whether eager window attention on CUDA ``device`` runs explicitly (True) or on SDPA, per mode: measured
    once per GPU key and cached beside the CPU profiles (``gpu.json``), SDPA on a tie or a failure."""
    device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
    if device.index in _attention:
        return _attention[device.index]
    path = cache_path().with_name("gpu.json")
    choice = {"infer": False, "train": False}
    try:
        key = gpu_key(device)
        with _locked(path):
            entries = _read(path, _valid_gpu)
            match = next((e for e in reversed(entries) if e["key"] == key), None)
            if match is not None:
                choice = dict(match["explicit"])
            else:
                seconds = _measure_attention(device)
                choice = {m: seconds[f"explicit_{m}"] * MARGIN <= seconds[f"sdpa_{m}"] for m in ("infer", "train")}
                entry = {"key": key, "explicit": choice, "seconds": seconds, "load": _load()}
                _write(path, [e for e in entries if e["key"] != key] + [entry])
    except Exception:  # a timing that cannot run here (a capture in progress, no memory): the static rule
        choice = {"infer": False, "train": False}
    _attention[device.index] = choice
    return choice


def window_attention_explicit(device: torch.device, train: bool) -> bool:
    """The CUDA attention profile's choice for eager window attention in inference or training."""
    return attention_choice(device)["train" if train else "infer"]
