"""``hiermlp bench`` (transitional: the parser still lives in hiermlp.bench.cli)."""

from hiermlp.bench.cli import add_bench_arguments, run_bench

__all__ = ["add_bench_arguments", "run_bench"]
