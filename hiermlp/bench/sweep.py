"""Resolution sweep: inference time and peak memory against image size, with fitted growth exponents.

The Swin paper's efficiency claim is that window self-attention costs time linear in the number of
pixels while global self-attention costs quadratic. Here it is measured: each model runs at every image
size, and the growth exponent is the least-squares slope of log(time per image) against log(pixels)
(1 = linear, 2 = quadratic). The same slope is fitted for peak memory and for the analytic GMACs.

At every point, memory is measured first in a fresh subprocess (see :mod:`hiermlp.bench.memory`), which
doubles as a canary: a point that runs out of memory is recorded as OOM without touching this process,
and the sweep goes on. ``max_point_s`` caps the time of a point: repeats shrink to fit it, a point whose
single run would not fit is recorded as ``time cap``, and the model's larger sizes are skipped (they
only get slower).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from hiermlp.accel.compiling import compile_model
from hiermlp.bench.env import environment, finish_environment, set_threads
from hiermlp.bench.flops import count_gmacs
from hiermlp.bench.memory import measure_peak_memory
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
from hiermlp.bench.resolve import ImageSizeError, ModelRef, build_at_size, check_input_size, is_oom, resolve_model
from hiermlp.bench.speed import BenchEntry
from hiermlp.bench.timing import Stats, Timed, round_robin
from hiermlp.bench.workload import infer_step

__all__ = ["SweepFit", "SweepPoint", "SweepReport", "fit_exponent", "run_sweep"]


@dataclass
class SweepPoint:
    """One (model, image size) measurement.

    Attributes:
        model: Row label.
        img_size: Image side.
        status: ``ok``, ``oom``, ``unsupported``, ``time cap``, ``skipped`` or ``error``.
        ms_per_img: Inference milliseconds per image at the sweep batch (median, quartiles).
        mem_mb: Peak memory of one inference batch (MiB), see :mod:`hiermlp.bench.memory`.
        gmacs: GMACs per image at this size.
        error: Why the point has no time.
    """

    model: str
    img_size: int
    status: str = "ok"
    ms_per_img: Stats | None = None
    mem_mb: float | None = None
    gmacs: float | None = None
    error: str = ""

    @property
    def pixels(self) -> int:
        return self.img_size * self.img_size

    def flat(self) -> dict[str, Any]:
        s = self.ms_per_img
        return {
            "model": self.model,
            "img_size": self.img_size,
            "pixels": self.pixels,
            "status": self.status,
            "ms_per_img_median": s.median if s else None,
            "ms_per_img_q1": s.q1 if s else None,
            "ms_per_img_q3": s.q3 if s else None,
            "ms_per_img_min": s.min if s else None,
            "ms_per_img_max": s.max if s else None,
            "repeats": s.n if s else None,
            "mem_mb": self.mem_mb,
            "gmacs": self.gmacs,
            "error": self.error,
        }


@dataclass
class SweepFit:
    """Fitted growth exponents of one model (slope of log y vs log pixels; None with < 2 points).

    Attributes:
        model: Row label.
        time_exp: Exponent of time per image over all measured points.
        time_exp_top: Exponent over the three largest measured points (the asymptotic regime, where
            fixed per-call overheads no longer flatten the curve); None with fewer than 4 points.
        mem_exp: Exponent of peak memory.
        gmacs_exp: Exponent of the analytic GMACs.
        n_points: Points with a time.
    """

    model: str
    time_exp: float | None
    time_exp_top: float | None
    mem_exp: float | None
    gmacs_exp: float | None
    n_points: int


def fit_exponent(pixels: Sequence[float], values: Sequence[float | None]) -> float | None:
    """Least-squares slope of log(value) against log(pixels), over the points with a positive value."""
    pts = [(p, v) for p, v in zip(pixels, values) if v is not None and v > 0 and math.isfinite(v)]
    if len(pts) < 2:
        return None
    x, y = np.log([p for p, _ in pts]), np.log([v for _, v in pts])
    return float(np.polyfit(x, y, 1)[0])


@dataclass
class SweepReport:
    """Points of every model, their fits, the environment and the settings."""

    points: list[SweepPoint]
    env: dict[str, Any]
    settings: dict[str, Any]
    fits: list[SweepFit] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(p.model for p in self.points))

    def fit(self) -> list[SweepFit]:
        """(Re)compute the growth exponents of every model."""
        self.fits = []
        for m in self.models:
            pts = sorted((p for p in self.points if p.model == m), key=lambda p: p.img_size)
            timed = [p for p in pts if p.ms_per_img is not None]
            top = timed[-3:] if len(timed) >= 4 else []
            self.fits.append(
                SweepFit(
                    m,
                    fit_exponent([p.pixels for p in timed], [p.ms_per_img.median for p in timed]),
                    fit_exponent([p.pixels for p in top], [p.ms_per_img.median for p in top]) if top else None,
                    fit_exponent([p.pixels for p in pts], [p.mem_mb for p in pts]),
                    fit_exponent([p.pixels for p in pts], [p.gmacs for p in pts]),
                    len(timed),
                )
            )
        return self.fits

    def table(self) -> str:
        """Markdown: ms/image per size, then the exponents."""
        sizes = sorted({p.img_size for p in self.points})
        by = {(p.model, p.img_size): p for p in self.points}

        def cell(p: SweepPoint | None) -> str:
            if p is None:
                return "-"
            if p.ms_per_img is None:
                return p.status.upper() if p.status == "oom" else p.status
            return fmt_stats(p.ms_per_img)

        def mem_cell(p: SweepPoint | None) -> str:
            if p is None:
                return "-"
            return fmt_num(p.mem_mb) if p.mem_mb is not None else ("OOM" if p.status == "oom" else "-")

        fits = {f.model: f for f in self.fits or self.fit()}
        e = lambda x: f"{x:.2f}" if x is not None else "-"
        time_rows = [
            [f"`{m}`", *(cell(by.get((m, s))) for s in sizes), e(fits[m].time_exp), e(fits[m].time_exp_top)]
            for m in self.models
        ]
        mem_rows = [[f"`{m}`", *(mem_cell(by.get((m, s))) for s in sizes), e(fits[m].mem_exp)] for m in self.models]
        gmac_rows = [
            [f"`{m}`", *(fmt_num(by[(m, s)].gmacs) if (m, s) in by else "-" for s in sizes), e(fits[m].gmacs_exp)]
            for m in self.models
        ]
        b = self.settings["batch"]
        return "\n\n".join(
            [
                f"**Inference ms per image** (batch {b}; median (q1–q3)) and growth exponent α "
                "(time ∝ pixels^α; 1 = linear, 2 = quadratic; top3 = fit over the 3 largest sizes)",
                markdown_table(["model", *map(str, sizes), "α", "α top3"], time_rows),
                f"**Peak memory MiB** (one inference batch of {b})",
                markdown_table(["model", *map(str, sizes), "α"], mem_rows),
                "**GMACs per image** (analytic, torch.utils.flop_counter)",
                markdown_table(["model", *map(str, sizes), "α"], gmac_rows),
            ]
        )

    def notes(self) -> str:
        s = self.settings
        cap = f"{s['max_point_s']}s per point" if s.get("max_point_s") else "none"
        lines = [
            f"Up to {s['repeats']} timed samples per point after {s['warmup']} warm-up calls, models at one "
            f"size interleaved round-robin. Time cap: {cap}. Exponents are least-squares slopes of "
            "log(value) vs log(pixels) over the points that have a value.",
        ]
        lines += [f"- **{p.model}** @ {p.img_size}: {p.status}: {p.error}" for p in self.points if p.error]
        return "\n".join(lines)

    def markdown(self, title: str = "hiermlp resolution sweep", command: str | None = None) -> str:
        return "\n".join([environment_header(title, self.env, command), self.table(), "", self.notes()])

    def as_dict(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "settings": self.settings,
            "fits": [asdict(f) for f in self.fits or self.fit()],
            "points": [p.flat() for p in self.points],
        }

    def save(self, out_dir: str | Path, *, command: str | None = None, stem: str = "sweep") -> list[Path]:
        """Write ``{stem}.md``, ``.csv`` (one row per point), ``.json`` and the log-log ``.png``."""
        out = Path(out_dir)
        self.fit()
        return [
            write_text(out / f"{stem}.md", self.markdown(command=command)),
            write_csv(out / f"{stem}.csv", [p.flat() for p in self.points]),
            write_json(out / f"{stem}.json", self.as_dict() | {"command": command}),
            self.plot(out / f"{stem}.png"),
        ]

    def plot(self, path: str | Path) -> Path:
        """Log-log time and memory against pixels, with the fitted exponents in the legend."""
        fits = {f.model: f for f in self.fits or self.fit()}
        sizes = sorted({p.img_size for p in self.points})
        fig, (ax_t, ax_m) = new_figure(1, 2, figsize=(12, 4.8))
        for i, m in enumerate(self.models):
            color = f"C{i % 10}"
            pts = sorted((p for p in self.points if p.model == m), key=lambda p: p.img_size)
            timed = [p for p in pts if p.ms_per_img is not None]
            if timed:
                x = np.array([p.pixels for p in timed], dtype=float)
                y = np.array([p.ms_per_img.median for p in timed])
                lo = y - np.array([p.ms_per_img.q1 for p in timed])
                hi = np.array([p.ms_per_img.q3 for p in timed]) - y
                f = fits[m]
                label = f"{m}: α={f.time_exp:.2f}" if f.time_exp is not None else m
                if f.time_exp_top is not None:
                    label += f" (top3 {f.time_exp_top:.2f})"
                ax_t.errorbar(x, y, yerr=[lo, hi], fmt="o-", color=color, label=label, capsize=3)
            for p in pts:
                if p.status in ("oom", "time cap") and timed:
                    # mark where the curve stops, at the height of its last measured point
                    y_last = timed[-1].ms_per_img.median
                    ax_t.annotate(p.status.upper(), (p.pixels, y_last), color=color, fontsize=7, rotation=30)
            mem = [p for p in pts if p.mem_mb is not None]
            if mem:
                f = fits[m]
                label = f"{m}: α={f.mem_exp:.2f}" if f.mem_exp is not None else m
                ax_m.plot([p.pixels for p in mem], [p.mem_mb for p in mem], "s-", color=color, label=label)
        for ax, ylabel, title in (
            (ax_t, f"ms / image (batch {self.settings['batch']})", "inference time vs pixels"),
            (ax_m, "peak MiB (one batch)", "peak memory vs pixels"),
        ):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks([s * s for s in sizes], [f"{s}²" for s in sizes])
            ax.minorticks_off()
            ax.set_xlabel("pixels (image side²)")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.grid(True, which="major", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, title="fitted exponent α (∝ pixels^α)", title_fontsize=8)
        env = self.env
        fig.suptitle(f"{env['device_name']} · torch threads: {env['threads']} · {env['dtype']}", fontsize=9)
        return save_figure(fig, Path(path))


def run_sweep(
    models: Sequence[str | BenchEntry],
    sizes: Sequence[int],
    *,
    batch: int = 4,
    device: str = "cpu",
    dtype: str = "float32",
    compile: bool = False,
    threads: int | None = None,
    repeats: int = 5,
    warmup: int = 1,
    min_sample_s: float = 0.05,
    max_point_s: float | None = None,
    memory: bool = True,
    in_chans: int = 3,
    num_classes: int = 1000,
    progress: bool = False,
) -> SweepReport:
    """Measure inference time (and peak memory) of each model at each image size.

    Args:
        models: Model names or :class:`~hiermlp.bench.speed.BenchEntry` items.
        sizes: Image sides, e.g. ``(64, 128, 224, 384, 512)``.
        batch: Inference batch size.
        device: ``cpu`` or ``cuda``.
        dtype: ``float32`` or an autocast dtype.
        compile: Time the ``torch.compile`` d model.
        threads: Intra-op CPU threads (None: one per available core).
        repeats: Timed samples per point (fewer when ``max_point_s`` requires).
        warmup: Untimed calls per point.
        min_sample_s: A sample repeats fast calls until it lasts this long.
        max_point_s: Cap on the timed seconds of one point (None: no cap).
        memory: Measure peak memory per point in a subprocess (also the OOM canary).
        in_chans: Input channels.
        num_classes: Classifier outputs.
        progress: Show a tqdm progress bar.

    Returns:
        The report, with exponents fitted.

    Raises:
        UnknownNameError: A model name is unknown (raised before anything is measured).
    """
    entries = [m if isinstance(m, BenchEntry) else BenchEntry(m) for m in models]
    refs = [resolve_model(e.model) for e in entries]
    dev = torch.device(device)
    threads = set_threads(threads)
    env = environment(dev, dtype, compile)
    settings = {
        "sizes": list(sizes),
        "batch": batch,
        "repeats": repeats,
        "warmup": warmup,
        "min_sample_s": min_sample_s,
        "max_point_s": max_point_s,
        "memory": memory,
        "in_chans": in_chans,
        "num_classes": num_classes,
    }
    points: list[SweepPoint] = []
    capped: set[str] = set()
    any_size: dict[str, nn.Module] = {}  # models without img_size are built once and reused
    bar = tqdm(total=len(entries) * len(sizes), desc="sweep", disable=not progress)
    for size in sorted(sizes):
        tasks: list[tuple[SweepPoint, Timed]] = []
        for entry, ref in zip(entries, refs):
            bar.set_postfix_str(f"{entry.name} @ {size}")
            point = SweepPoint(entry.name, size)
            points.append(point)
            if entry.name in capped:
                point.status, point.error = "skipped", "a smaller size exceeded the time cap"
                bar.update()
                continue
            task = _prepare_point(
                point,
                entry,
                ref,
                any_size,
                batch=batch,
                dev=dev,
                dtype=dtype,
                compile=compile,
                threads=threads,
                memory=memory,
                repeats=repeats,
                max_point_s=max_point_s,
                in_chans=in_chans,
                num_classes=num_classes,
            )
            if point.status == "time cap":
                capped.add(entry.name)
            if task is not None:
                tasks.append((point, task))
            else:
                bar.update()
        round_robin([t for _, t in tasks], repeats=repeats, warmup=warmup, min_sample_s=min_sample_s, catch=is_oom)
        for point, task in tasks:
            if task.error is not None:
                point.status, point.error = "oom", str(task.error).splitlines()[0][:200]
            elif task.samples:
                # time per image: a batch's seconds / batch, in milliseconds
                point.ms_per_img = task.time_stats().map(lambda s: s * 1e3 / batch)
            bar.update()
        tasks.clear()  # free this size's models before building the next size's
    bar.close()
    report = SweepReport(points, finish_environment(env), settings)
    report.fit()
    return report


def _prepare_point(
    point: SweepPoint,
    entry: BenchEntry,
    ref: ModelRef,
    any_size: dict[str, nn.Module],
    *,
    batch: int,
    dev: torch.device,
    dtype: str,
    compile: bool,
    threads: int,
    memory: bool,
    repeats: int,
    max_point_s: float | None,
    in_chans: int,
    num_classes: int,
) -> Timed | None:
    """Measure memory, build and check the model at one size; return its timing task or None."""
    size = point.img_size
    if memory:
        res = measure_peak_memory(
            entry.model,
            img_size=size,
            batch=batch,
            device=str(dev),
            dtype=dtype,
            threads=threads,
            in_chans=in_chans,
            num_classes=num_classes,
            model_kwargs=entry.model_kwargs,
            compile=compile,
            timeout_s=max(120.0, 20 * max_point_s) if max_point_s else 1800.0,
        )
        if res.status == "ok":
            point.mem_mb = res.peak_mb
        elif res.status in ("oom", "unsupported"):
            point.status, point.error = res.status, res.error
            return None
        elif res.status == "timeout":
            point.status, point.error = "time cap", res.error
            return None
        else:
            point.error = f"memory: {res.error}"
    input_size = (in_chans, size, size)
    try:
        model = any_size.get(entry.name)
        if model is None:
            model, takes_any = build_at_size(
                ref, img_size=size, in_chans=in_chans, num_classes=num_classes, model_kwargs=entry.model_kwargs
            )
            model = model.to(dev)
            if takes_any:
                any_size[entry.name] = model
        t0 = time.perf_counter()
        check_input_size(model, entry.name, input_size, dev)
        first_s = time.perf_counter() - t0
        if max_point_s is not None and first_s * batch > max_point_s:
            point.status = "time cap"
            point.error = f"one batch takes ~{first_s * batch:.1f}s > cap {max_point_s}s"
            return None
        point.gmacs = count_gmacs(model, input_size, device=dev)
    except ImageSizeError as e:
        point.status, point.error = "unsupported", str(e)
        return None
    except Exception as e:
        if not is_oom(e):
            raise
        point.status, point.error = "oom", str(e).splitlines()[0][:200]
        return None
    fwd = compile_model(model) if compile else None
    x = torch.randn(batch, *input_size, device=dev)
    task = Timed((entry.name, str(size)), infer_step(model, x, dtype, fwd), dev, items=batch)
    if max_point_s is not None:
        # the first (cold) batch-1 call over-estimates a warm batch's share, so this errs on the safe side
        est = max(first_s * batch, 1e-6)
        task.repeats = min(repeats, repeats_cap(max_point_s, est))
    return task


def repeats_cap(max_point_s: float, sample_s: float) -> int:
    """How many samples of ``sample_s`` seconds fit in ``max_point_s`` (at least 1)."""
    return max(1, int(max_point_s // sample_s))
