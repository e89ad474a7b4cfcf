"""Studies: several models trained under one recipe over several seeds, compared with intervals.

>>> from hiermlp.study import load_preset, run_comparison
>>> preset = load_preset("smoke", ["epochs=1"])
>>> result = run_comparison(preset, runs_dir="runs/compare/smoke/runs")
>>> print(result.markdown())

``preset`` reads a study (``configs/compare/*.yaml``) and its overrides; ``runner`` trains every (entry,
seed) in its own resumable run directory, one at a time or side by side; ``stats`` gives the t intervals,
paired differences, verdicts and ranks; ``report`` the rows and the Markdown/CSV/JSON files; ``plots`` the
figures. ``hiermlp compare`` (:mod:`hiermlp.cli.compare`) is the command.
"""

from hiermlp.study.preset import ComparePreset, find_compare_preset, load_preset
from hiermlp.study.report import CompareResult, CompareRow, RunRecord, load_result
from hiermlp.study.runner import run_comparison
from hiermlp.study.stats import Interval, mean_interval, paired_difference

__all__ = [
    "ComparePreset",
    "CompareResult",
    "CompareRow",
    "Interval",
    "RunRecord",
    "find_compare_preset",
    "load_preset",
    "load_result",
    "mean_interval",
    "paired_difference",
    "run_comparison",
]
