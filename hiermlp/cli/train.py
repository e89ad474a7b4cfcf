"""``hiermlp train`` and ``hiermlp eval``.

    hiermlp train [CONFIG] [key=value ...]
    hiermlp eval CHECKPOINT [--data SPEC --data-root DIR ...]
    hiermlp eval MODEL --checkpoint FILE [--data SPEC ...] [--set key=value ...]

``CONFIG`` is a YAML file or a preset name under ``configs/train/``; without it the built-in defaults (a
micro Swin on the embedded Fashion-MNIST subset) are used. Overrides and ``--set`` items follow hiermlp's one
``key=value`` grammar (:mod:`hiermlp.overrides`). ``torchrun --nproc_per_node N -m hiermlp train
...`` runs the same command with DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hiermlp.train import TrainConfig

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
        from hiermlp.errors import ConfigError

        raise ConfigError(f"expected key=value overrides after the preset, got {bad}; write them as key=value")
    return config, items


def run_train(args: argparse.Namespace) -> int:
    import yaml

    from hiermlp.errors import HiermlpError
    from hiermlp.train import config_to_dict, load_config, train

    try:
        config, overrides = _split_items(args.items)
        cfg = load_config(config, overrides)
        if args.print_config:
            print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
            return 0
        result = train(cfg)
        if not cfg.progress and result.out_dir is not None:  # train() printed it when progress is on
            print(result.summary(), flush=True)
    except (HiermlpError, FileNotFoundError, FloatingPointError, ValueError) as e:
        return _fail("train", e)
    return 0


def _fail(command: str, e: BaseException) -> int:
    from hiermlp.errors import one_line

    print(f"hiermlp {command}: error: {one_line(e)}", file=sys.stderr)
    return 2


def _model_options_given(args: argparse.Namespace, trained: object, cfg: object) -> list[str]:
    """The eval options actually given that build another model than the checkpoint's (for its error)."""
    given = []
    for flag, key in (("--img-size", "img_size"), ("--in-chans", "in_chans"), ("--num-classes", "num_classes")):
        value = getattr(args, key)
        if value is not None and (trained is None or getattr(trained, key) != value):
            given.append(f"{flag} {value}")
    for item in args.overrides:
        key = item.partition("=")[0].strip().lstrip("-").replace("-", "_").split(".")[0]
        if key in ("model", "model_kwargs", "img_size", "in_chans", "num_classes", "drop_path_rate") and (
            trained is None or getattr(trained, key, None) != getattr(cfg, key, None)
        ):
            given.append(f"--set {item}")
    return given


def _model_task(name: str) -> str:
    """What a registered model learns (``segment`` for hiermlp's segmentors; timm's models classify)."""
    from hiermlp.factory import resolve_source
    from hiermlp.models.registry import get_entry, split_tag

    source, bare = resolve_source(name)
    return get_entry(split_tag(bare)[0]).task if source == "hiermlp" else "classify"


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


def _as_trained(cfg: TrainConfig, data_config: dict[str, Any]) -> TrainConfig:
    """``cfg`` with the eval transform a checkpoint records (input size, interpolation, crop, mean, std), so
    the weights are scored as their trainer scored them; options given on the command line still win."""
    from dataclasses import replace

    dc = data_config
    changes: dict[str, Any] = {k: dc[k] for k in ("interpolation", "crop_pct", "mean", "std") if dc.get(k)}
    if dc.get("input_size"):
        changes.update(in_chans=int(dc["input_size"][0]), img_size=int(dc["input_size"][-1]))
    return replace(cfg, **changes) if changes else cfg


def run_eval(args: argparse.Namespace) -> int:
    from hiermlp.errors import HiermlpError

    try:
        return _run_eval(args)
    except (HiermlpError, FileNotFoundError, ValueError) as e:
        return _fail("eval", e)


