"""Reports: Markdown tables for stdout, and Markdown/CSV/JSON/PNG files in an output directory."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hiermlp.bench.env import format_environment
from hiermlp.bench.timing import Stats
from hiermlp.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "fmt_num",
    "fmt_stats",
    "markdown_table",
    "new_figure",
    "write_csv",
    "write_json",
    "write_text",
]


def fmt_num(x: float | int | None, digits: int = 3) -> str:
    """Compact human number with ``digits`` significant digits; ``-`` for missing/NaN."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    decimals = max(0, digits - 1 - mag)
    return f"{x:,.{decimals}f}"


def fmt_stats(s: Stats | dict | None, digits: int = 3) -> str:
    """``median (q1–q3)``: the median and its interquartile range."""
    if s is None:
        return "-"
    if isinstance(s, dict):
        s = Stats(**s)
    return f"{fmt_num(s.median, digits)} ({fmt_num(s.q1, digits)}–{fmt_num(s.q3, digits)})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table; ``align`` is one letter per column, ``l`` or ``r`` (default: first left)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def environment_header(title: str, env: dict, command: str | None = None) -> str:
    """Title, the command that produced a report, and the machine and versions."""
    parts = [f"# {title}", ""]
    if command:
        parts += ["```", command, "```", ""]
    parts += [format_environment(env), ""]
    return "\n".join(parts)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, text if text.endswith("\n") else text + "\n", what="report")


def write_json(path: Path, obj: Any) -> Path:
    """JSON with NaN/inf turned into null, so any JSON reader accepts the file."""

    def clean(o: Any) -> Any:
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    return write_text(path, json.dumps(clean(obj), indent=2))


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """CSV with the union of the rows' keys as columns (first-seen order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return atomic_write_text(path, buf.getvalue(), what="report")


def new_figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots`` on the non-interactive Agg backend (works headless, never opens a window)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, dpi=120, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue(), what="figure")
