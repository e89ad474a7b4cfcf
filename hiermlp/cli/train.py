"""``hiermlp train`` and ``hiermlp eval`` (transitional: the parsers still live in hiermlp.train.cli)."""

from hiermlp.train.cli import add_eval_arguments, add_train_arguments, run_eval, run_train

__all__ = ["add_eval_arguments", "add_train_arguments", "run_eval", "run_train"]
