"""Params, GMACs, inference/training throughput, batch-1 latency and peak memory of models, side by side.

Every model of a table is built in the same process and timed round-robin (sample i of every model
before sample i+1 of any), so hiermlp models and timm baselines share the machine's conditions. Memory is
measured separately, in a fresh subprocess per model and mode (see :mod:`hiermlp.bench.memory`), before
any timing: a model that would exhaust memory is recorded as OOM instead of taking the benchmark down.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from hiermlp.bench.resolve import (
    ImageSizeError,
    ModelRef,
    build_at_size,
    check_input_size,
    is_oom,
    resolve_model,
)
from hiermlp.bench.timing import Stats, Timed, round_robin, synchronize
from hiermlp.bench.workload import autocast, infer_step, train_step
from hiermlp.errors import ConfigError

__all__ = ["BenchEntry", "BenchReport", "BenchRow", "benchmark_model", "benchmark_models"]


@dataclass(frozen=True)
class BenchEntry:
    """A model to benchmark with its own options.

    Attributes:
        model: Model name (hiermlp's, timm's, or ``timm:``-prefixed).
        label: Row label; defaults to ``model``.
        model_kwargs: Constructor options (e.g. ``{"mixer": "gmlp"}``).
    """

    model: str
    label: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.label or self.model


@dataclass
class BenchRow:
    """One model's measurements.

    Throughputs are images per second, latency is milliseconds per batch-1 forward, step times milliseconds
    per batch or optimizer step; each is a :class:`Stats` over ``repeats`` samples (median with quartiles and
    extremes). ``*_rel`` are speeds relative to the first row (>1: faster than the first model). Peak memory
    is in MiB, measured as ``mem_method`` says; None when not measured.
    """

    model: str
    source: str
    model_name: str
    img_size: int
    batch: int
    params: int | None = None
    gmacs: float | None = None
    infer_img_s: Stats | None = None
    latency_ms: Stats | None = None
    train_img_s: Stats | None = None
    infer_step_ms: Stats | None = None  # milliseconds per batch (benchmark.py's infer_step_time)
    train_step_ms: Stats | None = None  # milliseconds per optimizer step (benchmark.py's train_step_time)
    infer_rel: float | None = None
    latency_rel: float | None = None
    train_rel: float | None = None
    mem_infer_mb: float | None = None
    mem_train_mb: float | None = None
    mem_method: str = ""
    # with compile: seconds of the first compiled forward (compiling included), of the first forward at a
    # new spatial size (the recompile) and of one at a new batch size (batch 1 is always specialised: a
    # compile of its own); None where not measured
    compile_s: float | None = None
    recompile_size_s: float | None = None
    recompile_batch_s: float | None = None
    status: str = "ok"
    error: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (Stats become nested dicts)."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            out[k] = v.as_dict() if isinstance(v, Stats) else v
        return out

    def flat(self) -> dict[str, Any]:
        """One CSV row: each Stats becomes ``<name>_median``, ``_q1``, ``_q3``, ``_min``, ``_max``."""
        out: dict[str, Any] = {}
        for k, v in self.__dict__.items():
            if k in _STATS:
                for s in ("median", "q1", "q3", "min", "max"):
                    out[f"{k}_{s}"] = getattr(v, s) if v is not None else None
            elif k == "model_kwargs":
                out[k] = repr(v) if v else ""
            else:
                out[k] = v
        return out


_STATS = ("infer_img_s", "latency_ms", "train_img_s", "infer_step_ms", "train_step_ms")


@dataclass
class BenchReport:
    """Rows plus the environment they were measured in and the settings used."""

    rows: list[BenchRow]
    env: dict[str, Any]
    settings: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"env": self.env, "settings": self.settings, "rows": [r.as_dict() for r in self.rows]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchReport:
        """Rebuild a report from :meth:`as_dict` output (e.g. a saved ``bench.json``)."""
        rows = []
        for d in data["rows"]:
            d = dict(d)
            for key in _STATS:
                d[key] = Stats(**d[key]) if d.get(key) else None
            rows.append(BenchRow(**d))
        return cls(rows, data["env"], data["settings"])

    def table(self) -> str:
        """The Markdown table: medians with interquartile ranges, and speed relative to the first row."""
        header = [
            "model",
            "source",
            "img",
            "params (M)",
            "GMACs",
            f"infer img/s @{self.settings['batch']}",
            "ms/step",
            "×1st",
            "latency ms @1",
            "×1st",
            f"train img/s @{self.settings['batch']}",
            "ms/step",
            "×1st",
            "peak MiB infer",
            "peak MiB train",
        ]
        rows = []
        for r in self.rows:
            rel = lambda x: f"{x:.2f}" if x is not None else "-"
            rows.append(
                [
                    f"`{r.model}`",
                    r.source,
                    r.img_size or "-",
                    fmt_num(r.params / 1e6 if r.params else None),
                    fmt_num(r.gmacs),
                    fmt_stats(r.infer_img_s),
                    fmt_num(r.infer_step_ms.median if r.infer_step_ms else None),
                    rel(r.infer_rel),
                    fmt_stats(r.latency_ms),
                    rel(r.latency_rel),
                    fmt_stats(r.train_img_s),
                    fmt_num(r.train_step_ms.median if r.train_step_ms else None),
                    rel(r.train_rel),
                    fmt_num(r.mem_infer_mb),
                    fmt_num(r.mem_train_mb),
                ]
            )
        return markdown_table(header, rows, "lll" + "r" * (len(header) - 3))

    def notes(self) -> str:
        """How to read the table, and the rows that failed."""
        s = self.settings
        mem = next((r.mem_method for r in self.rows if r.mem_method), "not measured")
        lines = [
            f"Median of {s['repeats']} timed samples after {s['warmup']} warm-up calls, models interleaved "
            "round-robin; (q1–q3) is the interquartile range. ×1st = speed relative to the first row "
            f"(>1 is faster). ms/step = milliseconds per batch (median). Training = forward + cross-entropy + "
            f"backward + {s.get('opt', 'adamw')} step (timm's create_optimizer_v2; benchmark.py's default is sgd).",
            f"Peak memory: {mem}; weights and activations (+ gradients and AdamW state for training).",
        ]
        compiled = [r for r in self.rows if r.compile_s is not None]
        if compiled:
            lines += [
                "",
                "torch.compile (hiermlp.accel.compile_model: static sizes, the batch marked dynamic), seconds of "
                f"the first forward in eval mode (compiling included); a new size is {NEW_SIZE_STEP} pixels more "
                "per side, a new batch half the batch ('-': the model does not take that input). Inductor reuses "
                f"kernels that earlier runs left in its cache ({inductor_cache_dir()}): for cold times, set "
                "TORCHINDUCTOR_CACHE_DIR to an empty directory.",
                "",
                markdown_table(
                    ["model", "first compile s", "new size s", "new batch s"],
                    [
                        [
                            f"`{r.model}`",
                            fmt_num(r.compile_s),
                            fmt_num(r.recompile_size_s),
                            fmt_num(r.recompile_batch_s),
                        ]
                        for r in compiled
                    ],
                    "lrrr",
                ),
            ]
        lines += [f"- **{r.model}**: {r.status}: {r.error}" for r in self.rows if r.error]
        return "\n".join(lines)

    def markdown(self, title: str = "hiermlp bench", command: str | None = None) -> str:
        """Header (machine, versions), table and notes as one Markdown document."""
        return "\n".join([environment_header(title, self.env, command), self.table(), "", self.notes()])

    def save(self, out_dir: str | Path, *, command: str | None = None, stem: str = "bench") -> list[Path]:
        """Write ``{stem}.md``, ``.csv``, ``.json``, ``.png`` and ``benchmark.csv`` (timm's benchmark.py columns,
        :mod:`hiermlp.bench.timm_format`) into ``out_dir``.

        Returns:
            The paths written.
        """
        from hiermlp.bench.timm_format import benchmark_py_rows

        out = Path(out_dir)
        data = self.as_dict() | {"command": command}
        paths = [
            write_text(out / f"{stem}.md", self.markdown(command=command)),
            write_csv(out / f"{stem}.csv", [r.flat() for r in self.rows]),
            write_json(out / f"{stem}.json", data),
        ]
        timm_rows = benchmark_py_rows(self)
        if timm_rows:  # benchmark.py's --results-file columns, to join with its results
            paths.append(write_csv(out / "benchmark.csv", timm_rows))
        paths.append(self.plot(out / f"{stem}.png"))
        return paths

    def plot(self, path: str | Path) -> Path:
        """Bar charts of inference and training throughput (median, IQR whiskers) per model."""
        ok = [r for r in self.rows if r.infer_img_s is not None or r.train_img_s is not None]
        fig, axes = new_figure(1, 2, figsize=(11, 0.5 * max(len(ok), 2) + 1.8), sharey=True)
        labels = [r.model for r in ok]
        for ax, attr, title in (
            (axes[0], "infer_img_s", f"inference, batch {self.settings['batch']}"),
            (axes[1], "train_img_s", f"training step, batch {self.settings['batch']}"),
        ):
            stats = [getattr(r, attr) for r in ok]
            med = [s.median if s else 0.0 for s in stats]
            err = [[s.median - s.q1 if s else 0 for s in stats], [s.q3 - s.median if s else 0 for s in stats]]
            color = "tab:blue" if attr == "infer_img_s" else "tab:orange"
            ax.barh(range(len(ok)), med, xerr=err, color=color)
            ax.set_yticks(range(len(ok)), labels)
            ax.set_xlabel("images / s (median, IQR)")
            ax.set_title(title)
            ax.grid(axis="x", alpha=0.3)
        axes[0].invert_yaxis()  # first model on top; once only, the y axis is shared
        env = self.env
        fig.suptitle(f"{env['device_name']} · torch threads: {env['threads']} · {env['dtype']}", fontsize=9)
        return save_figure(fig, Path(path))


def _entry(item: str | BenchEntry) -> BenchEntry:
    return item if isinstance(item, BenchEntry) else BenchEntry(item)


def default_img_size(model: nn.Module, fallback: int = 224) -> int:
    """The input side a model was configured for (timm's ``pretrained_cfg``), else ``fallback``."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = cfg.get("input_size")
    return int(size[-1]) if size else fallback


def benchmark_models(
    models: Sequence[str | BenchEntry],
    *,
    img_size: int | None = None,
    batch: int = 32,
    device: str = "cpu",
    dtype: str = "float32",
    compile: bool = False,
    threads: int | None = None,
    repeats: int = 10,
    warmup: int = 2,
    min_sample_s: float = 0.05,
    in_chans: int = 3,
    num_classes: int = 1000,
    train: bool = True,
    latency: bool = True,
    memory: bool = True,
    progress: bool = False,
    opt: str = "adamw",
    input_size: tuple[int, ...] | None = None,
) -> BenchReport:
    """Measure several models under identical conditions, timed round-robin.

    Args:
        models: Model names or :class:`BenchEntry` items. Names resolve through hiermlp's registry
            first, then timm's; ``timm:NAME`` forces timm's.
        img_size: Input side; None uses each model's configured size.
        batch: Batch size of the throughput measurements (inference and training).
        device: ``cpu`` or ``cuda``.
        dtype: ``float32``, or ``bfloat16``/``float16`` run under autocast.
        compile: Time the ``torch.compile`` d model (compilation happens during warm-up).
        threads: Intra-op CPU threads (None: one per available core); set explicitly either way.
        repeats: Timed samples per measurement; the median is reported with quartiles.
        warmup: Untimed calls before sampling.
        min_sample_s: A sample repeats fast calls until it lasts this long.
        in_chans: Input channels.
        num_classes: Classifier outputs.
        train: Measure training steps (forward + backward + ``opt`` step).
        latency: Measure batch-1 inference latency.
        memory: Measure peak memory (one fresh subprocess per model and mode).
        progress: Show a tqdm progress bar.
        opt: The training step's optimizer, a timm name (``timm.optim.create_optimizer_v2``).
        input_size: One sample's whole shape ``(C, *spatial)``, for inputs that are not square images (a
            clip's ``(C, T, H, W)``); then ``img_size`` must be None and each entry's ``model_kwargs`` size the
            model, and peak memory is not measured (its subprocess builds square-image inputs).

    Returns:
        The report. A model that cannot take the image size, or runs out of memory, gets a row with
        ``status`` ``unsupported``/``oom`` and a message instead of failing the whole table.

    Raises:
        UnknownNameError: A model name is unknown (raised before anything is measured).
    """
    entries = [_entry(m) for m in models]
    refs = [resolve_model(e.model) for e in entries]  # fail fast on a typo, before minutes of timing
    if input_size is not None:
        if img_size is not None:
            raise ConfigError(f"give img_size or input_size, not both (got {img_size} and {input_size})")
        input_size = tuple(int(v) for v in input_size)
        in_chans, memory = input_size[0], False
    dev = torch.device(device)
    threads = set_threads(threads)
    env = environment(dev, dtype, compile)
    settings = {
        "img_size": img_size,
        "batch": batch,
        "repeats": repeats,
        "warmup": warmup,
        "min_sample_s": min_sample_s,
        "train": train,
        "latency": latency,
        "memory": memory,
        "in_chans": in_chans,
        "num_classes": num_classes,
        "opt": opt,
        **({"input_size": input_size} if input_size is not None else {}),
    }
    rows: list[BenchRow] = []
    tasks: list[Timed] = []
    bar = tqdm(total=len(entries), desc="build+memory", disable=not progress, leave=False)
    for entry, ref in zip(entries, refs):
        row, row_tasks = _prepare(
            entry,
            ref,
            img_size=img_size,
            batch=batch,
            dev=dev,
            dtype=dtype,
            compile=compile,
            threads=threads,
            in_chans=in_chans,
            num_classes=num_classes,
            train=train,
            latency=latency,
            memory=memory,
            opt=opt,
            input_size=input_size,
        )
        rows.append(row)
        tasks.extend(row_tasks)
        bar.update()
    bar.close()
    bar = tqdm(total=len(tasks) * repeats, desc="timing", disable=not progress, leave=False)
    round_robin(
        tasks,
        repeats=repeats,
        warmup=warmup,
        min_sample_s=min_sample_s,
        on_sample=lambda _: bar.update(),
        catch=is_oom,
    )
    bar.close()
    by_row = {id(r): r for r in rows}
    for task in tasks:
        row = by_row[int(task.key[0])]
        kind = task.key[1]
        if task.error is not None:
            row.status = "oom"
            row.error = f"{kind} at batch {task.items}: {str(task.error).splitlines()[0][:200]}"
        elif kind == "infer":
            row.infer_img_s = task.throughput_stats()
            row.infer_step_ms = task.time_stats().map(lambda s: s * 1e3)
        elif kind == "latency":
            row.latency_ms = task.time_stats().map(lambda s: s * 1e3)
        else:
            row.train_img_s = task.throughput_stats()
            row.train_step_ms = task.time_stats().map(lambda s: s * 1e3)
    _relative(rows)
    return BenchReport(rows, finish_environment(env), settings)


def benchmark_model(model: str | BenchEntry, **kwargs: Any) -> BenchRow:
    """Measure one model; keyword arguments as for :func:`benchmark_models`.

    Returns:
        Its :class:`BenchRow`.
    """
    return benchmark_models([model], **kwargs).rows[0]


def _prepare(
    entry: BenchEntry,
    ref: ModelRef,
    *,
    img_size: int | None,
    batch: int,
    dev: torch.device,
    dtype: str,
    compile: bool,
    threads: int,
    in_chans: int,
    num_classes: int,
    train: bool,
    latency: bool,
    memory: bool,
    opt: str = "adamw",
    input_size: tuple[int, ...] | None = None,
) -> tuple[BenchRow, list[Timed]]:
    """Build one model, count it, measure its memory and return its timing tasks."""
    row = BenchRow(entry.name, ref.source, ref.model_name, img_size or 0, batch, model_kwargs=entry.model_kwargs)
    try:
        model, _ = build_at_size(
            ref,
            img_size=img_size,
            in_chans=in_chans,
            num_classes=num_classes,
            model_kwargs=entry.model_kwargs,
        )
        row.img_size = size = input_size[-1] if input_size else img_size or default_img_size(model)
        model = model.to(dev)
        input_size = input_size or (in_chans, size, size)
        check_input_size(model, entry.name, input_size, dev)
        row.params = sum(p.numel() for p in model.parameters())
        row.gmacs = count_gmacs(model, input_size, device=dev)
    except ImageSizeError as e:
        row.status, row.error = "unsupported", str(e)
        return row, []
    modes = ["infer"] + (["train"] if train else [])
    oom_modes: set[str] = set()
    if memory:
        for mode in modes:
            res = measure_peak_memory(
                entry.model,
                img_size=size,
                batch=batch,
                mode=mode,
                device=str(dev),
                dtype=dtype,
                threads=threads,
                in_chans=in_chans,
                num_classes=num_classes,
                model_kwargs=entry.model_kwargs,
                compile=compile,
                opt=opt,
            )
            row.mem_method = res.method
            if res.status == "ok":
                setattr(row, f"mem_{mode}_mb", res.peak_mb)
            elif res.status == "oom":
                oom_modes.add(mode)  # timing it in this process would die the same way
                row.status, row.error = "oom", f"{mode} at batch {batch}: {res.error}"
            else:
                row.error = f"memory ({mode}): {res.status}: {res.error}"
    x = torch.randn(batch, *input_size, device=dev)
    fwd = None
    if compile:
        fwd = compile_model(model)
        row.compile_s, row.recompile_size_s, row.recompile_batch_s = compile_times(model, fwd, x, dtype)
    key = str(id(row))
    tasks = []
    if "infer" not in oom_modes:
        tasks.append(Timed((key, "infer"), infer_step(model, x, dtype, fwd), dev, items=batch))
        if latency:
            x1 = x[:1].clone()
            tasks.append(Timed((key, "latency"), infer_step(model, x1, dtype, fwd), dev, items=1))
    if train and "train" not in oom_modes:
        tasks.append(Timed((key, "train"), train_step(model, x, num_classes, dtype, fwd, opt), dev, items=batch))
    return row, tasks


def inductor_cache_dir() -> str:
    """Where inductor keeps compiled kernels between processes (``TORCHINDUCTOR_CACHE_DIR`` or its default);
    read only: inductor's own helper would also set the variable and create the directory."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # a torch without this (private) helper: the variable's name still says how to set it
        default_cache_dir = lambda: "TORCHINDUCTOR_CACHE_DIR's default"
    return os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()


# a "new input size" for the recompile measurement: this many pixels more per side (a multiple of every
# zoo model's patch size, so the model takes it wherever it takes other sizes)
NEW_SIZE_STEP = 32


def compile_times(
    model: nn.Module, fwd: nn.Module, x: torch.Tensor, dtype: str = "float32"
) -> tuple[float | None, float | None, float | None]:
    """Seconds of the first compiled forward of ``x`` (eval mode, no grad; the compile included), of the
    first at a new spatial size and of the first at half the batch (None: the model refused that input)."""
    model.eval()
    dev = x.device

    def seconds(inp: torch.Tensor) -> float | None:
        synchronize(dev)
        t0 = time.perf_counter()
        try:
            with torch.no_grad(), autocast(dev, dtype):
                fwd(inp)
        except Exception:  # a model fixed to one input size: nothing to recompile for
            return None
        synchronize(dev)
        return time.perf_counter() - t0

    first = seconds(x)  # None: it failed; the timed calls fail again and report why
    h, w = x.shape[-2:]
    bigger = torch.randn(*x.shape[:-2], h + NEW_SIZE_STEP, w + NEW_SIZE_STEP, device=dev)
    new_size = seconds(bigger)
    new_batch = seconds(x[: max(1, x.shape[0] // 2)].clone()) if x.shape[0] > 1 else None
    return first, new_size, new_batch


def _relative(rows: list[BenchRow]) -> None:
    """Speeds relative to the first row (>1 = faster than it)."""
    if not rows:
        return
    first = rows[0]

    def ratio(a: Stats | None, b: Stats | None, inverse: bool = False) -> float | None:
        if a is None or b is None or not a.median or not b.median:
            return None
        return b.median / a.median if inverse else a.median / b.median

    for row in rows:
        row.infer_rel = ratio(row.infer_img_s, first.infer_img_s)
        row.train_rel = ratio(row.train_img_s, first.train_img_s)
        row.latency_rel = ratio(row.latency_ms, first.latency_ms, inverse=True)


def finite_positive(x: float | None) -> bool:
    """True for a finite number > 0 (used by reports to decide what to print)."""
    return x is not None and math.isfinite(x) and x > 0
