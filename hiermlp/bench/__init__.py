"""Measurement: FLOPs, speed, memory and resolution sweeps (comparisons of trained models: hiermlp.study).

>>> from hiermlp.bench import benchmark_models, run_sweep
>>> report = benchmark_models(["swin_tiny_patch4_window7_224", "timm:swin_tiny_patch4_window7_224"], batch=8)
>>> print(report.markdown())
"""

from hiermlp.bench.flops import count_flops, count_gmacs
from hiermlp.bench.resolve import ImageSizeError, ModelRef, resolve_model
from hiermlp.bench.speed import BenchEntry, BenchReport, BenchRow, benchmark_model, benchmark_models
from hiermlp.bench.sweep import SweepReport, fit_exponent, run_sweep
from hiermlp.bench.timing import Stats

__all__ = [
    "BenchEntry",
    "BenchReport",
    "BenchRow",
    "ImageSizeError",
    "ModelRef",
    "Stats",
    "SweepReport",
    "benchmark_model",
    "benchmark_models",
    "count_flops",
    "count_gmacs",
    "fit_exponent",
    "resolve_model",
    "run_sweep",
]
