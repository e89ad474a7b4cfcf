"""``hiermlp compare``: train several models with one recipe and several seeds, and compare them with intervals.

A preset (``configs/compare/NAME.yaml``) lists the entries, the shared recipe, the seeds and the claims::

    title: what is compared
    seeds: 3           # each entry is trained once per seed (an int N: seeds 0..N-1; or a list)
    jobs: 1            # runs trained at a time in worker processes ("auto": one per CPU core; CPU only)
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
      - label: linear
        model: linear_pixels               # baseline: true puts it in every row's "vs baselines" column
        model_kwargs: {}
        baseline: true
      - label: swin
        model_kwargs: {mixer: attention}     # merged over defaults.model_kwargs
      - label: swin-noshift
        model_kwargs: {mixer: attention, shift: false}
    claims:            # planned tests: delta = top-1 of a minus top-1 of b, paired over seeds
      - {claim: shifted windows, family: swin, a: swin, b: swin-noshift, paper: "+1.1 (Swin-T, ImageNet-1k)"}

Command-line ``key=value`` overrides go to the recipe (``epochs=1``), to a section with a dotted key
(``bench.batch=32``, ``defaults.model_kwargs.window_size=8``), set the seeds (``seeds=5``) or select
entries (``only=swin,pool``; claims whose entries are left out are dropped); ``jobs=N`` (or ``--jobs``)
sets how many runs train at a time.

With ``jobs`` > 1 (CPU only) the runs are spread over worker processes with ``cores // jobs`` torch threads
each: micro models keep one core busy far better than two, so two one-thread runs side by side finish
sooner than the same two runs one after the other on two threads. What each run computes does not depend
on it (the thread count is not part of a run's fingerprint).

Every (entry, seed) is trained by :func:`hiermlp.train.train` in its own run directory
(``RUNS/<label>/seed<k>``), so a compare that is killed and rerun with the same arguments reuses the
finished runs and resumes the unfinished one from its last checkpoint. The report gives, per entry, the
mean ± std over seeds and the 95% Student-t interval of the final and of the best-epoch top-1; for every
pair the paired difference with its interval and a verdict (:mod:`hiermlp.bench.stats`); a rank that
counts only supported differences; and the claims table. Afterwards the trained architectures'
inference and training throughput are measured together, round-robin, by
:func:`hiermlp.bench.benchmark_models`, so speed is compared under the same conditions.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml
from tqdm.auto import tqdm

from hiermlp.bench.env import available_cores, environment, finish_environment, set_threads
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
from hiermlp.bench.stats import Interval, mean_interval, paired_difference, supported_ranks, verdict
from hiermlp.bench.timing import Stats
from hiermlp.errors import ConfigError, HiermlpError, suggest
from hiermlp.io import _alive, atomic_write_text

__all__ = [
    "ComparePreset",
    "CompareResult",
    "CompareRow",
    "RunRecord",
    "add_compare_arguments",
    "find_compare_preset",
    "load_preset",
    "run_compare",
    "run_comparison",
]

_SECTIONS = ("title", "seeds", "jobs", "recipe", "defaults", "bench", "entries", "claims")
_BENCH_KEYS = ("batch", "repeats", "warmup", "min_sample_s", "threads", "memory", "train", "latency", "skip")
_ENTRY_KEYS = {"label", "name", "model", "model_kwargs", "baseline"}
_CLAIM_KEYS = {"claim", "family", "a", "b", "paper"}
# TrainConfig keys that do not change what a run computes: a finished or interrupted run is reused
# whatever they are (the out_dir moves with --runs-dir, the rest is bookkeeping)
_VOLATILE = ("out_dir", "resume", "overwrite", "progress", "tensorboard", "threads", "ckpt_every", "num_workers")
RESULT_FILE = "compare_run.json"  # written into a run directory once its training has finished
FINGERPRINT_FILE = "compare_config.json"  # the run's config, written before training starts
LOCK_FILE = "compare.lock"  # the pid of the process training the run, while it does


@dataclass
class ComparePreset:
    """A parsed preset: entries (label, model, model_kwargs, baseline), recipe, seeds, claims, bench options."""

    title: str
    recipe: dict[str, Any]
    entries: list[dict[str, Any]]
    bench: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])
    claims: list[dict[str, Any]] = field(default_factory=list)
    jobs: int | str = 1  # runs trained at a time (worker processes), or "auto" (one per CPU core)


@dataclass
class RunRecord:
    """One trained (entry, seed)."""

    seed: int
    top1: float
    best_top1: float
    best_epoch: int
    top5: float
    test_loss: float
    train_time_s: float
    train_img_s: float  # the trainer's own throughput over the run (includes data loading)
    history: list[dict[str, Any]]
    reused: bool = False  # read back from a finished run directory instead of trained now


@dataclass
class CompareRow:
    """One entry: its runs over the seeds and their statistics."""

    label: str
    model: str
    model_kwargs: dict[str, Any]
    baseline: bool
    params: int
    gmacs: float
    runs: list[RunRecord]
    top1: Interval
    best_top1: Interval
    rank: int = 0  # 1 + the number of entries better than this one by a supported difference
    infer_img_s: Stats | None = None
    train_img_s: Stats | None = None

    @property
    def train_time_s(self) -> float:
        """Mean training time per run (seconds)."""
        return sum(r.train_time_s for r in self.runs) / max(len(self.runs), 1)

    def by_seed(self, key: str = "top1") -> dict[int, float]:
        return {r.seed: getattr(r, key) for r in self.runs}

    def describe(self) -> str:
        mixer = self.model_kwargs.get("mixer")
        keys = ("shift", "downsample", "mlp_ratio", "mixer_kwargs")
        extra = [f"{k}={v}" for k, v in self.model_kwargs.items() if k in keys]
        desc = self.model if mixer is None else f"{mixer}"
        return desc + (" (" + ", ".join(extra) + ")" if extra else "")

    def flat(self) -> dict[str, Any]:
        """One CSV row of the entry's statistics."""
        d: dict[str, Any] = {
            "label": self.label,
            "model": self.model,
            "model_kwargs": repr(self.model_kwargs),
            "baseline": self.baseline,
            "params": self.params,
            "gmacs": self.gmacs,
            "seeds": len(self.runs),
            "rank": self.rank,
        }
        for key in ("top1", "best_top1"):
            iv: Interval = getattr(self, key)
            d |= {f"{key}_mean": iv.mean, f"{key}_std": iv.std, f"{key}_ci_lo": iv.lo, f"{key}_ci_hi": iv.hi}
        d["train_time_s_mean"] = self.train_time_s
        for key in ("infer_img_s", "train_img_s"):
            st = getattr(self, key)
            for part in ("median", "q1", "q3"):
                d[f"{key}_{part}"] = getattr(st, part) if st else None
        return d


