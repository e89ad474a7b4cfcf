"""``hiermlp info`` and ``hiermlp list`` (transitional: the parsers still live in hiermlp.info)."""

from hiermlp.info import add_info_arguments, add_list_arguments, run_info, run_list

__all__ = ["add_info_arguments", "add_list_arguments", "run_info", "run_list"]
