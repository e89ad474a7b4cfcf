"""What a run leaves beside its checkpoints for a timm user: the records timm's train.py writes, and plots.

Rank 0 writes, every epoch, into the run directory:

* ``summary.csv``: timm train.py's columns first (``epoch`` counted from 0 as timm counts it, ``train_loss``,
  ``eval_loss``, ``eval_top1``, ``eval_top5``, ``lr``), then hiermlp's own, so the scripts a timm user
  reads their runs with read it too, and the two join on ``epoch``;
* ``args.yaml``: the resolved run (timm writes its parsed arguments under this name): the config with every
  value it left to the model or the data resolved (the eval transform, the class count, the scaled learning
  rates), the run's size and the versions that ran it. ``config.yaml`` stays the file ``hiermlp train`` reads back;
* ``curves.png``: the learning curves (losses, top-1);
* TensorBoard events under ``tb/`` when the ``tensorboard`` extra is installed (``pip install
  'hiermlp[tensorboard]'``), else one line saying so;
* Weights & Biases (``log_wandb=true``, the ``wandb`` extra): the summary rows under timm's names, the resolved
  run as its config; ``WANDB_MODE=offline`` keeps it local.

:func:`plot_runs` (``hiermlp plot RUN...``) overlays the curves of several runs, hiermlp's or timm's.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hiermlp.errors import ConfigError, NotFoundError
from hiermlp.io import atomic_write_bytes, atomic_write_text
from hiermlp.train.config import TrainConfig, config_to_dict

if TYPE_CHECKING:
    from hiermlp.train.build import Data, Optimization

__all__ = ["RECORD_FILES", "SUMMARY_COLUMNS", "RunRecords", "plot_runs", "read_run", "resolved_args", "summary_rows"]

# timm train.py's summary.csv columns, and the metrics.jsonl key each is read from
SUMMARY_COLUMNS = ("epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr")
_FROM_ROW = {"train_loss": "train_loss", "eval_loss": "test_loss", "eval_top1": "top1", "eval_top5": "top5", "lr": "lr"}
RECORD_FILES = ("summary.csv", "args.yaml", "curves.png")


def resolved_args(cfg: TrainConfig, data: Data, opt: Optimization, *, params: int, world_size: int) -> dict[str, Any]:
    """args.yaml: the config with what it left unset resolved (eval transform, class count), then ``run``: the
    learning rates after batch scaling, the run's size, the command and the versions that ran it."""
    import platform
    from importlib.metadata import version

    from hiermlp.train.optim import scaled_lrs

    dc = data.data_config
    out = config_to_dict(cfg)
    out.update({k: dc[k] for k in ("interpolation", "crop_pct", "mean", "std")}, num_classes=data.num_classes)
    lr, warmup_lr, min_lr = scaled_lrs(
        lr=cfg.lr, warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, batch_size=cfg.batch_size, base_batch=cfg.lr_base_batch
    )
    out["run"] = dict(
        data_config=dc,
        lr=lr,
        warmup_lr=warmup_lr,
        min_lr=min_lr,
        params=params,
        steps_per_epoch=opt.steps_per_epoch,
        total_steps=opt.total_steps,
        world_size=world_size,
        command=list(sys.argv),
        versions={name: version(name) for name in ("hiermlp", "timm", "torch")},
        python=platform.python_version(),
    )
    return _plain(out)


