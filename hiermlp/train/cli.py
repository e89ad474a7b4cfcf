"""``hiermlp train`` and ``hiermlp eval``.

    hiermlp train [CONFIG] [key=value ...]
    hiermlp eval CHECKPOINT [--data SPEC --data-root DIR ...]
    hiermlp eval MODEL --checkpoint FILE [--data SPEC ...] [--set key=value ...]

``CONFIG`` is a YAML file or a preset name under ``configs/train/``; without it the built-in defaults (a
micro Swin on the embedded Fashion-MNIST subset) are used. ``torchrun --nproc_per_node N -m hiermlp train
...`` runs the same command with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_eval_arguments", "add_train_arguments", "run_eval", "run_train"]


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "items",
        nargs="*",
        metavar="[CONFIG] [key=value ...]",
        help="a preset (file or name under configs/train/) followed by key=value overrides, "
        "e.g. 'fmnist_swin_micro epochs=2 lr=1e-3 model_kwargs.embed_dim=48'",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def _split_items(items: list[str]) -> tuple[str | None, list[str]]:
    config = None
    if items and "=" not in items[0]:
        config, items = items[0], items[1:]
    bad = [i for i in items if "=" not in i]
    if bad:
        raise SystemExit(f"hiermlp: error: expected key=value overrides, got {bad}")
    return config, items


def run_train(args: argparse.Namespace) -> int:
    import yaml

    from hiermlp.errors import HiermlpError
    from hiermlp.train import config_to_dict, load_config, train

    config, overrides = _split_items(args.items)
    try:
        cfg = load_config(config, overrides)
        if args.print_config:
            print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
            return 0
        result = train(cfg)
        if not cfg.progress and result.out_dir is not None:  # train() printed it when progress is on
            print(result.summary(), flush=True)
    except (HiermlpError, FileNotFoundError, FloatingPointError, ValueError) as e:
        print(f"hiermlp train: error: {e}", file=sys.stderr)
        return 2
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="a training checkpoint (.pth), or a model name used with --checkpoint")
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. --set in_chans=1 model_kwargs.embed_dim=32",
    )
    parser.add_argument("--checkpoint", help="weights for MODEL (any format hiermlp.load_checkpoint reads)")
    parser.add_argument("--data", help="dataset spec (default: the checkpoint's, else embedded)")
    parser.add_argument("--data-root", help="dataset directory")
    parser.add_argument("--split", help="split to evaluate (default: test, or val for folder)")
    parser.add_argument("--batch-size", type=int, help="evaluation batch size")
    parser.add_argument("--img-size", type=int, help="input size")
    parser.add_argument("--in-chans", type=int, help="input channels (1 for gray, 3 repeats gray)")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: the dataset's)")
    parser.add_argument("--ema", action="store_true", help="evaluate the checkpoint's EMA weights")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda")
    parser.add_argument("--json", action="store_true", help="print the metrics as one JSON line")


def run_eval(args: argparse.Namespace) -> int:
    from hiermlp.errors import HiermlpError

    try:
        return _run_eval(args)
    except (HiermlpError, FileNotFoundError, ValueError) as e:
        print(f"hiermlp eval: error: {e}", file=sys.stderr)
        return 2


def _run_eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from hiermlp.errors import CheckpointError
    from hiermlp.train import build_datasets, build_model, evaluate, load_training_checkpoint
    from hiermlp.train.config import apply_overrides, config_from_dict
    from hiermlp.train.distributed import _pick_device

    target = Path(args.target)
    state = None
    if target.suffix in (".pth", ".pt") or target.is_file():
        ckpt = load_training_checkpoint(target) if args.checkpoint is None else None
        if ckpt is None:
            raise CheckpointError("give either a training checkpoint or MODEL --checkpoint FILE, not both")
        cfg = config_from_dict(ckpt["config"])
        state = ckpt["model_ema"] if args.ema else ckpt["model"]
        if state is None:
            raise CheckpointError(f"{target} has no EMA weights")
    else:
        if args.checkpoint is None:
            raise CheckpointError(f"{target} is not a file; to evaluate model {target} pass --checkpoint FILE")
        cfg = config_from_dict({"model": str(target), "model_kwargs": {}})
    updates = {
        "data": args.data,
        "data_root": args.data_root,
        "test_split": args.split,
        "eval_batch_size": args.batch_size,
        "img_size": args.img_size,
        "in_chans": args.in_chans,
        "num_classes": args.num_classes,
        "device": args.device,
    }
    if args.data and args.data != cfg.data and args.data_root is None:
        updates["data_root"] = ""
    cfg = config_from_dict({k: v for k, v in updates.items() if v is not None}, base=cfg)
    cfg = apply_overrides(cfg, args.overrides)
    _, test_ds, num_classes = build_datasets(cfg)
    model = build_model(cfg, num_classes)
    if state is not None:
        model.load_state_dict(state)
    else:
        import hiermlp

        hiermlp.load_checkpoint(model, args.checkpoint)
    device = _pick_device(cfg.device, 0)
    model.to(device)
    loader = DataLoader(test_ds, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers)
    with torch.inference_mode():
        m = evaluate(model, loader, device, amp=cfg.amp)
    if args.json:
        print(json.dumps({"model": cfg.model, "data": cfg.data, **m}))
    else:
        print(
            f"{cfg.model} on {cfg.data} ({m['count']} images): top-1 {m['top1']:.2f} "
            f"top-5 {m['top5']:.2f} loss {m['loss']:.4f}"
        )
    return 0
