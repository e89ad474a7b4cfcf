"""Check that ``torch.compile(fullgraph=True)`` traces every zoo model in one graph (no graph breaks).

Dynamo only (``torch._dynamo.explain``), no code generation, at each model's own input size:

    python benchmarks/compile_check.py > benchmarks/results/perf_cpu/compile_check.txt
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torch._dynamo as dynamo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hiermlp


def main() -> int:
    torch.set_num_threads(1)
    broken = []
    print(f"torch {torch.__version__}, hiermlp {hiermlp.__version__}: dynamo graphs and breaks per zoo model")
    for name in hiermlp.list_models():
        model = hiermlp.create_model(name).eval()
        x = torch.randn(1, *model.pretrained_cfg["input_size"])
        dynamo.reset()
        t0 = time.perf_counter()
        with torch.no_grad():
            explained = dynamo.explain(model)(x)
        print(
            f"{name:45s} graphs={explained.graph_count} breaks={explained.graph_break_count} "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
        if explained.graph_break_count:
            broken.append((name, [str(r.reason)[:200] for r in explained.break_reasons[:3]]))
    print("graph breaks:", broken or "none")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
