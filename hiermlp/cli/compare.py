"""``hiermlp compare`` (transitional: the parser still lives in hiermlp.bench.compare)."""

from hiermlp.bench.compare import add_compare_arguments, run_compare

__all__ = ["add_compare_arguments", "run_compare"]
