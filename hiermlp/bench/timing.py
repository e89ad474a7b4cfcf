"""Timing primitives: summary statistics, a device-synchronising timer, and a round-robin scheduler.

Measurement hygiene in one place: every timed callable is warmed up first, CUDA work is synchronised
before the clock is read, a sample repeats the callable enough times to dwarf timer overhead, and
samples of several callables are interleaved round-robin so that drift on a shared machine (thermal,
other tenants) spreads over every model instead of penalising whichever ran last.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

__all__ = ["Stats", "Timed", "round_robin", "synchronize"]


@dataclass(frozen=True)
class Stats:
    """Summary of repeated measurements: the median and its spread.

    Attributes:
        median: Median sample.
        q1: First quartile (25th percentile, linear interpolation).
        q3: Third quartile (75th percentile).
        min: Smallest sample.
        max: Largest sample.
        n: Number of samples.
    """

    median: float
    q1: float
    q3: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        """Summarise ``samples`` (at least one)."""
        xs = sorted(float(s) for s in samples)
        if not xs:
            raise ValueError("Stats.of needs at least one sample")
        if len(xs) == 1:
            q1 = q3 = xs[0]
        else:
            q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
        return cls(statistics.median(xs), q1, q3, xs[0], xs[-1], len(xs))

    def map(self, fn: Callable[[float], float]) -> Stats:
        """Apply a monotone function; a decreasing one (e.g. time -> throughput) swaps the ends."""
        vals = [fn(v) for v in (self.q1, self.q3, self.min, self.max)]
        lo_q, hi_q = sorted(vals[:2])
        lo, hi = sorted(vals[2:])
        return Stats(fn(self.median), lo_q, hi_q, lo, hi, self.n)

    @property
    def iqr_rel(self) -> float:
        """Interquartile range relative to the median (0.05 = 5% spread)."""
        return (self.q3 - self.q1) / self.median if self.median else math.nan

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels, so the wall clock measures the work and not its launch."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class Timed:
    """One callable to time.

    Attributes:
        key: Identifies the result, e.g. ``("swin_tiny", "infer")``.
        fn: Runs one unit of work (one batch).
        device: Device to synchronise.
        items: Images one call processes (throughput = items / seconds).
        number: Calls per sample; chosen at warm-up so a sample lasts at least ``min_sample_s``.
        samples: Seconds per call, one per repeat.
        warmup_s: Seconds of the last warm-up call.
        repeats: Samples wanted for this task (None: the ``repeats`` of :func:`round_robin`).
        error: The exception that stopped this task (e.g. out of memory), else None.
    """

    key: tuple[str, ...]
    fn: Callable[[], object]
    device: torch.device | str
    items: int = 1
    number: int = 1
    samples: list[float] | None = None
    warmup_s: float = math.nan
    repeats: int | None = None
    error: BaseException | None = None

    def run(self, number: int) -> float:
        """Seconds per call, averaged over ``number`` back-to-back calls."""
        synchronize(self.device)
        t0 = time.perf_counter()
        for _ in range(number):
            self.fn()
        synchronize(self.device)
        return (time.perf_counter() - t0) / number

    def warm_up(self, warmup: int, min_sample_s: float) -> None:
        """Run ``warmup`` calls (at least one: allocator, autotuning, compilation) and pick ``number``."""
        for _ in range(max(1, warmup)):
            self.warmup_s = self.run(1)
        self.number = max(1, math.ceil(min_sample_s / max(self.warmup_s, 1e-9)))

    def time_stats(self) -> Stats:
        """Statistics of seconds per call."""
        return Stats.of(self.samples or [])

    def throughput_stats(self) -> Stats:
        """Statistics of items per second (computed per sample, so the spread is exact)."""
        return Stats.of([self.items / s for s in self.samples or []])


def round_robin(
    tasks: Sequence[Timed],
    *,
    repeats: int,
    warmup: int = 2,
    min_sample_s: float = 0.05,
    on_sample: Callable[[Timed], None] | None = None,
    catch: Callable[[BaseException], bool] | None = None,
) -> None:
    """Warm up every task, then take samples of each, interleaving tasks round-robin.

    Args:
        tasks: Callables to time; their ``samples`` are filled in place.
        repeats: Samples per task (the median of these is reported) unless a task sets its own.
        warmup: Untimed calls per task before sampling.
        min_sample_s: Minimum duration of one sample; fast callables are repeated within it.
        on_sample: Called after every sample (progress bars).
        catch: Exceptions for which it returns True (e.g. out of memory) stop only the task that
            raised them, stored in its ``error``; the others go on.
    """

    def attempt(task: Timed, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as e:
            if catch is None or not catch(e):
                raise
            task.error = e

    for task in tasks:
        task.samples, task.error = [], None
        attempt(task, lambda t=task: t.warm_up(warmup, min_sample_s))
    for i in range(max((t.repeats or repeats) for t in tasks) if tasks else 0):
        for task in tasks:
            if task.error is not None or i >= (task.repeats or repeats):
                continue
            attempt(task, lambda t=task: t.samples.append(t.run(t.number)))
            if on_sample is not None:
                on_sample(task)
