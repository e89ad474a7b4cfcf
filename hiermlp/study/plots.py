"""A study's figures: learning curves, accuracy against throughput, and the claims' forest plot (PNG)."""

from __future__ import annotations

import math
from pathlib import Path

from hiermlp.bench.report import new_figure, save_figure
from hiermlp.study.report import CompareResult
from hiermlp.study.stats import Interval

__all__ = ["paper_value", "plot_claims", "plot_curves", "plot_tradeoff", "save_plots"]


def paper_value(text: str) -> float | None:
    """The leading signed number of a claim's paper figure (``"+1.1 (Swin-T)"`` -> 1.1), if any."""
    head = str(text).strip().split(" ", 1)[0]
    try:
        return float(head)
    except ValueError:
        return None


def plot_curves(result: CompareResult, path: Path) -> Path:
    """Test top-1 and train loss per epoch: the mean over seeds, a band from the lowest to the highest seed."""
    fig, (ax_acc, ax_loss) = new_figure(1, 2, figsize=(12, 4.8))
    for i, r in enumerate(result.rows):
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
        xlabel="epoch", ylabel="test top-1 (%)", title=f"test accuracy (band: min–max over {len(result.seeds)} seeds)"
    )
    ax_loss.set(xlabel="epoch", ylabel="train loss", title="training loss")
    epochs = sorted({h["epoch"] for r in result.rows for run in r.runs for h in run.history})
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        if 0 < len(epochs) <= 20:  # whole epochs only
            ax.set_xticks(epochs)
    ax_acc.legend(fontsize=7, ncol=2)
    fig.suptitle(result.title, fontsize=10)
    return save_figure(fig, path)


def plot_tradeoff(result: CompareResult, path: Path) -> Path:
    """Top-1 (mean, 95% CI bars) against inference throughput (median, IQR bars)."""
    fig, ax = new_figure(figsize=(8, 5.5))
    for i, r in enumerate(result.rows):
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
        xlabel=f"inference images/s (batch {result.bench.get('batch', 64)}, median, IQR bars)",
        ylabel="test top-1 (%), mean and 95% CI over seeds",
        title="accuracy vs throughput (squares: baselines)",
    )
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    return save_figure(fig, path)


def plot_claims(result: CompareResult, path: Path) -> Path:
    """Forest plot: each claim's Δ top-1 with its 95% CI, zero line, and the paper's figure (×)."""
    claims = result.claims
    fig, ax = new_figure(figsize=(8, 1.2 + 0.55 * len(claims)))
    ys = list(range(len(claims)))[::-1]
    for y, c in zip(ys, claims):
        d: Interval = c["diff"]
        color = {"supported": "C2", "reversed": "C3"}.get(c["verdict"], "C7")
        if math.isfinite(d.lo):
            ax.plot([d.lo, d.hi], [y, y], color=color, lw=2)
        ax.plot([d.mean], [y], "o", color=color)
        paper = paper_value(c["paper"])
        if paper is not None:
            ax.plot([paper], [y], "x", color="k", ms=7, label="paper (ImageNet-1k)" if y == ys[0] else None)
    ax.axvline(0.0, color="k", lw=0.8, ls="--")
    ax.set_yticks(ys, [f"{c['claim']} ({c['family']})" for c in claims], fontsize=8)
    ax.set(xlabel="Δ top-1 (percentage points), mean and 95% CI over seeds", title="the papers' claims at this scale")
    ax.grid(alpha=0.3, axis="x")
    if any(paper_value(c["paper"]) is not None for c in claims):
        ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def save_plots(result: CompareResult, out_dir: str | Path) -> list[Path]:
    """Write curves.png, acc_vs_speed.png and (with claims) claims.png into ``out_dir``."""
    out = Path(out_dir)
    paths = [plot_curves(result, out / "curves.png"), plot_tradeoff(result, out / "acc_vs_speed.png")]
    if result.claims:
        paths.append(plot_claims(result, out / "claims.png"))
    return paths
