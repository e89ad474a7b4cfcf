"""Issue 6 on CUDA: hiermlp vs timm and the reference formulation under bf16 autocast, with correctness checks.

One process, one card; every comparison times its models round-robin (``hiermlp.bench.timing``) and reports
medians with quartiles. Writes ``perf.md`` and ``perf.json`` to ``--out`` after every section (a run cut
short keeps what it measured).

    python benchmarks/perf_gpu.py --out benchmarks/results/perf_gpu

Sections:
  checks   float32 (TF32 off) on the card: Swin-T logits and input gradients vs timm; every fast path vs the
           straightforward path (SDPA vs explicit attention, aligned vs plain mask) forward
           and backward at odd and non-square sizes; bf16 autocast error of both models vs float32.
  swin_t   Swin-T 224, bf16 autocast: inference and training-step throughput at two batch sizes, batch-1
           latency, hiermlp vs timm's ``swin_tiny_patch4_window7_224`` in its default configuration (SDPA),
           with one lever at a time switched off.
  backends which of SDPA's kernels take Swin's folded bias, and their speed.
  swin_mlp Swin-MLP-T/C24 256, bf16: hiermlp vs the reference formulation (pad-shift, grouped Conv1d).
  gemm     the card's bf16 matmul rate and Swin-T inference's effective FLOP rate as a fraction of it.
  memory   peak CUDA memory of one training step and of inference.
  kernels  CUDA kernels launched per forward and per training step (torch.profiler).
  compiled ``torch.compile(fullgraph=True)`` hiermlp vs compiled timm (skipped past ``--compile-deadline``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling perf_cpu.py, run as a script

from perf_cpu import ratio
from perf_cpu import timed as cpu_timed

import hiermlp
from hiermlp import accel
from hiermlp.accel import attention
from hiermlp.bench import count_gmacs
from hiermlp.bench.env import environment, finish_environment, format_environment
from hiermlp.bench.workload import infer_step, train_step
from hiermlp.mixers import MIXERS
from hiermlp.mixers.base import mixer_attr, mixer_kind
from hiermlp.models.block import HierBlock
from hiermlp.testing import TINY_SWIN, fast, randomize_, set_fast
from hiermlp.testing.swin_mlp_reference import RefSwinMLP

SWIN = "swin_tiny_patch4_window7_224"
SWIN_MLP = "swin_mlp_tiny_c24_patch4_window8_256"
DTYPE = "bfloat16"


# ----------------------------------------------------------------------------------------------- levers
@contextlib.contextmanager
def patched(obj, name: str, value) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def sdpa_bias_grad(on: bool):
    """Trainable position bias on SDPA's memory-efficient kernel (on) or on the explicit path (off)."""
    return patched(attention, "SDPA_BIAS_GRAD_DEVICES", frozenset({"cuda"} if on else ()))


def unaligned_mask():
    """The bias handed to SDPA as a plain contiguous (1, G, N, N) tensor, as timm does."""
    return accel.override(align_mask=0)


def explicit_attention():
    """Two bmm and a softmax in every window instead of SDPA."""
    return accel.override(attention="explicit")


def traced_sdpa():
    """Compiled graphs call ``F.scaled_dot_product_attention`` (lowered to cuDNN's kernel on Hopper)."""
    explicit = attention.use_explicit
    return patched(attention, "use_explicit", lambda dev, n, trains, tracing=False: explicit(dev, n, trains))


def with_levers(step: Callable[[], object], *contexts: Callable[[], contextlib.AbstractContextManager]):
    """``step`` run under the given lever contexts, entered afresh each call (round-robin shares models)."""

    def run() -> object:
        with contextlib.ExitStack() as stack:
            for c in contexts:
                stack.enter_context(c())
            return step()

    return run


# ----------------------------------------------------------------------------------------------- timing
def timed(tasks: dict[str, tuple], device: str, repeats: int, min_sample_s: float = 0.1) -> dict[str, dict]:
    """perf_cpu's round-robin timing on ``device``; a task that fails (out of memory, a refused kernel) is
    recorded as ``{"error": ...}`` and the others go on."""
    return cpu_timed(tasks, repeats, device, warmup=3, min_sample_s=min_sample_s, keep_errors=True)


