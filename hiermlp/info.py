"""``hiermlp info MODEL`` and ``hiermlp list``: what a model is, without training anything."""

from __future__ import annotations

import argparse
import json

import torch

from hiermlp.bench.flops import count_gmacs
from hiermlp.errors import ConfigError
from hiermlp.factory import create_model
from hiermlp.mixers import MIXERS
from hiermlp.models.registry import get_entry, list_models


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registered model name, e.g. swin_tiny_patch4_window7_224")
    p.add_argument("--img-size", type=int, nargs="+", default=None, help="H [W] of the probe input (default: cfg)")
    p.add_argument("--batch", type=int, default=1, help="batch of the probe input")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--in-chans", type=int, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _check(args: argparse.Namespace) -> None:
    """Raises ConfigError (exit 2, one line) for an option value no model can use."""
    if args.batch < 1:
        raise ConfigError(f"--batch {args.batch} is invalid: it must be >= 1")
    if args.img_size is not None and (len(args.img_size) not in (1, 2) or min(args.img_size) < 1):
        raise ConfigError(f"--img-size {' '.join(map(str, args.img_size))} is invalid: give H or H W, each >= 1")
    if args.num_classes is not None and args.num_classes < 0:
        raise ConfigError(f"--num-classes {args.num_classes} is invalid: it must be >= 0 (0 = no head)")
    if args.in_chans is not None and args.in_chans < 1:
        raise ConfigError(f"--in-chans {args.in_chans} is invalid: it must be >= 1")


def run_info(args: argparse.Namespace) -> int:
    _check(args)
    kwargs = {k: v for k, v in (("num_classes", args.num_classes), ("in_chans", args.in_chans)) if v is not None}
    model = create_model(args.model, **kwargs).eval()
    c, h, w = model.pretrained_cfg["input_size"]
    if args.img_size:
        h, w = args.img_size[0], args.img_size[-1]
    x = torch.randn(args.batch, c, h, w)
    with torch.inference_mode():
        logits = model(x)
        feats = model.forward_intermediates(x, intermediates_only=True)
    params = sum(p.numel() for p in model.parameters())
    info = dict(
        model=args.model,
        params=params,
        params_m=round(params / 1e6, 2),
        gmacs=round(count_gmacs(model, (c, h, w)), 3),
        input=list(x.shape),
        output=list(logits.shape),
        stages=[list(f.shape) for f in feats],
        mixers=[s.blocks[0].mixer_name for s in model.stages],
        # map mixers see the whole feature map: a stage of them has no window and no shift
        windows=[None if _is_map(s) else list(s.window_size) for s in model.stages],
        shifts=[None if _is_map(s) else list(s.shift_size) for s in model.stages],
    )
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"model    {info['model']}  ({get_entry(args.model).notes})")
    print(f"params   {params:,} ({info['params_m']} M)")
    print(f"GMACs    {info['gmacs']} at {h}x{w}")
    print(f"input    {tuple(x.shape)} -> output {tuple(logits.shape)}")
    for i, f in enumerate(feats):
        geometry = (
            "map mixer (whole feature map)"
            if info["windows"][i] is None
            else f"window={tuple(info['windows'][i])} shift={tuple(info['shifts'][i])}"
        )
        print(f"stage {i}  {tuple(f.shape)}  mixer={info['mixers'][i]} {geometry}")
    return 0


def _is_map(stage: torch.nn.Module) -> bool:
    return stage.blocks[0].kind == "map"


def add_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'swin_*'")
    p.add_argument("--mixers", action="store_true", help="list registered mixers instead")


def run_list(args: argparse.Namespace) -> int:
    if args.mixers:
        for name, cls in sorted(MIXERS.items()):
            doc = (cls.__doc__ or "").strip().splitlines()
            print(f"{name:20s} {doc[0] if doc else ''}")
        return 0
    for name in list_models(args.pattern):
        print(f"{name:45s} {get_entry(name).notes}")
    return 0
