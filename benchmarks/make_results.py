"""Re-measure the committed benchmark results under ``benchmarks/results/`` and render their pages.

Every result directory holds the reports of one command (JSON, and Markdown/CSV/PNG beside it). Its
README.md, and ``benchmarks/README.md`` (the index), are *rendered* from the committed JSON by this script,
so a page cannot say a number its report does not hold; tests/test_result_pages.py checks that the
committed pages are what this script renders.

    python benchmarks/make_results.py --pages       # render every page from the committed JSON (no timing)
    python benchmarks/make_results.py               # re-measure the four CPU results, then render the pages
    python benchmarks/make_results.py sweep_cpu     # one of bench_cpu, sweep_cpu, compare_default,
                                                    # compare_literature, compare_dense, compare_video,
                                                    # bench_gpu (CUDA: only when named)

The other results come from their own scripts (perf_cpu.py, perf_gpu.py, literature_cpu.py, cache_rss.py;
each page gives its command); ``--pages`` renders their pages too. Measure on an otherwise idle machine: the
reports record the load average at start and end, and timings taken while other processes compete for the
cores are slower and noisier. The compare results keep their (entry, seed) runs under runs/compare/NAME:
rerun after an interruption, a compare trains only what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    "compare_dense": ["compare", "dense", "--runs-dir", "runs/compare/compare_dense"],
    "compare_video": ["compare", "video", "--runs-dir", "runs/compare/compare_video"],
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
# what a bare make_results.py runs
CPU_RUNS = ["bench_cpu", "sweep_cpu", "compare_default", "compare_literature", "compare_dense", "compare_video"]


# ---- formatting ----------------------------------------------------------------------------------------------
def num(x: float | None) -> str:
    """Three significant digits, thousands separated: 0.123, 1.23, 12.3, 123, 1,234."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "0"
    digits = max(0, 2 - math.floor(math.log10(abs(x))))
    return f"{x:,.{digits}f}"


def stat(s: dict | None, scale: float = 1.0) -> str:
    """``median (q1–q3)`` of a timing summary."""
    if not s:
        return "-"
    return f"{num(s['median'] * scale)} ({num(s['q1'] * scale)}–{num(s['q3'] * scale)})"


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def onoff(flag: bool) -> str:
    return "on" if flag else "off"


