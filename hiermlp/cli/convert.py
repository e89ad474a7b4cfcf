"""``hiermlp convert SRC DST --layout L --model NAME [--set key=value ...]``: save a checkpoint in another layout.

The source is read in any layout hiermlp reads (:func:`hiermlp.load_checkpoint`) into the named model, which
is then saved in the asked layout (:func:`hiermlp.save_checkpoint`: hiermlp, timm or the reference code's).
"""

from __future__ import annotations

import argparse

__all__ = ["add_convert_arguments", "run_convert"]


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    from hiermlp.weights.layouts import LAYOUTS

    parser.add_argument("src", help="checkpoint in any layout hiermlp reads (.pth/.safetensors)")
    parser.add_argument("dst", help="file to write (.pth or .safetensors)")
    parser.add_argument("--layout", required=True, choices=LAYOUTS, help="layout to write")
    parser.add_argument("--model", required=True, help="registered model name the checkpoint belongs to")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="model options, e.g. --set num_classes=10"
    )


def run_convert(args: argparse.Namespace) -> int:
    from hiermlp.factory import create_model
    from hiermlp.overrides import parse_overrides
    from hiermlp.weights import load_checkpoint, save_checkpoint

    model = create_model(args.model, **parse_overrides(args.set, what="model option"))
    result = load_checkpoint(model, args.src)
    path = save_checkpoint(model, args.dst, layout=args.layout)
    print(f"{args.src} ({result.layout}) -> {path} ({args.layout} layout)")
    return 0