@dataclass
class CompareResult:
    """All rows, pairwise differences, claims, the environment, the resolved recipe and the command."""

    title: str
    rows: list[CompareRow]
    env: dict[str, Any]
    recipe: dict[str, Any]
    bench: dict[str, Any]
    seeds: list[int] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)  # a, b, diff (Interval of a - b), verdict
    claims: list[dict[str, Any]] = field(default_factory=list)  # claim, family, a, b, paper, diff, verdict
    wall_s: float = 0.0
    jobs: int = 1  # runs trained at a time
    job_threads: int = 0  # torch threads of each run (0: not recorded)

    @property
    def train_time_total_s(self) -> float:
        """Sum of the training times of every run (trained now or earlier): the compute the table cost."""
        return sum(r.train_time_s for row in self.rows for r in row.runs)

    def row(self, label: str) -> CompareRow:
        return next(r for r in self.rows if r.label == label)

    def diff(self, a: str, b: str) -> Interval:
        """Paired interval of top-1(a) - top-1(b)."""
        return paired_difference(self.row(a).by_seed(), self.row(b).by_seed())

    def ranked(self) -> list[CompareRow]:
        """Rows by supported rank, then by mean top-1."""
        return sorted(self.rows, key=lambda r: (r.rank, -r.top1.mean))

    def vs_baselines(self, row: CompareRow) -> str:
        """``> linear, ≈ cnn``: supported better (>), supported worse (<) or inconclusive (≈), per baseline."""
        parts = []
        for b in (r for r in self.rows if r.baseline and r is not row):
            d = self.diff(row.label, b.label)
            sign = "≈" if verdict(d) != "supported" else (">" if d.mean > 0 else "<")
            parts.append(f"{sign} {b.label}")
        return ", ".join(parts) or "-"

    # ---- report ----------------------------------------------------------------------------------------
    def table(self) -> str:
        b = self.bench.get("batch", 64)
        level = f"{round(100 * self.rows[0].top1.level)}%" if self.rows else "95%"
        header = [
            "rank",
            "entry",
            "model (mixer)",
            "params (M)",
            "GMACs",
            "top-1 % (mean ± std)",
            f"top-1 {level} CI",
            f"best-epoch top-1 % ({level} CI)",
            "vs baselines",
            f"infer img/s @{b}",
            f"train img/s @{b}",
            "train s/run",
        ]
        rows = []
        for r in self.ranked():
            ci = "-" if not math.isfinite(r.top1.lo) else f"[{r.top1.lo:.2f}, {r.top1.hi:.2f}]"
            rows.append(
                [
                    str(r.rank),
                    f"**{r.label}**" + (" (baseline)" if r.baseline else ""),
                    r.describe(),
                    fmt_num(r.params / 1e6),
                    fmt_num(r.gmacs),
                    r.top1.fmt_std(),
                    ci,
                    r.best_top1.fmt(),
                    "-" if r.baseline else self.vs_baselines(r),
                    fmt_stats(r.infer_img_s),
                    fmt_stats(r.train_img_s),
                    f"{r.train_time_s:.0f}",
                ]
            )
        return markdown_table(header, rows, "rll" + "r" * (len(header) - 3))

    def claims_table(self) -> str:
        header = ["claim", "family", "a − b", "Δ top-1 (pp) [95% CI]", "verdict", "paper"]
        rows = [
            [c["claim"], c["family"], f"{c['a']} − {c['b']}", c["diff"].fmt(sign=True), c["verdict"], c["paper"]]
            for c in self.claims
        ]
        return markdown_table(header, rows, "llllll")

    def pairs_table(self) -> str:
        header = ["a", "b", "Δ top-1 a − b (pp) [95% CI]", "verdict"]
        rows = [[p["a"], p["b"], p["diff"].fmt(sign=True), p["verdict"]] for p in self.pairs]
        return markdown_table(header, rows, "llrl")

    def findings(self) -> list[str]:
        """What the intervals support, as Markdown bullets (the README's findings are these)."""
        if not self.rows:
            return []
        ranked = self.ranked()
        top = [r.label for r in ranked if r.rank == 1]
        out = [
            f"- best (rank 1, no entry better by a supported difference): {', '.join(f'`{t}`' for t in top)}; "
            f"highest mean `{ranked[0].label}` {ranked[0].top1.fmt_std()}% over {_plural(len(ranked[0].runs), 'seed')}"
        ]
        base = [r for r in self.rows if r.baseline]
        for b in base:
            beat = [r.label for r in self.rows if not r.baseline and _better(self.diff(r.label, b.label))]
            lose = [r.label for r in self.rows if not r.baseline and _better(self.diff(b.label, r.label))]
            tied = [r.label for r in self.rows if not r.baseline and r.label not in beat + lose]
            line = f"- baseline `{b.label}` ({b.top1.fmt_std()}%): beaten by {_names(beat)}"
            line += f"; better than {_names(lose)}" if lose else ""
            line += f"; not separated from {_names(tied)}" if tied else ""
            out.append(line)
        for c in self.claims:
            out.append(
                f"- claim {c['claim']} ({c['family']}): Δ {c['diff'].fmt(sign=True)} pp — {c['verdict']} "
                f"(paper: {c['paper']})"
            )
        supported = [p for p in self.pairs if p["verdict"] == "supported"]
        out.append(
            f"- {len(supported)} of {len(self.pairs)} pairwise differences are supported at 95% "
            "(each interval on its own; see the pairs table)"
        )
        return out

    def notes(self) -> str:
        rc = self.recipe
        keys = ("data", "img_size", "in_chans", "epochs", "limit_train", "limit_test", "batch_size", "opt", "lr")
        keys += ("min_lr", "warmup_epochs", "weight_decay", "no_aug", "label_smoothing", "drop_path_rate", "amp")
        recipe = ", ".join(f"{k}={rc.get(k)}" for k in keys if k in rc)
        reused = sum(r.reused for row in self.rows for r in row.runs)
        return "\n".join(
            [
                f"Recipe (shared by every entry): {recipe}. Seeds: {self.seeds}.",
                "",
                "top-1 = final test accuracy, mean ± sample std over the seeds; CI = 95% Student-t interval of the "
                "mean; best-epoch = the best epoch's test top-1 of each run (an optimistic number: it picks on "
                "the test set). rank = 1 + the number of entries better by a supported paired difference "
                "(entries no interval separates share a rank). vs baselines: > better, < worse (supported), "
                "≈ inconclusive. Throughput = median (q1–q3) of the architectures timed together round-robin "
                "after training (training = forward+backward+AdamW step); train s/run = the trainer's wall time "
                "of the training epochs, mean over seeds.",
                "",
                f"Total wall time {self.wall_s:.0f}s; sum of per-run training times {self.train_time_total_s:.0f}s "
                f"over {sum(len(r.runs) for r in self.rows)} runs"
                + (f" ({reused} reused from earlier, interrupted invocations)" if reused else "")
                + (
                    f"; {self.jobs} runs at a time, {self.job_threads} torch thread(s) each"
                    if self.jobs > 1
                    else f"; one run at a time, {self.job_threads} torch thread(s)"
                    if self.job_threads
                    else ""
                )
                + ".",
            ]
        )

    def markdown(self, command: str | None = None) -> str:
        parts = [environment_header(self.title, self.env, command), self.table(), ""]
        parts += ["## Findings (what the intervals support)", "", *self.findings(), ""]
        if self.claims:
            parts += ["## Claims of the papers, tested", "", self.claims_table(), ""]
        if self.pairs:
            parts += ["## Pairwise differences (paired over seeds)", "", self.pairs_table(), ""]
        parts += ["## Notes", "", self.notes()]
        return "\n".join(parts)

    def as_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["top1"], d["best_top1"] = r.top1.as_dict(), r.best_top1.as_dict()
            d["infer_img_s"] = r.infer_img_s.as_dict() if r.infer_img_s else None
            d["train_img_s"] = r.train_img_s.as_dict() if r.train_img_s else None
            d["train_time_s"] = r.train_time_s
            rows.append(d)
        return {
            "title": self.title,
            "env": self.env,
            "recipe": self.recipe,
            "bench": self.bench,
            "seeds": self.seeds,
            "wall_s": self.wall_s,
            "jobs": self.jobs,
            "job_threads": self.job_threads,
            "train_time_total_s": self.train_time_total_s,
            "rows": rows,
            "findings": self.findings(),
            "pairs": [p | {"diff": p["diff"].as_dict()} for p in self.pairs],
            "claims": [c | {"diff": c["diff"].as_dict()} for c in self.claims],
        }

    def save(self, out_dir: str | Path, *, command: str | None = None) -> list[Path]:
        """Write compare.md/.csv/.json, runs.csv, pairs.csv, claims.csv and the plots."""
        out = Path(out_dir)
        runs = [
            {"label": row.label, **{k: v for k, v in asdict(r).items() if k != "history"}}
            for row in self.rows
            for r in row.runs
        ]
        paths = [
            write_text(out / "compare.md", self.markdown(command)),
            write_csv(out / "compare.csv", [r.flat() for r in self.ranked()]),
            write_csv(out / "runs.csv", runs),
            write_json(out / "compare.json", self.as_dict() | {"command": command}),
        ]
        if self.pairs:
            paths.append(write_csv(out / "pairs.csv", [_flat_diff(p) for p in self.pairs]))
        if self.claims:
            paths.append(write_csv(out / "claims.csv", [_flat_diff(c) for c in self.claims]))
        paths += [self.plot_curves(out / "curves.png"), self.plot_tradeoff(out / "acc_vs_speed.png")]
        if self.claims:
            paths.append(self.plot_claims(out / "claims.png"))
        return paths

    # ---- plots -----------------------------------------------------------------------------------------
    def plot_curves(self, path: Path) -> Path:
        """Test top-1 and train loss per epoch: the mean over seeds, a band from the lowest to the highest seed."""
        fig, (ax_acc, ax_loss) = new_figure(1, 2, figsize=(12, 4.8))
        for i, r in enumerate(self.rows):
            color, style = f"C{i % 10}", ":" if r.baseline else ("--" if r.model_kwargs.get("shift") is False else "-")
            for ax, key in ((ax_acc, "top1"), (ax_loss, "train_loss")):
                n = min(len(run.history) for run in r.runs)
                if n == 0:
                    continue
                ep = [r.runs[0].history[j]["epoch"] for j in range(n)]
                vals = [[run.history[j][key] for run in r.runs] for j in range(n)]
                mean = [sum(v) / len(v) for v in vals]
                ax.plot(ep, mean, style, marker="o", ms=3, color=color, label=r.label)
                if len(r.runs) > 1:
                    ax.fill_between(ep, [min(v) for v in vals], [max(v) for v in vals], color=color, alpha=0.15)
        ax_acc.set(
            xlabel="epoch", ylabel="test top-1 (%)", title=f"test accuracy (band: min–max over {len(self.seeds)} seeds)"
        )
        ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss")
        epochs = sorted({h["epoch"] for r in self.rows for run in r.runs for h in run.history})
        for ax in (ax_acc, ax_loss):
            ax.grid(alpha=0.3)
            if 0 < len(epochs) <= 20:  # whole epochs only
                ax.set_xticks(epochs)
        ax_acc.legend(fontsize=7, ncol=2)
        fig.suptitle(self.title, fontsize=10)
        return save_figure(fig, path)

    def plot_tradeoff(self, path: Path) -> Path:
        """Top-1 (mean, 95% CI bars) against inference throughput (median, IQR bars)."""
        fig, ax = new_figure(figsize=(8, 5.5))
        for i, r in enumerate(self.rows):
            x = r.infer_img_s.median if r.infer_img_s else r.runs[0].train_img_s
            xerr = [[x - r.infer_img_s.q1], [r.infer_img_s.q3 - x]] if r.infer_img_s else None
            half = r.top1.half_width if math.isfinite(r.top1.half_width) else 0.0
            ax.errorbar(
                [x],
                [r.top1.mean],
                yerr=[[half], [half]],
                xerr=xerr,
                fmt="s" if r.baseline else "o",
                color=f"C{i % 10}",
                capsize=3,
                ms=6,
            )
            ax.annotate(r.label, (x, r.top1.mean), textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set(
            xlabel=f"inference images/s (batch {self.bench.get('batch', 64)}, median, IQR bars)",
            ylabel="test top-1 (%), mean and 95% CI over seeds",
            title="accuracy vs throughput (squares: baselines)",
        )
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
        return save_figure(fig, path)

    def plot_claims(self, path: Path) -> Path:
        """Forest plot: each claim's Δ top-1 with its 95% CI, zero line, and the paper's figure (×)."""
        fig, ax = new_figure(figsize=(8, 1.2 + 0.55 * len(self.claims)))
        ys = list(range(len(self.claims)))[::-1]
        for y, c in zip(ys, self.claims):
            d: Interval = c["diff"]
            color = {"supported": "C2", "reversed": "C3"}.get(c["verdict"], "C7")
            if math.isfinite(d.lo):
                ax.plot([d.lo, d.hi], [y, y], color=color, lw=2)
            ax.plot([d.mean], [y], "o", color=color)
            paper = _paper_value(c["paper"])
            if paper is not None:
                ax.plot([paper], [y], "x", color="k", ms=7, label="paper (ImageNet-1k)" if y == ys[0] else None)
        ax.axvline(0.0, color="k", lw=0.8, ls="--")
        ax.set_yticks(ys, [f"{c['claim']} ({c['family']})" for c in self.claims], fontsize=8)
        ax.set(
            xlabel="Δ top-1 (percentage points), mean and 95% CI over seeds", title="the papers' claims at this scale"
        )
        ax.grid(alpha=0.3, axis="x")
        if any(_paper_value(c["paper"]) is not None for c in self.claims):
            ax.legend(fontsize=8, loc="best")
        return save_figure(fig, path)


def _better(d: Interval) -> bool:
    return verdict(d) == "supported" and d.mean > 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _names(labels: list[str]) -> str:
    return ", ".join(f"`{x}`" for x in labels) if labels else "none"


def _paper_value(text: str) -> float | None:
    """The leading signed number of a claim's paper figure (``"+1.1 (Swin-T)"`` -> 1.1), if any."""
    head = str(text).strip().split(" ", 1)[0]
    try:
        return float(head)
    except ValueError:
        return None


def _flat_diff(d: dict[str, Any]) -> dict[str, Any]:
    iv: Interval = d["diff"]
    rest = {k: v for k, v in d.items() if k != "diff"}
    return rest | {"diff_mean": iv.mean, "diff_std": iv.std, "ci_lo": iv.lo, "ci_hi": iv.hi, "n": iv.n}


def claim_verdict(diff: Interval) -> str:
    """A claim says ``a`` beats ``b``: ``supported`` (interval above 0), ``reversed`` (below) or ``inconclusive``."""
    if verdict(diff) != "supported":
        return "inconclusive"
    return "supported" if diff.mean > 0 else "reversed"


def find_compare_preset(name_or_path: str | Path) -> Path:
    """A preset path, or a name under ``configs/compare/`` (``.yaml`` optional).

    Raises:
        FileNotFoundError: No such preset; the message lists the known ones.
    """
    from hiermlp.train.config import find_preset

    return find_preset(name_or_path, kind="compare")


def _seeds(value: Any, base: int, where: str) -> list[int]:
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{where}: seeds must be a count (seeds: 3) or a list of ints, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where}: seeds must be >= 1, got {value}")
        return [base + i for i in range(value)]
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: seeds {value} repeat a seed")
        return list(value)
    raise ConfigError(f"{where}: seeds must be a count (seeds: 3) or a list of ints, got {value!r}")


