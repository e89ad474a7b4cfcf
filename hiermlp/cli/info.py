"""``hiermlp info MODEL`` (params, GMACs, output and stage shapes), ``hiermlp info --machine`` (this machine's
GEMM paths, the one chosen and why) and ``hiermlp list`` (models or mixers)."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_info_arguments", "add_list_arguments", "add_set_argument", "model_options", "run_info", "run_list"]


def add_info_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="registered model name, e.g. swin_tiny_patch4_window7_224")
    p.add_argument(
        "--machine",
        action="store_true",
        help="print this machine's profile instead: the measured GEMM rates, its peak, the float32 GEMM path "
        "chosen and why, and what amp=auto means here",
    )
    p.add_argument("--remeasure", action="store_true", help="with --machine: measure again and replace the cache")
    p.add_argument("--img-size", type=int, nargs="+", default=None, help="H [W], or T H W, of the probe (default: cfg)")
    p.add_argument("--batch", type=int, default=1, help="batch of the probe input")
    p.add_argument("--num-classes", type=int, default=None)
    p.add_argument("--in-chans", type=int, default=None)
    add_set_argument(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


GEMM_NAMES = {"onednn": "oneDNN", "mkl": "MKL (F.linear)"}


def run_machine(args: argparse.Namespace) -> int:
    from hiermlp.accel.machine import ATTENTION_DTYPES
    from hiermlp.info import machine_info

    m = machine_info(remeasure=args.remeasure)
    if args.json:
        print(json.dumps(m))
        return 0
    k, r = m["machine"], m["rates_gflops"]
    print(
        f"machine   {k['cpu']}, {k['cores']} cores, {k['threads']} torch threads, CPU capability {k['capability']}; "
        f"torch {k['torch']}, MKL {k['mkl']}, oneDNN {k['onednn']}"
    )
    shapes = f"MKL (F.linear) {r['mkl']}" + (f", oneDNN {r['onednn']}" if "onednn" in r else " (no oneDNN kernel)")
    print(f"float32   GFLOP/s on Swin-T's channel-MLP linears: {shapes}")
    peaks = ", ".join(f"{GEMM_NAMES[n[5:]]} {v}" for n, v in r.items() if n.startswith("peak_"))
    print(f"peak      {m['peak_gflops']} GFLOP/s float32 (1024^3 GEMM: {peaks})")
    profile = GEMM_NAMES["onednn" if m["profile_onednn"] else "mkl"]
    print(f"profile   {profile} (oneDNN is chosen where it is {m['margin']:.2f}x MKL's rate or more)")
    print(f"in force  {GEMM_NAMES[m['gemm']]}: {m['gemm_choice']}")
    kernels = {t: "explicit" if e else "SDPA" for t, e in m["profile_attention"].items()}
    att = {
        t: f"explicit {r[f'attn_explicit{x}']}, SDPA {r[f'attn_sdpa{x}']}" if f"attn_sdpa{x}" in r else "not timed"
        for t, x in ATTENTION_DTYPES.items()
    }
    print(
        f"attention CPU inference, GFLOP/s on Swin-T's stage-1 windows: float32 {att['float32']} -> "
        f"{kernels['float32']}; bfloat16 {att['bfloat16']} -> {kernels['bfloat16']}"
        + ("" if m["cpu_attention_explicit"] is not None else " (not in force: attention pinned or speed layer off)")
    )
    bf16 = (
        f"native ({', '.join(m['bf16_flags'])})" if m["native_bf16"] else "emulated (no avx512_bf16 or amx_bf16 flag)"
    )
    slow = f"; bf16 autocast GEMMs ran {m['bf16_slowdown']}x the float32 time" if m["bf16_slowdown"] else ""
    print(f"bf16      {bf16}{slow}; amp=auto trains in {'bf16' if m['amp_auto'] == 'bf16' else 'float32'}")
    where = f"cached in {m['cache']}" if m["cache"] else "kept in this process only (the cache is not writable)"
    load = f" at load {m['measured_load'][0]}" if m["measured_load"] else ""
    print(f"measured  {m['measured']}{load} ({'now' if m['source'] == 'measured' else 'earlier'}; {where})")
    print(
        "pin it    HIERMLP_ACCEL=onednn=1 (oneDNN) or onednn=0 (MKL), attention=sdpa or explicit; "
        "measure again: --machine --remeasure"
    )
    return 0


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
    from hiermlp.errors import ConfigError
    from hiermlp.info import model_info

    if args.machine:
        return run_machine(args)
    if args.remeasure:
        raise ConfigError("--remeasure goes with --machine: hiermlp info --machine --remeasure")
    if args.model is None:
        raise ConfigError("hiermlp info needs a model name (hiermlp info swin_tiny_patch4_window7_224) or --machine")
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
    p.add_argument(
        "--task", choices=("classify", "segment"), default=None, help="only classifiers or segmentation models"
    )


def run_list(args: argparse.Namespace) -> int:
    from hiermlp.mixers import MIXERS
    from hiermlp.models.registry import get_entry, list_models

    if args.mixers:
        for name, cls in sorted(MIXERS.items()):
            doc = (cls.__doc__ or "").strip().splitlines()
            print(f"{name:20s} {doc[0] if doc else ''}")
        return 0
    for name in list_models(args.pattern, task=args.task):
        entry = get_entry(name)
        print(f"{name:45s} {'[segment] ' if entry.task == 'segment' else ''}{entry.notes}")
    return 0
