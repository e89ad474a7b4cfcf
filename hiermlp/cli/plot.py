"""``hiermlp plot RUN [RUN ...] [--out curves.png]``: overlay the learning curves of runs.

A run is a directory that ``hiermlp train`` (metrics.jsonl) or timm's train.py (summary.csv) wrote; see
:func:`hiermlp.train.records.plot_runs`.
"""

from __future__ import annotations

import argparse

__all__ = ["add_plot_arguments", "run_plot"]


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories (hiermlp train or timm train.py)")
    parser.add_argument("--out", default="curves.png", help="the PNG to write (default: curves.png)")
    parser.add_argument("--label", dest="labels", action="append", default=[], help="a run's label, one per run")


def run_plot(args: argparse.Namespace) -> int:
    from hiermlp.train.records import plot_runs

    path = plot_runs(args.runs, args.out, labels=args.labels)
    print(f"wrote {path}")
    return 0
