"""``hiermlp export`` (transitional: the parser still lives in hiermlp.export)."""

from hiermlp.export import add_export_arguments, run_export

__all__ = ["add_export_arguments", "run_export"]