def table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A Markdown table; ``align`` has one letter per column, l or r (default: first l, the rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---" for a in align]
    return ["| " + " | ".join(r) + " |" for r in (header, rule, *rows)]


def machine(env: dict, identity: dict | None = None) -> list[str]:
    """Where and with what a report was measured, and whether the machine was shared, from its ``env`` (and a
    compare's run identity: the paths its runs took at their own thread count)."""
    device = "the CPU" if env["device"] == "cpu" else f"{env.get('device_name', '?')} ({env['device']})"
    onednn = f"{onoff(env['onednn_linears'])}" if "onednn_linears" in env else "not recorded"
    threads = f"{env['threads']} torch thread{'s' if env['threads'] != 1 else ''}"
    attention = env.get("cpu_attention_explicit")
    kernels = (
        ""
        if attention is None
        else (
            "; CPU inference attention: "
            + ", ".join(f"{t} {'explicit' if e else 'SDPA'}" for t, e in attention.items())
        )
    )
    identity = identity or {}
    if "attention" in identity:
        kernels = (
            f"; the runs ({identity['threads']} torch thread{'s' if identity['threads'] != 1 else ''} each): "
            f"{identity['gemm']} GEMMs, {identity['attention']} attention in evaluation"
        )
    lines = [
        f"- machine: {env['cpu']}, {env['cpu_cores']} cores visible, {threads}; measured on {device} in "
        f"{env['dtype']}; hiermlp's oneDNN linears: {onednn}{kernels}",
        f"- software: torch {env['torch']}, timm {env['timm']}, hiermlp {env['hiermlp']}, Python {env['python']}, "
        f"{env['platform']}" + (f", CUDA {env['cuda']}" if "cuda" in env else ""),
    ]
    if "loadavg_start" in env:
        start, end = env["loadavg_start"], env.get("loadavg_end")
        load = f"- load average (1/5/15 min) at start {'/'.join(map(str, start))}"
        if end:
            load += f", at end {'/'.join(map(str, end))}"
        lines.append(load + " (what ran besides the measurement, plus, at the end, the measurement itself)")
        if start[0] > env["cpu_cores"]:
            lines.append(
                f"- **the machine was shared**: a 1-minute load of {start[0]} on {env['cpu_cores']} cores before "
                "the run started, so absolute figures are pessimistic; comparisons made within one process, "
                "under the same load, are the meaningful part"
            )
    return lines


# ---- the pages -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    """How one result directory's README.md is rendered from its JSON report."""

    title: str
    what: str  # one line for the index
    report: str  # the JSON report, relative to the directory
    full: str  # the full Markdown report written beside it by the command
    body: Callable[[str, dict], list[str]]  # findings, tables, how to read it
    plots: list[tuple[str, str]] = field(default_factory=list)


def bench_body(name: str, d: dict) -> list[str]:
    rows, s = d["rows"], d["settings"]
    ref, batch = rows[0], s["batch"]
    lines = ["## Findings (computed from the JSON report)", ""]
    for r in rows[1:]:
        if r["status"] == "ok" and r["infer_rel"]:
            lines.append(
                f"- `{r['model']}` against `{ref['model']}`: inference ×{r['infer_rel']:.2f}, training "
                f"×{r['train_rel']:.2f}, batch-1 latency ×{r['latency_rel']:.2f} (speed; >1 = faster)"
            )
        else:
            lines.append(f"- `{r['model']}`: {r['status']} {r.get('error', '')}".rstrip())
    pairs = {r["model"]: r for r in rows}
    for r in rows:
        twin = pairs.get(f"timm:{r['model']}")
        if r["source"] == "hiermlp" and twin and twin["infer_rel"] and r["infer_rel"]:
            lines.append(
                f"- `{r['model']}`, hiermlp / timm: inference {r['infer_rel'] / twin['infer_rel']:.2f}x, training "
                f"{r['train_rel'] / twin['train_rel']:.2f}x, latency {r['latency_rel'] / twin['latency_rel']:.2f}x"
            )
    mem = "`torch.cuda.max_memory_allocated`" if d["env"]["device"] == "cuda" else "peak-RSS growth"
    lines += [
        "",
        "## Table",
        "",
        *table(
            [
                "model",
                "source",
                "img",
                "params (M)",
                "GMACs",
                f"infer img/s @{batch}",
                "×1st",
                "latency ms @1",
                "×1st",
                f"train img/s @{batch}",
                "×1st",
                "peak MiB infer",
                "peak MiB train",
            ],
            [
                [
                    f"`{r['model']}`",
                    r["source"],
                    str(r["img_size"]),
                    num(r["params"] / 1e6),
                    num(r["gmacs"]),
                    stat(r["infer_img_s"]),
                    f"{r['infer_rel']:.2f}" if r["infer_rel"] else "-",
                    stat(r["latency_ms"]),
                    f"{r['latency_rel']:.2f}" if r["latency_rel"] else "-",
                    stat(r["train_img_s"]),
                    f"{r['train_rel']:.2f}" if r["train_rel"] else "-",
                    num(r["mem_infer_mb"]),
                    num(r["mem_train_mb"]),
                ]
                for r in rows
            ],
            "lll" + "r" * 10,
        ),
        "",
        "## How to read it",
        "",
        "- **params**, **GMACs** (multiply-accumulates per image, `torch.utils.flop_counter`: what papers call "
        "FLOPs) are exact; the rest are timings: the median of the timed samples, (q1–q3) the interquartile range.",
        f"- **infer img/s** = batch-{batch} forward passes in eval mode under `torch.no_grad`; **latency** = one "
        f"image; **train img/s** = forward + cross-entropy + backward + AdamW step at batch {batch}. **×1st** = "
        "speed relative to the first row (>1 is faster).",
        f"- {s['repeats']} timed samples after {s['warmup']} warm-up call(s) per model; the models are timed "
        "round-robin in one process, so hiermlp's models and timm's implementations (`timm:` rows) share the "
        "machine's conditions. Differences within the interquartile ranges are noise; GMACs are the noise-free "
        "comparison.",
        f"- **peak MiB** = {mem} of a fresh process per model: weights and activations (+ gradients and AdamW "
        "state for training).",
        *took(d),
    ]
    return lines


def took(d: dict) -> list[str]:
    return [f"- The command took {minutes(d['wall_s'])}."] if "wall_s" in d else []


def sweep_body(name: str, d: dict) -> list[str]:
    sizes = d["settings"]["sizes"]
    pts = {(p["model"], p["img_size"]): p for p in d["points"]}
    models = [f["model"] for f in d["fits"]]
    lines = ["## Findings (computed from the JSON report)", ""]
    for f in d["fits"]:
        top = f" ({f['time_exp_top']:.2f} over the three largest sizes)" if f["time_exp_top"] else ""
        lines.append(
            f"- `{f['model']}`: time ∝ pixels^**{f['time_exp']:.2f}**{top}; GMACs ∝ pixels^{f['gmacs_exp']:.2f}; "
            f"peak memory ∝ pixels^{f['mem_exp']:.2f}"
        )
    big = max(sizes)
    ga, sw = pts.get(("global-attention", big)), pts.get(("swin", big))
    if ga and sw and ga["ms_per_img_median"] and sw["ms_per_img_median"]:
        lines.append(
            f"- at {big}x{big}, global attention takes {ga['ms_per_img_median'] / sw['ms_per_img_median']:.1f}x the "
            "time of window attention in the same network"
        )

    def cell(m: str, size: int, key: str) -> str:
        p = pts.get((m, size))
        if p is None:
            return "-"
        return num(p[key]) if p["status"] == "ok" and p[key] is not None else p["status"]

    fits = {f["model"]: f for f in d["fits"]}
    lines += [
        "",
        f"## Inference ms per image (batch {d['settings']['batch']}, median)",
        "",
        *table(
            ["model", *map(str, sizes), "α", "α top3"],
            [
                [
                    f"`{m}`",
                    *(cell(m, s, "ms_per_img_median") for s in sizes),
                    f"{fits[m]['time_exp']:.2f}",
                    f"{fits[m]['time_exp_top']:.2f}" if fits[m]["time_exp_top"] else "-",
                ]
                for m in models
            ],
        ),
        "",
        "## GMACs per image",
        "",
        *table(
            ["model", *map(str, sizes), "α"],
            [[f"`{m}`", *(cell(m, s, "gmacs") for s in sizes), f"{fits[m]['gmacs_exp']:.2f}"] for m in models],
        ),
        "",
        "## How to read it",
        "",
        f"- Each model runs at each image size (batch {d['settings']['batch']}, {d['settings']['repeats']} timed "
        "samples after warm-up, the models of one size round-robin); the time per image is the median.",
        "- **α** is the least-squares slope of log(time) against log(pixels): 1 means time grows linearly with the "
        "number of pixels, 2 quadratically. *α top3* fits only the three largest sizes, where fixed per-call costs "
        "no longer flatten the curve.",
        "- Peak memory (exponents above, values in the full report) is the peak-RSS growth of a fresh process "
        "running one batch; at batch 1 the weights are most of it, so it grows slowly for every mixer.",
        f"- A point that runs out of memory or would exceed {d['settings']['max_point_s']:g} s is recorded as such "
        "and the sweep goes on.",
        *took(d),
    ]
    return lines


def compare_body(name: str, d: dict) -> list[str]:
    rows, recipe = d["rows"], d["recipe"]
    dense = recipe.get("task") == "segment"
    metric = "mIoU" if dense else "top-1"
    clips = recipe.get("data") == "clips"
    images = "training scenes" if dense else "training clips" if clips else "training images"
    # a clip's frames (the dataset's fixed 8) before its side
    size = f"{'8x' if clips else ''}{recipe['img_size']}x{recipe['img_size']}"
    runs = [run for r in rows for run in r["runs"]]
    steps = max((run["history"][-1]["step"] for run in runs if run.get("history")), default=0)
    reused = sum(bool(run.get("reused")) for run in runs)
    scale = recipe["batch_size"] * recipe["accum_steps"] / recipe["lr_base_batch"]
    baselines = [r["label"] for r in rows if r["baseline"]]
    gmacs = [r["gmacs"] for r in rows if not r["baseline"]]
    top = rows[0]["top1"]
    t = (top["hi"] - top["mean"]) * math.sqrt(top["n"]) / top["std"] if top["std"] else float("nan")
    aug = "none" if recipe["no_aug"] else "on"
    lines = [
        "## What was run",
        "",
        f"- {len(rows)} entries ({len(rows) - len(baselines)} models at {num(min(gmacs))}–{num(max(gmacs))} GMACs, "
        f"baselines {', '.join(f'`{b}`' for b in baselines)}) × {len(d['seeds'])} seeds "
        f"({', '.join(map(str, d['seeds']))}) = {len(runs)} runs, {d['jobs']} at a time with "
        f"{d['job_threads']} torch thread{'s' if d['job_threads'] != 1 else ''} each",
        f"- one recipe for every entry: {recipe['epochs']} epochs over {recipe['limit_train'] or 'all'} "
        f"`{recipe['data']}` {images} at {size} ({steps} optimizer steps), "
        f"batch {recipe['batch_size']}, {recipe['opt']} with lr {recipe['lr']:g} per {recipe['lr_base_batch']} "
        f"images ({recipe['lr'] * scale:.2e} at this batch), warmup {recipe['warmup_epochs']:g} epochs, "
        + ("then constant" if recipe["min_lr"] == recipe["lr"] else f"cosine to {recipe['min_lr'] * scale:.2e}")
        + f", weight decay {recipe['weight_decay']:g}, augmentation {aug}, label "
        f"smoothing {recipe['label_smoothing']:g}, drop path {recipe['drop_path_rate']:g}, amp {recipe['amp']}",
        f"- the invocation that wrote the report took {minutes(d['wall_s'])}; the runs' training times sum to "
        f"{minutes(d['train_time_total_s'])}" + (f" ({reused} finished runs were reused)" if reused else ""),
        "",
        "## Results",
        "",
        *table(
            [
                "rank",
                "entry",
                "model (options)",
                "params (M)",
                "GMACs",
                f"{metric} % (mean ± std)",
                "95% CI",
                "vs baselines",
                f"infer img/s @{d['bench']['batch']}",
                "train s/run",
            ],
            [
                [
                    str(r["rank"]),
                    f"**{r['label']}**" + (" (baseline)" if r["baseline"] else ""),
                    model_cell(r, rows),
                    num(r["params"] / 1e6),
                    num(r["gmacs"]),
                    f"{r['top1']['mean']:.2f} ± {r['top1']['std']:.2f}",
                    f"[{r['top1']['lo']:.2f}, {r['top1']['hi']:.2f}]",
                    versus(d, r, baselines),
                    stat(r["infer_img_s"]),
                    f"{r['train_time_s']:.0f}",
                ]
                for r in sorted(rows, key=lambda r: r["rank"])
            ],
            "rll" + "r" * 7,
        ),
        "",
        "## Findings (what the intervals support)",
        "",
        *d["findings"],
    ]
    if d["claims"]:
        lines += [
            "",
            "## Claims of the papers, tested",
            "",
            *table(
                [
                    "claim",
                    "family",
                    "a − b",
                    f"Δ {metric} (pp) [95% CI]",
                    "verdict",
                    "detectable Δ (80% power)",
                    "paper (ADE20K)" if dense else "paper (ImageNet-1K)",
                    "seeds for the paper's Δ",
                ],
                [
                    [
                        c["claim"],
                        c["family"],
                        f"{c['a']} − {c['b']}",
                        f"{c['diff']['mean']:+.2f} [{c['diff']['lo']:+.2f}, {c['diff']['hi']:+.2f}]",
                        c["verdict"],
                        *power(c),
                    ]
                    for c in d["claims"]
                ],
                "llllllll",
            ),
            "",
            *(f"- {c['claim']} ({c['family']}): {claim_words(c)}" for c in d["claims"]),
        ]
    lines += [
        "",
        "## How to read it",
        "",
        f"- Every entry is trained by the same recipe once per seed; a seed draws the training subset, the data "
        f"order and the initialisation, and entries share them. **{metric}** is {SCORE_TEXT[metric]} at the last "
        f"epoch, mean ± std over the seeds, with the 95% Student-t interval of the mean (t = {t:.2f} for "
        f"{top['n']} seeds).",
        "- A difference is **supported** when the 95% interval of the *paired* differences (same seed, same data) "
        "excludes zero; **rank** counts only supported differences, so entries that none separates share a rank. "
        "**vs baselines**: `>` better, `<` worse (both supported), `≈` not separated.",
        f"- **Claims**: each row is one ablation (a − b, paired over seeds) next to the paper's "
        f"{'ADE20K (UPerNet, Swin-T)' if dense else 'ImageNet-1K'} figure. They test whether the mechanism helps at "
        "this scale. **detectable Δ** is the smallest true difference these seeds detect at 95% confidence with 80% "
        "power, (t₀.₉₇₅,ₙ₋₁ + t₀.₈,ₙ₋₁) · s_d / √n from the paired differences' standard deviation s_d: an "
        "inconclusive row says the difference is smaller than that at this budget, not that there is none. "
        "**seeds for the paper's Δ** solves the same formula for n at the observed spread (`seeds=N` buys them).",
        "- Each interval is a 95% interval on its own: among many pairs about one in twenty supported verdicts "
        "can be chance; the claims are the planned tests.",
        "- Throughput is measured after training, all architectures timed together round-robin.",
    ]
    return lines


SCORE_TEXT = {
    "top-1": "the test accuracy",
    "mIoU": "the test mean IoU over classes (one confusion matrix over the whole test set)",
}


def power(c: dict) -> list[str]:
    """A claim's detectable difference, paper figure and the seeds a paper-sized difference needs (computed from
    its paired spread, so reports written before power was recorded get it too)."""
    from hiermlp.study.stats import minimal_detectable_difference, paper_value, seeds_to_resolve

    diff = c["diff"]
    std = diff["std"] if diff["std"] is not None else math.nan
    mdd = minimal_detectable_difference(std, diff["n"])
    paper = paper_value(c["paper"])
    seeds = seeds_to_resolve(paper, std) if paper is not None else None
    need = "-" if paper is None or not math.isfinite(std) else (str(seeds) if seeds is not None else "> 10,000")
    return [f"±{mdd:.2f}" if math.isfinite(mdd) else "-", c["paper"], need]


def claim_words(c: dict) -> str:
    """The library's sentence for a claim (its difference, verdict and power), from the claim's JSON."""
    from hiermlp.study.report import claim_sentence
    from hiermlp.study.stats import Interval, minimal_detectable_difference, paper_value, seeds_to_resolve

    diff = Interval(**{k: math.nan if v is None else v for k, v in c["diff"].items()})
    paper = paper_value(c["paper"])
    power = {
        "mdd": minimal_detectable_difference(diff.std, diff.n),
        "seeds_for_paper": seeds_to_resolve(paper, diff.std) if paper is not None else None,
    }
    return claim_sentence({**c, "diff": diff, **power})


def model_cell(row: dict, rows: list[dict]) -> str:
    """The model, its mixer, and the options that set it apart from most entries sharing both (the ablation)."""
    kw = row["model_kwargs"]
    mixer = kw.get("mixer") or kw.get("backbone")
    group = [
        r["model_kwargs"]
        for r in rows
        if r["model"] == row["model"] and (r["model_kwargs"].get("mixer") or r["model_kwargs"].get("backbone")) == mixer
    ]

    def usual(k: str) -> str:  # the most common setting of k among them (absent counts as a setting)
        return statistics.mode(json.dumps(g.get(k)) for g in group)

    own = [
        f"{k}={json.dumps(v)}" for k, v in kw.items() if k not in ("mixer", "backbone") and json.dumps(v) != usual(k)
    ]
    return f"`{row['model']}`" + (f" ({mixer})" if mixer else "") + (f"; {', '.join(own)}" if own else "")


def versus(d: dict, row: dict, baselines: list[str]) -> str:
    if row["baseline"]:
        return "-"
    verdicts = {(p["a"], p["b"]): (p["verdict"], p["diff"]["mean"]) for p in d["pairs"]}
    cells = []
    for b in baselines:
        verdict, mean = verdicts.get((row["label"], b)) or verdicts.get((b, row["label"]), ("?", 0.0))
        if (b, row["label"]) in verdicts:
            mean = -mean
        cells.append(f"{'>' if mean > 0 else '<'} {b}" if verdict == "supported" else f"≈ {b}")
    return ", ".join(cells)


def median_ratio(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f}x (runs: {', '.join(f'{v:.2f}' for v in xs)})"


LEVER_NOTE_OLD = (
    "- The lever rows switch one part of hiermlp's speed layer off (or the opt-in oneDNN linears on); "
    "'no speed layer' is the plain reference modules. The GEMM-floor row bounds what any change outside the "
    "linear layers could buy."
)
LEVER_NOTE_NEW = (
    "- The lever rows switch one part of hiermlp's speed layer off (or force a GEMM path); 'no speed layer' "
    "is the plain reference modules. The GEMM-floor row bounds what any change outside the linear layers "
    "could buy. perf.md also tabulates, per lever, its setting, its gain on the machine and its lines of code."
)


def perf_cpu_body(name: str, d: dict) -> list[str]:
    sw, mlp, g = d["swin_t"], d["swin_mlp"], d["gemm"]
    floor = "hiermlp's linears alone"
    mlp_ours = "hiermlp (cyclic shift, masked weights)"
    mlp_ref = "reference formulation (pad-shift, grouped Conv1d)"

    def vs(section: dict, key: str, base: str) -> float:
        return section[base]["median_s"] / section[key]["median_s"]

    def lever(section: dict, key: str) -> list[str]:
        return [f"{section[key]['per_s']:.1f}", f"{vs(section, key, 'timm'):.2f}x"] if key in section else ["-", "-"]

    lines = [
        "## Findings (computed from the JSON report)",
        "",
        f"Swin-T at 224 and Swin-MLP-T/C24 at 256, batch {d['batch']}, float32, same weights in every "
        f"implementation (max |logit diff| {sw['max_abs_diff']:.1e} and {mlp['max_abs_diff']:.1e}); "
        f"{sw['runs']} runs, each in a fresh process timing the models round-robin; a ratio is the median of the "
        "runs' own ratios.",
        "",
        f"- Swin-T inference: hiermlp {sw['infer']['hiermlp']['per_s']:.1f} img/s, timm "
        f"{sw['infer']['timm']['per_s']:.1f}: {median_ratio(sw['run_ratios']['infer'])}",
        f"- Swin-T training step: hiermlp {sw['train']['hiermlp']['per_s']:.1f} img/s, timm "
        f"{sw['train']['timm']['per_s']:.1f}: {median_ratio(sw['run_ratios']['train'])}",
        f"- Swin-T batch-1 latency: hiermlp {sw['latency']['hiermlp']['median_s'] * 1e3:.1f} ms, timm "
        f"{sw['latency']['timm']['median_s'] * 1e3:.1f} ms: {median_ratio(sw['run_ratios']['latency'])}",
        f"- Swin-MLP-T/C24 inference: hiermlp {mlp['infer'][mlp_ours]['per_s']:.1f} img/s, the reference "
        f"formulation {mlp['infer'][mlp_ref]['per_s']:.1f}: {median_ratio(mlp['run_ratios']['infer'])}",
    ]
    if floor in sw["infer"]:
        share = [sw[m][floor]["median_s"] / sw[m]["hiermlp"]["median_s"] for m in ("infer", "train")]
        lines.append(
            f"- the GEMM floor: the model's linear layers alone (every call, same shapes and weights, on the kernels "
            f"timm uses too) take {100 * share[0]:.0f}% of hiermlp's inference time and {100 * share[1]:.0f}% of its "
            f"training step; were everything else free, hiermlp would run {vs(sw['infer'], floor, 'timm'):.2f}x and "
            f"{vs(sw['train'], floor, 'timm'):.2f}x timm"
            + (f", and Swin-MLP {vs(mlp['infer'], floor, mlp_ref):.2f}x its reference" if floor in mlp["infer"] else "")
        )
    lines.append(
        f"- GEMM rate: float32 `torch.matmul` (2048³) {g['gemm_gflops']:.0f} GFLOP/s"
        + (f", oneDNN's inner product {g['onednn_gflops']:.0f}" if g.get("onednn_gflops") else "")
        + f"; Swin-T inference runs at {g['swin_t_gflops']:.0f} GFLOP/s effective, {100 * g['fraction']:.0f}% of "
        + (
            f"the machine's best measured GEMM rate ({g['best_gflops']:.0f} GFLOP/s)"
            if "best_gflops" in g
            else "the `torch.matmul` rate"
        )
    )
    if "bf16" in d:
        b = d["bf16"]
        ratios = b.get("run_ratios", {}).get("infer")
        r = median_ratio(ratios) if ratios else f"{vs(b['infer'], 'hiermlp bf16', 'timm bf16'):.2f}x (one run)"
        lines.append(
            f"- bf16 autocast ({'native' if b['native'] else 'emulated'} here), Swin-T inference: hiermlp "
            f"{b['infer']['hiermlp bf16']['per_s']:.1f} img/s, timm {b['infer']['timm bf16']['per_s']:.1f}: {r}"
        )
    if "compiled" in d:
        c = d["compiled"]
        again = c["recompile_s"]
        again = ", ".join(f"{v:.0f} s" for v in again.values()) if isinstance(again, dict) else f"{again:.0f} s"
        lines.append(
            f"- torch.compile: hiermlp {vs(c['infer'], 'hiermlp compiled', 'timm compiled'):.2f}x compiled timm; "
            f"first compile {c['compile_s']:.0f} s, recompiles at new sizes {again} (perf.md names the sizes)"
        )
    env = d["env"]
    default = (
        f"the float32 GEMM path by default in this run: {env['gemm']} ({env['gemm_choice']})"
        if "gemm" in env
        else f"oneDNN linears {onoff(env.get('onednn_linears', False))} by default in this run"
    )
    lines += [
        "",
        f"## One lever at a time (Swin-T, img/s and speed relative to timm; {default})",
        "",
        *table(
            ["variant", "inference img/s", "vs timm", "training img/s", "vs timm"],
            [[k, *lever(sw["infer"], k), *lever(sw["train"], k)] for k in {**sw["infer"], **sw["train"]}],
        ),
        "",
        "## Swin-MLP-T/C24, inference",
        "",
        *table(
            ["implementation", "img/s", "vs the reference formulation"],
            [[k, f"{v['per_s']:.1f}", f"{vs(mlp['infer'], k, mlp_ref):.2f}x"] for k, v in mlp["infer"].items()],
        ),
    ]
    if "before" in d:
        b = d["before"]
        lines += [
            "",
            f"## Before and after: `{b['commit']}` against the measured checkout, interleaved",
            "",
            *table(
                ["measure", "before", "after", "after / before (hiermlp itself)"],
                [
                    [
                        label,
                        median_ratio(b[sec]["run_ratios"][m]),
                        median_ratio(d[sec]["run_ratios"][m]),
                        median_ratio(b[sec]["change_ratios"][m]),
                    ]
                    for label, sec, m in (
                        ("Swin-T inference vs timm", "swin_t", "infer"),
                        ("Swin-T training step vs timm", "swin_t", "train"),
                        ("Swin-T batch-1 latency vs timm", "swin_t", "latency"),
                        ("Swin-MLP vs its reference formulation", "swin_mlp", "infer"),
                    )
                ],
                "llll",
            ),
        ]
    lines += [
        "",
        "## How to read it",
        "",
        "- Every section runs in a fresh process: the allocator state one section leaves (after a training run, "
        "say) changes the next one's timings. Within a run the models are timed round-robin, so a ratio compares "
        "implementations under the same conditions; between runs on a shared machine a ratio moves, which the "
        "per-run ratios show.",
        LEVER_NOTE_NEW if "gemm" in d["env"] else LEVER_NOTE_OLD,
    ]
    return lines


MEASURES = {"infer": "inference", "train": "training step"}


def perf_gpu_body(name: str, d: dict) -> list[str]:
    sw, mlp, g = d["swin_t"], d["swin_mlp"], d["gemm"]
    mlp_ours = "hiermlp (cyclic shift, masked weights)"
    mlp_ref = "reference formulation (pad-shift, grouped Conv1d)"

    def vs(section: dict, key: str, base: str) -> float:
        return section[base]["median_s"] / section[key]["median_s"]

    batches = [b for b in sw if b != "latency"]
    lines = [
        "## Findings (computed from the JSON report)",
        "",
        f"- correctness on the card: {len(d['checks']['rows'])} checks, "
        + ("all pass" if d["checks"]["ok"] else "**some fail**")
        + " (float32 logits and gradients against timm, fast against straightforward paths; table in the full "
        "report)",
    ]
    for b in batches:
        for m, what in (("infer", "inference"), ("train", "training step")):
            s = sw[b][m]
            lines.append(
                f"- Swin-T {what}, batch {b}: hiermlp {s['hiermlp']['per_s']:,.0f} img/s, timm "
                f"{s['timm']['per_s']:,.0f}: **{vs(s, 'hiermlp', 'timm'):.2f}x**"
            )
    lat = sw["latency"]
    lines.append(
        f"- Swin-T batch-1 latency: hiermlp {lat['hiermlp']['median_s'] * 1e3:.1f} ms, timm "
        f"{lat['timm']['median_s'] * 1e3:.1f} ms: **{vs(lat, 'hiermlp', 'timm'):.2f}x**"
    )
    for b in [b for b in mlp if b != "max_abs_diff"]:
        s = mlp[b]["infer"]
        lines.append(
            f"- Swin-MLP-T/C24 inference, batch {b}: hiermlp {s[mlp_ours]['per_s']:,.0f} img/s, the reference "
            f"formulation {s[mlp_ref]['per_s']:,.0f}: **{vs(s, mlp_ours, mlp_ref):.2f}x**"
        )
    if "compiled" in d:
        c = d["compiled"]["infer"]
        lines.append(
            f"- compiled (`torch.compile`, batch {d['compiled']['batch']}): hiermlp "
            f"{c['hiermlp compiled']['per_s']:,.0f} img/s, timm {c['timm compiled']['per_s']:,.0f}: "
            f"**{vs(c, 'hiermlp compiled', 'timm compiled'):.2f}x**"
        )
    mem = d["memory"]
    lines += [
        f"- peak memory of a training step above weights and optimizer state (batch {d['memory_batch']}): hiermlp "
        f"{mem['hiermlp']['train_step_mb']:,.0f} MiB, timm {mem['timm']['train_step_mb']:,.0f} MiB",
        f"- kernels launched per forward (batch {d['kernels_batch']}): hiermlp "
        f"{d['kernels']['hiermlp infer']['kernels']}, timm {d['kernels']['timm infer']['kernels']}",
        f"- Swin-T inference reaches {100 * g['fraction']:.0f}% of the card's bf16 `torch.matmul` rate "
        f"({g['bf16_tflops']:.0f} TFLOP/s on {g['n']}³)",
        "",
        "## One lever at a time (Swin-T, speed relative to timm)",
        "",
        *table(
            ["batch", "measure", "variant", "img/s", "vs timm"],
            [
                [b, MEASURES[m], k, f"{s[k]['per_s']:,.0f}", f"{vs(s, k, 'timm'):.2f}x"]
                for b in batches
                for m, s in sw[b].items()
                for k in s
                if k != "timm"
            ],
            "rllrr",
        ),
    ]
    if d.get("notes"):
        lines += ["", "## Notes recorded with the measurement", "", *(f"- {n}" for n in d["notes"])]
    lines += [
        "",
        "## How to read it",
        "",
        "- bf16 autocast, same weights in both implementations; each measure times the models round-robin in one "
        "process. At small batches the card waits on the CPU that launches its kernels, so those ratios move with "
        "the host; the largest batch is the GPU-bound figure.",
    ]
    return lines


def literature_body(name: str, d: dict) -> list[str]:
    fams = d["families"]
    lines = [
        "## Findings (computed from the JSON report)",
        "",
        f"float32, batch {d['batch']}, 224x224, inference; hiermlp and the official formulation of each family "
        f"(same random weights and BatchNorm statistics, logits checked first) timed round-robin in one process, "
        f"{d['repeats']} samples each. The run took {minutes(d['wall_s'])}.",
        "",
    ]
    lines += [
        f"- {family} (`{r['model']}`): hiermlp {r['hiermlp']['img_per_s']:.2f} img/s, official "
        f"{r['official']['img_per_s']:.2f}: **{r['speedup']:.2f}x** (max |diff| / max |logit| "
        f"{r['max_abs_diff'] / r['max_abs_logit']:.1e})"
        for family, r in fams.items()
    ]
    lines += [
        "",
        "## How to read it",
        "",
        "- The official formulations: CycleMLP's Cycle FC as `torchvision.ops.deform_conv2d` with constant integer "
        "offsets; AS-MLP's axial shift as its pure-PyTorch pad/chunk/roll/crop, NCHW 1x1 convolutions; Wave-MLP and "
        "sMLPNet as their NCHW code (`hiermlp.testing.literature_reference`). hiermlp: channels-last maps, "
        "per-channel-group slice copies for both shifts, linears for the 1x1 convolutions.",
        literature_gemm_note(d.get("env") or d["environment"]),
    ]
    return lines


def literature_gemm_note(env: dict) -> str:
    """How the GEMM path bears on the ratios: with MKL the families' linears run the official code's kernel."""
    if env.get("gemm") == "onednn":
        return (
            "- hiermlp's linears ran on oneDNN, the path this machine's profile chose, the official code's 1x1 "
            "convolutions and linears on PyTorch's default kernels: where the linear layers dominate, the ratio "
            "includes that path's gain. One run on a shared machine cannot separate small differences; the "
            "quartiles are in the full report."
        )
    return (
        "- Where the linear layers dominate (the same products in both), the ratio is near 1, and one run on a "
        "shared machine cannot separate small differences; the quartiles are in the full report."
    )


# the speed-layer levers ndim_cpu times switched off, by their setting
LEVER_NAMES = {"attn_chunk_mib=0": "window-chunked attention", "conv_channels_last=0": "the channels-last decoder"}


def ndim_body(name: str, d: dict) -> list[str]:
    targets = {"video_swin_t": "torchvision's `swin3d_t`", "swin_unetr_base": "MONAI's `SwinUNETR` (feature 48)"}
    lines = [
        "## Findings (computed from the JSON report)",
        "",
        "float32 inference, `torch.inference_mode`, the same weights in both (norm weights drawn around 1); the two "
        "models of a pair (and hiermlp with a lever off, where the report has it) timed round-robin in one process. "
        f"The run took {minutes(d['wall_s'])}.",
        "",
    ]
    for family, r in d["pairs"].items():
        o, h = r["reference"], r["hiermlp"]
        lines.append(
            f"- {family} against {targets.get(family, family)} on {tuple(r['input'])}: hiermlp {h['median_s']:.2f} s "
            f"per forward, the reference {o['median_s']:.2f} s: **{r['speedup']:.2f}x**; peak memory of the first "
            f"forward {o['peak_mb']:.0f} -> {h['peak_mb']:.0f} MiB ({h['peak_mb'] / o['peak_mb'] - 1:+.0%})"
            + (
                f", of a later one {o['later_peak_mb']:.0f} -> {h['later_peak_mb']:.0f} MiB "
                f"({h['later_peak_mb'] / o['later_peak_mb'] - 1:+.0%})"
                if "later_peak_mb" in h
                else ""
            )
            + f"; max |diff| / max |logit| {r['max_rel_diff']:.1e}"
        )
        for lever, u in r.get("levers", {}).items():
            lines.append(
                f"  - without {LEVER_NAMES.get(lever, lever)} (`{lever}`): {u['median_s']:.2f} s "
                f"(the lever pays {u['median_s'] / h['median_s']:.2f}x), peak memory {u['peak_mb']:.0f} MiB first, "
                f"{u['later_peak_mb']:.0f} later"
            )
    lines += [
        "",
        "## How to read it",
        "",
        "- Medians with quartiles per forward are in the full report. Peak memory is the peak-RSS growth of the "
        "first forward in a fresh process per model (which includes what a model builds once and keeps: hiermlp's "
        "cached window masks and folded biases), then of a later forward (the steady state).",
        "- At 96^3 SwinUNETR's first stage (48^3 tokens) is no multiple of the 7^3 window: MONAI lets real tokens "
        "attend to the window padding, hiermlp masks it (docs/ndim.md), so its logit difference there is that "
        "semantic difference; tests/test_swin_unetr.py checks equality where MONAI pads correctly.",
    ]
    return lines


def twod_body(name: str, d: dict) -> list[str]:
    lines = [
        "## Findings (computed from the JSON report)",
        "",
        f"float32 inference at batch {d['batch']}, the same parameters in both trees (drawn once, norms around 1); "
        f"{d['rounds']} rounds, each a fresh process that imports both trees and times the two models round-robin, "
        f"{d['repeats']} forwards each; a ratio is the base's time over the current one's (> 1: now faster), the "
        f"median of the rounds' ratios. The run "
        f"took {minutes(d['wall_s'])}. Base `{d['base'][:10]}`, current `{d['head'][:10]}`.",
        "",
    ]
    for r in d["rows"]:
        rounds = ", ".join(f"{x:.2f}" for x in r["ratios"])
        lines.append(
            f"- `{r['model']}` at {r['img_size']}, `HIERMLP_ACCEL={r['accel']}`: base {r['base_s']:.3f} s, now "
            f"{r['head_s']:.3f} s per forward: **{r['ratio']:.2f}x** (rounds: {rounds}); logits "
            + ("bit-identical in every round" if r["bit_identical"] else "**not** bit-identical")
        )
    lines += [
        "",
        "## How to read it",
        "",
        "- Both trees run with the same speed-layer settings pinned, so the pair differs by the commits' code "
        "alone (the later commits also chose the GEMM path per machine by default, which this pinning leaves out).",
        "- On a shared machine the rounds' spread is the noise; a ratio within it of 1.00 is 'no slower'. Equal "
        "digests: the two commits compute the same bits.",
    ]
    return lines


def cache_rss_body(name: str, d: dict) -> list[str]:
    plain = json.loads((RESULTS / name / "plain" / "rss.json").read_text())
    lines = [
        "## Findings (computed from the JSON reports)",
        "",
        f"Swin-T `features_only`, eval, one image per size, {len(d['rows'])} random sizes; the speed layer "
        f"(`{d['command'].split(' --out')[0]}`) and the plain modules (`plain/`, "
        f"`{plain['command'].split(' --out')[0]}`).",
        "",
    ]
    for r, who in ((d, "with the speed layer"), (plain, "with the plain modules")):
        kept = r["rss_after_malloc_trim_mb"] - r["start_rss_mb"]
        lines.append(
            f"- {who}: RSS grows by {r['growth_mb']:.1f} MB over the sizes; after `malloc_trim(0)` {kept:.1f} MB "
            f"stay; derived tensors held at the end {r['derived_mb']:.1f} MB (bound {r['derived_bound_mb']:.0f} "
            f"MiB); geometry LRU {r['rows'][-1]['masks']} masks, {r['rows'][-1]['indices']} index sets (bound "
            f"{r['geometry_cache_bound']} each)"
        )
    big = d["big_window"]
    lines += [
        f"- `window_size=1000` (stage windows {big['stage_windows']} at the nominal 224), one 32x32 image in its "
        f"own process: +{big['peak_rss_mb'] - big['rss_before_mb']:.1f} MB of peak RSS in the forward: windows "
        "follow the real map",
        "",
        "## How to read it",
        "",
        "- RSS is the process's resident memory after each forward. Memory the allocator keeps after a free "
        "counts too; `malloc_trim(0)` returns it to the OS, so what stays after it is memory still in use.",
        "- The geometry caches (masks, gather indices) are bounded LRUs keyed by size, window, shift, mode and "
        "device; tensors derived from parameters are bounded by bytes across all modules.",
    ]
    return [*lines, "", "The plain modules' run (`plain/rss.json`):", "", *machine(plain["environment"])]


COMPARE_PLOTS = [
    ("claims.png", "the papers' claims: Δ top-1 with its 95% interval, the paper's figure as ×"),
    ("acc_vs_speed.png", "accuracy (mean, 95% CI) against inference throughput (median, IQR)"),
    ("curves.png", "learning curves: mean over seeds, band from the lowest to the highest seed"),
]
DENSE_PLOTS = [
    ("claims.png", "the papers' claims: Δ mIoU with its 95% interval, the paper's figure as ×"),
    ("acc_vs_speed.png", "mIoU (mean, 95% CI) against inference throughput (median, IQR)"),
    ("curves.png", "learning curves: mean over seeds, band from the lowest to the highest seed"),
]
BENCH_PLOT = [("bench.png", "throughput per model (median, IQR whiskers)")]

# every directory under benchmarks/results/ and how its page is rendered (a directory without one is an error)
PAGES: dict[str, Page] = {
    "bench_cpu": Page(
        "Swin-T-sized window mixers and isotropic MLPs, hiermlp next to timm (CPU)",
        "params, GMACs, inference/training throughput, batch-1 latency and peak memory of Swin-T-sized models, "
        "hiermlp next to timm",
        "bench.json",
        "bench.md",
        bench_body,
        BENCH_PLOT,
    ),
    "bench_cpu_swinv2": Page(
        "Swin V2-T, hiermlp next to timm (CPU)",
        "Swin V2-T next to timm's at 256: throughput, latency, memory",
        "bench.json",
        "bench.md",
        bench_body,
        BENCH_PLOT,
    ),
    "bench_gpu": Page(
        "Swin-T, hiermlp next to timm, bf16 autocast (GPU)",
        "Swin-T, hiermlp next to timm, bf16 autocast on one GPU, through `hiermlp bench`",
        "bench.json",
        "bench.md",
        bench_body,
        BENCH_PLOT,
    ),
    "sweep_cpu": Page(
        "Resolution sweep: window mixers against global attention (CPU)",
        "inference time and peak memory against image size for three window mixers and global attention, "
        "with fitted growth exponents",
        "sweep.json",
        "sweep.md",
        sweep_body,
        [("sweep.png", "time and peak memory against pixels, log-log, fitted exponents in the legend")],
    ),
    "compare_default": Page(
        "Window attention and window MLP, their ablations and two baselines (CPU)",
        "`hiermlp compare default`: micro Swin and Swin-MLP with their ablations against a linear and a CNN "
        "baseline, one recipe, several seeds, 95% intervals",
        "compare.json",
        "compare.md",
        compare_body,
        COMPARE_PLOTS,
    ),
    "compare_literature": Page(
        "The hierarchical MLPs of the literature against Swin, Swin V2 and Swin-MLP (CPU)",
        "`hiermlp compare literature`: micro CycleMLP, AS-MLP, Wave-MLP and sMLPNet next to Swin, Swin V2, "
        "Swin-MLP and the two baselines",
        "compare.json",
        "compare.md",
        compare_body,
        COMPARE_PLOTS,
    ),
    "compare_dense": Page(
        "Dense prediction on the embedded scenes: every family with a Semantic-FPN head, and two baselines (CPU)",
        "`hiermlp compare dense`: micro Swin, Swin-MLP (with their shift, position-bias and hierarchy ablations) "
        "and the literature's MLPs as segmentors on 64x64 scenes against a per-pixel linear model and a U-Net, "
        "mIoU with 95% intervals and each claim's detectable difference",
        "compare.json",
        "compare.md",
        compare_body,
        DENSE_PLOTS,
    ),
    "compare_video": Page(
        "Clips where motion matters: window attention and window MLP in 3-D, and two baselines (CPU)",
        "`hiermlp compare video`: micro Video Swin with attention and with Swin-MLP's token map, each with and "
        "without shifted windows, on the embedded 8x32x32 clips against a per-pixel linear model and a 3-D CNN",
        "compare.json",
        "compare.md",
        compare_body,
        COMPARE_PLOTS,
    ),
    "ndim_cpu": Page(
        "3-D models: hiermlp against torchvision's Video Swin and MONAI's SwinUNETR (CPU)",
        "Video Swin-T on a 16-frame 224x224 clip and SwinUNETR on a 96^3 volume, inference time and peak memory "
        "against their reference implementations with the same weights",
        "ndim.json",
        "ndim.md",
        ndim_body,
    ),
    "perf_cpu": Page(
        "hiermlp against timm and the reference formulations (CPU)",
        "Swin-T against timm (inference, training, latency, one lever at a time, the GEMM floor), Swin-MLP "
        "against the reference formulation, GEMM efficiency",
        "perf.json",
        "perf.md",
        perf_cpu_body,
    ),
    "perf_cpu_xeon": Page(
        "hiermlp against timm and the reference formulations (CPU, a second machine: an Intel Xeon with AMX)",
        "the same report on a second kind of machine, where MKL runs its own CPU's code and bf16 GEMMs run on "
        "AMX: what the machine profile chose there and what it paid",
        "perf.json",
        "perf.md",
        perf_cpu_body,
    ),
    "perf_gpu": Page(
        "hiermlp against timm and the reference formulation (GPU, bf16 autocast)",
        "the same on CUDA: correctness checks on the card, Swin-T and Swin-MLP ratios, levers, SDPA kernels, "
        "matmul-rate fraction, memory, kernel counts, compiled against compiled",
        "perf.json",
        "perf.md",
        perf_gpu_body,
    ),
    "literature_cpu": Page(
        "The literature MLPs: hiermlp against the official formulations (CPU)",
        "CycleMLP, AS-MLP, Wave-MLP and sMLPNet inference, hiermlp against each family's official formulation",
        "literature.json",
        "literature.md",
        literature_body,
    ),
    "literature_cpu_xeon": Page(
        "The literature MLPs: hiermlp against the official formulations (CPU, a second machine: an Intel Xeon "
        "with AMX)",
        "the same on a second kind of machine, with the GEMM path its machine profile chose",
        "literature.json",
        "literature.md",
        literature_body,
    ),
    "twod_cpu": Page(
        "The 2-D models before the N-D work and now (CPU)",
        "Swin-T and Swin-MLP-T/C24 inference at the last commit before the N-D geometry and at the current one, "
        "paired fresh processes, the same weights and GEMM path; whether the logits are the same bits",
        "pair.json",
        "pair.md",
        twod_body,
    ),
    "cache_rss": Page(
        "Cache memory over many input sizes (CPU)",
        "resident memory of a Swin-T backbone over many random input sizes, with the speed layer and the plain "
        "modules, and one image through a 1000-pixel window",
        "rss.json",
        "rss.md",
        cache_rss_body,
    ),
}


def render_page(name: str) -> str:
    """README.md of one result directory, from its committed JSON report (and nothing else)."""
    page, out = PAGES[name], RESULTS / name
    d = json.loads((out / page.report).read_text())
    env = d.get("env") or d["environment"]
    rerun = f" (or `python benchmarks/make_results.py {name}`)" if name in RUNS else ""
    lines = [
        f"# {page.title}",
        "",
        "<!-- rendered from the JSON report by benchmarks/make_results.py --pages: edit the script, not this page -->",
        "",
        f"Reproduce from the repository root{rerun}:",
        "",
        "```bash",
        d["command"],
        "```",
        "",
        *machine(env, d.get("run_identity")),
        "",
        *page.body(name, d),
        "",
    ]
    if page.plots:
        lines += ["## Plots", "", *(f"![{desc}]({png})\n" for png, desc in page.plots)]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "README.md")
    lines += [
        f"Full report: [`{page.full}`]({page.full}), as the command wrote it. Files: "
        + ", ".join(f"`{f}`" for f in files)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def render_index() -> str:
    """benchmarks/README.md: every result directory, what it measured, on what, with which command."""
    rows = []
    for name in sorted(n for n in PAGES if (RESULTS / n).is_dir()):  # a page whose result is not committed yet
        page = PAGES[name]
        d = json.loads((RESULTS / name / page.report).read_text())
        env = d.get("env") or d["environment"]
        device = "CPU" if env["device"] == "cpu" else env.get("device_name", env["device"])
        rows.append([f"[`{name}`](results/{name}/)", page.what, f"{device}, {env['dtype']}", f"`{d['command']}`"])
    lines = [
        "# Benchmarks",
        "",
        "<!-- rendered by benchmarks/make_results.py --pages: edit the script, not this page -->",
        "",
        "Committed measurements. Each directory under `results/` holds the report of one command (JSON, with "
        "Markdown, CSV and PNG files beside it) and a README.md rendered from that JSON by "
        "[`make_results.py`](make_results.py) `--pages`, so a page cannot state a number its report lacks "
        "(tests/test_result_pages.py checks the committed pages are what the script renders).",
        "",
        *table(["directory", "what", "measured on", "command"], rows, "llll"),
        "",
        "```bash",
        "python benchmarks/make_results.py --pages           # render every page from the committed JSON",
        "python benchmarks/make_results.py                   # re-measure " + ", ".join(CPU_RUNS),
        "python benchmarks/make_results.py sweep_cpu         # one of them; bench_gpu only when named (CUDA)",
        "python benchmarks/perf_cpu.py --threads 2 --runs 3  # the CPU performance report, sections in fresh processes",
        "python benchmarks/perf_gpu.py                       # the GPU performance report (needs CUDA)",
        "python benchmarks/literature_cpu.py                 # the literature MLPs against their official code",
        "python benchmarks/cache_rss.py --sizes 80           # cache memory over many input sizes",
        "python benchmarks/compile_check.py                  # every zoo model compiles with fullgraph=True",
        "```",
        "",
        "Measurement rules (`hiermlp/bench/`): warm-up before timing; `torch.no_grad` for inference; "
        "`torch.cuda.synchronize` around CUDA timings; torch threads set explicitly; several models timed "
        "round-robin in one process; medians with interquartile ranges; peak memory in a fresh process per model "
        "(CUDA: `max_memory_allocated`; CPU: peak-RSS growth from just before the model is built). Each report "
        "records the machine, the versions and the load average at start and end: CPU numbers taken on a shared "
        "machine are pessimistic and noisy, and the ratios of models timed together are the meaningful part.",
    ]
    return "\n".join(lines) + "\n"


def pages() -> dict[Path, str]:
    """Every rendered page by path: one README.md per result directory, and the index."""
    dirs = sorted(p.name for p in RESULTS.iterdir() if p.is_dir())
    missing = [n for n in dirs if n not in PAGES]
    if missing:
        raise SystemExit(f"results without a page: {missing}; add them to PAGES in benchmarks/make_results.py")
    out = {RESULTS / n / "README.md": render_page(n) for n in dirs}
    out[ROOT / "benchmarks" / "README.md"] = render_index()
    return out


# ---- measuring -----------------------------------------------------------------------------------------------
def run(name: str, threads: int | None) -> None:
    """Run one result's command through hiermlp's CLI in this process; its wall time goes into its JSON."""
    from hiermlp.cli import main

    out = RESULTS / name
    argv = [*RUNS[name], "--out", str(out.relative_to(ROOT)), "--no-progress"]
    if threads is not None:
        argv += ["--threads", str(threads)]
    os.chdir(ROOT)  # the output path, and so the command written into the reports, is repo-relative
    t0 = time.perf_counter()
    rc = main(argv)
    if rc not in (0, 1):
        raise SystemExit(f"{name}: hiermlp {argv[0]} exited with {rc}")
    report = out / PAGES[name].report
    data = json.loads(report.read_text())
    if "wall_s" not in data:  # bench reports do not time themselves; compare reports do
        data["wall_s"] = time.perf_counter() - t0
        report.write_text(json.dumps(data, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(RUNS)} (default: {CPU_RUNS})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--pages", action="store_true", help="only render the pages from the committed JSON")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in RUNS]
    if unknown:
        parser.error(f"unknown result(s) {unknown}; choose from {list(RUNS)}")
    if args.pages and args.names:
        parser.error("--pages renders every page; it takes no names")
    if str(ROOT) not in sys.path:  # run as a script from a source checkout: import this hiermlp
        sys.path.insert(0, str(ROOT))
    if not args.pages:
        for name in args.names or CPU_RUNS:
            run(name, args.threads)
    for path, text in pages().items():
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
