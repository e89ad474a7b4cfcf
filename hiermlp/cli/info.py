"""``hiermlp info MODEL`` (params, GMACs, output and stage shapes) and ``hiermlp list`` (models or mixers)."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_info_arguments", "add_list_arguments", "add_set_argument", "model_options", "run_info", "run_list"]


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="registered model name, e.g. swin_tiny_patch4_window7_224")
    p.add_argument("--img-size", type=int, nargs="+", default=None, help="H [W], or T H W, of the probe (default: cfg)")
    p.add_argument("--batch", type=int, default=1, help="batch of the probe input")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--in-chans", type=int, default=None)
    add_set_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_set_argument(p: argparse.ArgumentParser, dest: str = "overrides") -> None:
    """``--set KEY=VALUE ...``: model options in hiermlp's one grammar (info, bench, export)."""
    p.add_argument(
        "--set",
        dest=dest,
        nargs="+",
        action="extend",
        default=None,
        metavar="KEY=VALUE",
        help="model options over the row's, e.g. --set embed_dim=48 'depths=[2, 2]' mixer=gmlp "
        "(YAML-typed; a.b=value sets inside a mapping)",
    )


def model_options(items: list[str] | None) -> dict:
    """``--set`` items -> model options (:func:`hiermlp.overrides.parse_overrides`)."""
    from hiermlp.overrides import parse_overrides

    return parse_overrides(items or [], what="model option")


def run_info(args: argparse.Namespace) -> int:
    from hiermlp.info import model_info
    from hiermlp.models.registry import get_entry

    info = model_info(
        args.model,
        img_size=args.img_size,
        batch=args.batch,
        num_classes=args.num_classes,
        in_chans=args.in_chans,
        model_kwargs=model_options(args.overrides),
    )
    if args.json:
        print(json.dumps({k: v for k, v in info.items() if k != "img_size"}))
        return 0
    size = "x".join(map(str, info["img_size"]))
    print(f"model    {info['model']}  ({get_entry(args.model).notes})")
    print(f"params   {info['params']:,} ({info['params_m']} M)")
    print(f"GMACs    {info['gmacs']} at {size}")
    print(f"input    {tuple(info['input'])} -> output {tuple(info['output'])}")
    for i, shape in enumerate(info["stages"]):
        geometry = (
            "map mixer (whole feature map)"
            if info["windows"][i] is None
            else f"window={tuple(info['windows'][i])} shift={tuple(info['shifts'][i])}"
        )
        print(f"stage {i}  {tuple(shape)}  mixer={info['mixers'][i]} {geometry}")
    return 0


def add_list_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'swin_*'")
    p.add_argument("--mixers", action="store_true", help="list registered mixers instead")


def run_list(args: argparse.Namespace) -> int:
    from hiermlp.mixers import MIXERS
    from hiermlp.models.registry import get_entry, list_models

    if args.mixers:
        for name, cls in sorted(MIXERS.items()):
            doc = (cls.__doc__ or "").strip().splitlines()
            print(f"{name:20s} {doc[0] if doc else ''}")
        return 0
    for name in list_models(args.pattern):
        print(f"{name:45s} {get_entry(name).notes}")
    return 0
