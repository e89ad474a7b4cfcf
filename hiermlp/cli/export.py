"""``hiermlp export MODEL|CHECKPOINT --format onnx|torch-export --img-size H [W] [--dynamic-size] ...``.

Exports with :func:`hiermlp.export.export_model` and verifies the artifact against eager PyTorch; exit code 0
when every check is within ``--atol``, 1 when one is not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import math
import sys

from hiermlp.cli.info import add_set_argument, model_options
from hiermlp.errors import HiermlpError, one_line
from hiermlp.export import DEFAULT_OPSET, FORMATS, export_model

__all__ = ["add_export_arguments", "run_export"]


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hiermlp export``."""
    parser.add_argument("source", metavar="MODEL|CHECKPOINT", help="a registered model name or a checkpoint file")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="onnx", help="onnx (default) or torch-export")
    parser.add_argument(
        "--img-size",
        nargs="+",
        type=int,
        required=True,
        metavar="H [W]",
        help="traced input size: one for every axis, or one per axis (H W; a 3-D model's T H W)",
    )
    parser.add_argument("--dynamic-batch", action=argparse.BooleanOptionalAction, default=True, help="symbolic batch")
    parser.add_argument("--dynamic-size", action="store_true", help="symbolic spatial sizes (range is printed)")
    parser.add_argument("--out", default=None, help="output file (default: <model>_<H>x<W>.onnx|.pt2)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--model", default=None, help="model name for a checkpoint that is a bare state dict")
    parser.add_argument("--num-classes", type=int, default=None, help="classifier size (default: model/checkpoint)")
    parser.add_argument("--in-chans", type=int, default=None, help="input channels (default: model/checkpoint)")
    add_set_argument(parser)
    parser.add_argument("--atol", type=float, default=1e-4, help="max abs difference allowed (default 1e-4)")
    parser.add_argument("--no-verify", dest="verify", action="store_false", help="skip the verification run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random verification inputs")


def _bad_argument(args: argparse.Namespace) -> str | None:
    """The one-line complaint about an argument value, or None when all are usable."""
    if len(args.img_size) not in (1, 2, 3):
        return f"--img-size takes H, H W or (3-D models) T H W, got {len(args.img_size)} values {args.img_size}"
    if min(args.img_size) < 1:
        return f"--img-size {' '.join(map(str, args.img_size))} is invalid: sizes must be >= 1, e.g. --img-size 224"
    for name in ("num_classes", "in_chans"):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "num_classes" else 1):
            return f"--{name.replace('_', '-')} {value} is invalid: it must be >= {0 if name == 'num_classes' else 1}"
    if args.opset < 7:
        return f"--opset {args.opset} is invalid: ONNX opsets start at 7 (default {DEFAULT_OPSET})"
    if args.fmt == "onnx":
        try:
            import onnx

            newest = onnx.defs.onnx_opset_version()
        except ImportError:
            newest = None
        if newest is not None and args.opset > newest:
            return f"--opset {args.opset} is invalid: the installed onnx knows opsets up to {newest}"
    if not math.isfinite(args.atol):
        return f"--atol {args.atol} is invalid: it must be a finite number, e.g. --atol 1e-4"
    return None


def run_export(args: argparse.Namespace) -> int:
    """``hiermlp export``: 0 when exported and verified, 1 when a check exceeds the tolerance, 2 on errors."""
    bad = _bad_argument(args)
    if bad:
        print(f"hiermlp export: error: {bad}", file=sys.stderr)
        return 2
    size = tuple(args.img_size)
    try:
        result = export_model(
            args.source,
            args.fmt,
            size,
            dynamic_batch=args.dynamic_batch,
            dynamic_size=args.dynamic_size,
            out=args.out,
            opset=args.opset,
            verify=args.verify,
            atol=args.atol,
            in_chans=args.in_chans,
            seed=args.seed,
            model_name=args.model,
            num_classes=args.num_classes,
            model_kwargs=model_options(args.overrides),
            log=print,
        )
    except HiermlpError as e:
        print(f"hiermlp export: error: {one_line(e)}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}")
    if not args.dynamic_size:
        print(
            f"note: static image size {'x'.join(map(str, result.img_size))}; pass --dynamic-size for symbolic "
            "spatial sizes (all hiermlp models support it over a printed range)"
        )
    if not result.checks:
        print("not verified (--no-verify)")
        return 0
    if result.ok:
        print(f"verified: {len(result.checks)} checks, max|diff| = {result.max_abs_diff:.3e} <= atol {args.atol:g}")
        return 0
    bad = [c for c in result.checks if not c.ok]
    kept = "an earlier file there is left as it was" if result.path.exists() else "no file was written"
    print(
        f"VERIFICATION FAILED: {len(bad)} of {len(result.checks)} checks exceed atol {args.atol:g} "
        f"(worst max|diff| = {result.max_abs_diff:.3e}): the export does not match the eager model, so "
        f"{result.path} was not written ({kept}); --no-verify writes it unchecked",
        file=sys.stderr,
    )
    return 1
