"""Issue 6's side-by-side performance table: hiermlp vs timm and vs the reference formulations.

Each section runs in a fresh process (glibc's allocator state after one section would otherwise change the
next one's timings); within a section the models are timed round-robin (``hiermlp.bench.timing``), medians
with quartiles. Sections 1 to 4 run ``--runs`` times (default 3), each in its own process, and report the
median over runs with every run's ratio (on a shared VM one run's ratios move by 5-15%, on some by 20%).
Writes ``perf.md`` and ``perf.json`` to ``--out``.

    python benchmarks/perf_cpu.py --threads 2 --out benchmarks/results/perf_cpu
    git worktree add /tmp/before 3238c31 && python benchmarks/perf_cpu.py --threads 2 --before /tmp/before

``--before DIR`` also runs an earlier checkout's own Swin-T and Swin-MLP sections, interleaved run by run
with this checkout's, and adds a before/after table (issue 13: the ratios held across the refactor).

Sections:
  1. Swin-T 224, float32, batch 8: inference and training-step throughput, batch-1 latency, hiermlp vs
     timm's ``swin_tiny_patch4_window7_224`` in its default configuration (same weights, same outputs),
     each lever switched off in turn, and the GEMM floor (the model's own linear calls timed alone).
  2. Swin-MLP-T/C24 256, batch 8: hiermlp's cyclic-shift + masked weights vs the reference code's
     formulation (zero pad-shift, view/permute partition, grouped Conv1d; the independent copy that the
     test suite checks against) and vs hiermlp's own pad-shift mode.
  3. Swin-T inference's effective GFLOP/s as a fraction of this machine's best float32 GEMM rate (MKL's or
     oneDNN's, whichever is faster here), the model and the GEMMs timed round-robin in one process.
  4. Swin-T inference under bf16 autocast, hiermlp vs timm, unless ``--no-bf16``.
  5. ``torch.compile(fullgraph=True)``: hiermlp (``compile_model``) vs timm, compiled, inference, and
     hiermlp's first compile and recompiles at new input sizes (one with the same window geometry, one that
     pads), from an empty inductor cache, unless ``--no-compile``.
  6. Section 1 again under ``WARM_MALLOC`` (big freed blocks kept by glibc), unless ``--no-warm-malloc``.

The report's lever table gives, per lever of the speed layer, its setting and default, the gain measured
here (the default's time against the lever switched off, both in the same rounds) and its lines of code.
The GEMM path is the machine profile's choice (``hiermlp info --machine``); both forced paths are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch

import hiermlp
from hiermlp.accel import override
from hiermlp.accel.compiling import compile_model
from hiermlp.accel.linear import linear, onednn_available, onednn_enabled
from hiermlp.accel.machine import native_bf16
from hiermlp.bench import count_gmacs
from hiermlp.bench.env import environment, finish_environment, format_environment, set_threads
from hiermlp.bench.timing import Timed, round_robin
from hiermlp.bench.workload import infer_step, train_step
from hiermlp.testing import set_fast
from hiermlp.testing.swin_mlp_reference import RefSwinMLP


def timed(
    tasks: dict[str, tuple],
    repeats: int,
    device: str = "cpu",
    warmup: int = 2,
    min_sample_s: float = 0.2,
    keep_errors: bool = False,
) -> dict[str, dict]:
    """Round-robin timing of ``{label: (fn, items)}``; returns median/q1/q3 seconds and items/s. With
    ``keep_errors`` a task that raises is recorded as ``{"error": ...}`` and the others go on."""
    ts = [Timed(key=(k,), fn=fn, device=device, items=items) for k, (fn, items) in tasks.items()]
    round_robin(
        ts, repeats=repeats, warmup=warmup, min_sample_s=min_sample_s, catch=(lambda e: True) if keep_errors else None
    )
    out = {}
    for t in ts:
        if t.error is not None:
            out[t.key[0]] = dict(error=f"{type(t.error).__name__}: {str(t.error)[:300]}")
            continue
        s = t.time_stats()
        out[t.key[0]] = dict(median_s=s.median, q1_s=s.q1, q3_s=s.q3, per_s=t.items / s.median)
    return out


def variant(model: torch.nn.Module, step, *, accel: bool = True, **settings):
    """``step`` with hiermlp's speed-layer settings changed as asked (``onednn=True``, ``chunk_tokens=0``, ...;
    restored after every call: round-robin shares models), or with the speed layer off (``accel=False``)."""

    def run() -> object:
        set_fast(model, accel)
        try:
            with override(**settings):
                return step()
        finally:
            set_fast(model, True)

    return run


def other_path() -> dict:
    """The setting that forces the GEMM path the default does not take (its lever's off switch)."""
    return {"onednn": not onednn_enabled()}


def forced(on: bool) -> str:
    return f"hiermlp, forced onednn={int(on)} ({'oneDNN' if on else 'MKL'})"


def linears_alone(model: torch.nn.Module, x: torch.Tensor, train: bool):
    """The GEMM floor of one step: every ``nn.Linear`` call the model makes (shapes recorded by hooks in
    one forward of the mode timed), run alone on random inputs of those shapes with the model's weights;
    forward only, or forward and backward (input, weight and bias gradients) for a training step.

    Both libraries run the same linears on the same kernels, so ``timm / floor`` bounds the speedup any
    change to everything else could buy."""
    calls = []
    hooks = [
        m.register_forward_hook(lambda m, args, out: calls.append((args[0].shape, m.weight, m.bias)))
        for m in model.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    model.train(train)
    with torch.set_grad_enabled(train):
        model(x)
    for h in hooks:
        h.remove()
    if not train:
        inputs = [(torch.randn(shape), w.detach(), None if b is None else b.detach()) for shape, w, b in calls]

        def forward() -> None:
            with torch.no_grad():
                for a, w, b in inputs:
                    torch.nn.functional.linear(a, w, b)

        return forward
    inputs = [
        (
            torch.randn(shape, requires_grad=True),
            w.detach().clone().requires_grad_(),
            None if b is None else b.detach().clone().requires_grad_(),
        )
        for shape, w, b in calls
    ]
    grads = [torch.randn(*a.shape[:-1], w.shape[0]) for a, w, _ in inputs]

    def forward_backward() -> None:
        outs = [torch.nn.functional.linear(a, w, b) for a, w, b in inputs]
        torch.autograd.backward(outs, grads)
        for t in (t for group in inputs for t in group if t is not None):
            t.grad = None

    return forward_backward


def swin_t(batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224")
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224")
    hiermlp.load_checkpoint(ours, ref.state_dict())
    x = torch.randn(batch, 3, 224, 224)
    x1 = x[:1].clone()
    with torch.no_grad():
        diff = (ours.eval()(x) - ref.eval()(x)).abs().max().item()
    fwd = infer_step(ours, x)
    infer = timed(
        {
            "hiermlp": (fwd, batch),
            "timm": (infer_step(ref, x), batch),
            forced(True): (variant(ours, fwd, onednn=True), batch),
            forced(False): (variant(ours, fwd, onednn=False), batch),
            "hiermlp, no chunking": (variant(ours, fwd, chunk_tokens=0), batch),
            "hiermlp, attention=sdpa": (variant(ours, fwd, attention="sdpa"), batch),
            "hiermlp, sdpa_views=0": (variant(ours, fwd, sdpa_views=False), batch),
            "hiermlp, no speed layer": (variant(ours, fwd, accel=False), batch),
            "hiermlp's linears alone": (linears_alone(ours, x, train=False), batch),
        },
        repeats,
    )
    latency = timed({"hiermlp": (infer_step(ours, x1), 1), "timm": (infer_step(ref, x1), 1)}, repeats)
    step = train_step(ours, x, 1000)
    train = timed(
        {
            "hiermlp": (step, batch),
            "timm": (train_step(ref, x, 1000), batch),
            forced(True): (variant(ours, step, onednn=True), batch),
            forced(False): (variant(ours, step, onednn=False), batch),
            "hiermlp, no chunking": (variant(ours, step, mlp_chunk_mib=0), batch),
            "hiermlp, attention=sdpa": (variant(ours, step, attention="sdpa"), batch),
            "hiermlp, no speed layer": (variant(ours, step, accel=False), batch),
            "hiermlp's linears alone": (linears_alone(ours, x, train=True), batch),
        },
        repeats,
    )
    return dict(max_abs_diff=diff, infer=infer, latency=latency, train=train)


def swin_mlp(batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    ref = RefSwinMLP(256, 96, (2, 2, 6, 2), (4, 8, 16, 32), 8).eval()
    ours = hiermlp.create_model("swin_mlp_tiny_c24_patch4_window8_256").eval()
    hiermlp.load_checkpoint(ours, {"model": ref.state_dict()})
    pad = hiermlp.create_model("swin_mlp_tiny_c24_patch4_window8_256", shift_mode="pad").eval()
    pad.load_state_dict(ours.state_dict())
    x = torch.randn(batch, 3, 256, 256)
    with torch.no_grad():
        diff = max((m(x) - ref(x)).abs().max().item() for m in (ours, pad))
    infer = timed(
        {
            "hiermlp (cyclic shift, masked weights)": (infer_step(ours, x), batch),
            "reference formulation (pad-shift, grouped Conv1d)": (infer_step(ref, x), batch),
            "hiermlp shift_mode=pad": (infer_step(pad, x), batch),
            forced(True): (variant(ours, infer_step(ours, x), onednn=True), batch),
            forced(False): (variant(ours, infer_step(ours, x), onednn=False), batch),
            "hiermlp, no chunking": (variant(ours, infer_step(ours, x), chunk_tokens=0), batch),
            "hiermlp's linears alone": (linears_alone(ours, x, train=False), batch),
        },
        repeats,
    )
    return dict(max_abs_diff=diff, infer=infer)


def gemm_rates(batch: int, repeats: int) -> dict:
    """The machine's float32 GEMM rate, 2048^3: ``torch.matmul`` (MKL) and oneDNN's kernel, timed round-robin
    with hiermlp's Swin-T inference, so the model's effective rate and the GEMM rates it is a fraction of are
    measured under the same load (a shared VM's speed moves between sections)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224").eval()
    x = torch.randn(batch, 3, 224, 224)
    tasks = {"torch.matmul": (lambda: torch.matmul(a, b), 1), "Swin-T inference": (infer_step(ours, x), batch)}
    if onednn_available():
        bt = b.t().contiguous()  # (out, in): the linear weight layout

        def onednn_gemm() -> torch.Tensor:
            with override(onednn=True):  # forced on for this product only
                return linear(a, bt)

        tasks["oneDNN linear"] = (onednn_gemm, 1)
    r = timed(tasks, repeats)
    rates = {k: 2 * 2048**3 / v["median_s"] / 1e9 for k, v in r.items() if k != "Swin-T inference"}
    out = dict(gemm_gflops=rates["torch.matmul"], onednn_gflops=rates.get("oneDNN linear"))
    return gemm_efficiency(out, r["Swin-T inference"]["per_s"])


def gemm_efficiency(rates: dict, swin_infer_per_s: float) -> dict:
    """Swin-T inference's effective GFLOP/s as a fraction of the machine's best measured GEMM rate."""
    gmacs = count_gmacs(hiermlp.create_model("swin_tiny_patch4_window7_224"))
    model_gflops = 2 * gmacs * swin_infer_per_s
    best = max(v for v in (rates["gemm_gflops"], rates.get("onednn_gflops")) if v)
    return dict(**rates, best_gflops=best, swin_t_gflops=model_gflops, fraction=model_gflops / best)


def merge_gemm(runs: list[dict]) -> dict:
    """Fresh-process runs of the GEMM section: every rate the median over runs, the fraction the median of
    the runs' own fractions (each measured side by side), the runs' fractions kept."""
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0] if runs[0][k] is not None}
    out["fraction"] = statistics.median(r["fraction"] for r in runs)
    out["run_fractions"] = [r["fraction"] for r in runs]
    return out


BF16_PAIR = {"infer": ("hiermlp bf16", "timm bf16")}


def bf16(batch: int, repeats: int) -> dict:
    """Swin-T inference under bf16 autocast: hiermlp vs timm, same weights, same autocast."""
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224").eval()
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224").eval()
    hiermlp.load_checkpoint(ours, ref.state_dict())
    x = torch.randn(batch, 3, 224, 224)
    infer = timed(
        {
            "hiermlp bf16": (infer_step(ours, x, "bfloat16"), batch),
            "timm bf16": (infer_step(ref, x, "bfloat16"), batch),
            "hiermlp bf16, onednn_bf16=0": (variant(ours, infer_step(ours, x, "bfloat16"), onednn_bf16=False), batch),
            "hiermlp bf16, attention=sdpa": (variant(ours, infer_step(ours, x, "bfloat16"), attention="sdpa"), batch),
            "hiermlp bf16, sdpa_views=0": (variant(ours, infer_step(ours, x, "bfloat16"), sdpa_views=False), batch),
            "hiermlp bf16, chunk_autocast=1": (
                variant(ours, infer_step(ours, x, "bfloat16"), chunk_autocast=True),
                batch,
            ),
        },
        repeats,
    )
    return dict(native=native_bf16("cpu"), infer=infer)


# the new input sizes of the recompile measurement: 448 keeps every stage a whole number of 7x7 windows (the
# same graph, four times the tokens); 256 pads every stage to whole windows (a larger graph)
RECOMPILE_SIZES = {"same_geometry": 448, "padded": 256}


def compiled(batch: int, repeats: int) -> dict:
    """Compiled inference (hiermlp through compile_model, fullgraph; timm's torch.compile), and hiermlp's
    first compile and its recompiles at new input sizes (:data:`RECOMPILE_SIZES`), each timed as the first
    call. The section's process starts with an empty inductor cache (``run_section``), so the first compile
    is cold, as on a user's first use; the recompiles share what that process has set up."""
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224").eval()
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224").eval()
    hiermlp.load_checkpoint(ours, ref.state_dict())
    x = torch.randn(batch, 3, 224, 224)
    c_ours = compile_model(ours, fullgraph=True)
    c_ref = torch.compile(ref)
    recompile_s = {}
    with torch.no_grad():
        t0 = time.perf_counter()
        out = c_ours(x)
        compile_s = time.perf_counter() - t0
        for name, size in RECOMPILE_SIZES.items():
            t0 = time.perf_counter()
            c_ours(torch.randn(batch, 3, size, size))
            recompile_s[name] = time.perf_counter() - t0
        diff = (out - c_ref(x)).abs().max().item()
    infer = timed(
        {
            "hiermlp compiled": (infer_step(ours, x, forward=c_ours), batch),
            "timm compiled": (infer_step(ref, x, forward=c_ref), batch),
        },
        repeats,
    )
    return dict(
        max_abs_diff=diff,
        compile_s=compile_s,
        recompile_s=recompile_s,
        recompile_sizes=RECOMPILE_SIZES,
        cache="empty inductor cache",
        infer=infer,
    )


def ratio(d: dict, a: str, b: str) -> float | None:
    """How many times faster ``a`` ran than ``b`` (None where either has no time: it failed)."""
    if "median_s" not in d.get(a, {}) or "median_s" not in d.get(b, {}):
        return None
    return d[b]["median_s"] / d[a]["median_s"]


def merge_runs(runs: list[dict], pairs: dict[str, tuple[str, str]]) -> dict:
    """Several fresh-process runs of one section as one result: every time is the median over runs of
    that run's median; ``run_ratios`` keeps each run's ratio for ``pairs`` (``{measure: (ours, theirs)}``)."""
    out = {"runs": len(runs)}
    if "max_abs_diff" in runs[0]:
        out["max_abs_diff"] = max(r["max_abs_diff"] for r in runs)
    out.update({k: v for k, v in runs[0].items() if isinstance(v, bool)})  # facts of the machine (native bf16)
    for measure in runs[0]:
        if not isinstance(runs[0][measure], dict):
            continue
        out[measure] = {
            k: {f: statistics.median(r[measure][k][f] for r in runs) for f in ("median_s", "per_s")}
            for k in runs[0][measure]
        }
    out["run_ratios"] = {m: [ratio(r[m], a, b) for r in runs] for m, (a, b) in pairs.items()}
    return out


def run_ratio(d: dict, measure: str, a: str, b: str) -> float:
    """The median over runs of each run's own ``b / a`` time ratio (a paired statistic: the two models
    were timed side by side within each run); the plain ratio for a single run."""
    rs = d.get("run_ratios", {}).get(measure)
    return statistics.median(rs) if rs else ratio(d[measure], a, b)


def runs_note(d: dict, measure: str) -> str:
    """`` (runs: 1.10, 1.14, 1.12)``: the per-run ratios behind a median, when there were several runs."""
    rs = d.get("run_ratios", {}).get(measure, [])
    return f" (runs: {', '.join(f'{r:.2f}' for r in rs)})" if len(rs) > 1 else ""


def warm_malloc_lines(res: dict) -> list[str]:
    w = res.get("swin_t_warm_malloc")
    if w is None:
        return []
    settings = " ".join(f"{k}={v}" for k, v in WARM_MALLOC.items())
    return [
        f"The same Swin-T comparison in a process started with `{settings}` (glibc keeps big freed blocks "
        "instead of returning them to the OS and faulting fresh pages in on the next forward; timm allocates "
        "more, so it gains more):",
        "",
        "| measure | hiermlp | timm | hiermlp / timm |",
        "|---|---|---|---|",
        f"| inference img/s | {w['infer']['hiermlp']['per_s']:.1f} | {w['infer']['timm']['per_s']:.1f} "
        f"| **{ratio(w['infer'], 'hiermlp', 'timm'):.2f}x** |",
        f"| training step img/s | {w['train']['hiermlp']['per_s']:.1f} | {w['train']['timm']['per_s']:.1f} "
        f"| **{ratio(w['train'], 'hiermlp', 'timm'):.2f}x** |",
        f"| batch-1 latency ms | {w['latency']['hiermlp']['median_s'] * 1e3:.1f} "
        f"| {w['latency']['timm']['median_s'] * 1e3:.1f} | **{ratio(w['latency'], 'hiermlp', 'timm'):.2f}x** |",
        "",
    ]


# lever -> (HIERMLP_ACCEL setting, its default, the variant timed with it off per measure, the code it costs)
LEVERS = {
    "GEMM path per machine": (
        "onednn",
        "auto",
        {"infer": "other path", "train": "other path"},
        ["hiermlp.accel.machine", "hiermlp.accel.linear"],
    ),
    "inference chunking": (
        "chunk_tokens",
        "4096",
        {"infer": "hiermlp, no chunking"},
        ["hiermlp.accel.block:FastHierStage"],
    ),
    "no inference chunking under autocast": (
        "chunk_autocast",
        "0",
        {"bf16": "hiermlp bf16, chunk_autocast=1"},
        ["hiermlp.accel.block:FastHierStage._inference_chunk"],
    ),
    "training MLP chunking": (
        "mlp_chunk_mib",
        "24",
        {"train": "hiermlp, no chunking"},
        [f"hiermlp.accel.block:{name}" for name in ("FastHierBlock", "drop_path_factor", "drops_paths")],
    ),
    "explicit attention (inference: per machine and dtype; a trainable bias: always)": (
        "attention",
        "auto",
        {
            "infer": "hiermlp, attention=sdpa",
            "train": "hiermlp, attention=sdpa",
            "bf16": "hiermlp bf16, attention=sdpa",
        },
        [
            "hiermlp.accel.attention:use_explicit",
            "hiermlp.accel.explicit",
            "hiermlp.accel.machine:_attention_tasks",
            "hiermlp.accel.machine:decide_attention",
            "hiermlp.accel.machine:cpu_attention_explicit",
        ],
    ),
    "SDPA on views of the projection (CPU inference)": (
        "sdpa_views",
        "1",
        {"infer": "hiermlp, sdpa_views=0", "bf16": "hiermlp bf16, sdpa_views=0"},
        [
            "hiermlp.accel.attention:FastAttentionMixin.multi_head",
            "hiermlp.accel.attention:FastAttentionMixin.token_major",
        ],
    ),
    "bf16 linears on oneDNN (bf16 autocast)": (
        "onednn_bf16",
        "1",
        {"bf16": "hiermlp bf16, onednn_bf16=0"},
        ["hiermlp.accel.linear:_bf16_eligible", "hiermlp.accel.linear:_bf16_kernel"],
    ),
    "the whole speed layer": (
        "HIERMLP_ACCEL=0",
        "1",
        {"infer": "hiermlp, no speed layer", "train": "hiermlp, no speed layer"},
        ["hiermlp.accel"],
    ),
}


def code_lines(specs: list[str]) -> int:
    """Non-blank source lines of modules (a package: all its modules) or ``module:object`` items (``object``
    may be dotted: ``module:Class.method``)."""
    import importlib
    import inspect

    total = 0
    for spec in specs:
        module_name, _, obj = spec.partition(":")
        module = importlib.import_module(module_name)
        if obj:
            target = module
            for part in obj.split("."):  # a class's method: Class.method
                target = getattr(target, part)
            sources = [inspect.getsource(target)]
        elif hasattr(module, "__path__"):
            sources = [p.read_text() for p in sorted(Path(module.__path__[0]).glob("*.py"))]
        else:
            sources = [inspect.getsource(module)]
        total += sum(1 for src in sources for line in src.splitlines() if line.strip())
    return total


def attention_note(res: dict) -> str:
    """What CPU inference attention the machine profile chose per dtype, for the lever table's caption; where it
    chose SDPA, the default and the SDPA-pinned variant ran the same code, and their ratio is this run's noise."""
    explicit = res["env"].get("cpu_attention_explicit") or {}
    if not explicit:
        return ""
    kernels = ", ".join(f"{d} {'explicit' if e else 'SDPA'}" for d, e in explicit.items())
    pairs = {
        "float32": (res["swin_t"].get("infer", {}), "hiermlp", "hiermlp, attention=sdpa"),
        "bfloat16": (res.get("bf16", {}).get("infer", {}), "hiermlp bf16", "hiermlp bf16, attention=sdpa"),
    }
    same = [
        f"{d} {ratio(table, a, b):.2f}x"
        for d, (table, a, b) in pairs.items()
        if explicit.get(d) is False and a in table and b in table
    ]
    noise = f"; the same code timed twice, default over pinned SDPA, read {', '.join(same)}: noise" if same else ""
    return f"CPU inference attention as the profile chose it: {kernels} (where SDPA, the lever does not act{noise}). "


def lever_lines(res: dict) -> list[str]:
    """Per lever: its setting (default), the gain measured here in inference and training, its code."""
    s = res["swin_t"]
    default_onednn = res["env"].get("gemm") == "onednn"
    # CPU inference attention: where the machine profile chose SDPA for a dtype, the lever's 'off' (SDPA pinned)
    # runs the default's kernel, so the pair times one path twice: it does not act there
    explicit = res["env"].get("cpu_attention_explicit") or {}
    idle = {"float32": "infer", "bfloat16": "bf16"}
    rows = []
    for lever, (setting, default, off, code) in LEVERS.items():
        if setting == "attention":
            off = {m: name for m, name in off.items() if m not in {idle[d] for d, e in explicit.items() if not e}}
        gains = []
        for m in ("infer", "train"):
            name = off.get(m)
            if name == "other path":
                name = forced(not default_onednn)
            gains.append(f"{ratio(s[m], 'hiermlp', name):.2f}x" if name in s.get(m, {}) else "-")
        bf16 = res.get("bf16", {}).get("infer", {})
        if off.get("bf16") in bf16:  # a lever acting under bf16 autocast: the bf16 section's inference gain
            gain = f"{ratio(bf16, 'hiermlp bf16', off['bf16']):.2f}x (bf16)"
            gains[0] = gain if gains[0] == "-" else f"{gains[0]}, {gain}"
        shown = setting if setting.startswith("HIERMLP") else f"{setting}={default}"
        rows.append(f"| {lever} | `{shown}` | {gains[0]} | {gains[1]} | {code_lines(code)} |")
    path = "oneDNN" if default_onednn else "MKL"
    return [
        "## Levers: what each pays on this machine",
        "",
        "Gain = the time with the lever switched off over the default's, Swin-T batch "
        f"{res['batch']}, same rounds (> 1: the lever pays; '-': it does not act there). The GEMM path's 'off' "
        f"is the path the machine profile did not choose (it chose {path}). {attention_note(res)}"
        "Lines: non-blank source lines.",
        "",
        "| lever | setting (default) | inference gain | training gain | lines of code |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]


def default_vs_forced_lines(res: dict) -> list[str]:
    """The default against both forced GEMM paths: within 5% of the best, never slower than MKL (the default
    before the machine profile)."""
    s, parts = res["swin_t"], []
    for m, label in (("infer", "inference"), ("train", "training step")):
        on, off = forced(True), forced(False)
        if on not in s[m] or off not in s[m]:
            continue
        best = min(s[m][on]["median_s"], s[m][off]["median_s"])
        parts.append(
            f"{label}: the default runs at {100 * best / s[m]['hiermlp']['median_s']:.0f}% of the best forced "
            f"setting's speed and {ratio(s[m], 'hiermlp', off):.2f}x forced MKL"
        )
    if not parts:
        return []
    # the default takes one of the two paths: against that one it times the same code twice
    chosen = res["env"].get("gemm")
    same = (
        f" The default runs the code `{forced(chosen == 'onednn')}` runs (the machine profile chose it), so the gap "
        "between those two is this run's noise."
        if chosen in ("onednn", "mkl")
        else ""
    )
    return ["Default vs forced GEMM paths (" + "; ".join(parts) + ")." + same, ""]


FLOOR = "hiermlp's linears alone"


def floor_lines(s: dict) -> list[str]:
    """What the GEMM floor leaves: the share of hiermlp's time its linears take alone, and the bound on
    its ratio to timm were everything else free."""
    parts = []
    for m, label in (("infer", "inference"), ("train", "a training step")):
        if FLOOR not in s.get(m, {}):
            continue
        share = s[m][FLOOR]["median_s"] / s[m]["hiermlp"]["median_s"]
        parts.append(
            f"in {label} they take {100 * share:.0f}% of hiermlp's time, and were everything else free "
            f"hiermlp would run {ratio(s[m], FLOOR, 'timm'):.2f}x timm"
        )
    if not parts:
        return []
    return [
        f"The GEMM floor ('{FLOOR}': every linear call of the step, same shapes and weights, timed alone on "
        "the same kernels timm uses): " + "; ".join(parts) + ".",
        "",
    ]


def markdown(res: dict, env_text: str, command: str) -> str:
    s, m, g = res["swin_t"], res["swin_mlp"], res["gemm"]
    lines = [
        "# hiermlp vs timm and the reference formulations (CPU, float32)",
        "",
        f"Command: `{command}`",
        "",
        env_text,
        "",
        f"## Swin-T 224, batch {res['batch']} (same weights; max |logit diff| {s['max_abs_diff']:.1e})",
        "",
        "| measure | hiermlp | timm | hiermlp / timm |",
        "|---|---|---|---|",
        f"| inference img/s | {s['infer']['hiermlp']['per_s']:.1f} | {s['infer']['timm']['per_s']:.1f} "
        f"| **{run_ratio(s, 'infer', 'hiermlp', 'timm'):.2f}x**{runs_note(s, 'infer')} |",
        f"| training step img/s | {s['train']['hiermlp']['per_s']:.1f} | {s['train']['timm']['per_s']:.1f} "
        f"| **{run_ratio(s, 'train', 'hiermlp', 'timm'):.2f}x**{runs_note(s, 'train')} |",
        f"| batch-1 latency ms | {s['latency']['hiermlp']['median_s'] * 1e3:.1f} "
        f"| {s['latency']['timm']['median_s'] * 1e3:.1f} | **{run_ratio(s, 'latency', 'hiermlp', 'timm'):.2f}x**"
        f"{runs_note(s, 'latency')} |",
        "",
        f"{s.get('runs', 1)} runs, each in a fresh process, each timing the models round-robin: img/s and ms are "
        "medians over runs of each run's median; the ratio is the median of the runs' own ratios (in brackets). "
        "The lever table compares those median times.",
        "",
        "Every variant timed (hiermlp's default: the machine profile's GEMM path, chunking on, whole blocks in "
        "inference and the MLP branch in training; '-': not timed in that mode):",
        "",
        "| variant | inference img/s | vs timm | training img/s | vs timm |",
        "|---|---|---|---|---|",
        *(
            (
                f"| {k} | {s['infer'][k]['per_s']:.1f} | {ratio(s['infer'], k, 'timm'):.2f}x | "
                if k in s["infer"]
                else f"| {k} | - | - | "
            )
            + (
                f"{s['train'][k]['per_s']:.1f} | {ratio(s['train'], k, 'timm'):.2f}x |"
                if k in s["train"]
                else "- | - |"
            )
            for k in {**s["infer"], **s["train"]}
        ),
        "",
        *default_vs_forced_lines(res),
        *lever_lines(res),
        *floor_lines(s),
        *warm_malloc_lines(res),
        *before_after_lines(res),
        f"## Swin-MLP-T/C24 256, batch {res['batch']} (max |logit diff| to the reference {m['max_abs_diff']:.1e})",
        "",
        "| implementation | img/s | speed vs reference formulation |",
        "|---|---|---|",
    ]
    ref_key = "reference formulation (pad-shift, grouped Conv1d)"
    for k, v in m["infer"].items():
        r = m["infer"][ref_key]["median_s"] / v["median_s"]
        note = ""
        if k == "hiermlp (cyclic shift, masked weights)":
            r, note = run_ratio(m, "infer", k, ref_key), runs_note(m, "infer")
        lines.append(
            f"| {k} | {v['per_s']:.1f} | **{r:.2f}x**{note} |" if note else f"| {k} | {v['per_s']:.1f} | {r:.2f}x |"
        )
    lines += [
        "",
        "## GEMM efficiency",
        "",
        f"float32 `torch.matmul` 2048^3: {g['gemm_gflops']:.1f} GFLOP/s"
        + (f" (oneDNN's linear kernel on the same product: {g['onednn_gflops']:.1f})" if g.get("onednn_gflops") else "")
        + f". Swin-T inference: {g['swin_t_gflops']:.1f} GFLOP/s effective = **{100 * g['fraction']:.0f}%** of "
        f"the machine's best measured GEMM rate ({g['best_gflops']:.1f} GFLOP/s)"
        + (
            f" (runs: {', '.join(f'{100 * f:.0f}%' for f in g['run_fractions'])}; in each, hiermlp's Swin-T "
            "inference was timed round-robin with the GEMMs, in its own fresh process: the fraction is the median "
            "of the runs' own fractions, the rates medians over runs)."
            if "run_fractions" in g
            else " (the model's rate from the Swin-T section, the GEMMs' from a later process)."
        ),
    ]
    if "bf16" in res:
        b = res["bf16"]
        lines += [
            "",
            f"## bf16 autocast, Swin-T 224, batch {res['batch']} ({'native' if b['native'] else 'emulated'} bf16 "
            "on this CPU)",
            "",
            "| model | img/s |",
            "|---|---|",
            *(f"| {k} | {v['per_s']:.1f} |" for k, v in b["infer"].items()),
            "",
            "hiermlp / timm under the same autocast: "
            f"**{run_ratio(b, 'infer', 'hiermlp bf16', 'timm bf16'):.2f}x**{runs_note(b, 'infer')}",
        ]
    if "compiled" in res:
        c = res["compiled"]
        lines += [
            "",
            f"## torch.compile, Swin-T 224, batch {res['batch']} (hiermlp: compile_model, fullgraph=True; max "
            f"|diff| {c['max_abs_diff']:.1e})",
            "",
            *compile_time_lines(c),
            "| model | img/s |",
            "|---|---|",
            *(f"| {k} | {v['per_s']:.1f} |" for k, v in c["infer"].items()),
            "",
            f"compiled hiermlp / compiled timm: **{ratio(c['infer'], 'hiermlp compiled', 'timm compiled'):.2f}x**",
        ]
    return "\n".join(lines) + "\n"


def compile_time_lines(c: dict) -> list[str]:
    """hiermlp's first compile and recompiles (reports before the cold-cache measurement: one recompile)."""
    if not isinstance(c["recompile_s"], dict):
        return [f"First compile {c['compile_s']:.0f} s, recompile at 256x256 {c['recompile_s']:.0f} s.", ""]
    sizes, r = c["recompile_sizes"], c["recompile_s"]
    same, padded = sizes["same_geometry"], sizes["padded"]
    return [
        f"Compile times, one process started with an {c['cache']} (the first compile is a user's first use): "
        f"first compile at 224x224 **{c['compile_s']:.0f} s**; recompile at {same}x{same} (whole windows at every "
        f"stage, the same graph) **{r['same_geometry']:.0f} s**; at {padded}x{padded} (every stage padded to "
        f"whole windows, a larger graph) **{r['padded']:.0f} s**.",
        "",
    ]


# glibc malloc settings under which big freed blocks are kept for reuse instead of being returned to the OS
# (PyTorch has no caching allocator on CPU): the state a long-running process that has trained drifts into
WARM_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30)}


def run_section(name: str, args: argparse.Namespace, env: dict | None = None, tree: Path | None = None) -> dict:
    """One section in a fresh process: allocator state left by an earlier section must not leak into it.

    ``tree``: another checkout of hiermlp (``--before``); the section then runs that checkout's own
    ``benchmarks/perf_cpu.py`` against that checkout's package, so the code measured is entirely its own.
    """
    script, extra = Path(__file__), {}
    if tree is not None:
        script = tree / "benchmarks" / "perf_cpu.py"
        extra = {"PYTHONPATH": str(tree)}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "section.json"
        if name == "compiled":  # compile times from an empty inductor cache, not from earlier runs' kernels
            extra["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / "inductor")
        cmd = [sys.executable, str(script), "--section", name, "--section-json", str(out)]
        cmd += ["--batch", str(args.batch), "--repeats", str(args.repeats)]
        if args.threads is not None:
            cmd += ["--threads", str(args.threads)]
        subprocess.run(cmd, check=True, env={**os.environ, **extra, **(env or {})}, cwd=tree)
        return json.loads(out.read_text())


def run_sections(name: str, args: argparse.Namespace, pairs: dict[str, tuple[str, str]]) -> tuple[dict, dict | None]:
    """``--runs`` fresh-process runs of a section, merged; with ``--before``, each run is followed by the same
    section of the earlier checkout, so both are measured under the same conditions (interleaved)."""
    now, before = [], []
    for _ in range(args.runs):
        now.append(run_section(name, args))
        if args.before is not None:
            before.append(run_section(name, args, tree=args.before))
    merged = merge_runs(now, pairs)
    if not before:
        return merged, None
    old = merge_runs(before, pairs)
    # the paired statistic of the change itself: each run's time of the earlier code over the current one
    old["change_ratios"] = {
        m: [ratio_of(b[m], a[m], ours) for a, b in zip(now, before)] for m, (ours, _) in pairs.items()
    }
    return merged, old


def ratio_of(before: dict, after: dict, key: str) -> float:
    """before's median time of ``key`` over after's: > 1 means the current code is faster."""
    return before[key]["median_s"] / after[key]["median_s"]


def before_after_lines(res: dict) -> list[str]:
    """The before/after table of ``--before``: the ratio targets for both checkouts, measured interleaved."""
    if "before" not in res:
        return []
    b = res["before"]
    rows = [
        ("Swin-T inference vs timm", "swin_t", "infer", "hiermlp", "timm"),
        ("Swin-T training step vs timm", "swin_t", "train", "hiermlp", "timm"),
        ("Swin-T batch-1 latency vs timm", "swin_t", "latency", "hiermlp", "timm"),
        (
            "Swin-MLP vs its reference formulation",
            "swin_mlp",
            "infer",
            "hiermlp (cyclic shift, masked weights)",
            "reference formulation (pad-shift, grouped Conv1d)",
        ),
    ]
    lines = [
        f"## Before and after: `{b['commit']}` vs this checkout, interleaved in one invocation",
        "",
        "Each run times the current code's section and then the earlier checkout's own section (its own script "
        "and package), each in a fresh process; ratios are medians of the runs' own paired ratios.",
        "",
        "| measure | before | after | after / before (hiermlp itself) |",
        "|---|---|---|---|",
    ]
    for label, sec, m, ours, theirs in rows:
        now, old = res[sec], b[sec]
        change = old["change_ratios"][m]
        lines.append(
            f"| {label} | {run_ratio(old, m, ours, theirs):.2f}x{runs_note(old, m)} "
            f"| {run_ratio(now, m, ours, theirs):.2f}x{runs_note(now, m)} "
            f"| {statistics.median(change):.2f}x (runs: {', '.join(f'{r:.2f}' for r in change)}) |"
        )
    return [*lines, ""]


def section(name: str, batch: int, repeats: int) -> dict:
    if name == "swin_t":
        return swin_t(batch, repeats)
    if name == "swin_mlp":
        return swin_mlp(batch, repeats)
    if name == "compiled":
        return compiled(batch, repeats)
    if name == "gemm":
        return gemm_rates(batch, repeats)
    if name == "bf16":
        return bf16(batch, repeats)
    raise SystemExit(f"unknown section {name!r}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--runs", type=int, default=3, help="fresh-process runs of the Swin-T, Swin-MLP, GEMM and bf16 sections"
    )
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--no-bf16", action="store_true", help="skip the bf16-autocast inference section")
    p.add_argument("--no-warm-malloc", action="store_true", help="skip the Swin-T rerun under WARM_MALLOC")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/perf_cpu"))
    p.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of an earlier commit (git worktree add DIR COMMIT): its Swin-T and Swin-MLP sections "
        "run interleaved with this one's and the report gains a before/after table",
    )
    p.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="PERF_JSON",
        help="only write perf.md again from a perf.json (its measurements; the levers' lines of code as the code "
        "is now), beside it",
    )
    p.add_argument("--section", help=argparse.SUPPRESS)
    p.add_argument("--section-json", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.render is not None:
        res = json.loads(args.render.read_text())
        text = markdown(res, format_environment(res["env"]), res["command"])
        (args.render.parent / "perf.md").write_text(text)
        return
    set_threads(args.threads)
    if args.section:
        args.section_json.write_text(json.dumps(section(args.section, args.batch, args.repeats), default=str))
        return
    env = environment("cpu", "float32")
    res = dict(batch=args.batch)
    swin_pairs = {m: ("hiermlp", "timm") for m in ("infer", "train", "latency")}
    res["swin_t"], before_swin = run_sections("swin_t", args, swin_pairs)
    if not args.no_warm_malloc:
        res["swin_t_warm_malloc"] = run_section("swin_t", args, WARM_MALLOC)
    mlp_pair = {
        "infer": ("hiermlp (cyclic shift, masked weights)", "reference formulation (pad-shift, grouped Conv1d)")
    }
    res["swin_mlp"], before_mlp = run_sections("swin_mlp", args, mlp_pair)
    if args.before is not None:
        commit = subprocess.run(
            ["git", "-C", str(args.before), "log", "-1", "--format=%h %s"], capture_output=True, text=True
        ).stdout.strip()
        res["before"] = {"commit": commit or str(args.before), "swin_t": before_swin, "swin_mlp": before_mlp}
    res["gemm"] = merge_gemm([run_section("gemm", args) for _ in range(args.runs)])
    if not args.no_bf16:
        # --before's table covers Swin-T and Swin-MLP only: no earlier checkout's bf16 runs
        res["bf16"], _ = run_sections("bf16", argparse.Namespace(**{**vars(args), "before": None}), BF16_PAIR)
    if not args.no_compile:
        res["compiled"] = run_section("compiled", args)
    env = finish_environment(env)
    res["env"] = env
    res["command"] = command = "python benchmarks/perf_cpu.py " + " ".join(sys.argv[1:])
    text = markdown(res, format_environment(env), command)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "perf.md").write_text(text)
    (args.out / "perf.json").write_text(json.dumps(res, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
