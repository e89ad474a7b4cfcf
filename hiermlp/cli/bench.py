"""``hiermlp bench``: params, GMACs, speed and memory of models, or a resolution sweep.

Examples::

    hiermlp bench swin_tiny_patch4_window7_224 timm:swin_tiny_patch4_window7_224 --batch 16
    hiermlp bench swin_mlp_tiny_c24_patch4_window8_256 mixer_b16_224 gmlp_s16_224 --out runs/bench
    hiermlp bench --sweep 64,128,224,384,512 MODEL... --batch 2 --max-point-seconds 60 --out runs/sweep
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hiermlp.errors import ConfigError, HiermlpError, UnknownNameError
from hiermlp.overrides import load_yaml, parse_overrides

if TYPE_CHECKING:
    from hiermlp.bench.speed import BenchEntry

__all__ = ["add_bench_arguments", "bench_entries", "parse_model_arg", "run_bench"]


def parse_model_arg(text: str, common: dict[str, Any] | None = None) -> BenchEntry:
    """``[LABEL=]MODEL[{YAML mapping}]`` -> a bench entry with its own constructor options.

    ``swin_tiny_patch4_window7_224{mixer: global_attention}`` or
    ``global=swin_tiny_patch4_window7_224{mixer: global_attention}``; options given with ``-k`` apply to
    every model and are overridden by a model's own.

    Raises:
        ConfigError: The ``{...}`` part is not a YAML mapping (a ValueError).
    """
    from hiermlp.bench.speed import BenchEntry

    head, brace, rest = text.partition("{")
    label, eq, model = head.partition("=")
    if not eq:
        label, model = "", head
    own: dict[str, Any] = {}
    if brace:
        try:
            own = load_yaml("{" + rest)  # a flow mapping, or a YAML error
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(
                f"{text!r}: options after the model name must be a YAML mapping ({problem}), e.g. MODEL{{mixer: gmlp}}"
            ) from None
    label = label.strip() or (text if brace else model.strip())
    return BenchEntry(model.strip(), label, {**(common or {}), **own})


def bench_entries(args: argparse.Namespace) -> list[BenchEntry]:
    """The models to measure: each ``[LABEL=]MODEL[{options}]`` with the ``-k key=value`` options (the one
    ``key=value`` grammar of :mod:`hiermlp.overrides`; dotted keys set inside mappings) under its own.

    Raises:
        ConfigError: A malformed ``-k`` item or model argument.
    """
    common = parse_overrides(args.model_kwarg or [], what="model option")
    return [parse_model_arg(m, common) for m in args.models]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sweep expects comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError("--sweep needs at least one positive size")
    return sizes


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``hiermlp bench`` options on ``parser``."""
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="hiermlp or timm model names (hiermlp's registry first; prefix timm: to force timm's), each "
        "optionally as LABEL=MODEL{yaml options}, e.g. 'global=swin_tiny_patch4_window7_224{mixer: "
        "global_attention}'. The first model is the reference of the ×1st ratios.",
    )
    parser.add_argument("--img-size", type=int, default=None, help="image side (default: each model's own)")
    parser.add_argument("--batch", type=int, default=None, help="batch size of throughput runs (default 32; sweep: 4)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--compile", action="store_true", help="time the torch.compile'd model")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    parser.add_argument("--repeats", type=int, default=None, help="timed samples (median reported; default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed warm-up calls (default 2)")
    parser.add_argument(
        "--min-sample-seconds",
        type=float,
        default=0.05,
        help="a timed sample repeats fast calls until it lasts this long (default 0.05)",
    )
    parser.add_argument("--in-chans", type=int, default=3)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument(
        "-k",
        "--model-kwarg",
        action="append",
        metavar="KEY=VALUE",
        help="constructor option for every model, e.g. -k mixer=gmlp (repeatable; YAML-typed, a.b=value sets "
        "inside a mapping)",
    )
    from hiermlp.cli.info import add_set_argument

    add_set_argument(parser, dest="model_kwarg")  # -k's spelling in info and export: the same items
    parser.add_argument(
        "--opt",
        default="adamw",
        help="the training step's optimizer, a timm name (default adamw, the Swin recipe's; benchmark.py: sgd)",
    )
    parser.add_argument("--no-train", action="store_true", help="skip training-step throughput")
    parser.add_argument("--no-latency", action="store_true", help="skip batch-1 latency")
    parser.add_argument("--no-memory", action="store_true", help="skip peak memory (subprocess per model)")
    parser.add_argument(
        "--sweep",
        type=_sizes,
        default=None,
        metavar="S1,S2,...",
        help="resolution sweep over these image sides: inference time and memory vs pixels, "
        "with fitted growth exponents and a log-log plot",
    )
    parser.add_argument(
        "--max-point-seconds",
        type=float,
        default=None,
        help="sweep: cap on the timed seconds of one point; slower points and larger sizes are recorded as 'time cap'",
    )
    parser.add_argument("--out", default=None, help="write Markdown, CSV, JSON and PNG reports here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args`` (written into every report)."""
    parts = ["hiermlp", "bench", *args.models]
    defaults = {"warmup": 2, "min_sample_seconds": 0.05, "in_chans": 3, "num_classes": 1000, "opt": "adamw"}
    defaults |= {"device": "cpu", "dtype": "float32"}
    for key, value in vars(args).items():
        if key in ("models", "command", "model_kwarg") or key.startswith("_") or value in (None, False):
            continue
        if defaults.get(key, object()) == value:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif key == "sweep":
            parts += [flag, ",".join(map(str, value))]
        else:
            parts += [flag, str(value)]
    for kv in args.model_kwarg or []:
        parts += ["-k", kv]
    return shlex.join(parts)


# option -> (lowest allowed value, what it means); None values are the defaults and always fine
_LOWEST = {
    "img_size": (1, "an image side in pixels"),
    "batch": (1, "images per call"),
    "threads": (1, "torch intra-op threads"),
    "repeats": (1, "timed samples"),
    "warmup": (0, "untimed calls"),
    "in_chans": (1, "input channels"),
    "num_classes": (0, "classifier outputs (0 = no head)"),
}
_POSITIVE = {"min_sample_seconds": "seconds per timed sample", "max_point_seconds": "seconds per sweep point"}


def check_arguments(args: argparse.Namespace) -> str | None:
    """The one-line complaint about the first unusable option value, or None when all are usable."""
    import math

    from hiermlp.limits import check_bytes, check_threads

    for key, (lowest, meaning) in _LOWEST.items():
        value = getattr(args, key, None)
        if value is not None and value < lowest:
            return f"--{key.replace('_', '-')} {value} is invalid: it must be >= {lowest} ({meaning})"
    for key, meaning in _POSITIVE.items():
        value = getattr(args, key, None)
        if value is not None and not (value > 0 and math.isfinite(value)):
            return f"--{key.replace('_', '-')} {value} is invalid: it must be > 0 ({meaning})"
    side = max(args.sweep) if getattr(args, "sweep", None) else getattr(args, "img_size", None)
    try:
        if getattr(args, "threads", None) is not None:
            check_threads(args.threads, "--threads")
        if side:
            batch = args.batch or (4 if getattr(args, "sweep", None) else 32)
            check_bytes(4 * batch * args.in_chans * side * side, f"--batch {batch} at image side {side}", "lower them")
    except HiermlpError as e:
        return str(e)
    return check_out_dir(getattr(args, "out", None))


def check_out_dir(out: str | None, flag: str = "--out") -> str | None:
    """The one-line complaint about a reports directory that cannot be written, before any work is done."""
    from hiermlp.io import ensure_writable_dir

    if not out:
        return None
    if Path(out).exists() and not Path(out).is_dir():
        return f"{flag} {out} is a file; {flag} names a directory the reports are written into, e.g. {flag} runs/x"
    try:
        ensure_writable_dir(out, what=f"{flag} directory")
    except HiermlpError as e:
        return str(e)
    return None


def run_bench(args: argparse.Namespace) -> int:
    """Run ``hiermlp bench``; returns the exit status (0 ok, 1 some rows failed, 2 bad input)."""
    import torch

    from hiermlp.bench.speed import benchmark_models
    from hiermlp.bench.sweep import run_sweep

    bad = check_arguments(args)
    if bad:
        print(f"hiermlp bench: error: {bad}", file=sys.stderr)
        return 2
    try:
        entries = bench_entries(args)
    except ValueError as e:
        print(f"hiermlp bench: error: {e}", file=sys.stderr)
        return 2
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("hiermlp bench: error: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    command = _command(args)
    common = dict(
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
        threads=args.threads,
        warmup=args.warmup,
        min_sample_s=args.min_sample_seconds,
        in_chans=args.in_chans,
        num_classes=args.num_classes,
        memory=not args.no_memory,
        progress=not args.no_progress,
    )
    try:
        if args.sweep:
            report = run_sweep(
                entries,
                args.sweep,
                batch=args.batch or 4,
                repeats=args.repeats or 5,
                max_point_s=args.max_point_seconds,
                **common,
            )
            failed = False  # OOM / time cap at a point are results, not failures
        else:
            report = benchmark_models(
                entries,
                img_size=args.img_size,
                batch=args.batch or 32,
                repeats=args.repeats or 10,
                train=not args.no_train,
                latency=not args.no_latency,
                opt=args.opt,
                **common,
            )
            failed = any(r.status != "ok" for r in report.rows)
    except UnknownNameError as e:
        print(f"hiermlp bench: error: {e}", file=sys.stderr)
        return 2
    except HiermlpError as e:
        print(f"hiermlp bench: error: {e}", file=sys.stderr)
        return 2
    print(report.markdown(command=command))
    if args.out:
        paths = report.save(args.out, command=command, stem="sweep" if args.sweep else "bench")
        print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 1 if failed else 0
