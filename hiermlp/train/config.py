"""The training configuration: one flat dataclass, YAML presets, ``key=value`` overrides.

A run is described by a :class:`TrainConfig`. Its defaults are the demo preset (the micro Swin
``swin_micro_patch2_window4_32`` on the embedded Fashion-MNIST subset), so ``hiermlp train`` with no
arguments trains something useful. A preset (``configs/train/*.yaml``) sets any subset of the fields;
command-line overrides ``key=value`` come last, in hiermlp's one grammar (:mod:`hiermlp.overrides`: YAML-typed
values, dotted keys into dict fields such as ``model_kwargs.embed_dim=48``). Every value, from a file, an
override or Python, is checked against its field's type (:mod:`hiermlp.schema`: ``ema="False"`` is an error,
not a truthy string) and then against the ranges and choices below. An unknown key is an error that names the
closest valid keys.

Batch semantics: ``batch_size`` is the *global* batch of one optimizer step. It is split over the
processes (DDP) and the accumulation steps, so a run gives the same updates whatever the world size or
accumulation, and the learning rates are scaled by ``batch_size / lr_base_batch``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from hiermlp.errors import ConfigError, NotFoundError, suggest
from hiermlp.limits import MAX_THREADS
from hiermlp.overrides import format_value, load_yaml, parse_overrides, unknown_key
from hiermlp.schema import check_fields, field_types

__all__ = [
    "ConfigError",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "find_preset",
    "load_config",
    "save_config",
]


@dataclass(kw_only=True)
class TrainConfig:
    """Everything a training run needs. Each field's comment says what it controls."""

    # --- run ---
    out_dir: str = "runs/train"  # checkpoints, config.yaml, metrics.jsonl, summary.csv, args.yaml, curves.png
    seed: int = 0  # seeds data order, augmentation, init and drop path
    deterministic: bool = True  # ask PyTorch for deterministic kernels (warn-only where none exist)
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1"
    threads: int = 0  # torch CPU threads per process (0 = PyTorch's default; 1 helps on busy machines)
    resume: str = ""  # checkpoint to resume from; "auto" = out_dir/last.pth if it exists
    overwrite: bool = False  # start afresh in an out_dir that holds another run (its outputs are replaced)
    ckpt_every: int = 0  # also write last.pth every N optimizer steps (0 = only at epoch ends)
    progress: bool = True  # rank 0: a tqdm bar on a terminal, else one line per epoch
    tensorboard: bool = True  # TensorBoard events in out_dir/tb (the tensorboard extra; one line when missing)
    log_wandb: bool = False  # log to Weights & Biases (the wandb extra; WANDB_MODE=offline keeps it local)
    wandb_project: str = "hiermlp"  # the W&B project of log_wandb

    # --- model ---
    model: str = "swin_micro_patch2_window4_32"  # hiermlp registry name first, else any timm name
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # options over the row's, e.g. {embed_dim: 48}
    pretrained: bool = False  # load the registry's pretrained weights (needs them cached / reachable)
    num_classes: int = 0  # 0 = take it from the dataset
    in_chans: int = 1  # 1 keeps grayscale data as is; 3 repeats gray channels (or uses RGB data); nothing else
    img_size: int = 32  # images are resized/cropped to img_size x img_size (Fashion-MNIST 28 -> 32)
    drop_path_rate: float = 0.05  # stochastic depth, grows linearly over the blocks
    grad_checkpointing: bool = False  # recompute activations in backward to save memory
    initial_checkpoint: str = ""  # fine-tune: start from these weights (new head / window resized; not resumed)
    channels_last: bool = False  # model and inputs in torch.channels_last memory format
    compile: bool = False  # torch.compile the (DDP-wrapped) model
    compile_backend: str = "inductor"  # torch.compile backend ("inductor"; "eager" only traces)

    # --- data ---
    data: str = "embedded"  # embedded | fashion_mnist | mnist | idx | folder | torchvision:NAME
    data_root: str = ""  # dataset directory ("" = the dataset's default location, if any)
    train_split: str = "train"  # split/sub-folder used for training (folder: also found as "training")
    test_split: str = ""  # split/sub-folder for evaluation ("" = test; folder: validation, found as val/valid/eval too)
    limit_train: int = 0  # use only the first N training samples of a fixed permutation (0 = all)
    limit_test: int = 0  # evaluate on only the first N test samples (0 = all)
    num_workers: int = 0  # DataLoader worker processes per rank (in-memory sets prepared once load in-process)
    corrupt: str = "error"  # ImageFolder files that fail to decode: "error" (naming the file) or "skip"
    # the eval transform: unset values ("", 0, empty) are the model's pretrained cfg's, as timm's train.py resolves
    # them, so the checkpoint (which records the result) is scored the same by hiermlp eval and timm's validate.py
    mean: tuple[float, ...] = ()  # normalization mean (empty = the dataset's own, else the model cfg's)
    std: tuple[float, ...] = ()  # normalization std (empty = as mean)
    interpolation: str = ""  # resize interpolation ("" = the model cfg's, e.g. bicubic for Swin)
    crop_pct: float = 0.0  # eval: resize to img_size / crop_pct, centre-crop (0 = the model cfg's; 1.0 = no crop)
    no_aug: bool = False  # train with the eval transform (no random crop, flip or augmentation)
    scale: tuple[float, float] = (0.35, 1.0)  # RandomResizedCrop area range
    hflip: float = 0.5  # horizontal flip probability
    color_jitter: float = 0.0  # colour jitter strength (0 = off)
    auto_augment: str = ""  # timm auto-augment spec, e.g. "rand-m9-mstd0.5-inc1" ("" = off)
    reprob: float = 0.0  # random erasing probability
    mixup: float = 0.0  # mixup alpha (0 = off)
    cutmix: float = 0.0  # cutmix alpha (0 = off)
    mixup_prob: float = 1.0  # probability of applying mixup or cutmix to a batch
    mixup_switch_prob: float = 0.5  # probability of cutmix instead of mixup when both are on
    label_smoothing: float = 0.1  # label smoothing (also inside mixup targets)

    # --- optimisation ---
    epochs: int = 5  # training epochs
    batch_size: int = 128  # global batch per optimizer step (all ranks, all accumulation steps)
    accum_steps: int = 1  # gradient accumulation micro-steps per optimizer step
    opt: str = "adamw"  # any timm optimizer name (timm.optim.create_optimizer_v2)
    lr: float = 5e-3  # peak learning rate per lr_base_batch images
    lr_base_batch: int = 512  # lr, warmup_lr and min_lr scale by batch_size / lr_base_batch (0 = no)
    warmup_lr: float = 5e-7  # learning rate at step 0 (scaled like lr)
    min_lr: float = 5e-6  # learning rate at the end of the cosine (scaled like lr)
    warmup_epochs: float = 1.0  # linear warmup length, then per-step cosine decay
    weight_decay: float = 0.05  # AdamW decay; never on norms, biases or model.no_weight_decay()
    layer_decay: float = 0.0  # layer-wise lr decay from model.group_matcher(), e.g. 0.9 (0 = off)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    clip_grad: float = 5.0  # max global grad norm (0 = no clipping)
    amp: str = "bf16"  # "bf16" autocast (CPU and GPU), "fp16" autocast with GradScaler, or "none"
    nan_policy: str = "stop"  # a NaN/inf loss or gradient: "stop" the run, or "skip" that optimizer step
    ema: bool = False  # keep an exponential moving average of the weights (timm ModelEmaV3)
    ema_decay: float = 0.9998  # EMA decay per optimizer step
    eval_batch_size: int = 256  # global batch for evaluation

    def __post_init__(self) -> None:
        # type-check (and convert) values given from Python, as presets and overrides are
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in check_fields(TrainConfig, values, what="config key").items():
            setattr(self, key, value)
        _validate(self)


