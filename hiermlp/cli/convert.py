"""``hiermlp convert`` (transitional: the parser still lives in hiermlp.weights.layouts)."""

from hiermlp.weights.layouts import add_convert_arguments, run_convert

__all__ = ["add_convert_arguments", "run_convert"]
