"""Regenerate the committed benchmark results under ``benchmarks/results/``.

Each result directory gets the reports of one ``hiermlp`` command (Markdown, CSV, JSON, PNG) and a
README.md with the exact command, the machine and the versions, the table and how to read it.

    python benchmarks/make_results.py              # all four CPU results (each README gives its time)
    python benchmarks/make_results.py sweep_cpu    # or bench_cpu, compare_default, compare_literature, bench_gpu
    python benchmarks/make_results.py --readme-only  # rewrite the READMEs from existing reports

Run it on an otherwise idle machine: the reports record the load average at start and end, and timings
taken while other processes compete for the cores are slower and noisier. compare_default keeps its
(entry, seed) runs under runs/compare/compare_default: rerun after an interruption, it trains only what
is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

# Swin-T-sized models of every family at 224, hiermlp's next to timm's own implementations
BENCH_MODELS = [
    "swin_tiny_patch4_window7_224",
    "timm:swin_tiny_patch4_window7_224",
    "swin_mlp_tiny_c24_patch4_window8_256",
    "winmixer_tiny_patch4_window7_224",
    "wingmlp_tiny_patch4_window7_224",
    "timm:mixer_b16_224",
    "gmlp_s16_224",
    "timm:gmlp_s16_224",
]

# The Swin-T hierarchy with four token mixers: three window mixers and global attention (the same
# network with one window covering the whole map: the quadratic baseline of the Swin paper)
SWEEP_MODELS = [
    "swin=swin_tiny_patch4_window7_224",
    "swin-mlp=swin_mlp_tiny_c24_patch4_window8_256",
    "win-mixer=winmixer_tiny_patch4_window7_224",
    "global-attention=swin_tiny_patch4_window7_224{mixer: global_attention}",
]

RUNS: dict[str, list[str]] = {
    "bench_cpu": ["bench", *BENCH_MODELS, "--img-size", "224", "--batch", "4", "--repeats", "3", "--warmup", "1"],
    "sweep_cpu": [
        "bench",
        "--sweep",
        "64,128,224,384,512",
        *SWEEP_MODELS,
        "--batch",
        "1",
        "--repeats",
        "5",
        "--max-point-seconds",
        "45",
    ],
    # the (entry, seed) runs live outside the results directory: a rerun reuses them, git never sees them
    "compare_default": ["compare", "default", "--runs-dir", "runs/compare/compare_default"],
    "compare_literature": ["compare", "literature", "--runs-dir", "runs/compare/compare_literature"],
    # needs a CUDA device: only when named (python benchmarks/make_results.py bench_gpu)
    "bench_gpu": [
        "bench",
        "swin_tiny_patch4_window7_224",
        "timm:swin_tiny_patch4_window7_224",
        "--device",
        "cuda",
        "--dtype",
        "bfloat16",
        "--batch",
        "128",
        "--repeats",
        "10",
    ],
}
CPU_RUNS = ["bench_cpu", "sweep_cpu", "compare_default", "compare_literature"]  # what a bare make_results.py runs

HOW_TO_READ = {
    "bench_cpu": """\
- **params (M)**, **GMACs** (multiply-accumulates per image, `torch.utils.flop_counter`, what papers call
  FLOPs) are exact; the rest are timings: median of the timed samples, `(q1–q3)` the interquartile range.