_CHOICES = {
    "in_chans": (1, 3),  # the data pipeline gives PIL "L" or "RGB" images
    "amp": ("bf16", "fp16", "none"),
    "corrupt": ("error", "skip"),
    "nan_policy": ("stop", "skip"),
    "interpolation": ("", "bilinear", "bicubic", "nearest", "box", "hamming", "lanczos"),
}

# key -> (lowest, highest, low end included, high end included); None = unbounded
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "seed": (0, 2**63 - 1, True, True),
    "threads": (0, MAX_THREADS, True, True),
    "ckpt_every": (0, None, True, True),
    "num_classes": (0, None, True, True),
    "in_chans": (1, None, True, True),
    "img_size": (1, None, True, True),
    "drop_path_rate": (0, 1, True, False),
    "limit_train": (0, None, True, True),
    "limit_test": (0, None, True, True),
    "num_workers": (0, MAX_THREADS, True, True),
    "crop_pct": (0, 1, True, True),  # 0 = the model cfg's
    "hflip": (0, 1, True, True),
    "color_jitter": (0, None, True, True),
    "reprob": (0, 1, True, True),
    "mixup": (0, None, True, True),
    "cutmix": (0, None, True, True),
    "mixup_prob": (0, 1, True, True),
    "mixup_switch_prob": (0, 1, True, True),
    "label_smoothing": (0, 1, True, False),
    "epochs": (1, None, True, True),
    "batch_size": (1, None, True, True),
    "accum_steps": (1, None, True, True),
    "lr": (0, None, False, True),
    "lr_base_batch": (0, None, True, True),
    "warmup_lr": (0, None, True, True),
    "min_lr": (0, None, True, True),
    "warmup_epochs": (0, None, True, True),
    "weight_decay": (0, None, True, True),
    "layer_decay": (0, 1, True, True),
    "eps": (0, None, False, True),
    "clip_grad": (0, None, True, True),
    "ema_decay": (0, 1, True, False),
    "eval_batch_size": (1, None, True, True),
}