def _run_eval(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader, Subset

    from hiermlp.data import subset_indices
    from hiermlp.errors import CheckpointError, ConfigError
    from hiermlp.train import load_training_checkpoint, model_from_config
    from hiermlp.train.build import build_eval_dataset, input_shape
    from hiermlp.train.config import apply_overrides, config_from_dict
    from hiermlp.train.distributed import _pick_device
    from hiermlp.train.tasks import build_task

    target = Path(args.target)
    state, ckpt, trained = None, None, None
    for name in ("batch_size", "img_size", "in_chans"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {value} is invalid: it must be >= 1")
    if args.num_classes is not None and args.num_classes < 0:
        raise ConfigError(f"--num-classes {args.num_classes} is invalid: it must be >= 0 (0 = the dataset's)")
    if target.suffix in (".pth", ".pt", ".safetensors") or target.is_file():
        if args.checkpoint is not None:
            raise CheckpointError("give either a training checkpoint or MODEL --checkpoint FILE, not both")
        ckpt = load_training_checkpoint(target, purpose="evaluate")
        cfg = trained = _as_trained(config_from_dict(ckpt["config"]), ckpt.get("data_config") or {})
        state = ckpt["model_ema"] if args.ema else ckpt["model"]
        if state is None:
            raise CheckpointError(f"{target} has no EMA weights")
    else:
        if args.checkpoint is None:
            raise CheckpointError(f"{target} is not a file; to evaluate model {target} pass --checkpoint FILE")
        weights = Path(args.checkpoint)  # checked before the model and the data are built
        if not weights.is_file():
            raise CheckpointError(f"--checkpoint {weights} does not exist; give the weights file to evaluate")
        if weights.stat().st_size == 0:
            raise CheckpointError(f"--checkpoint {weights} is empty (0 bytes); give a complete weights file")
        from hiermlp.weights import read_checkpoint

        recorded = read_checkpoint(weights).data_config  # a trainer's (hiermlp's or timm's train.py) eval transform
        # drop path is inactive in evaluation; a model without residual blocks refuses a nonzero rate
        plain = {"model": str(target), "model_kwargs": {}, "task": _model_task(str(target)), "drop_path_rate": 0.0}
        cfg = _as_trained(config_from_dict(plain), recorded)
    updates = {
        "data": args.data,
        "data_root": args.data_root,
        "test_split": args.split,
        "eval_batch_size": args.batch_size,
        "img_size": args.img_size,
        "in_chans": args.in_chans,
        "num_classes": args.num_classes,
        "device": args.device,
        "limit_test": 0,  # the whole split, unless --set limit_test=N (not the limit the run trained with)
    }
    if args.data and args.data != cfg.data and args.data_root is None:
        updates["data_root"] = ""
    cfg = config_from_dict({k: v for k, v in updates.items() if v is not None}, base=cfg)
    cfg = apply_overrides(cfg, args.overrides)
    # a trained checkpoint's class map labels the split (and sizes the head) whatever the split holds
    classes = ckpt.get("classes") if ckpt is not None else None
    test_ds, num_classes = build_eval_dataset(cfg, classes)
    if ckpt is not None and args.num_classes is None and ckpt.get("num_classes"):
        num_classes = int(ckpt["num_classes"])
    try:
        model = model_from_config(cfg, num_classes, weights=target if state is not None else weights, ema=args.ema)
    except CheckpointError as e:
        changed = _model_options_given(args, trained, cfg)
        if not changed:
            raise
        raise CheckpointError(
            f"{e} (the model was built with {', '.join(changed)}; drop them to evaluate the model as trained)"
        ) from e
    from hiermlp.limits import check_bytes

    collate = getattr(test_ds, "collate_fn", None)
    if cfg.limit_test:  # the trainer's subset of the split (--set limit_test=N)
        test_ds = Subset(test_ds, subset_indices(len(test_ds), cfg.limit_test, cfg.seed))
    pixels = 4 * math.prod(input_shape(cfg))
    batch = min(cfg.eval_batch_size, len(test_ds))
    check_bytes(batch * pixels, f"--batch-size {cfg.eval_batch_size} --img-size {cfg.img_size}", "lower them")
    device = _pick_device(cfg.device, 0)
    model.to(device)
    task = build_task(cfg, num_classes)
    task.check_model(model)
    loader = DataLoader(test_ds, batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers, collate_fn=collate)
    with torch.inference_mode():
        m = task.evaluate(model, loader, device, amp=cfg.amp, info=None)
    if args.json:
        print(json.dumps({"model": cfg.model, "data": cfg.data, **m}))
    else:
        print(f"{cfg.model} on {cfg.data} ({m['count']} images): {task.line(m)} loss {m['loss']:.4f}")
    return 0
