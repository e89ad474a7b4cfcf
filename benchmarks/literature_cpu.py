"""The literature MLPs in hiermlp vs their official formulations, CPU inference, same weights.

For each family one variant (those of REFERENCE.md's measurements: CycleMLP-B2, AS-MLP-T, Wave-MLP-T,
sMLPNet-T) is built twice: the independent official-layout reference (``hiermlp.testing.
literature_reference``: CycleMLP's Cycle FC as torchvision's deformable convolution with constant offsets,
AS-MLP's pad/chunk/roll shift, NCHW 1x1 convolutions) with random weights and random BatchNorm statistics,
and hiermlp's zoo model with those weights converted by ``load_checkpoint``. The logits are checked
(max |difference| <= 1e-5 of max |logit|), then both are timed round-robin in one process
(``hiermlp.bench.timing``): float32, batch 8, 224x224, ``torch.inference_mode``, medians with quartiles.

    python benchmarks/literature_cpu.py --threads 2 --out benchmarks/results/literature_cpu
    python benchmarks/literature_cpu.py --render benchmarks/results/literature_cpu/literature.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hiermlp
from hiermlp.bench import count_gmacs
from hiermlp.bench.env import environment, finish_environment, format_environment, set_threads
from hiermlp.bench.timing import Timed, round_robin
from hiermlp.testing.literature_reference import build_reference, randomize

FAMILIES = {
    "CycleMLP": "cyclemlp_b2",
    "AS-MLP": "asmlp_tiny_patch4_shift5_224",
    "Wave-MLP": "wavemlp_t",
    "sMLPNet": "smlpnet_tiny",
}


def measure(name: str, *, batch: int, repeats: int, warmup: int) -> dict:
    torch.manual_seed(0)
    # weights at the scale of trained ones (std 0.02): activations stay in range through the full depth
    reference = randomize(build_reference(name), seed=0, std=0.02)
    ours = hiermlp.create_model(name).eval()
    layout = hiermlp.load_checkpoint(ours, reference.state_dict()).layout
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        want, got = reference(x), ours(x)
    diff, scale = (got - want).abs().max().item(), want.abs().max().item()
    if not diff <= 1e-5 * scale:
        raise SystemExit(
            f"{name}: hiermlp's logits differ from the reference's by {diff:.3g} (max |logit| {scale:.3g})"
        )

    def infer(model: torch.nn.Module):
        def run() -> torch.Tensor:
            with torch.inference_mode():
                return model(x)

        return run

    tasks = [
        Timed(key=(k,), fn=infer(m), device="cpu", items=batch) for k, m in (("official", reference), ("hiermlp", ours))
    ]
    round_robin(tasks, repeats=repeats, warmup=warmup, min_sample_s=0.2)
    rows = {}
    for t in tasks:
        s = t.time_stats()
        rows[t.key[0]] = dict(
            median_s=s.median, q1_s=s.q1, q3_s=s.q3, img_per_s=batch / s.median, samples=len(t.samples)
        )
    gmacs = count_gmacs(ours)
    return dict(
        model=name,
        layout=layout,
        params=sum(p.numel() for p in ours.parameters()),
        gmacs=gmacs,
        max_abs_diff=diff,
        max_abs_logit=scale,
        official=rows["official"],
        hiermlp=rows["hiermlp"],
        speedup=rows["official"]["median_s"] / rows["hiermlp"]["median_s"],
        gmac_per_s=dict(official=gmacs * rows["official"]["img_per_s"], hiermlp=gmacs * rows["hiermlp"]["img_per_s"]),
    )


def render(report: dict) -> str:
    lines = [
        "# The literature MLPs: hiermlp vs the official formulation (CPU inference)",
        "",
        f"Command: `{report['command']}`; wall time {report['wall_s'] / 60:.1f} min.",
        "",
        format_environment(report["env"]),
        "",
        f"float32, batch {report['batch']}, 224x224, `torch.inference_mode`; both models timed round-robin in one "
        f"process ({report['repeats']} samples each, >= 0.2 s per sample), medians [quartiles]. Same random "
        "weights and random BatchNorm statistics in both; hiermlp's logits are checked against the reference's "
        "first (max |diff| / max |logit|). The machine is shared with other jobs: absolute numbers are noisy, "
        "the paired ratio is the measurement.",
        "",
        "| family | model | params | GMACs | official img/s | hiermlp img/s | speedup | GMAC/s official -> hiermlp "
        "| max diff / max logit |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for family, r in report["families"].items():
        o, h = r["official"], r["hiermlp"]

        def cell(row: dict) -> str:
            return f"{row['img_per_s']:.2f} [{report['batch'] / row['q3_s']:.2f}, {report['batch'] / row['q1_s']:.2f}]"

        lines.append(
            f"| {family} | `{r['model']}` | {r['params']:,} | {r['gmacs']:.2f} | {cell(o)} | {cell(h)} | "
            f"**{r['speedup']:.2f}x** | {r['gmac_per_s']['official']:.1f} -> {r['gmac_per_s']['hiermlp']:.1f} | "
            f"{r['max_abs_diff'] / r['max_abs_logit']:.1e} |"
        )
    lines += [
        "",
        "The official formulations: CycleMLP's Cycle FC as `torchvision.ops.deform_conv2d` with constant integer "
        "offsets (ShoufaChen/CycleMLP); AS-MLP's axial shift as its pure-PyTorch pad/chunk/roll/crop (the CUDA "
        "kernel's CPU fallback), NCHW 1x1 convolutions; Wave-MLP and sMLPNet as their NCHW code. hiermlp: "
        "channels-last maps, per-channel-group slice copies for both shifts, linears for the 1x1 convolutions "
        "(Wave-MLP's five per-token maps as one GEMM).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset of " + ", ".join(FAMILIES))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/literature_cpu"))
    p.add_argument("--render", type=Path, default=None, help="rewrite literature.md next to this saved JSON, no timing")
    args = p.parse_args(argv)
    if args.render is not None:
        (args.render.parent / "literature.md").write_text(render(json.loads(args.render.read_text())))
        return
    set_threads(args.threads)
    chosen = [f.strip() for f in args.families.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FAMILIES))
    if unknown:
        p.error(f"unknown families {unknown}; choose from {', '.join(FAMILIES)}")
    env = environment("cpu")
    t0 = time.perf_counter()
    families: dict[str, dict] = {}
    args.out.mkdir(parents=True, exist_ok=True)
    for family in chosen:
        families[family] = r = measure(FAMILIES[family], batch=args.batch, repeats=args.repeats, warmup=args.warmup)
        speed = f"{r['official']['img_per_s']:.2f} -> {r['hiermlp']['img_per_s']:.2f} img/s"
        print(f"{family}: {speed} ({r['speedup']:.2f}x)", flush=True)
        report = dict(
            command="python benchmarks/literature_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            env=finish_environment(dict(env)),
            batch=args.batch,
            repeats=args.repeats,
            wall_s=time.perf_counter() - t0,
            families=families,
        )
        # written after every family: a long run that is stopped keeps what it measured
        (args.out / "literature.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "literature.md").write_text(render(report))
    print(f"wrote {args.out / 'literature.md'}")


if __name__ == "__main__":
    main()