- **infer img/s** = batch-4 forward passes in eval mode under `torch.no_grad`; **latency** = one image;
  **train img/s** = forward + cross-entropy + backward + AdamW step. **×1st** = speed relative to the first
  row (hiermlp's Swin-T; >1 is faster). Models are timed round-robin in one process, so hiermlp's models
  and timm's implementations of the same architecture (`timm:` rows) share the machine's conditions.
- **peak MiB** = growth of the resident set (peak RSS) of a fresh process from just before the model is
  built: weights + activations (+ gradients and AdamW state for training) + allocator slack.
- Every row runs at 224x224 (`swin_mlp_tiny_c24_patch4_window8_256` too, whose reference size is 256), so
  the rows share one input. With three samples per model on a shared machine, differences smaller than
  the interquartile ranges (often 10-20% here) are noise; the GMACs column is the noise-free comparison.""",
    "sweep_cpu": """\
- Each model runs at each image size (batch 1); the time per image is the median of the timed samples.
- **α** is the least-squares slope of log(time) against log(pixels): 1 means time grows linearly with the
  number of pixels, 2 quadratically. *α top3* fits only the three largest sizes, where fixed per-call
  costs no longer flatten the curve. The Swin paper's claim, measured: window mixers are about linear,
  global attention approaches quadratic as the token count grows.
- **OOM** / **time cap** mark points that ran out of memory or would exceed `--max-point-seconds`; the
  sweep records them and goes on.
- Peak memory is the peak-RSS growth of a fresh process running one batch (see `hiermlp.bench.memory`).
  At batch 1 the weights (about 80-110 MiB) dominate, and PyTorch's CPU attention kernel is
  flash-style (it never stores the N×N attention matrix), so memory grows slowly for every mixer; time
  is where global attention pays for its N² pairs.""",
    "compare_default": """\
- Every entry is trained by `hiermlp.train.train` with the same recipe once per seed (seeds 0, 1, 2: each
  draws the 3k training images, the data order and the initialisation; entries share them), on the
  embedded Fashion-MNIST subset, and evaluated on its 2k test images. Then the architectures are timed
  together (round-robin).
- **top-1** is the mean ± std over the seeds with the 95% Student-t interval of the mean. With three
  seeds the t factor is 4.30, so an interval is about ±2.5 standard deviations wide: only differences
  that the intervals of *paired* differences (same seed, same data) separate from zero are called
  supported. **rank** counts only those: entries that no supported difference separates share a rank.
- **vs baselines**: `>` better than the baseline, `<` worse (both supported), `≈` not separated.
- **Claims**: each row is one ablation of one family (a − b, paired over seeds) next to the paper's
  ImageNet-1k figure. At 3k images and 282 steps these test whether the mechanism helps *here*; a
  paper's gain at ImageNet scale need not show, and an inconclusive row is no evidence either way.
- Each interval is a 95% interval on its own: among the many pairs about one in twenty supported
  verdicts can be chance; the claims are the planned tests.""",
    "compare_literature": """\
- Micro versions of CycleMLP, AS-MLP, Wave-MLP and sMLPNet (each family's own stem, token mixer, norms
  and downsampling, at 0.020-0.022 GMACs) next to Swin, Swin V2 and Swin-MLP and the two baselines, all
  trained by the default preset's recipe with seeds 0, 1, 2 (3k embedded Fashion-MNIST images, 3 epochs)
  and evaluated on the 2k test images; then timed together round-robin.
- Read the table as the default preset's (below): mean ± std and the 95% interval over seeds; only
  differences that the paired intervals separate from zero are called supported. The ImageNet ranking of
  these families need not hold at 3k gray 32×32 images; an inconclusive pair is no evidence either way.""",
    "bench_gpu": """\
- Swin-T, hiermlp next to timm's own implementation with the same weights, under bf16 autocast on one GPU
  (the card is named above the table). **infer img/s** = batch-128 forward passes in eval mode under
  `torch.no_grad`; **latency** = one image; **train img/s** = forward + cross-entropy + backward + AdamW.
- **peak MiB** = `torch.cuda.max_memory_allocated` of a fresh process: weights + activations (+ gradients
  and AdamW state for training).
- hiermlp's attention hands SDPA's memory-efficient kernel a row-aligned folded bias, broadcast over the
  batch and cached per feature size; timm's builds the mask per window every call and SDPA pads a copy
  of it. `benchmarks/results/perf_gpu/` has the lever-by-lever table.""",
}

TITLES = {
    "bench_cpu": "Swin-T-sized models of every mixer family, hiermlp next to timm (CPU)",
    "sweep_cpu": "Resolution sweep: window mixers vs global attention (CPU)",
    "compare_default": "Window attention and window MLP, their ablations and two baselines, 3 seeds (CPU)",
    "compare_literature": "The hierarchical MLPs of the literature vs Swin and Swin-MLP, 3 seeds (CPU)",
    "bench_gpu": "Swin-T, hiermlp next to timm, bf16 autocast (GPU)",
}

PLOTS = {
    "bench_cpu": [("bench.png", "throughput per model (median, IQR whiskers)")],
    "bench_gpu": [("bench.png", "throughput per model (median, IQR whiskers)")],
    "sweep_cpu": [("sweep.png", "time and peak memory against pixels, log-log, fitted exponents in the legend")],
    "compare_default": [
        ("claims.png", "the papers' claims: Δ top-1 with its 95% interval, the paper's figure as ×"),
        ("acc_vs_speed.png", "accuracy (mean, 95% CI) against inference throughput (median, IQR)"),
        ("curves.png", "learning curves: mean over seeds, band from the lowest to the highest seed"),
    ],
}
PLOTS["compare_literature"] = PLOTS["compare_default"]


def run(name: str, threads: int | None) -> float:
    """Run one result's command (through hiermlp's CLI, in this process) and return its wall time."""
    from hiermlp.cli import main

    argv = [*RUNS[name], "--out", str((RESULTS / name).relative_to(ROOT)), "--no-progress"]
    if threads is not None:
        argv += ["--threads", str(threads)]
    os.chdir(ROOT)  # the output path, and so the command written into the reports, is repo-relative
    t0 = time.perf_counter()
    rc = main(argv)
    if rc not in (0, 1):
        raise SystemExit(f"{name}: hiermlp {argv[0]} exited with {rc}")
    return time.perf_counter() - t0


def findings(name: str, data: dict) -> list[str]:
    """Headline numbers of a result, as Markdown bullets."""
    if name == "sweep_cpu":
        out = []
        for f in data["fits"]:
            top = f" ({f['time_exp_top']:.2f} over the three largest sizes)" if f["time_exp_top"] else ""
            out.append(
                f"- `{f['model']}`: time ∝ pixels^**{f['time_exp']:.2f}**{top}; "
                f"GMACs ∝ pixels^{f['gmacs_exp']:.2f}; peak memory ∝ pixels^{f['mem_exp']:.2f}"
            )
        pts = {(p["model"], p["img_size"]): p for p in data["points"]}
        big = max(p["img_size"] for p in data["points"])
        ga, sw = pts.get(("global-attention", big)), pts.get(("swin", big))
        if ga and sw and ga["ms_per_img_median"] and sw["ms_per_img_median"]:
            out.append(
                f"- at {big}x{big}, global attention takes {ga['ms_per_img_median'] / sw['ms_per_img_median']:.1f}x "
                "the time of window attention in the same network"
            )
        return out
    if name in ("bench_cpu", "bench_gpu"):
        rows = data["rows"]
        out = [f"- reference row: `{rows[0]['model']}`"]
        for r in rows[1:]:
            if r["infer_rel"] is not None:
                out.append(
                    f"- `{r['model']}`: inference ×{r['infer_rel']:.2f}, training ×{r['train_rel']:.2f}, "
                    f"latency ×{r['latency_rel']:.2f} (speed relative to the reference; >1 = faster)"
                )
        return out
    train_s = data.get("train_time_total_s", 0.0)
    n_runs = sum(len(r["runs"]) for r in data["rows"])
    return [
        *data["findings"],
        f"- {n_runs} runs; their training times sum to {train_s / 60:.1f} min; the invocation that wrote the "
        f"report took {data['wall_s'] / 60:.1f} min (runs it found finished are reused, not retrained)",
    ]


def write_readme(name: str, wall_s: float | None = None) -> Path:
    """README.md of one result directory, from its JSON and Markdown reports."""
    out = RESULTS / name
    stem = {"bench_cpu": "bench", "bench_gpu": "bench", "sweep_cpu": "sweep", "compare_default": "compare"}
    stem = {**stem, "compare_literature": "compare"}[name]
    # older runs passed an absolute --out: keep the committed files machine-independent
    for f in (out / f"{stem}.json", out / f"{stem}.md"):
        f.write_text(f.read_text().replace(str(ROOT) + "/", ""))
    data = json.loads((out / f"{stem}.json").read_text())
    if name in ("bench_cpu", "bench_gpu"):  # plots are cheap to redraw from the JSON, so plot fixes need no re-run
        from hiermlp.bench.speed import BenchReport

        BenchReport.from_dict(data).plot(out / "bench.png")
    env, command = data["env"], data.get("command") or ""
    report_md = (out / f"{stem}.md").read_text()
    body = report_md.split("\n", 1)[1]  # drop the report's own title ...
    if body.lstrip().startswith("```"):  # ... and its command block (shown above)
        body = body.lstrip().split("```", 2)[2]
    if wall_s is None and (out / "README.md").exists():  # --readme-only: keep the wall time of the run
        took = re.search(r" It took [0-9.]+ minutes\.", (out / "README.md").read_text())
        wall = took.group(0) if took else ""
    else:
        wall = f" It took {wall_s / 60:.1f} minutes." if wall_s else ""
    device = env["device"] if env["device"] == "cpu" else f"{env['device']} ({env.get('device_name', '?')})"
    lines = [
        f"# {TITLES[name]}",
        "",
        "Reproduce (from the repository root):",
        "",
        "```bash",
        command,
        "```",
        "",
        f"Regenerate every committed result with `python benchmarks/make_results.py {name}`.{wall}",
        "",
        f"Machine: {env['cpu']}, {env['cpu_cores']} cores visible, {env['threads']} torch threads, "
        f"{device}, {env['dtype']}. "
        f"Software: torch {env['torch']}, timm {env['timm']}, "
        f"hiermlp {env['hiermlp']}, Python {env['python']}.",
        "",
        "## Findings (computed from the JSON report)",
        "",
        *findings(name, data),
        "",
        "## How to read it",
        "",
        HOW_TO_READ[name],
        "",
        "## Plots",
        "",
        *[f"![{desc}]({png})  \n*{desc}*\n" for png, desc in PLOTS[name]],
        "## Report",
        "",
        body.strip(),
        "",
        "Files: " + ", ".join(f"`{p.name}`" for p in sorted(out.iterdir()) if p.name != "README.md") + ".",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(RUNS)} (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--readme-only", action="store_true", help="only rewrite README.md files")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in RUNS]
    if unknown:
        parser.error(f"unknown result(s) {unknown}; choose from {list(RUNS)}")
    if str(ROOT) not in sys.path:  # run as a script from a source checkout: import this hiermlp
        sys.path.insert(0, str(ROOT))
    default = [n for n in RUNS if (RESULTS / n).is_dir()] if args.readme_only else CPU_RUNS
    for name in args.names or default:
        wall = None if args.readme_only else run(name, args.threads)
        print(f"{name}: {write_readme(name, wall)}", file=sys.stderr)
        print("  " + shlex.join(RUNS[name]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