def _bounds_text(lo: float | None, hi: float | None, lo_in: bool, hi_in: bool) -> str:
    if hi is None:
        return f"{'>=' if lo_in else '>'} {lo:g}"
    return f"in {'[' if lo_in else '('}{lo:g}, {hi:g}{']' if hi_in else ')'}"


def _in_range(v: float, lo: float | None, hi: float | None, lo_in: bool, hi_in: bool) -> bool:
    if not math.isfinite(v):
        return False
    if lo is not None and (v < lo or (v == lo and not lo_in)):
        return False
    return hi is None or v < hi or (v == hi and hi_in)


def _bad(key: str, value: Any, rule: str) -> ConfigError:
    default = getattr(TrainConfig, key, None)  # dataclass fields with a plain default are class attributes
    fix = f"; e.g. {key}={format_value(default)} (the default)" if default is not None else ""
    return ConfigError(f"{key}={value!r} is invalid: {key} must be {rule}{fix}")


def _validate(cfg: TrainConfig) -> None:
    for key, allowed in _CHOICES.items():
        if getattr(cfg, key) not in allowed:
            names = ", ".join("'' (the model's)" if a == "" else str(a) for a in allowed)
            raise _bad(key, getattr(cfg, key), f"one of {names}")
    for key, bounds in _RANGES.items():
        if not _in_range(getattr(cfg, key), *bounds):
            raise _bad(key, getattr(cfg, key), _bounds_text(*bounds))
    lo, hi = cfg.scale
    if not 0 < lo <= hi <= 1:
        raise _bad("scale", list(cfg.scale), "two areas 0 < min <= max <= 1, e.g. [0.08, 1]")
    for i, b in enumerate(cfg.betas):
        if not 0 <= b < 1:
            raise _bad(f"betas[{i}]", b, "in [0, 1)")
    for i, v in enumerate(cfg.std):
        if not (math.isfinite(v) and v > 0):
            raise _bad(f"std[{i}]", v, "> 0")
    for i, v in enumerate(cfg.mean):
        if not math.isfinite(v):
            raise _bad(f"mean[{i}]", v, "a finite number")
    if not _DEVICE.match(cfg.device):
        raise _bad("device", cfg.device, "auto, cpu, cuda, cuda:N or mps")
    if cfg.batch_size % cfg.accum_steps:
        raise ConfigError(
            f"batch_size={cfg.batch_size} is not divisible by accum_steps={cfg.accum_steps}; "
            "choose a batch_size that is a multiple of accum_steps"
        )
    if cfg.resume and cfg.initial_checkpoint:
        raise ConfigError(
            f"resume={cfg.resume!r} and initial_checkpoint={cfg.initial_checkpoint!r} are both set; "
            "resume continues a run, initial_checkpoint starts a new one from weights: keep one"
        )


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


