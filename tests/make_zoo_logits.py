"""Record every small registered model's logits, to pin the zoo's function across refactors.

Run from the repository root: ``python tests/make_zoo_logits.py``. Each model's parameters and buffers are
filled from generators seeded by their state-dict names (so the record depends on the names and the
function, not on the order modules are built in), BatchNorm statistics included; the input is non-square
and no window multiple. tests/test_zoo_frozen.py rebuilds each model the same way and compares.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import torch
from torch import nn

import hiermlp
from hiermlp.accel.machine import cpu_model
from hiermlp.models.registry import get_entry

OUT = Path(__file__).with_name("data") / "zoo_logits.json"
MAX_PARAMS = 30e6  # larger rows are their families' smaller rows with other widths and depths
INPUT = (2, 40, 36)  # batch, height, width


def fill_(model: nn.Module) -> nn.Module:
    """Every floating parameter and buffer from a generator seeded by its name; BatchNorm variances positive."""
    with torch.no_grad():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            if not t.is_floating_point():
                continue
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            values = torch.randn(t.shape, generator=g, dtype=torch.float64) * 0.05
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            t.copy_(values.to(t.dtype))
    return model


def small_models() -> list[str]:
    names = []
    for name in hiermlp.list_models():
        with torch.device("meta"):
            n = sum(p.numel() for p in hiermlp.create_model(name).parameters())
        if n <= MAX_PARAMS:
            names.append(name)
    return names


def model_and_input(name: str) -> tuple[nn.Module, torch.Tensor]:
    b, h, w = INPUT
    fixed = get_entry(name).pretrained_cfg.get("fixed_input_size", False)
    model = hiermlp.create_model(name, num_classes=10, **(dict(img_size=(h, w)) if fixed else {}))
    # the plain modules, the reference formulation: the speed layer is checked against them in test_fast_paths
    hiermlp.accel.plain(fill_(model)).eval()
    c = model.pretrained_cfg["input_size"][0]
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return model, torch.randn(b, c, h, w, generator=g)


def environment() -> dict[str, str]:
    # the CPU model too: the same torch and capability (AVX512) on an AMD EPYC and an Intel Xeon run different
    # GEMM code (MKL takes other kernels per vendor), which round differently
    return dict(
        torch=torch.__version__.split("+")[0], cpu=torch.backends.cpu.get_cpu_capability(), cpu_model=cpu_model()
    )


def main() -> int:
    torch.set_num_threads(1)
    record = {"environment": environment(), "logits": {}}
    for name in small_models():
        model, x = model_and_input(name)
        with torch.no_grad():
            out = model(x)
        record["logits"][name] = [[float(v).hex() for v in row] for row in out.tolist()]
        print(name, tuple(out.shape))
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
