"""Measurement: FLOPs, speed, memory, resolution sweeps and mixer comparisons."""

from hiermlp.bench.flops import count_flops, count_gmacs

__all__ = ["count_flops", "count_gmacs"]