def summary_rows(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """metrics.jsonl rows -> summary.csv rows: timm's columns (epoch from 0), then hiermlp's other keys."""
    out = []
    for row in history:
        rec = {"epoch": int(row["epoch"]) - 1, **{col: row.get(key) for col, key in _FROM_ROW.items()}}
        rec.update({k: v for k, v in row.items() if k not in ("epoch", *_FROM_ROW.values())})
        out.append(rec)
    return out


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r)) or list(SUMMARY_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class RunRecords:
    """summary.csv, args.yaml, curves.png, TensorBoard and W&B of one run (rank 0).

    Args:
        out_dir: the run directory.
        resolved: the resolved run, written to args.yaml (and W&B's config).
        history: the rows of the epochs already done (a resumed run).
        tensorboard: write TensorBoard events under ``out_dir/tb`` (one line when the package is missing).
        wandb_project: log to Weights & Biases in this project (None: no W&B).

    Raises:
        ConfigError: W&B was asked for but its package is not installed (before anything is logged).
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        resolved: dict[str, Any],
        history: Sequence[dict[str, Any]] = (),
        tensorboard: bool = False,
        wandb_project: str | None = None,
    ) -> None:
        self.out_dir, self.tb, self.wandb = Path(out_dir), None, None
        if wandb_project is not None:
            try:
                import wandb
            except ImportError:
                raise ConfigError(
                    "log_wandb=true needs the wandb package: pip install 'hiermlp[wandb]' (or log_wandb=false)"
                ) from None
            self.wandb = wandb
            wandb.init(project=wandb_project, name=self.out_dir.name, dir=str(self.out_dir), config=resolved)
        atomic_write_text(self.out_dir / "args.yaml", yaml.safe_dump(_plain(resolved), sort_keys=False), what="args")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print(
                    "note: tensorboard is not installed, so no TensorBoard events are written "
                    "(pip install 'hiermlp[tensorboard]', or tensorboard=false)",
                    file=sys.stderr,
                    flush=True,
                )
            else:
                self.tb = SummaryWriter(log_dir=str(self.out_dir / "tb"))
        if history:
            self._write(list(history))

    def epoch(self, history: Sequence[dict[str, Any]]) -> None:
        """Record the last row of ``history`` (every row so far: the files are rewritten whole)."""
        row = history[-1]
        self._write(list(history))
        if self.tb is not None:
            for k, v in row.items():
                if k != "epoch" and isinstance(v, int | float):
                    self.tb.add_scalar(k, v, row["epoch"])
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log(summary_rows([row])[0])

    def _write(self, history: list[dict[str, Any]]) -> None:
        atomic_write_text(self.out_dir / "summary.csv", _csv_text(summary_rows(history)), what="summary")
        png = _curves_png([(self.out_dir.name, _curve_rows(history))], title=self.out_dir.name)
        atomic_write_bytes(self.out_dir / "curves.png", png, what="learning curves")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def _plain(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


# ---- reading and plotting runs ---------------------------------------------------------------------------------
def _curve_rows(history: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """metrics.jsonl rows -> ``{epochs, train_loss, eval_loss, eval_top1}`` (epochs completed, from 1)."""
    return [{"epochs": float(r["epoch"])} | {c: r.get(k) for c, k in _FROM_ROW.items()} for r in history]


def read_run(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The epochs of a run directory, hiermlp's (metrics.jsonl) or timm train.py's (summary.csv), as rows of
    ``epochs`` (completed, from 1), ``train_loss``, ``eval_loss``, ``eval_top1``, ``eval_top5``, ``lr``.

    Raises:
        NotFoundError: neither file is there, or it holds no epoch.
    """
    path = Path(path)
    metrics, summary = path / "metrics.jsonl", path / "summary.csv"
    if metrics.is_file() and metrics.stat().st_size:
        rows = _curve_rows([json.loads(line) for line in metrics.read_text().splitlines() if line.strip()])
    elif summary.is_file():
        with summary.open(newline="") as f:
            rows = [
                {"epochs": float(r["epoch"]) + 1} | {c: _number(r.get(c)) for c in SUMMARY_COLUMNS[1:]}
                for r in csv.DictReader(f)
            ]
    else:
        raise NotFoundError(f"{path} holds no run: no metrics.jsonl (hiermlp train) or summary.csv (timm train.py)")
    if not rows:
        raise NotFoundError(f"{path} holds no finished epoch yet")
    return rows


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def plot_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike, *, labels: Sequence[str] = ()) -> Path:
    """Overlay the learning curves of ``runs`` (run directories) in one PNG; returns its path.

    Raises:
        NotFoundError: a directory holds no run.
        ConfigError: ``labels`` is given but not one per run.
    """
    if labels and len(labels) != len(runs):
        raise ConfigError(f"{len(labels)} labels for {len(runs)} runs; give one per run or none")
    names = list(labels) or [Path(r).resolve().name for r in runs]
    curves = [(name, read_run(run)) for name, run in zip(names, runs)]
    return atomic_write_bytes(Path(out), _curves_png(curves, title=f"{len(runs)} runs"), what="plot")


def _curves_png(curves: Sequence[tuple[str, list[dict[str, Any]]]], *, title: str) -> bytes:
    """Loss (train solid, eval dashed) and eval top-1 per epoch, one colour per run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, top1_ax = fig.subplots(1, 2)
    for i, (name, rows) in enumerate(curves):
        color = f"C{i % 10}"
        x = [r["epochs"] for r in rows]
        for key, style in (("train_loss", "-"), ("eval_loss", "--")):
            pts = [(e, r[key]) for e, r in zip(x, rows) if r.get(key) is not None]
            if pts:
                loss_ax.plot(*zip(*pts), style, color=color, marker=".", label=f"{name} {key.split('_')[0]}")
        pts = [(e, r["eval_top1"]) for e, r in zip(x, rows) if r.get("eval_top1") is not None]
        if pts:
            top1_ax.plot(*zip(*pts), "-", color=color, marker=".", label=name)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="loss (train solid, eval dashed)")
    top1_ax.set(xlabel="epoch", ylabel="top-1 (%)", title="eval top-1")
    for ax in (loss_ax, top1_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
