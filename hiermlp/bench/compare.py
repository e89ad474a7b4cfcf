"""``hiermlp compare``: train several models with one recipe on one dataset and compare them.

A preset (``configs/compare/NAME.yaml``) lists the entries and the shared recipe::

    title: what is compared
    recipe:            # TrainConfig keys shared by every entry (see hiermlp.train.TrainConfig)
      epochs: 4
      img_size: 32
    defaults:          # model and model_kwargs every entry starts from
      model: swin_tiny_patch4_window7_224
      model_kwargs: {patch_size: 2, embed_dim: 32, depths: [2, 2, 2], num_heads: [2, 4, 8], window_size: 4}
    bench:             # throughput of the trained models (hiermlp.bench.benchmark_models options)
      batch: 64
      repeats: 5
    entries:
      - label: swin
        model_kwargs: {mixer: attention}     # merged over defaults.model_kwargs
      - label: my-mixer
        model: my_registered_model           # any hiermlp or timm name
        model_kwargs: {mixer: my_mixer}

Command-line ``key=value`` overrides go to the recipe (``epochs=1``), to a section with a dotted key
(``bench.batch=32``, ``defaults.model_kwargs.window_size=8``), or select entries (``only=swin,pool``).

Every entry is trained by :func:`hiermlp.train.train` from the same seed; afterwards the trained models'
inference and training throughput are measured together, round-robin, by
:func:`hiermlp.bench.benchmark_models`, so speed is compared under the same conditions (the trainer's own
img/s is reported too, but it includes data loading and ran at a different time).
"""

from __future__ import annotations

import argparse
import copy
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from hiermlp.bench.env import environment, finish_environment, set_threads
from hiermlp.bench.report import (
    environment_header,
    fmt_num,
    fmt_stats,
    markdown_table,
    new_figure,
    save_figure,
    write_csv,
    write_json,
    write_text,
)
from hiermlp.bench.timing import Stats
from hiermlp.errors import ConfigError, HiermlpError, suggest

__all__ = [
    "ComparePreset",
    "CompareResult",
    "add_compare_arguments",
    "find_compare_preset",
    "load_preset",
    "run_compare",
    "run_comparison",
]

_SECTIONS = ("title", "recipe", "defaults", "bench", "entries")
_BENCH_KEYS = ("batch", "repeats", "warmup", "min_sample_s", "threads", "memory", "train", "latency", "skip")


@dataclass
class ComparePreset:
    """A parsed preset: entries (label, model, model_kwargs) plus the shared recipe and bench options."""

    title: str
    recipe: dict[str, Any]
    entries: list[dict[str, Any]]
    bench: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass
class CompareRow:
    """One trained entry."""

    label: str
    model: str
    model_kwargs: dict[str, Any]
    params: int
    gmacs: float
    top1: float
    best_top1: float
    top5: float
    test_loss: float
    train_time_s: float
    train_img_s_run: float  # the trainer's own throughput over the run (includes data loading)
    history: list[dict[str, Any]]
    infer_img_s: Stats | None = None
    train_img_s: Stats | None = None

    def flat(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("history", "infer_img_s", "train_img_s")}
        d["model_kwargs"] = repr(self.model_kwargs)
        for key in ("infer_img_s", "train_img_s"):
            s = getattr(self, key)
            for part in ("median", "q1", "q3"):
                d[f"{key}_{part}"] = getattr(s, part) if s else None
        return d


