"""The 2-D models at an earlier commit and now: same weights, same GEMM path, paired fresh processes (CPU).

The N-D issue asks the 2-D path to stay bit-identical and no slower than before the N-D work. This script
exports both commits' trees (``git archive``; the working tree's uncommitted edits are not timed) to a temporary
directory and times inference of each model in both, alternating fresh processes in ABBA order (so slow drift of
a shared machine hits both), each building the model with the same state dict (written once by the base tree)
and the same input. Each process reports the median of its forwards and a digest of its logits: equal digests
mean the two commits compute the same bits. A ratio is base time / current time (> 1: the current tree is
faster), the median over rounds of the rounds' own ratios.

The speed-layer settings are pinned through ``HIERMLP_ACCEL`` in both trees (by default each float32 GEMM
path in turn), so the pair differs only by the commits' code:

    python benchmarks/commit_pair.py --base 5571825 --out benchmarks/results/twod_cpu
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the child: runs in a fresh interpreter with one tree first on sys.path
CHILD = r"""
import hashlib, json, sys, time
tree, name, size, batch, repeats, threads, weights = sys.argv[1:8]
sys.path.insert(0, tree)
import torch
torch.set_num_threads(int(threads))
import hiermlp
assert hiermlp.__file__.startswith(tree), (hiermlp.__file__, tree)
model = hiermlp.create_model(name).eval()
try:
    state = torch.load(weights, weights_only=True)
except FileNotFoundError:  # the first process draws the parameters (norm weights around 1) for both trees
    with torch.no_grad():
        state = {k: p.normal_(1.0 if k.endswith("weight") and p.ndim == 1 else 0.0, 0.02)
                 for k, p in model.named_parameters()}
    torch.save(state, weights)
missing, unexpected = model.load_state_dict(state, strict=False)
params = dict(model.named_parameters())
assert not unexpected and not any(k in params for k in missing), (missing, unexpected)
x = torch.randn(int(batch), 3, int(size), int(size), generator=torch.Generator().manual_seed(1))
times = []
with torch.inference_mode():
    y = model(x)
    for _ in range(int(repeats)):
        t = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - t)
times.sort()
print(json.dumps(dict(median_s=times[len(times) // 2], digest=hashlib.sha256(y.numpy().tobytes()).hexdigest())))
"""

MODELS = {"swin_tiny_patch4_window7_224": 224, "swin_mlp_tiny_c24_patch4_window8_256": 256}


def export_tree(rev: str, into: Path) -> str:
    """``git archive`` of ``rev`` unpacked into ``into``; returns the full commit hash."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True)
    archive = subprocess.run(["git", "archive", commit.stdout.strip()], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return commit.stdout.strip()


def run_child(tree: Path, model: str, args: argparse.Namespace, accel: str, weights: Path) -> dict:
    env = dict(os.environ, HIERMLP_ACCEL=accel, PYTHONPATH=str(tree))
    argv = [str(tree), model, str(MODELS[model]), str(args.batch), str(args.repeats), str(args.threads), str(weights)]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], env=env, cwd=tree, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise SystemExit(f"the child at {tree} failed on {model}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(base: Path, head: Path, model: str, accel: str, args: argparse.Namespace, tmp: Path) -> dict:
    weights = tmp / f"{model}.pt"
    run_child(base, model, args, accel, weights)  # writes the shared weights (and warms the file cache)
    rounds = []
    for r in range(args.rounds):
        order = [("base", base), ("head", head)] if r % 2 == 0 else [("head", head), ("base", base)]
        res = {side: run_child(tree, model, args, accel, weights) for side, tree in order}
        rounds.append(res)
        print(f"  {model} {accel} round {r + 1}: base/current {res['base']['median_s'] / res['head']['median_s']:.3f}")
    ratios = [x["base"]["median_s"] / x["head"]["median_s"] for x in rounds]
    return dict(
        model=model,
        img_size=MODELS[model],
        accel=accel,
        base_s=statistics.median(x["base"]["median_s"] for x in rounds),
        head_s=statistics.median(x["head"]["median_s"] for x in rounds),
        ratios=ratios,
        ratio=statistics.median(ratios),
        bit_identical=all(x["base"]["digest"] == x["head"]["digest"] for x in rounds),
    )


def render(report: dict) -> str:
    lines = [
        "# The 2-D models at an earlier commit and now (CPU inference)",
        "",
        f"Command: `{report['command']}`; wall time {report['wall_s'] / 60:.1f} min.",
        "",
        f"Base {report['base']}, current {report['head']}; batch {report['batch']}, {report['rounds']} rounds of "
        f"fresh processes in ABBA order, {report['repeats']} forwards each.",
        "",
        "| model | HIERMLP_ACCEL | base s | current s | base / current (median of rounds) | rounds | same bits |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in report["rows"]:
        rounds = ", ".join(f"{x:.3f}" for x in r["ratios"])
        lines.append(
            f"| {r['model']} | `{r['accel']}` | {r['base_s']:.3f} | {r['head_s']:.3f} | **{r['ratio']:.3f}** | "
            f"{rounds} | {'yes' if r['bit_identical'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from hiermlp.bench.env import environment, finish_environment

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="the earlier commit (e.g. 5571825, the last before the N-D work)")
    p.add_argument("--head", default="HEAD", help="the later commit (default HEAD; uncommitted edits are not timed)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    p.add_argument("--accel", default="onednn=0;onednn=1", help="HIERMLP_ACCEL values to pin, ';'-separated")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/twod_cpu"))
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if set(models) - set(MODELS):
        p.error(f"unknown models {sorted(set(models) - set(MODELS))}; choose from {', '.join(MODELS)}")
    env, t0 = environment("cpu"), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        base = tmp / "base"
        base.mkdir()
        head = tmp / "head"
        head.mkdir()
        base_commit, head_commit = export_tree(args.base, base), export_tree(args.head, head)
        rows = [
            measure(base, head, model, accel, args, tmp)
            for model in models
            for accel in (a.strip() for a in args.accel.split(";") if a.strip())
        ]
    report = dict(
        command="python benchmarks/commit_pair.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        env=finish_environment(dict(env)),
        wall_s=time.perf_counter() - t0,
        base=base_commit,
        head=head_commit,
        batch=args.batch,
        rounds=args.rounds,
        repeats=args.repeats,
        rows=rows,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pair.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "pair.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
