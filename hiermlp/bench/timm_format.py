"""``hiermlp bench`` rows in timm's benchmark.py format, so a benchmark.py user joins them with their own.

benchmark.py (``--bench both --results-file X.csv``) writes one row per model: ``model`` (timm's registry name),
then per mode ``infer_`` / ``train_`` + ``samples_per_sec``, ``step_time`` (milliseconds per batch),
``batch_size``, ``img_size`` (``infer_gmacs`` after them when a FLOP counter is installed), then
``param_count`` (millions). The same columns come first here, with hiermlp's medians in them and timm's
rounding; the columns after them (``opt``, ``device``, ``dtype``, ``source``, ``label``) are hiermlp's.
A hiermlp model's ``model`` is its timm name, ``hiermlp_<name>``: what benchmark.py prints for it when run
through ``hiermlp timm benchmark.py --model hiermlp_<name>``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BENCHMARK_PY_COLUMNS", "benchmark_py_rows"]

BENCHMARK_PY_COLUMNS = (
    "model",
    "infer_samples_per_sec",
    "infer_step_time",
    "infer_batch_size",
    "infer_img_size",
    "infer_gmacs",
    "train_samples_per_sec",
    "train_step_time",
    "train_batch_size",
    "train_img_size",
    "param_count",
)


# rows and reports are hiermlp.bench.speed's BenchRow / BenchReport, typed Any here: speed.py calls this
# module, so naming its classes would make the two modules import each other


def timm_name(row: Any) -> str:
    """The name timm's registry (and so benchmark.py) knows a ``BenchRow``'s model by."""
    return f"hiermlp_{row.model_name}" if row.source == "hiermlp" else row.model_name


def benchmark_py_rows(report: Any) -> list[dict[str, Any]]:
    """One benchmark.py-style dict per row of a ``BenchReport`` that was measured (unsupported or failed rows
    are left out)."""
    s = report.settings
    out = []
    for row in report.rows:
        if row.infer_img_s is None and row.train_img_s is None:
            continue
        rec: dict[str, Any] = {"model": timm_name(row)}
        modes = (("infer", row.infer_img_s, row.infer_step_ms), ("train", row.train_img_s, row.train_step_ms))
        for mode, speed, step in modes:
            if speed is None or step is None:
                continue
            rec |= {
                f"{mode}_samples_per_sec": round(speed.median, 2),
                f"{mode}_step_time": round(step.median, 3),
                f"{mode}_batch_size": row.batch,
                f"{mode}_img_size": row.img_size,
            }
            if mode == "infer" and row.gmacs is not None:
                rec["infer_gmacs"] = round(row.gmacs, 2)
        rec["param_count"] = round(row.params / 1e6, 2) if row.params else None
        rec |= dict(opt=s.get("opt"), device=report.env.get("device"), dtype=report.env.get("dtype"))
        rec |= dict(source=row.source, label=row.model)
        out.append({**{c: rec.get(c) for c in BENCHMARK_PY_COLUMNS}, **rec})
    return out
