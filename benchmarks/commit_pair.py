"""The 2-D models at an earlier commit and now: same weights, same GEMM path, round-robin in one process (CPU).

The N-D issue asks the 2-D path to stay bit-identical and no slower than before the N-D work. This script
exports both commits' trees (``git archive``; the working tree's uncommitted edits are not timed) to a temporary
directory. Each round is a fresh process that imports hiermlp from one tree, builds the model, drops those
modules and imports the other tree's (the two models keep their own code), loads the same parameters into both
(drawn once, kept in a file) and times them round-robin on the same input, alternating which goes first, as
every pair in benchmarks/ is timed; rounds alternate which tree is imported first. A ratio is base time /
current time (> 1: the current tree is faster), the median over rounds of the rounds' own ratios. Each round
also compares a digest of the two models' logits: equal digests mean the two commits compute the same bits.

The speed-layer settings are pinned through ``HIERMLP_ACCEL`` (by default each float32 GEMM path in turn), so
the pair differs only by the commits' code:

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

# the child: a fresh interpreter that imports both trees in turn (each import of ``hiermlp`` gets its own module
# objects: the first tree's are dropped from sys.modules before the second's load), builds the model from each
# with the shared parameters, and times the two round-robin, alternating which goes first
CHILD = r"""
import hashlib, json, sys, time, warnings
first, second, name, size, batch, repeats, threads, weights = sys.argv[1:9]
import torch
torch.set_num_threads(int(threads))
warnings.filterwarnings("ignore")  # timm warns when the second tree registers the same model names
models = {}
for tree in (first, second):
    for mod in [m for m in sys.modules if m == "hiermlp" or m.startswith("hiermlp.")]:
        del sys.modules[mod]
    sys.path.insert(0, tree)
    import hiermlp
    assert hiermlp.__file__.startswith(tree), (hiermlp.__file__, tree)
    model = hiermlp.create_model(name).eval()
    sys.path.remove(tree)
    try:
        state = torch.load(weights, weights_only=True)
    except FileNotFoundError:  # the first model drawn draws the parameters (norm weights around 1) for all
        with torch.no_grad():
            state = {k: p.normal_(1.0 if k.endswith("weight") and p.ndim == 1 else 0.0, 0.02)
                     for k, p in model.named_parameters()}
        torch.save(state, weights)
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters())
    assert not unexpected and not any(k in params for k in missing), (missing, unexpected)
    models[tree] = model
x = torch.randn(int(batch), 3, int(size), int(size), generator=torch.Generator().manual_seed(1))
times, digests = {t: [] for t in models}, {}
with torch.inference_mode():
    for tree, model in models.items():
        digests[tree] = hashlib.sha256(model(x).numpy().tobytes()).hexdigest()
    for r in range(int(repeats)):
        for tree in (first, second) if r % 2 == 0 else (second, first):
            t = time.perf_counter()
            models[tree](x)
            times[tree].append(time.perf_counter() - t)
med = {t: sorted(v)[len(v) // 2] for t, v in times.items()}
print(json.dumps({t: dict(median_s=med[t], digest=digests[t]) for t in models}))
"""

MODELS = {"swin_tiny_patch4_window7_224": 224, "swin_mlp_tiny_c24_patch4_window8_256": 256}


def export_tree(rev: str, into: Path) -> str:
    """``git archive`` of ``rev`` unpacked into ``into``; returns the full commit hash."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True)
    archive = subprocess.run(["git", "archive", commit.stdout.strip()], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return commit.stdout.strip()


def run_child(first: Path, second: Path, model: str, args: argparse.Namespace, accel: str, weights: Path) -> dict:
    env = dict(os.environ, HIERMLP_ACCEL=accel)
    env.pop("PYTHONPATH", None)
    argv = [str(first), str(second), model, str(MODELS[model]), str(args.batch), str(args.repeats)]
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *argv, str(args.threads), str(weights)],
        env=env,
        cwd=first.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise SystemExit(f"the child failed on {model}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(base: Path, head: Path, model: str, accel: str, args: argparse.Namespace, tmp: Path) -> dict:
    weights = tmp / f"{model}.pt"
    rounds = []
    for r in range(args.rounds):
        first, second = (base, head) if r % 2 == 0 else (head, base)
        res = run_child(first, second, model, args, accel, weights)
        res = {"base": res[str(base)], "head": res[str(head)]}
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
        f"Base {report['base']}, current {report['head']}; batch {report['batch']}, {report['rounds']} rounds (a fresh "
        f"process each, both models timed round-robin in it), {report['repeats']} forwards per model and round.",
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