def swin_pair(device: str, **kwargs) -> tuple[torch.nn.Module, torch.nn.Module]:
    """hiermlp's and timm's Swin-T with the same weights; each library's default configuration unless
    ``kwargs`` (given to both) says otherwise."""
    torch.manual_seed(0)
    ref = timm.create_model(SWIN, **kwargs)
    ours = hiermlp.create_model(SWIN, **kwargs)
    hiermlp.load_checkpoint(ours, ref.state_dict())
    return ours.to(device), ref.to(device)


# ----------------------------------------------------------------------------------------------- checks
def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.float() - ref.float()).norm() / ref.float().norm()).item()


def forward_backward(model, x, params: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and the gradients of ``sum(logits^2)`` w.r.t. the input and (optionally) every parameter."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    out.square().sum().backward()
    grads = [x.grad] + (
        [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()] if params else []
    )
    return out.detach(), [g.detach().clone() for g in grads]


def grad_diff(ga: list[torch.Tensor], gb: list[torch.Tensor]) -> float:
    """Largest gradient difference relative to the largest magnitude of that gradient."""
    return max((a - b).abs().max().item() / max(b.abs().max().item(), 1e-12) for a, b in zip(ga, gb))


def without_tf32(fn: Callable[[str], dict], device: str) -> dict:
    """``fn(device)`` with float32 matmuls and convolutions in full float32 (TF32 off), then as before."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        return fn(device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def checks(device: str) -> dict:
    rows = []

    def row(what: str, value: float, tol: float) -> None:
        rows.append(dict(check=what, value=value, tol=tol, ok=bool(value <= tol)))

    ours, ref = swin_pair(device, drop_path_rate=0.0)  # no stochastic depth: train mode is deterministic
    x = torch.randn(2, 3, 224, 224, device=device)
    ours.eval(), ref.eval()
    with torch.no_grad():
        lo, lr = ours(x), ref(x)
    row("Swin-T eval logits vs timm, max |diff|", max_diff(lo, lr), 1e-4)
    ours.train(), ref.train()
    _, go = forward_backward(ours, x, params=False)
    _, gr = forward_backward(ref, x, params=False)
    row("Swin-T train-mode input gradient vs timm, max |diff| / max |grad|", grad_diff(go, gr), 1e-4)
    ours.eval(), ref.eval()
    with torch.no_grad(), torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16):
        bo, br = ours(x), ref(x)
    row("Swin-T bf16 autocast logits, hiermlp vs its float32, rel. error", rel_err(bo, lo), 3e-2)
    row("Swin-T bf16 autocast logits, timm vs its float32, rel. error", rel_err(br, lr), 3e-2)
    del ours, ref

    # the straightforward path: the plain modules (roll + partition, SDPA with the bias added each call)
    torch.manual_seed(0)
    tiny = accel.accelerate(randomize_(hiermlp.HierNet(**TINY_SWIN))).to(device)
    for size in [(32, 32), (40, 24), (27, 35)]:
        xs = torch.randn(2, 3, *size, device=device)
        for train in (False, True):
            tiny.train(train)
            set_fast(tiny, True)
            out_f, g_f = forward_backward(tiny, xs)
            set_fast(tiny, False)
            out_r, g_r = forward_backward(tiny, xs)  # the plain modules: no speed layer at all
            set_fast(tiny, True)
            mode = "train" if train else "eval"
            row(f"tiny Swin {size} {mode}: fast vs straightforward, logits max |diff|", max_diff(out_f, out_r), 1e-5)
            row(f"tiny Swin {size} {mode}: fast vs straightforward, grads (rel. to max)", grad_diff(g_f, g_r), 1e-4)
            with sdpa_bias_grad(False):
                _, g_e = forward_backward(tiny, xs)
            row(f"tiny Swin {size} {mode}: SDPA bias grad vs explicit, grads (rel.)", grad_diff(g_f, g_e), 1e-4)

    sizes = [(8, 8), (9, 11), (5, 13), (16, 12), (7, 4)]
    for name in sorted(n for n in MIXERS if mixer_kind(n) == "window"):
        worst = 0.0
        for shift in [(0, 0), (2, 2), (2, 0)]:
            if mixer_attr(name, "global_window", False) and any(shift):
                continue
            torch.manual_seed(0)
            kw = dict(mlp_ratio=0.0 if name == "gmlp" else 2.0)
            block = randomize_(HierBlock(dim=16, num_heads=2, window_size=(4, 4), shift_size=shift, mixer=name, **kw))
            block = block.to(device).eval()
            for size in sizes:
                xb = torch.randn(2, *size, 16, device=device)
                with torch.no_grad():
                    with fast(block, True):
                        quick = block(xb)
                    slow = block(xb)
                worst = max(worst, max_diff(quick, slow))
        row(f"block {name}: fast path vs plain, 5 sizes x shifts, max |diff|", worst, 1e-5)
    return dict(rows=rows, ok=all(r["ok"] for r in rows))


# ----------------------------------------------------------------------------------------------- speed
def default_train_lever() -> tuple[str, bool]:
    """The training-attention lever hiermlp does not use by default (label, sdpa_bias_grad value)."""
    on = "cuda" in attention.SDPA_BIAS_GRAD_DEVICES
    return ("hiermlp, explicit attention in training" if on else "hiermlp, SDPA with bias gradient"), not on


def swin_t(device: str, batches: list[int], repeats: int) -> dict:
    ours, ref = swin_pair(device)
    res = {}
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224, device=device)
        fwd = infer_step(ours, x, DTYPE)
        infer = timed(
            {
                "hiermlp": (fwd, batch),
                "timm": (infer_step(ref, x, DTYPE), batch),
                "hiermlp, unaligned mask (as timm)": (with_levers(fwd, unaligned_mask), batch),
                "hiermlp, explicit attention": (with_levers(fwd, explicit_attention), batch),
            },
            device,
            repeats,
        )
        step = train_step(ours, x, 1000, DTYPE)
        label, other = default_train_lever()
        train = timed(
            {
                "hiermlp": (step, batch),
                "timm": (train_step(ref, x, 1000, DTYPE), batch),
                label: (with_levers(step, lambda other=other: sdpa_bias_grad(other)), batch),
                "hiermlp, unaligned mask (as timm)": (with_levers(step, unaligned_mask), batch),
            },
            device,
            repeats,
        )
        res[str(batch)] = dict(infer=infer, train=train)
        print(f"swin_t batch {batch}: infer {ratio(infer, 'hiermlp', 'timm')}, train {ratio(train, 'hiermlp', 'timm')}")
    x1 = torch.randn(1, 3, 224, 224, device=device)
    res["latency"] = timed(
        {"hiermlp": (infer_step(ours, x1, DTYPE), 1), "timm": (infer_step(ref, x1, DTYPE), 1)}, device, repeats
    )
    return res


def backends(device: str, repeats: int) -> dict:
    """Each SDPA kernel on stage 1 of Swin-T at batch 64 with the shifted-window bias, bf16."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    b, g, n, d = 64, 64 * 3, 49, 32
    q, k, v = (torch.randn(b, g, n, d, device=device, dtype=torch.bfloat16) for _ in range(3))
    plain = torch.randn(1, g, n, n, device=device, dtype=torch.bfloat16)
    aligned = attention.align_rows(plain, accel.settings.current().align_mask)
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=plain.float())
    tasks, out = {}, {}
    for name in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH"):
        be = getattr(SDPBackend, name, None)
        for label, mask in (("aligned", aligned), ("unaligned", plain)):
            key = f"{name} ({label} mask)"

            def call(be=be, mask=mask):
                with sdpa_kernel(be):
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

            try:
                out[key] = dict(rel_err=rel_err(call(), ref))
                tasks[key] = (call, b)
            except Exception as e:  # a kernel that refuses this mask
                out[key] = dict(error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    for key, t in timed(tasks, device, repeats, 0.05).items():
        out[key].update(t)
    with torch.no_grad():
        explicit = lambda: torch.matmul(((q @ k.transpose(-2, -1)) * d**-0.5 + plain).softmax(-1), v)
        out["explicit bmm + softmax"] = dict(
            rel_err=rel_err(explicit(), ref), **timed({"e": (explicit, b)}, device, repeats, 0.05)["e"]
        )
    return out


def swin_mlp(device: str, batches: list[int], repeats: int) -> dict:
    torch.manual_seed(0)
    ref = RefSwinMLP(256, 96, (2, 2, 6, 2), (4, 8, 16, 32), 8).eval()
    ours = hiermlp.create_model(SWIN_MLP).eval()
    hiermlp.load_checkpoint(ours, {"model": ref.state_dict()})
    pad = hiermlp.create_model(SWIN_MLP, shift_mode="pad").eval()
    pad.load_state_dict(ours.state_dict())
    ref, ours, pad = ref.to(device), ours.to(device), pad.to(device)
    res = {}
    with torch.no_grad():
        xc = torch.randn(2, 3, 256, 256, device=device)
        res["max_abs_diff"] = max(max_diff(m(xc), ref(xc)) for m in (ours, pad))
    for batch in batches:
        x = torch.randn(batch, 3, 256, 256, device=device)
        res[str(batch)] = dict(
            infer=timed(
                {
                    "hiermlp (cyclic shift, masked weights)": (infer_step(ours, x, DTYPE), batch),
                    "reference formulation (pad-shift, grouped Conv1d)": (infer_step(ref, x, DTYPE), batch),
                    "hiermlp shift_mode=pad": (infer_step(pad, x, DTYPE), batch),
                },
                device,
                repeats,
            ),
            train=timed(
                {
                    "hiermlp (cyclic shift, masked weights)": (train_step(ours, x, 1000, DTYPE), batch),
                    "reference formulation (pad-shift, grouped Conv1d)": (train_step(ref, x, 1000, DTYPE), batch),
                },
                device,
                repeats,
            ),
        )
    return res


def gemm(device: str, repeats: int, swin_per_s: float | None, n: int = 8192) -> dict:
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    r = timed({"bf16 matmul": (lambda: torch.matmul(a, b), 1)}, device, repeats)["bf16 matmul"]
    out = dict(n=n, bf16_tflops=2 * n**3 / r["median_s"] / 1e12)
    if swin_per_s:
        gmacs = count_gmacs(hiermlp.create_model(SWIN))
        out["swin_t_tflops"] = 2 * gmacs * swin_per_s / 1e3
        out["fraction"] = out["swin_t_tflops"] / out["bf16_tflops"]
        out["gmacs"] = gmacs
    return out


def memory(device: str, batch: int) -> dict:
    out = {}
    for name in ("hiermlp", "timm"):
        ours, ref = swin_pair(device)
        model = ours if name == "hiermlp" else ref
        del ours, ref
        x = torch.randn(batch, 3, 224, 224, device=device)
        step = train_step(model, x, 1000, DTYPE)
        step()  # optimizer state exists from here on
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        train_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        infer_step(model, x, DTYPE)()
        torch.cuda.synchronize()
        out[name] = dict(train_step_mb=train_mb, infer_mb=(torch.cuda.max_memory_allocated() - base) / 2**20)
        del model, step, x
        torch.cuda.empty_cache()
    return out


def kernels(device: str, batch: int) -> dict:
    ours, ref = swin_pair(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    out = {}
    for name, model in (("hiermlp", ours), ("timm", ref)):
        for what, step in (("infer", infer_step(model, x, DTYPE)), ("train", train_step(model, x, 1000, DTYPE))):
            for _ in range(3):
                step()
            out[f"{name} {what}"] = top_kernels(step)
    return out


def top_kernels(step: Callable[[], object], n: int = 12) -> dict:
    """One profiled call: kernel count, summed kernel time and the ``n`` costliest kernels by name."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    by_name: dict[str, float] = {}
    ks = [e for e in prof.events() if str(e.device_type).endswith("CUDA")]
    for e in ks:
        by_name[e.name[:90]] = by_name.get(e.name[:90], 0.0) + e.time_range.elapsed_us() / 1e3
    top = sorted(by_name.items(), key=lambda kv: -kv[1])[:n]
    return dict(kernels=len(ks), gpu_ms=sum(by_name.values()), top=top)


def compiled(device: str, batch: int, repeats: int) -> dict:
    """Each variant compiled afresh (``torch._dynamo.reset``: levers change the traced graph) and timed right
    after; timm compiled first and again last, to show drift."""
    ours, ref = swin_pair(device)
    ours.eval(), ref.eval()
    x = torch.randn(batch, 3, 224, 224, device=device)
    variants = [
        ("timm compiled", ref, ()),
        ("hiermlp compiled", ours, ()),
        ("hiermlp compiled, SDPA in the graph", ours, (traced_sdpa,)),
        ("timm compiled (again)", ref, ()),
    ]
    out, logits = {"infer": {}, "profile": {}, "compile_s": {}}, {}
    for label, model, levers in variants:
        torch._dynamo.reset()
        t0 = time.perf_counter()
        fwd = torch.compile(model, fullgraph=model is ours)
        step = with_levers(infer_step(model, x, DTYPE, forward=fwd), *levers)
        logits[label] = step()
        out["compile_s"][label] = time.perf_counter() - t0
        out["infer"].update(timed({label: (step, batch)}, device, repeats))
        if device.startswith("cuda"):
            out["profile"][label] = top_kernels(step)
        print(label, out["infer"][label], flush=True)
    out["max_abs_diff"] = max_diff(logits["hiermlp compiled"], logits["timm compiled"])
    out["batch"] = batch
    return out


# ----------------------------------------------------------------------------------------------- report
def fmt_ratio(r: float | None, bold: bool = True) -> str:
    if r is None:
        return "-"
    return f"**{r:.2f}x**" if bold else f"{r:.2f}x"


def cell(d: dict, k: str, field: str = "per_s", scale: float = 1.0, digits: int = 1) -> str:
    v = d.get(k, {})
    if "error" in v:
        return "error"
    return f"{v[field] * scale:.{digits}f}" if field in v else "-"


def batch_rows(section: dict) -> Iterator[tuple[str, str, str, dict]]:
    """``(batch, measure, label, timings)`` for every timed row of a per-batch section."""
    for b, d in section.items():
        if isinstance(d, dict) and "infer" in d:
            for meas in ("infer", "train"):
                for k in d[meas]:
                    yield b, meas, k, d[meas]


def markdown(res: dict, command: str) -> str:
    lines = ["# hiermlp vs timm and the reference formulation on CUDA (bf16 autocast)", "", f"Command: `{command}`", ""]
    if "env" in res:
        lines += [format_environment(res["env"]), ""]
    lines += [f"{note}\n" for note in res.get("notes", [])]
    if "checks" in res:
        c = res["checks"]
        lines += [
            f"## Correctness on the card ({'all pass' if c['ok'] else 'FAILURES'})",
            "",
            "float32 with TF32 off unless the row says bf16. 'fast' is hiermlp's default path (index gather, "
            "SDPA with the cached row-aligned bias); 'straightforward' is roll + view partition with explicit "
            "attention and a plain bias.",
            "",
            "| check | value | tolerance | ok |",
            "|---|---|---|---|",
            *(
                f"| {r['check']} | {r['value']:.1e} | {r['tol']:.0e} | {'yes' if r['ok'] else '**NO**'} |"
                for r in c["rows"]
            ),
            "",
        ]
    if "swin_t" in res:
        s = res["swin_t"]
        lines += ["## Swin-T 224, bf16 autocast, hiermlp vs timm (same weights)", ""]
        lines += ["| batch | measure | hiermlp img/s | timm img/s | hiermlp / timm |", "|---|---|---|---|---|"]
        for b, d in s.items():
            if b == "latency":
                continue
            for m, name in (("infer", "inference"), ("train", "training step")):
                r = fmt_ratio(ratio(d[m], "hiermlp", "timm"))
                lines.append(f"| {b} | {name} | {cell(d[m], 'hiermlp')} | {cell(d[m], 'timm')} | {r} |")
        lat = s["latency"]
        lines += [
            f"| 1 | latency ms | {cell(lat, 'hiermlp', 'median_s', 1e3, 2)} | {cell(lat, 'timm', 'median_s', 1e3, 2)} "
            f"| {fmt_ratio(ratio(lat, 'hiermlp', 'timm'))} |",
            "",
            "One lever at a time (img/s; ratio to timm in the same round-robin):",
            "",
            "| batch | measure | variant | img/s | vs timm |",
            "|---|---|---|---|---|",
        ]
        for b, m, k, d in batch_rows(s):
            if k != "timm":
                lines.append(f"| {b} | {m} | {k} | {cell(d, k)} | {fmt_ratio(ratio(d, k, 'timm'))} |")
        lines.append("")
    if "backends" in res:
        lines += [
            "## SDPA kernels on Swin-T stage 1 (batch 64, 192 window-heads, N=49, d=32, bf16, shifted-window bias)",
            "",
            "| kernel | windows/s (x1000) | rel. error vs float32 |",
            "|---|---|---|",
        ]
        for k, v in res["backends"].items():
            if "error" in v:
                lines.append(f"| {k} | refused: {v['error'][:120]} | - |")
            else:
                lines.append(f"| {k} | {v['per_s'] * 192 / 1e3:.0f} | {v['rel_err']:.1e} |")
        lines.append("")
    if "swin_mlp" in res:
        m = res["swin_mlp"]
        ours, ref = "hiermlp (cyclic shift, masked weights)", "reference formulation (pad-shift, grouped Conv1d)"
        lines += [
            f"## Swin-MLP-T/C24 256, bf16 autocast (float32 max |logit diff| to the reference {m['max_abs_diff']:.1e})",
            "",
            "| batch | measure | implementation | img/s | vs reference formulation |",
            "|---|---|---|---|---|",
        ]
        for b, meas, k, d in batch_rows(m):
            r = ratio(d, k, ref)
            lines.append(f"| {b} | {meas} | {k} | {cell(d, k)} | {fmt_ratio(r, bold=k == ours)} |")
        lines.append("")
    if "gemm" in res:
        g = res["gemm"]
        lines += [
            "## Matrix-unit efficiency",
            "",
            f"bf16 `torch.matmul` {g['n']}^3: {g['bf16_tflops']:.0f} TFLOP/s."
            + (
                f" Swin-T inference ({g['gmacs']:.2f} GMACs/img) at the largest batch: {g['swin_t_tflops']:.0f} "
                f"TFLOP/s effective = **{100 * g['fraction']:.0f}%** of it."
                if "fraction" in g
                else ""
            ),
            "",
        ]
    if "memory" in res:
        mem = res["memory"]
        lines += [
            f"## Peak CUDA memory above the resident model and optimizer state (batch {res.get('memory_batch')}, bf16)",
            "",
            "| model | training step MiB | inference MiB |",
            "|---|---|---|",
            *(f"| {k} | {v['train_step_mb']:.0f} | {v['infer_mb']:.0f} |" for k, v in mem.items()),
            "",
        ]
    if "kernels" in res:
        lines += [
            f"## CUDA kernels launched (torch.profiler, batch {res.get('kernels_batch')}, bf16)",
            "",
            "| model, work | kernels | summed kernel time ms |",
            "|---|---|---|",
            *(f"| {k} | {v['kernels']} | {v['gpu_ms']:.2f} |" for k, v in res["kernels"].items()),
            "",
        ]
    if "compiled" in res:
        c = res["compiled"]
        lines += [
            f"## torch.compile, Swin-T 224, batch {c['batch']}, bf16 (hiermlp with fullgraph=True; max |logit diff| "
            f"{c['max_abs_diff']:.1e})",
            "",
            "Each variant compiled afresh and timed right after (timm first and last, to show drift).",
            "",
            "| model | compile s | img/s | kernels per forward | summed kernel ms |",
            "|---|---|---|---|---|",
        ]
        for k in c["infer"]:
            pr = c["profile"].get(k, {})
            lines.append(
                f"| {k} | {c['compile_s'][k]:.0f} | {cell(c['infer'], k)} | {pr.get('kernels', '-')} "
                f"| {pr.get('gpu_ms', float('nan')):.2f} |"
            )
        lines += [
            "",
            f"compiled hiermlp / compiled timm: {fmt_ratio(ratio(c['infer'], 'hiermlp compiled', 'timm compiled'))}",
            "",
        ]
        for k, pr in c["profile"].items():
            lines += [f"Costliest kernels, {k}:", "", "| kernel | ms |", "|---|---|"]
            lines += [f"| `{name}` | {ms:.3f} |" for name, ms in pr["top"]] + [""]
    for k, v in res.get("errors", {}).items():
        lines += [f"Section `{k}` failed: `{v.splitlines()[-1]}`", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--batches", default="8,128", help="comma-separated batch sizes for throughput")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--sections", default="checks,swin_t,backends,swin_mlp,gemm,memory,kernels,compiled")
    p.add_argument("--gemm-size", type=int, default=8192)
    p.add_argument("--compile-deadline", type=float, default=300.0, help="skip compiled past this many seconds")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/perf_gpu"))
    p.add_argument("--render", type=Path, help="only rewrite perf.md next to this perf.json")
    args = p.parse_args()
    if args.render:
        res = json.loads(args.render.read_text())
        (args.render.parent / "perf.md").write_text(markdown(res, res["command"]))
        return
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("perf_gpu.py: no CUDA device here; --device cpu runs every section as a dry run")
    t_start = time.perf_counter()
    batches = [int(b) for b in args.batches.split(",")]
    sections = args.sections.split(",")
    cuda = args.device.startswith("cuda")
    res: dict = dict(env=environment(args.device, DTYPE), errors={}, seconds={})
    command = "python benchmarks/perf_gpu.py " + " ".join(sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)

    res["command"] = command

    def save() -> None:
        (args.out / "perf.json").write_text(json.dumps(res, indent=1, default=str))
        (args.out / "perf.md").write_text(markdown(res, command))

    jobs: dict[str, Callable[[], None]] = {
        "checks": lambda: res.update(checks=without_tf32(checks, args.device)),
        "swin_t": lambda: res.update(swin_t=swin_t(args.device, batches, args.repeats)),
        "backends": lambda: res.update(backends=backends(args.device, args.repeats)) if cuda else None,
        "swin_mlp": lambda: res.update(swin_mlp=swin_mlp(args.device, batches, args.repeats)),
        "gemm": lambda: res.update(
            gemm=gemm(
                args.device,
                args.repeats,
                res.get("swin_t", {}).get(str(max(batches)), {}).get("infer", {}).get("hiermlp", {}).get("per_s"),
                args.gemm_size,
            )
        ),
        "memory": lambda: (
            res.update(memory=memory(args.device, max(batches)), memory_batch=max(batches)) if cuda else None
        ),
        "kernels": lambda: (
            res.update(kernels=kernels(args.device, min(batches)), kernels_batch=min(batches)) if cuda else None
        ),
        "compiled": lambda: res.update(compiled=compiled(args.device, max(batches), args.repeats)),
    }
    for name in sections:
        if name == "compiled" and time.perf_counter() - t_start > args.compile_deadline:
            res["errors"]["compiled"] = f"skipped: past the {args.compile_deadline:.0f} s deadline"
            continue
        t0 = time.perf_counter()
        print(f"== {name} ({t0 - t_start:.0f} s)", flush=True)
        try:
            jobs[name]()
        except Exception:
            res["errors"][name] = traceback.format_exc()
            print(res["errors"][name], flush=True)
        res["seconds"][name] = time.perf_counter() - t0
        if cuda:
            torch.cuda.empty_cache()
        res["env"] = finish_environment(res["env"])
        save()
    print(markdown(res, command))
    if res["errors"]:
        print("errors in:", ", ".join(res["errors"]), file=sys.stderr)


if __name__ == "__main__":
    main()
