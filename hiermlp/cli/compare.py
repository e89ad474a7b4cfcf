"""``hiermlp compare``: train several models with one recipe and several seeds, and compare them with intervals.

    hiermlp compare [PRESET] [key=value ...] [--out DIR] [--runs-dir DIR] [--threads N] [--jobs N|auto]

``PRESET`` is a name under ``configs/compare/`` or a YAML path (default: ``default``); the preset format and
the overrides are :mod:`hiermlp.study.preset`'s. The report gives, per entry, the mean ± std over seeds and
the 95% Student-t interval of the final and of the best-epoch top-1; for every pair the paired difference
with its interval and a verdict (:mod:`hiermlp.study.stats`); a rank that counts only supported differences;
the claims table; and the throughput of the trained architectures. Rerunning a killed command reuses its
finished runs and resumes the interrupted one (:mod:`hiermlp.study.runner`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from hiermlp.errors import ConfigError, HiermlpError, one_line
from hiermlp.limits import check_threads
from hiermlp.overrides import parse_value
from hiermlp.study.plots import save_plots
from hiermlp.study.preset import load_preset, parse_jobs
from hiermlp.study.runner import is_main, run_comparison

__all__ = ["add_compare_arguments", "run_compare"]


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``hiermlp compare`` options on ``parser``."""
    parser.add_argument(
        "preset",
        nargs="?",
        default="default",
        help="preset name under configs/compare/ or a YAML path (default: default)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="recipe overrides (epochs=1), section keys (bench.batch=32), seeds=5 or only=label1,label2",
    )
    parser.add_argument(
        "--out", default=None, help="write compare.md/.csv/.json and PNG plots here (default: runs/compare/PRESET)"
    )
    parser.add_argument(
        "--runs-dir",
        default=None,
        help="train each (entry, seed) in RUNS_DIR/LABEL/seedK; rerunning the same command reuses finished "
        "runs and resumes an interrupted one (default: OUT/runs)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    parser.add_argument(
        "--jobs",
        default=None,
        help="runs trained at a time, each in a worker process with threads/jobs torch threads; 'auto' = one "
        "per CPU core (default: the preset's jobs, else 1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_compare(args: argparse.Namespace) -> int:
    """Run ``hiermlp compare``; returns the exit status (0 ok, 2 bad input)."""
    overrides = list(args.overrides)
    preset_name = args.preset
    if "=" in preset_name:  # `hiermlp compare epochs=1`: no preset given, the first token is an override
        overrides.insert(0, preset_name)
        preset_name = "default"
    if args.out is None:
        args.out = str(Path("runs") / "compare" / Path(preset_name).stem)
    runs_dir = args.runs_dir or str(Path(args.out) / "runs")
    try:
        if args.threads is not None:
            check_threads(args.threads, "--threads")
        for flag, path in (("--out", args.out), ("--runs-dir", runs_dir)):
            if Path(path).exists() and not Path(path).is_dir():
                raise ConfigError(f"{flag} {path} is a file; {flag} names a directory, e.g. {flag} runs/compare")
        preset = load_preset(preset_name, overrides)
        jobs = None if args.jobs is None else parse_jobs(parse_value(args.jobs, key="--jobs"), "--jobs")
        result = run_comparison(
            preset, progress=not args.no_progress, threads=args.threads, runs_dir=runs_dir, jobs=jobs
        )
    except (FileNotFoundError, HiermlpError) as e:
        print(f"hiermlp compare: error: {one_line(e)}", file=sys.stderr)
        return 2
    command = shlex.join(
        ["hiermlp", "compare", preset_name, *overrides, "--out", args.out]
        + (["--runs-dir", args.runs_dir] if args.runs_dir else [])
        + (["--threads", str(args.threads)] if args.threads else [])
        + (["--jobs", str(args.jobs)] if args.jobs else [])
    )
    if not is_main():  # torchrun: every rank trained, rank 0 reports
        return 0
    print(result.markdown(command))
    paths = result.save(args.out, command=command) + save_plots(result, args.out)
    print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