# ---------------------------------------------------------------------------------------------------------
# building configs


def config_from_dict(d: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """Make a config from ``base`` (default: the defaults) updated by a (possibly partial) dict.

    A dict-typed field given in ``d`` replaces the default whole (a preset states its model fully).

    Raises:
        ConfigError: an unknown key (with the closest valid keys) or a value of the wrong type.
    """
    types = field_types(TrainConfig)
    for key in d:
        if key not in types:
            raise unknown_key(key, types, what="config key")
    return dataclasses.replace(base or TrainConfig(), **d)


def apply_overrides(cfg: TrainConfig, overrides: list[str] | tuple[str, ...]) -> TrainConfig:
    """Apply ``key=value`` strings in order (:mod:`hiermlp.overrides`); ``model_kwargs.embed_dim=48`` sets
    inside a dict field, a ``str`` field keeps the text verbatim.

    Raises:
        ConfigError: malformed override, unknown key (with the closest valid keys) or wrong type.
    """
    values = {f.name: getattr(cfg, f.name) for f in fields(TrainConfig)}
    return TrainConfig(**parse_overrides(overrides, field_types(TrainConfig), base=values, what="config key"))


def find_preset(name_or_path: str | Path, kind: str = "train") -> Path:
    """Resolve a preset given as a path or as a name under ``configs/<kind>/`` (with or without .yaml).

    ``configs/`` is looked up in the working directory, then beside the package (an editable install).

    Raises:
        NotFoundError: no such file (a ``FileNotFoundError``); lists the presets that exist and the closest name.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    roots = [Path.cwd() / "configs" / kind, Path(__file__).resolve().parents[2] / "configs" / kind]
    for root in roots:
        for cand in (root / p.name, root / f"{p.name}.yaml"):
            if cand.is_file():
                return cand
    known = sorted({q.stem for r in roots if r.is_dir() for q in r.glob("*.yaml")})
    raise NotFoundError(
        f"{kind} preset not found: {name_or_path} (known: {', '.join(known) or 'none'}).{suggest(p.stem, known)}"
    )


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Load a preset (or the defaults when ``path`` is None), then apply ``key=value`` overrides.

    Args:
        path: YAML file or preset name under ``configs/train/``; None for the built-in defaults.
        overrides: ``key=value`` strings, applied in order.

    Returns:
        The resolved, type-checked config.

    Raises:
        FileNotFoundError: the preset does not exist.
        ConfigError: unknown key (with the closest valid key), wrong type, or invalid value.
    """
    cfg = TrainConfig()
    if path is not None:
        file = find_preset(path)
        data = _read_yaml(file)
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: a config file must be a mapping of keys to values")
        try:
            cfg = config_from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{file}: {e}") from None
    return apply_overrides(cfg, list(overrides))


def _read_yaml(file: Path) -> Any:
    """The parsed YAML of ``file``; a binary, unreadable or malformed file is a one-line ConfigError."""
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{file}: not a text YAML file (byte {e.start} is not UTF-8); give a YAML preset such as "
            "configs/train/fmnist_swin_micro.yaml"
        ) from None
    except OSError as e:
        raise ConfigError(f"{file}: cannot read it ({e.strerror or e}); check the path and its permissions") from None
    if "\x00" in text:
        raise ConfigError(f"{file}: not a text YAML file (it contains NUL bytes); give a YAML preset")
    try:
        return load_yaml(text) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{file}: invalid YAML{where}: {problem}; fix the file") from None


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain-python dict (tuples become lists) safe for YAML and ``torch.load(weights_only=True)``."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_config`), atomically.

    Raises:
        OutputError: the file cannot be written (the message names it and the fix).
    """
    from hiermlp.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False), what="config")
