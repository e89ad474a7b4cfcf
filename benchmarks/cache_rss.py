"""Memory held by hiermlp's caches over many input sizes (multi-scale detection), as resident set size.

Runs a Swin-T ``features_only`` backbone (eval, no grad) over random input sizes and records the process RSS
after each forward, plus the size of the geometry LRU. Before the bounded, size-keyed caches of hiermlp.ops /
hiermlp.accel, per-block dict caches grew without bound (about +0.9 GB over 40 sizes for this model, +1.75 GB
over 300 sizes for a small one); now the caches are bounded and RSS settles.

Also, in a fresh process (so its peak is its own), the peak RSS of one 32x32 image through Swin-T built with
``window_size=1000``: a 56x56 window in stage 1 at the nominal 224, which a 32x32 input (8x8 tokens) used to
be padded to (one 3136-token window); the window rule now follows the actual map.

    python benchmarks/cache_rss.py --sizes 40 --out benchmarks/results/cache_rss
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

import hiermlp
from hiermlp.accel import cache as accel_cache
from hiermlp.bench.env import environment, format_environment, set_threads
from hiermlp.bench.memory import read_status_kb, reset_peak_rss
from hiermlp.ops import cached_window_mask


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """VmHWM (peak RSS since the last reset), else the process's lifetime peak."""
    try:
        return read_status_kb("VmHWM") / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def big_window(threads: int) -> dict:
    """Peak RSS of one 32x32 image through Swin-T with ``window_size=1000`` (run in its own process; the peak
    mark is reset after building, so it is the forward's own where the kernel allows)."""
    set_threads(threads)
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", window_size=1000).eval()
    x = torch.randn(1, 3, 32, 32)
    build_peak = peak_rss_mb()
    reset = reset_peak_rss()
    before = rss_mb()
    with torch.no_grad():
        t0 = time.perf_counter()
        model(x)
        seconds = time.perf_counter() - t0
    return dict(
        stage_windows=[list(s.window_size) for s in model.stages],
        build_peak_rss_mb=round(build_peak, 1),
        rss_before_mb=round(before, 1),
        peak_rss_mb=round(peak_rss_mb(), 1),
        peak_is_the_forwards=reset,
        forward_s=round(seconds, 3),
    )


def run(n_sizes: int, low: int, high: int, seed: int) -> dict:
    torch.manual_seed(seed)
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", features_only=True).eval()
    if os.environ.get("HIERMLP_ACCEL") == "0":
        assert not hiermlp.accel.is_accelerated(model)
    g = torch.Generator().manual_seed(seed)
    rows = []
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 224))
        start = rss_mb()
        for i in range(n_sizes):
            h, w = (int(v) for v in torch.randint(low, high + 1, (2,), generator=g))
            model(torch.randn(1, 3, h, w))
            rows.append(
                dict(
                    i=i,
                    size=[h, w],
                    rss_mb=round(rss_mb(), 1),
                    masks=cached_window_mask.cache_info().currsize,
                )
            )
    # what the allocator keeps of freed memory (not held by any cache) goes back to the OS here
    trimmed = ctypes.CDLL("libc.so.6").malloc_trim(0) if sys.platform.startswith("linux") else None
    return dict(
        start_rss_mb=round(start, 1),
        rss_after_malloc_trim_mb=round(rss_mb(), 1) if trimmed is not None else None,
        end_rss_mb=rows[-1]["rss_mb"],
        max_rss_mb=max(r["rss_mb"] for r in rows),
        growth_mb=round(rows[-1]["rss_mb"] - start, 1),
        geometry_cache_bound=cached_window_mask.cache_info().maxsize,
        derived_mb=round(accel_cache.cached_bytes() / 2**20, 1),
        derived_bound_mb=round(accel_cache.CACHE_BYTES / 2**20, 1),
        rows=rows,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, default=40)
    p.add_argument("--low", type=int, default=160)
    p.add_argument("--high", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/cache_rss"))
    p.add_argument("--big-window-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    a = p.parse_args()
    if a.big_window_only:
        print(json.dumps(big_window(a.threads)))
        return
    child = subprocess.run(
        [sys.executable, __file__, "--big-window-only", "--threads", str(a.threads)],
        check=True,
        capture_output=True,
        text=True,
    )
    set_threads(a.threads)
    res = run(a.sizes, a.low, a.high, a.seed)
    res["big_window"] = big = json.loads(child.stdout.strip().splitlines()[-1])
    res["environment"] = environment()
    env = f"HIERMLP_ACCEL={os.environ['HIERMLP_ACCEL']} " if "HIERMLP_ACCEL" in os.environ else ""
    res["command"] = (
        f"{env}python benchmarks/cache_rss.py --sizes {a.sizes} --low {a.low} --high {a.high} --out {a.out}"
    )
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "rss.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [
        "# Cache memory over many input sizes",
        "",
        f"`{res['command']}`: Swin-T `features_only`, eval, one image per size, sizes uniform in "
        f"[{a.low}, {a.high}] px.",
        "",
        f"RSS after the first 224x224 forward: {res['start_rss_mb']} MB; after {a.sizes} sizes: "
        f"{res['end_rss_mb']} MB (growth {res['growth_mb']} MB, peak {res['max_rss_mb']} MB). "
        f"Geometry LRU entries at the end: {res['rows'][-1]['masks']} masks "
        f"(bound {res['geometry_cache_bound']}). Derived tensors held by the speed layer at the end: "
        f"{res['derived_mb']} MB (bound {res['derived_bound_mb']} MB). RSS after `malloc_trim(0)` (freed memory "
        f"the allocator kept goes back to the OS): {res['rss_after_malloc_trim_mb']} MB.",
        "",
        f"`window_size=1000` (stage windows {big['stage_windows']} at the nominal 224), one 32x32 image, own "
        f"process: RSS {big['rss_before_mb']} MB before the forward, peak {big['peak_rss_mb']} MB during it "
        f"(+{round(big['peak_rss_mb'] - big['rss_before_mb'], 1)} MB; building peaked at "
        f"{big['build_peak_rss_mb']} MB), forward {big['forward_s']} s (timings noisy on a shared machine).",
        "",
        "| forward | size | RSS MB | masks cached |",
        "|---|---|---|---|",
        *(f"| {r['i'] + 1} | {r['size'][0]}x{r['size'][1]} | {r['rss_mb']} | {r['masks']} |" for r in res["rows"]),
        "",
        format_environment(res["environment"]),
        "",
    ]
    (a.out / "rss.md").write_text("\n".join(lines))
    print("\n".join(lines[:8]))


if __name__ == "__main__":
    main()
