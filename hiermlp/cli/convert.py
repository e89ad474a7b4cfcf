"""``hiermlp convert SRC DST --layout L --model NAME [--set key=value ...]``: save a checkpoint in another layout.

The source is read in any layout hiermlp reads (:func:`hiermlp.load_checkpoint`) into the named model, which
is then saved in the asked layout (:func:`hiermlp.save_checkpoint`: hiermlp, timm or the reference code's).
"""

from __future__ import annotations

import argparse
import ast
from typing import Any

from hiermlp.errors import ConfigError

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


def parse_model_options(items: list[str]) -> dict[str, Any]:
    """``["num_classes=10", "depths=(2, 2)"]`` -> ``{"num_classes": 10, "depths": (2, 2)}`` (Python literals;
    anything else is a string)."""
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def run_convert(args: argparse.Namespace) -> int:
    from hiermlp.factory import create_model
    from hiermlp.weights import load_checkpoint, save_checkpoint

    model = create_model(args.model, **parse_model_options(args.set))
    result = load_checkpoint(model, args.src)
    path = save_checkpoint(model, args.dst, layout=args.layout)
    print(f"{args.src} ({result.layout}) -> {path} ({args.layout} layout)")
    return 0
