"""Issue 6's side-by-side performance table: hiermlp vs timm and vs the reference formulations.

Everything is measured in one process, models timed round-robin (``hiermlp.bench.timing``), medians with
quartiles. Writes ``perf.md`` and ``perf.json`` to ``--out``.

    python benchmarks/perf_cpu.py --threads 2 --out benchmarks/results/perf_cpu

Sections:
  1. Swin-T 224, float32, batch 8: inference and training-step throughput, batch-1 latency, hiermlp vs
     timm's ``swin_tiny_patch4_window7_224`` in its default configuration (same weights, same outputs).
  2. Swin-MLP-T/C24 256, batch 8: hiermlp's cyclic-shift + masked weights vs the reference code's
     formulation (zero pad-shift, view/permute partition, grouped Conv1d; the independent copy that the
     test suite checks against) and vs hiermlp's own pad-shift mode.
  3. Swin-T inference's effective GFLOP/s as a fraction of this machine's float32 GEMM rate.
  4. ``torch.compile(fullgraph=True)``: hiermlp vs timm, compiled, inference.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import timm
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hiermlp
from hiermlp.bench import count_gmacs
from hiermlp.bench.env import environment, finish_environment, format_environment, set_threads
from hiermlp.bench.timing import Timed, round_robin
from hiermlp.bench.workload import infer_step, train_step
from tests.test_mlp_models import RefSwinMLP


def timed(tasks: dict[str, tuple], repeats: int) -> dict[str, dict]:
    """Round-robin timing of ``{label: (fn, items)}``; returns median/q1/q3 seconds and items/s."""
    ts = [Timed(key=(k,), fn=fn, device="cpu", items=items) for k, (fn, items) in tasks.items()]
    round_robin(ts, repeats=repeats, warmup=2, min_sample_s=0.2)
    out = {}
    for t in ts:
        s = t.time_stats()
        out[t.key[0]] = dict(median_s=s.median, q1_s=s.q1, q3_s=s.q3, per_s=t.items / s.median)
    return out


def swin_t(batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224")
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224")
    hiermlp.load_checkpoint(ours, ref.state_dict())
    x = torch.randn(batch, 3, 224, 224)
    x1 = x[:1].clone()
    with torch.no_grad():
        diff = (ours.eval()(x) - ref.eval()(x)).abs().max().item()
    infer = timed({"hiermlp": (infer_step(ours, x), batch), "timm": (infer_step(ref, x), batch)}, repeats)
    latency = timed({"hiermlp": (infer_step(ours, x1), 1), "timm": (infer_step(ref, x1), 1)}, repeats)
    train = timed(
        {"hiermlp": (train_step(ours, x, 1000), batch), "timm": (train_step(ref, x, 1000), batch)},
        max(3, repeats // 2),
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
        },
        repeats,
    )
    return dict(max_abs_diff=diff, infer=infer)


def gemm_efficiency(swin_infer_per_s: float, repeats: int) -> dict:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    r = timed({"gemm": (lambda: torch.mm(a, b), 1)}, repeats)["gemm"]
    gemm_gflops = 2 * 2048**3 / r["median_s"] / 1e9
    gmacs = count_gmacs(hiermlp.create_model("swin_tiny_patch4_window7_224"))
    model_gflops = 2 * gmacs * swin_infer_per_s
    return dict(gemm_gflops=gemm_gflops, swin_t_gflops=model_gflops, fraction=model_gflops / gemm_gflops)


def compiled(batch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    ref = timm.create_model("swin_tiny_patch4_window7_224").eval()
    ours = hiermlp.create_model("swin_tiny_patch4_window7_224").eval()
    hiermlp.load_checkpoint(ours, ref.state_dict())
    x = torch.randn(batch, 3, 224, 224)
    t0 = time.perf_counter()
    c_ours = torch.compile(ours, fullgraph=True)
    c_ref = torch.compile(ref)
    with torch.no_grad():
        diff = (c_ours(x) - c_ref(x)).abs().max().item()
    compile_s = time.perf_counter() - t0
    infer = timed(
        {
            "hiermlp compiled": (infer_step(ours, x, forward=c_ours), batch),
            "timm compiled": (infer_step(ref, x, forward=c_ref), batch),
        },
        repeats,
    )
    return dict(max_abs_diff=diff, compile_s=compile_s, infer=infer)


def ratio(d: dict, a: str, b: str) -> float:
    return d[b]["median_s"] / d[a]["median_s"]


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
        f"| **{ratio(s['infer'], 'hiermlp', 'timm'):.2f}x** |",
        f"| training step img/s | {s['train']['hiermlp']['per_s']:.1f} | {s['train']['timm']['per_s']:.1f} "
        f"| **{ratio(s['train'], 'hiermlp', 'timm'):.2f}x** |",
        f"| batch-1 latency ms | {s['latency']['hiermlp']['median_s'] * 1e3:.1f} "
        f"| {s['latency']['timm']['median_s'] * 1e3:.1f} | **{ratio(s['latency'], 'hiermlp', 'timm'):.2f}x** |",
        "",
        f"## Swin-MLP-T/C24 256, batch {res['batch']} (max |logit diff| to the reference {m['max_abs_diff']:.1e})",
        "",
        "| implementation | img/s | speed vs reference formulation |",
        "|---|---|---|",
    ]
    ref_key = "reference formulation (pad-shift, grouped Conv1d)"
    for k, v in m["infer"].items():
        lines.append(f"| {k} | {v['per_s']:.1f} | {m['infer'][ref_key]['median_s'] / v['median_s']:.2f}x |")
    lines += [
        "",
        "## GEMM efficiency",
        "",
        f"float32 `torch.mm` 2048^3: {g['gemm_gflops']:.1f} GFLOP/s; Swin-T inference: {g['swin_t_gflops']:.1f} "
        f"GFLOP/s effective = **{100 * g['fraction']:.0f}%** of the GEMM rate.",
    ]
    if "compiled" in res:
        c = res["compiled"]
        lines += [
            "",
            f"## torch.compile, Swin-T 224, batch {res['batch']} (hiermlp with fullgraph=True; compile "
            f"{c['compile_s']:.0f} s; max |diff| {c['max_abs_diff']:.1e})",
            "",
            "| model | img/s |",
            "|---|---|",
            *(f"| {k} | {v['per_s']:.1f} |" for k, v in c["infer"].items()),
            "",
            f"compiled hiermlp / compiled timm: **{ratio(c['infer'], 'hiermlp compiled', 'timm compiled'):.2f}x**",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/perf_cpu"))
    args = p.parse_args()
    set_threads(args.threads)
    env = environment("cpu", "float32")
    res = dict(batch=args.batch)
    res["swin_t"] = swin_t(args.batch, args.repeats)
    res["swin_mlp"] = swin_mlp(args.batch, args.repeats)
    res["gemm"] = gemm_efficiency(res["swin_t"]["infer"]["hiermlp"]["per_s"], args.repeats)
    if not args.no_compile:
        res["compiled"] = compiled(args.batch, args.repeats)
    env = finish_environment(env)
    res["env"] = env
    command = "python benchmarks/perf_cpu.py " + " ".join(sys.argv[1:])
    text = markdown(res, format_environment(env), command)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "perf.md").write_text(text)
    (args.out / "perf.json").write_text(json.dumps(res, indent=1, default=str))
    print(text)


if __name__ == "__main__":
    main()