@dataclass
class CompareResult:
    """All rows, the environment, the resolved recipe and the command."""

    title: str
    rows: list[CompareRow]
    env: dict[str, Any]
    recipe: dict[str, Any]
    bench: dict[str, Any]
    wall_s: float = 0.0

    def table(self) -> str:
        b = self.bench.get("batch", 64)
        header = [
            "entry",
            "model (mixer)",
            "params (M)",
            "GMACs",
            "top-1 %",
            "best top-1 %",
            f"infer img/s @{b}",
            f"train img/s @{b}",
            "train time (s)",
        ]
        rows = []
        for r in self.rows:
            mixer = r.model_kwargs.get("mixer")
            extra = [f"{k}={v}" for k, v in r.model_kwargs.items() if k in ("shift", "mlp_ratio")]
            desc = r.model if mixer is None else f"{mixer}"
            if extra:
                desc += " (" + ", ".join(extra) + ")"
            rows.append(
                [
                    f"**{r.label}**",
                    desc,
                    fmt_num(r.params / 1e6),
                    fmt_num(r.gmacs),
                    f"{r.top1:.2f}",
                    f"{r.best_top1:.2f}",
                    fmt_stats(r.infer_img_s),
                    fmt_stats(r.train_img_s),
                    f"{r.train_time_s:.0f}",
                ]
            )
        return markdown_table(header, rows, "ll" + "r" * (len(header) - 2))

    def notes(self) -> str:
        rc = self.recipe
        return "\n".join(
            [
                f"Recipe (shared): data={rc.get('data')}, img_size={rc.get('img_size')}, in_chans="
                f"{rc.get('in_chans')}, epochs={rc.get('epochs')}, batch_size={rc.get('batch_size')}, "
                f"lr={rc.get('lr')}, opt={rc.get('opt')}, seed={rc.get('seed')}, limit_train="
                f"{rc.get('limit_train')}, limit_test={rc.get('limit_test')}.",
                "top-1 = final test accuracy; throughput = median (q1–q3) of the trained models timed together "
                "round-robin after training (training = forward+backward+AdamW step); train time = the "
                f"trainer's wall time of the training epochs. Total wall time {self.wall_s:.0f}s.",
            ]
        )

    def markdown(self, command: str | None = None) -> str:
        return "\n".join([environment_header(self.title, self.env, command), self.table(), "", self.notes()])

    def as_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["infer_img_s"] = r.infer_img_s.as_dict() if r.infer_img_s else None
            d["train_img_s"] = r.train_img_s.as_dict() if r.train_img_s else None
            rows.append(d)
        return {
            "title": self.title,
            "env": self.env,
            "recipe": self.recipe,
            "bench": self.bench,
            "wall_s": self.wall_s,
            "rows": rows,
        }

    def save(self, out_dir: str | Path, *, command: str | None = None) -> list[Path]:
        """Write compare.md/.csv/.json, curves.png (learning curves) and acc_vs_speed.png."""
        out = Path(out_dir)
        return [
            write_text(out / "compare.md", self.markdown(command)),
            write_csv(out / "compare.csv", [r.flat() for r in self.rows]),
            write_json(out / "compare.json", self.as_dict() | {"command": command}),
            self.plot_curves(out / "curves.png"),
            self.plot_tradeoff(out / "acc_vs_speed.png"),
        ]

    def plot_curves(self, path: Path) -> Path:
        """Test top-1 and train loss per epoch, one line per entry."""
        fig, (ax_acc, ax_loss) = new_figure(1, 2, figsize=(12, 4.5))
        for i, r in enumerate(self.rows):
            ep = [h["epoch"] for h in r.history]
            style = "--" if r.model_kwargs.get("shift") is False else "-"
            color = f"C{i % 10}"
            ax_acc.plot(ep, [h["top1"] for h in r.history], style, marker="o", color=color, label=r.label)
            ax_loss.plot(ep, [h["train_loss"] for h in r.history], style, marker="o", color=color, label=r.label)
        ax_acc.set(xlabel="epoch", ylabel="test top-1 (%)", title="test accuracy")
        ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss")
        epochs = sorted({h["epoch"] for r in self.rows for h in r.history})
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
            if 0 < len(epochs) <= 20:  # whole epochs only
                ax.set_xticks(epochs)
        ax_acc.legend(fontsize=8)
        fig.suptitle(self.title, fontsize=10)
        return save_figure(fig, path)

    def plot_tradeoff(self, path: Path) -> Path:
        """Top-1 against inference throughput (marker area ∝ GMACs)."""
        fig, ax = new_figure(figsize=(7, 5))
        gmax = max((r.gmacs for r in self.rows), default=1.0) or 1.0
        for i, r in enumerate(self.rows):
            x = r.infer_img_s.median if r.infer_img_s else r.train_img_s_run
            ax.scatter([x], [r.top1], s=60 + 400 * r.gmacs / gmax, color=f"C{i % 10}", alpha=0.8)
            ax.annotate(r.label, (x, r.top1), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set(
            xlabel=f"inference images/s (batch {self.bench.get('batch', 64)}, median)",
            ylabel="test top-1 (%)",
            title="accuracy vs throughput (marker area ∝ GMACs)",
        )
        ax.grid(alpha=0.3)
        return save_figure(fig, path)


def find_compare_preset(name_or_path: str | Path) -> Path:
    """A preset path, or a name under ``configs/compare/`` (``.yaml`` optional).

    Raises:
        FileNotFoundError: No such preset; the message lists the known ones.
    """
    from hiermlp.train.config import find_preset

    return find_preset(name_or_path, kind="compare")


def load_preset(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ComparePreset:
    """Read a preset and apply ``key=value`` overrides (see the module docstring).

    Raises:
        FileNotFoundError: The preset does not exist.
        ConfigError: Unknown section, malformed entry or override.
    """
    path = find_compare_preset(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a compare preset must be a mapping")
    unknown = [k for k in data if k not in _SECTIONS]
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; valid: {list(_SECTIONS)}")
    data = copy.deepcopy(data)
    only: list[str] | None = None
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        value = yaml.safe_load(raw) if raw.strip() else ""
        if key == "only":
            only = [s.strip() for s in str(raw).split(",") if s.strip()]
            continue
        if key == "title":
            data["title"] = raw
            continue
        parts = key.split(".")
        section = parts[0] if parts[0] in ("recipe", "defaults", "bench") else "recipe"
        if section == parts[0]:
            parts = parts[1:]
        if not parts:
            raise ConfigError(f"override {item!r} names a section, not a key")
        d = data.setdefault(section, {}) or {}
        data[section] = d
        for p in parts[:-1]:
            d[p] = dict(d.get(p) or {})
            d = d[p]
        d[parts[-1]] = value
    bench = dict(data.get("bench") or {})
    bad = [k for k in bench if k not in _BENCH_KEYS]
    if bad:
        raise ConfigError(f"unknown bench option(s) {bad}; valid: {list(_BENCH_KEYS)}")
    defaults = dict(data.get("defaults") or {})
    entries = []
    for i, raw_entry in enumerate(data.get("entries") or []):
        if not isinstance(raw_entry, dict) or not (raw_entry.get("model") or defaults.get("model")):
            raise ConfigError(f"{path}: entry {i} needs a 'model' (or defaults.model)")
        extra = set(raw_entry) - {"label", "name", "model", "model_kwargs"}
        if extra:
            raise ConfigError(f"{path}: entry {i} has unknown keys {sorted(extra)}")
        model = raw_entry.get("model") or defaults["model"]
        kwargs = {**(defaults.get("model_kwargs") or {}), **(raw_entry.get("model_kwargs") or {})}
        label = str(raw_entry.get("label") or raw_entry.get("name") or model)
        entries.append({"label": label, "model": model, "model_kwargs": kwargs})
    labels = [e["label"] for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: entry labels must be unique, got {labels}")
    if only is not None:
        missing = [o for o in only if o not in labels]
        if missing:
            raise ConfigError(f"only={','.join(missing)}: no such entry.{suggest(missing[0], labels)}")
        entries = [e for e in entries if e["label"] in only]
    if not entries:
        raise ConfigError(f"{path}: no entries to compare")
    title = str(data.get("title") or f"hiermlp compare: {path.stem}")
    return ComparePreset(title, dict(data.get("recipe") or {}), entries, bench, str(path))


def run_comparison(
    preset: ComparePreset,
    *,
    progress: bool = True,
    threads: int | None = None,
    runs_dir: str | Path | None = None,
) -> CompareResult:
    """Train every entry of ``preset`` with its shared recipe, then time the trained models together.

    Args:
        preset: From :func:`load_preset`.
        progress: Show a tqdm bar over entries (and the trainer's own bars).
        threads: Torch intra-op threads (None: the recipe's/bench's or one per core).
        runs_dir: Keep each entry's training run (checkpoints, metrics.jsonl) in ``runs_dir/<label>``;
            None trains into a temporary directory that is deleted afterwards.

    Returns:
        The comparison.

    Raises:
        ConfigError: A recipe key or value is invalid (the trainer's message, with close keys).
    """
    from hiermlp.bench.flops import count_gmacs
    from hiermlp.bench.speed import BenchEntry, benchmark_models
    from hiermlp.train import config_to_dict, train
    from hiermlp.train.config import config_from_dict

    t_start = time.perf_counter()
    threads = set_threads(threads or preset.bench.get("threads"))
    configs = []
    for e in preset.entries:  # validate every config before training anything
        # TensorBoard off unless asked for: event files are of no use to a comparison and cost time
        recipe = {"tensorboard": False, **preset.recipe}
        cfg = config_from_dict({**recipe, "model": e["model"], "model_kwargs": e["model_kwargs"], "progress": progress})
        configs.append(cfg)
    env = environment(configs[0].device if configs[0].device != "auto" else "cpu")
    rows: list[CompareRow] = []
    bar = tqdm(total=len(configs), desc="compare", disable=not progress, position=0)
    for e, cfg in zip(preset.entries, configs):
        bar.set_postfix_str(e["label"])
        with tempfile.TemporaryDirectory(prefix="hiermlp-compare-") as tmp:
            run_dir = Path(runs_dir) / _slug(e["label"]) if runs_dir is not None else Path(tmp)
            result = train(cfg, out_dir=run_dir, progress=progress)
        model = result.model.cpu()
        gmacs = count_gmacs(model, (cfg.in_chans, cfg.img_size, cfg.img_size))
        rows.append(
            CompareRow(
                label=e["label"],
                model=e["model"],
                model_kwargs=e["model_kwargs"],
                params=sum(p.numel() for p in model.parameters()),
                gmacs=gmacs,
                top1=result.top1,
                best_top1=result.best_top1,
                top5=result.top5,
                test_loss=result.loss,
                train_time_s=result.train_time_s,
                train_img_s_run=result.img_s,
                history=result.history,
            )
        )
        bar.update()
        bar.write(f"{e['label']}: top-1 {result.top1:.2f}% | {result.train_time_s:.0f}s | {gmacs:.4f} GMACs")
        del result, model
    bar.close()
    bench = {"batch": 64, "repeats": 5, "warmup": 1, "memory": False, "train": True, "latency": False}
    bench |= preset.bench
    if not bench.pop("skip", False):
        num_classes = configs[0].num_classes or 10
        report = benchmark_models(
            [
                BenchEntry(e["model"], e["label"], {**e["model_kwargs"], "drop_path_rate": c.drop_path_rate})
                for e, c in zip(preset.entries, configs)
            ],
            img_size=configs[0].img_size,
            in_chans=configs[0].in_chans,
            num_classes=num_classes,
            threads=threads,
            progress=progress,
            **{k: v for k, v in bench.items() if k != "threads"},
        )
        for row, b in zip(rows, report.rows):
            row.infer_img_s, row.train_img_s = b.infer_img_s, b.train_img_s
    recipe = config_to_dict(configs[0])
    recipe.pop("model"), recipe.pop("model_kwargs")
    return CompareResult(
        preset.title, rows, finish_environment(env), recipe, bench, wall_s=time.perf_counter() - t_start
    )


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``hiermlp compare`` options on ``parser``."""
    parser.add_argument(
        "preset",
        nargs="?",
        default="default",
        help="preset name under configs/compare/ or a YAML path (default: default)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="recipe overrides (epochs=1), section keys (bench.batch=32) or only=label1,label2",
    )
    parser.add_argument(
        "--out", default=None, help="write compare.md/.csv/.json and PNG plots here (default: runs/compare/PRESET)"
    )
    parser.add_argument(
        "--save-runs",
        action="store_true",
        help="keep each entry's checkpoints and metrics under OUT/runs/LABEL (default: temporary)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_compare(args: argparse.Namespace) -> int:
    """Run ``hiermlp compare``; returns the exit status (0 ok, 2 bad input)."""
    overrides = list(args.overrides)
    preset_name = args.preset
    if "=" in preset_name:  # `hiermlp compare epochs=1`: no preset given, the first token is an override
        overrides.insert(0, preset_name)
        preset_name = "default"
    if args.out is None:
        args.out = str(Path("runs") / "compare" / Path(preset_name).stem)
    try:
        preset = load_preset(preset_name, overrides)
        runs_dir = Path(args.out) / "runs" if args.out and args.save_runs else None
        result = run_comparison(preset, progress=not args.no_progress, threads=args.threads, runs_dir=runs_dir)
    except (FileNotFoundError, HiermlpError) as e:
        print(f"hiermlp compare: error: {e}", file=sys.stderr)
        return 2
    command = shlex.join(
        ["hiermlp", "compare", preset_name, *overrides]
        + (["--out", args.out] if args.out else [])
        + (["--threads", str(args.threads)] if args.threads else [])
    )
    print(result.markdown(command))
    if args.out:  # always set: the reports are the point of a comparison
        paths = result.save(args.out, command=command)
        print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
