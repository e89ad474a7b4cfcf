"""3-D models in hiermlp vs their references, CPU float32 inference, same weights, paired; peak memory.

Video Swin-T: torchvision's ``swin3d_t`` and hiermlp's ``swin3d_t`` with its weights converted on load, on a
clip ``(B, 3, T, 224, 224)``: the logits are checked first (max |diff| <= 1e-5 of max |logit|). SwinUNETR
(feature 48): MONAI's ``SwinUNETR`` and hiermlp's ``swin_unetr_base`` with MONAI's weights, on a 96^3 volume
(BTCV's crop). At 96^3 the first stage's 48^3 map is no multiple of the 7^3 window: MONAI lets real tokens
attend to the window padding, hiermlp masks it (docs/ndim.md), so the reported difference there is that
semantic difference, not an error (tests/test_swin_unetr.py checks equality where MONAI pads correctly).

Both models of a pair are timed round-robin in one process (``hiermlp.bench.timing``), medians with quartiles;
peak memory is the peak-RSS growth of the first forward in a fresh process per model, then of a later one.
Measure on a quiet machine (the report records the load average at start and end):

    python benchmarks/ndim_cpu.py --threads 2 --out benchmarks/results/ndim_cpu
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hiermlp
from hiermlp.accel.settings import AccelSettings
from hiermlp.bench.env import environment, finish_environment, format_environment, set_threads
from hiermlp.bench.memory import read_status_kb, reset_peak_rss
from hiermlp.bench.timing import Timed, round_robin


def build(family: str, impl: str, seed: int = 0) -> torch.nn.Module:
    """One model of a pair, with the weights both share (random, seeded; norms around 1)."""
    torch.manual_seed(seed)
    if family == "video_swin_t":
        from torchvision.models.video import swin3d_t

        ref = swin3d_t().eval()
        name = "swin3d_t"
    else:
        from monai.networks.nets import SwinUNETR

        ref = SwinUNETR(in_channels=1, out_channels=14, feature_size=48).eval()
        name = "swin_unetr_base"
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if n.endswith("weight") and p.ndim == 1:
                p.normal_(1.0, 0.1)
    if impl == "reference":
        return ref
    model = hiermlp.create_model(name).eval()  # "hiermlp" and UNSPLIT: the same model, run under other settings
    hiermlp.load_checkpoint(model, ref.state_dict())
    return model


def example(family: str, args: argparse.Namespace) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    if family == "video_swin_t":
        return torch.randn(args.batch, 3, args.frames, 224, 224, generator=g)
    return torch.randn(args.batch, 1, args.volume, args.volume, args.volume, generator=g)


def peak_memory(family: str, impl: str, args: argparse.Namespace) -> dict:
    """MiB of peak-RSS growth over the first forward and over a later one (model built in a fresh process):
    ``peak_mb`` and ``later_peak_mb``. The first includes what a model builds once and keeps (hiermlp's cached
    masks and folded biases); a later one is the steady state."""
    spec = json.dumps(dict(family=family, impl=impl, batch=args.batch, frames=args.frames, volume=args.volume))
    out = subprocess.run(
        [sys.executable, __file__, "--child", spec, "--threads", str(args.threads)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


# hiermlp with one speed-layer lever off, timed in the same rounds: what the lever pays. Per family, the levers
# that act on it: window-chunked attention (large 3-D windows) and the channels-last UNETR decoder.
LEVERS = {
    "attn_chunk_mib=0": dict(attn_chunk_mib=0),
    "conv_channels_last=0": dict(conv_channels_last=False),
}
FAMILY_LEVERS = {"video_swin_t": ["attn_chunk_mib=0"], "swin_unetr_base": ["attn_chunk_mib=0", "conv_channels_last=0"]}


def settings_of(impl: str) -> contextlib.AbstractContextManager:
    """The speed-layer settings of ``impl``: ``"hiermlp, <lever>=0"`` turns that lever off."""
    lever = impl.removeprefix("hiermlp, ")
    return hiermlp.accel.override(**LEVERS[lever]) if lever in LEVERS else contextlib.nullcontext()


def child(spec: dict) -> None:
    args = argparse.Namespace(**spec)
    model = build(spec["family"], spec["impl"])
    x = example(spec["family"], args)
    peaks = []
    for _ in range(2):  # the first forward, then a later one
        base = read_status_kb("VmRSS") * 1024
        if not reset_peak_rss():
            raise SystemExit("cannot reset the peak RSS here (needs Linux /proc/self/clear_refs)")
        with torch.inference_mode(), settings_of(spec["impl"]):
            model(x)
        peaks.append((read_status_kb("VmHWM") * 1024 - base) / 2**20)
    print(json.dumps(dict(peak_mb=peaks[0], later_peak_mb=peaks[1])), flush=True)


def measure(family: str, args: argparse.Namespace) -> dict:
    ref, ours = build(family, "reference"), build(family, "hiermlp")
    x = example(family, args)
    with torch.inference_mode():
        want, got = ref(x), ours(x)
    rel = ((got - want).abs().max() / want.abs().max()).item()
    if family == "video_swin_t" and not rel <= 1e-5:
        raise SystemExit(f"{family}: hiermlp's logits differ from torchvision's by {rel:.3g} of the largest")

    def infer(model: torch.nn.Module, impl: str):
        def run() -> torch.Tensor:
            with torch.inference_mode(), settings_of(impl):
                return model(x)

        return run

    impls = [("reference", ref), ("hiermlp", ours)] + [(f"hiermlp, {lever}", ours) for lever in FAMILY_LEVERS[family]]
    tasks = [Timed(key=(k,), fn=infer(m, k), device="cpu", items=args.batch) for k, m in impls]
    round_robin(tasks, repeats=args.repeats, warmup=args.warmup, min_sample_s=0.2)
    rows = {}
    for t in tasks:
        s = t.time_stats()
        rows[t.key[0]] = dict(median_s=s.median, q1_s=s.q1, q3_s=s.q3, samples=len(t.samples))
        rows[t.key[0]].update(peak_memory(family, t.key[0], args))
    return dict(
        input=list(x.shape),
        params=sum(p.numel() for p in ours.parameters()),
        max_rel_diff=rel,
        reference=rows["reference"],
        hiermlp=rows["hiermlp"],
        levers={lever: rows[f"hiermlp, {lever}"] for lever in FAMILY_LEVERS[family]},
        speedup=rows["reference"]["median_s"] / rows["hiermlp"]["median_s"],
    )


def render(report: dict) -> str:
    lines = [
        "# 3-D models: hiermlp vs torchvision's Video Swin and MONAI's SwinUNETR (CPU inference)",
        "",
        f"Command: `{report['command']}`; wall time {report['wall_s'] / 60:.1f} min.",
        "",
        format_environment(report["env"]),
        "",
        "float32, `torch.inference_mode`, same weights; both models of a pair (and hiermlp with the lever below off) "
        "timed round-robin in one process, "
        "medians [quartiles]; peak memory: peak-RSS growth of the first forward in a fresh process, then of a "
        "later one.",
        "",
        "| pair | input | params | reference s | hiermlp s | speedup | peak MiB ref -> hiermlp, first | later "
        "| max rel diff |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(row: dict) -> str:
        return f"{row['median_s']:.2f} [{row['q1_s']:.2f}, {row['q3_s']:.2f}]"

    for family, r in report["pairs"].items():
        o, h = r["reference"], r["hiermlp"]
        lines.append(
            f"| {family} | {tuple(r['input'])} | {r['params']:,} | {cell(o)} | {cell(h)} | **{r['speedup']:.2f}x** | "
            f"{o['peak_mb']:.0f} -> {h['peak_mb']:.0f} | {o['later_peak_mb']:.0f} -> {h['later_peak_mb']:.0f} | "
            f"{r['max_rel_diff']:.1e} |"
        )
    defaults = AccelSettings()
    lines += [
        "",
        f"Speed-layer levers (defaults: `attn_chunk_mib={defaults.attn_chunk_mib}`, "
        f"`conv_channels_last={int(defaults.conv_channels_last)}`): hiermlp with one off, timed in the same rounds.",
        "",
        "| pair | lever off | hiermlp s, lever off | lever's gain | peak MiB lever off, first | later |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for family, r in report["pairs"].items():
        h = r["hiermlp"]
        for lever, u in r["levers"].items():
            lines.append(
                f"| {family} | `{lever}` | {cell(u)} | {u['median_s'] / h['median_s']:.2f}x | {u['peak_mb']:.0f} | "
                f"{u['later_peak_mb']:.0f} |"
            )
    return "\n".join(lines) + "\n"


PAIRS = ("video_swin_t", "swin_unetr_base")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--frames", type=int, default=16, help="clip length for Video Swin (224x224 frames)")
    p.add_argument("--volume", type=int, default=96, help="volume side for SwinUNETR")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated subset of " + ", ".join(PAIRS))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/ndim_cpu"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    set_threads(args.threads)
    if args.child is not None:
        return child(json.loads(args.child))
    chosen = [s.strip() for s in args.pairs.split(",") if s.strip()]
    if set(chosen) - set(PAIRS):
        p.error(f"unknown pairs {sorted(set(chosen) - set(PAIRS))}; choose from {', '.join(PAIRS)}")
    env, t0, pairs = environment("cpu"), time.perf_counter(), {}
    args.out.mkdir(parents=True, exist_ok=True)
    for family in chosen:
        pairs[family] = r = measure(family, args)
        print(
            f"{family}: {r['speedup']:.2f}x, peak {r['reference']['peak_mb']:.0f} -> {r['hiermlp']['peak_mb']:.0f} MiB"
        )
        report = dict(
            command="python benchmarks/ndim_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            env=finish_environment(dict(env)),
            wall_s=time.perf_counter() - t0,
            pairs=pairs,
        )
        (args.out / "ndim.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / "ndim.md").write_text(render(report))
    print(f"wrote {args.out / 'ndim.md'}")


if __name__ == "__main__":
    main()