def load_preset(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ComparePreset:
    """Read a preset and apply ``key=value`` overrides (see the module docstring).

    Raises:
        FileNotFoundError: The preset does not exist.
        ConfigError: Unknown section, malformed entry, claim or override.
    """
    path = find_compare_preset(name_or_path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from e
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
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"cannot parse value of {key}: {raw!r} ({e})") from e
        if key == "only":
            only = [s.strip() for s in str(raw).split(",") if s.strip()]
            continue
        if key in ("title", "seeds", "jobs"):
            data[key] = raw if key == "title" else value
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
    recipe = dict(data.get("recipe") or {})
    if "seed" in recipe and not isinstance(recipe["seed"], int):
        raise ConfigError(f"{path}: recipe.seed must be an int, got {recipe['seed']!r}")
    seeds = _seeds(data.get("seeds", 1), int(recipe.pop("seed", 0)), str(path))
    defaults = dict(data.get("defaults") or {})
    entries = []
    for i, raw_entry in enumerate(data.get("entries") or []):
        if not isinstance(raw_entry, dict) or not (raw_entry.get("model") or defaults.get("model")):
            raise ConfigError(f"{path}: entry {i} needs a 'model' (or defaults.model)")
        extra = set(raw_entry) - _ENTRY_KEYS
        if extra:
            raise ConfigError(f"{path}: entry {i} has unknown keys {sorted(extra)}; valid: {sorted(_ENTRY_KEYS)}")
        model = raw_entry.get("model") or defaults["model"]
        # an entry that names its own model starts from its own kwargs (a baseline shares no geometry)
        own = "model" in raw_entry and raw_entry["model"] != defaults.get("model")
        kwargs = {**({} if own else defaults.get("model_kwargs") or {}), **(raw_entry.get("model_kwargs") or {})}
        label = str(raw_entry.get("label") or raw_entry.get("name") or model)
        entries.append(
            {"label": label, "model": model, "model_kwargs": kwargs, "baseline": bool(raw_entry.get("baseline"))}
        )
    labels = [e["label"] for e in entries]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: entry labels must be unique, got {labels}")
    claims = []
    for i, c in enumerate(data.get("claims") or []):
        if not isinstance(c, dict) or set(c) - _CLAIM_KEYS or not {"a", "b"} <= set(c):
            raise ConfigError(f"{path}: claim {i} must be a mapping with a, b (and claim, family, paper), got {c!r}")
        for side in ("a", "b"):
            if c[side] not in labels:
                raise ConfigError(f"{path}: claim {i} names no entry {c[side]!r}.{suggest(str(c[side]), labels)}")
        claims.append(
            {
                "claim": str(c.get("claim") or f"{c['a']} vs {c['b']}"),
                "family": str(c.get("family") or ""),
                "a": c["a"],
                "b": c["b"],
                "paper": str(c.get("paper") or "-"),
            }
        )
    if only is not None:
        missing = [o for o in only if o not in labels]
        if missing:
            raise ConfigError(f"only={','.join(missing)}: no such entry.{suggest(missing[0], labels)}")
        entries = [e for e in entries if e["label"] in only]
        claims = [c for c in claims if c["a"] in only and c["b"] in only]
    if not entries:
        raise ConfigError(f"{path}: no entries to compare")
    title = str(data.get("title") or f"hiermlp compare: {path.stem}")
    jobs = _jobs(data.get("jobs", 1), str(path))
    return ComparePreset(title, recipe, entries, bench, str(path), seeds, claims, jobs)


def _jobs(value: Any, where: str) -> int | str:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigError(f"{where}: jobs must be a count >= 1 or 'auto', got {value!r}")


def _int(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def resolve_jobs(jobs: int | str, device: str, runs: int) -> int:
    """How many runs to train at a time: ``auto`` is one per CPU core; a GPU or torchrun trains one at a time.

    Raises:
        ConfigError: jobs > 1 asked for on a GPU or under torchrun.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if jobs == "auto":
        return max(1, min(runs, available_cores())) if on_cpu and not distributed else 1
    if jobs > 1 and (distributed or not on_cpu):
        where = "under torchrun" if distributed else f"on device {device!r}"
        raise ConfigError(f"jobs={jobs} trains runs side by side on CPU cores only, not {where}; use jobs=1")
    return int(jobs)


# ---------------------------------------------------------------------------------------------------------
# running


def _fingerprint(cfg: Any) -> dict[str, Any]:
    """What a run computes: its config without the keys that only say where and how it is shown."""
    from hiermlp.train import config_to_dict

    return {k: v for k, v in config_to_dict(cfg).items() if k not in _VOLATILE}


def _same_config(old: Any, new: dict[str, Any]) -> bool:
    """Whether a run recorded with config ``old`` computed what ``new`` asks for.

    A key only ``new`` has (a trainer option added since the run) matches when it is at its default: the
    older trainer behaved as that default does.
    """
    from hiermlp.train.config import TrainConfig

    if not isinstance(old, dict):
        return False
    defaults = _fingerprint(TrainConfig())
    for k, v in new.items():
        if k in old:
            if old[k] != v:
                return False
        elif k not in defaults or defaults[k] != v:
            return False
    return all(k in new for k in old)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or half-written: treated as absent


def _write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj), what="compare record")  # a kill mid-write leaves the old file


def _is_main() -> bool:
    """Rank 0 of a torchrun launch (or a plain process): the one that writes compare's files."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for this process: two compares on one runs directory must not train the same run.

    A lock left by a process that no longer exists (killed) is taken over.

    Raises:
        ConfigError: another live process holds it.
    """
    if not _is_main():
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_FILE
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or "0")
            except (OSError, ValueError):
                pid = 0
            if pid > 0 and pid != os.getpid() and _alive(pid):
                raise ConfigError(
                    f"{run_dir} is being trained by process {pid} (another hiermlp compare on the same runs "
                    "directory): wait for it to finish, or pass another --runs-dir"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _train_run(cfg: Any, run_dir: Path, progress: bool) -> Any:
    """Train one (entry, seed); the one place compare calls the trainer (tests wrap it)."""
    from hiermlp.train import train

    return train(cfg, out_dir=run_dir, progress=progress)


def _run_one(cfg: Any, run_dir: Path, *, seed: int, progress: bool) -> tuple[RunRecord, Any, int]:
    """Reuse a finished run of the same config, resume an interrupted one, or train afresh.

    Returns:
        The record, the trained model (None when reused) and its parameter count.
    """
    from dataclasses import replace

    from hiermlp.train.config import TrainConfig

    fp = _fingerprint(cfg)
    done = _read_json(run_dir / RESULT_FILE)
    if done is not None and _same_config(done.get("config"), fp):
        rec = RunRecord(**{k: v for k, v in done["record"].items() if k != "reused"}, reused=True)
        return rec, None, int(done["params"])
    same = _same_config(_read_json(run_dir / FINGERPRINT_FILE), fp)
    resuming = same and (run_dir / "last.pth").is_file()
    keys: dict[str, Any] = {"resume": "auto" if resuming else ""}
    if "overwrite" in {f.name for f in fields(TrainConfig)}:
        keys["overwrite"] = not resuming  # the directory is compare's own: a stale or changed run is replaced
    cfg = replace(cfg, **keys)
    if _is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
        _write_json_atomic(run_dir / FINGERPRINT_FILE, fp)
    result = _train_run(cfg, run_dir, progress)
    rec = RunRecord(
        seed=seed,
        top1=result.top1,
        best_top1=result.best_top1,
        best_epoch=result.best_epoch,
        top5=result.top5,
        test_loss=result.loss,
        train_time_s=_train_time(result),
        train_img_s=result.img_s,
        history=result.history,
    )
    record = {k: v for k, v in asdict(rec).items() if k != "reused"}
    if _is_main():
        _write_json_atomic(run_dir / RESULT_FILE, {"config": fp, "record": record, "params": result.params})
    return rec, result.model, result.params


def _train_time(result: Any) -> float:
    """Training time over all epochs, also those trained before a resume (the history keeps each epoch's time)."""
    times = [h.get("epoch_time_s") for h in result.history]
    if times and all(isinstance(t, int | float) for t in times):
        return float(sum(times))
    return float(result.train_time_s)


def _worker_init() -> None:
    """A worker dies with the compare that started it (Linux): a killed compare leaves no run training on.

    Its run resumes from its checkpoint when the compare is run again.
    """
    import ctypes
    import multiprocessing
    import signal

    # not Linux (no prctl): Ctrl-C still reaches the whole process group
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died while this worker was starting
        os._exit(1)


def _train_job(cfg: Any, run_dir: str, seed: int, threads: int) -> tuple[RunRecord, int]:
    """One (entry, seed) in a worker process of ``jobs`` > 1 (module level: picklable for spawn)."""
    torch.set_num_threads(threads)
    with _run_lock(Path(run_dir)):
        rec, _, params = _run_one(cfg, Path(run_dir), seed=seed, progress=False)
    return rec, params


def _train_all(
    preset: ComparePreset, configs: list[Any], runs_dir: Path, *, progress: bool, threads: int, jobs: int | str | None
) -> tuple[list[list[tuple[RunRecord, int]]], int, int]:
    """Every (entry, seed), one after the other or ``jobs`` at a time.

    Returns:
        Per entry its (record, params) by seed; the jobs used and the torch threads of each run.
    """
    import concurrent.futures as cf
    import multiprocessing
    from dataclasses import replace

    todo = [(i, seed) for i in range(len(configs)) for seed in preset.seeds]
    n_jobs = resolve_jobs(preset.jobs if jobs is None else jobs, configs[0].device, len(todo))
    per_run_threads = threads if n_jobs == 1 else max(1, threads // n_jobs)
    done: dict[tuple[int, int], tuple[RunRecord, int]] = {}
    bar = tqdm(total=len(todo), desc="compare", disable=not progress, position=0)

    def report(i: int, seed: int, rec: RunRecord) -> None:
        bar.update()
        reused = " (reused)" if rec.reused else ""
        bar.write(f"{preset.entries[i]['label']} seed {seed}: top-1 {rec.top1:.2f}% | {rec.train_time_s:.0f}s{reused}")

    def run_dir(i: int, seed: int) -> Path:
        return runs_dir / _slug(preset.entries[i]["label"]) / f"seed{seed}"

    if n_jobs == 1:
        for i, seed in todo:
            bar.set_postfix_str(f"{preset.entries[i]['label']} seed {seed}")
            cfg = replace(configs[i], seed=seed)
            with _run_lock(run_dir(i, seed)):
                rec, model, params = _run_one(cfg, run_dir(i, seed), seed=seed, progress=progress)
            del model
            done[i, seed] = rec, params
            report(i, seed, rec)
    else:
        # spawn: a forked child would inherit the parent's OpenMP thread pool in an undefined state
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=n_jobs, mp_context=context, initializer=_worker_init) as pool:
            futures = {}
            for i, seed in todo:
                cfg = replace(configs[i], seed=seed, progress=False)
                futures[pool.submit(_train_job, cfg, str(run_dir(i, seed)), seed, per_run_threads)] = i, seed
            try:
                for future in cf.as_completed(futures):
                    i, seed = futures[future]
                    done[i, seed] = future.result()
                    report(i, seed, done[i, seed][0])
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    bar.close()
    return [[done[i, seed] for seed in preset.seeds] for i in range(len(configs))], n_jobs, per_run_threads


def run_comparison(
    preset: ComparePreset,
    *,
    progress: bool = True,
    threads: int | None = None,
    runs_dir: str | Path,
    jobs: int | str | None = None,
) -> CompareResult:
    """Train every entry of ``preset`` once per seed with its shared recipe, then time the architectures.

    Args:
        preset: From :func:`load_preset`.
        progress: Show a tqdm bar over runs (and the trainer's own bars).
        threads: Torch intra-op threads (None: the bench section's, else one per core).
        runs_dir: Each (entry, seed) trains in ``runs_dir/<label>/seed<k>``; a finished run of the same
            config found there is reused, an interrupted one resumed from its last checkpoint.
        jobs: Runs trained at a time (None: the preset's ``jobs``); see the module docstring.

    Returns:
        The comparison.

    Raises:
        ConfigError: A recipe key or value is invalid (the trainer's message, with close keys).
    """

    from hiermlp.bench.flops import count_gmacs
    from hiermlp.bench.speed import BenchEntry, benchmark_models
    from hiermlp.train import config_to_dict
    from hiermlp.train.config import config_from_dict
    from hiermlp.train.loop import model_from_config

    t_start = time.perf_counter()
    threads = set_threads(threads or preset.bench.get("threads"))
    configs = []
    for e in preset.entries:  # validate every config before training anything
        # TensorBoard off unless asked for: event files are of no use to a comparison and cost time
        recipe = {"tensorboard": False, **preset.recipe}
        cfg = config_from_dict({**recipe, "model": e["model"], "model_kwargs": e["model_kwargs"], "progress": progress})
        configs.append(cfg)
    env = environment(configs[0].device if configs[0].device != "auto" else "cpu")
    runs_of, n_jobs, job_threads = _train_all(
        preset, configs, Path(runs_dir), progress=progress, threads=threads, jobs=jobs
    )
    rows: list[CompareRow] = []
    for i, (e, cfg) in enumerate(zip(preset.entries, configs)):
        runs = [rec for rec, _ in runs_of[i]]
        params = runs_of[i][0][1]
        # GMACs do not depend on the weights: counted on a freshly built model
        gmacs = count_gmacs(
            model_from_config(cfg, cfg.num_classes or 10).cpu(), (cfg.in_chans, cfg.img_size, cfg.img_size)
        )
        rows.append(
            CompareRow(
                label=e["label"],
                model=e["model"],
                model_kwargs=e["model_kwargs"],
                baseline=e["baseline"],
                params=params,
                gmacs=float(gmacs or 0.0),
                runs=runs,
                top1=mean_interval([r.top1 for r in runs]),
                best_top1=mean_interval([r.best_top1 for r in runs]),
            )
        )
    bench = {"batch": 64, "repeats": 5, "warmup": 1, "memory": False, "train": True, "latency": False}
    bench |= preset.bench
    if not bench.pop("skip", False) and _is_main():  # under torchrun rank 0 times the models alone
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
    for k in ("model", "model_kwargs", "seed", *_VOLATILE):
        recipe.pop(k, None)
    result = CompareResult(preset.title, rows, finish_environment(env), recipe, bench, list(preset.seeds))
    diffs = {}
    for i, a in enumerate(rows):
        for b in rows[i + 1 :]:
            d = result.diff(a.label, b.label)
            if d.mean < 0:  # state every pair as "higher minus lower" so the table reads one way
                a_, b_, d = b, a, result.diff(b.label, a.label)
            else:
                a_, b_ = a, b
            diffs[(a_.label, b_.label)] = d
            result.pairs.append({"a": a_.label, "b": b_.label, "diff": d, "verdict": verdict(d)})
    result.pairs.sort(key=lambda p: -p["diff"].mean)
    ranks = supported_ranks([r.label for r in rows], diffs)
    for r in rows:
        r.rank = ranks[r.label]
    for c in preset.claims:
        d = result.diff(c["a"], c["b"])
        result.claims.append(c | {"diff": d, "verdict": claim_verdict(d)})
    result.wall_s = time.perf_counter() - t_start
    result.jobs, result.job_threads = n_jobs, job_threads
    return result


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
        help="recipe overrides (epochs=1), section keys (bench.batch=32), seeds=5 or only=label1,label2",
    )
    parser.add_argument(
        "--out", default=None, help="write compare.md/.csv/.json and PNG plots here (default: runs/compare/PRESET)"
    )
    parser.add_argument(
        "--runs-dir",
        default=None,
        help="train each (entry, seed) in RUNS_DIR/LABEL/seedK; rerunning the same command reuses finished "
        "runs and resumes an interrupted one (default: OUT/runs)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all cores)")
    parser.add_argument(
        "--jobs",
        default=None,
        help="runs trained at a time, each in a worker process with threads/jobs torch threads; 'auto' = one "
        "per CPU core (default: the preset's jobs, else 1)",
    )
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
    runs_dir = args.runs_dir or str(Path(args.out) / "runs")
    try:
        preset = load_preset(preset_name, overrides)
        jobs = None if args.jobs is None else _jobs(_int(args.jobs), "--jobs")
        result = run_comparison(
            preset, progress=not args.no_progress, threads=args.threads, runs_dir=runs_dir, jobs=jobs
        )
    except (FileNotFoundError, HiermlpError) as e:
        print(f"hiermlp compare: error: {e}", file=sys.stderr)
        return 2
    command = shlex.join(
        ["hiermlp", "compare", preset_name, *overrides, "--out", args.out]
        + (["--runs-dir", args.runs_dir] if args.runs_dir else [])
        + (["--threads", str(args.threads)] if args.threads else [])
        + (["--jobs", str(args.jobs)] if args.jobs else [])
    )
    if not _is_main():  # torchrun: every rank trained, rank 0 reports
        return 0
    print(result.markdown(command))
    paths = result.save(args.out, command=command)
    print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
