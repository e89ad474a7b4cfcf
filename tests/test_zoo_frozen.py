"""The zoo computes what it computed when tests/data/zoo_logits.json was recorded (tests/make_zoo_logits.py).

Weights come from generators seeded by state-dict names, so a refactor that moves code but keeps names and
function passes; one that changes a model's function fails. The record is of the plain modules (the reference
formulation, recorded from main before the speed layer moved); tests/test_fast_paths.py holds the speed layer
to them within float tolerance, since a fused kernel may round differently. On the recording's torch version,
CPU capability and CPU model the logits must be bit-identical; elsewhere (another GEMM kernel sums in another
order) within 1e-5 of the largest logit.
"""

import json

import pytest
import torch

from tests.make_zoo_logits import OUT, environment, model_and_input

RECORD = json.loads(OUT.read_text())
SAME_MACHINE = RECORD["environment"] == environment()


@pytest.mark.parametrize("name", sorted(RECORD["logits"]))
def test_zoo_logits_unchanged(name):
    expected = torch.tensor([[float.fromhex(v) for v in row] for row in RECORD["logits"][name]])
    model, x = model_and_input(name)
    with torch.no_grad():
        out = model(x)
    if SAME_MACHINE and torch.get_num_threads() == 1:
        assert torch.equal(out, expected), (out - expected).abs().max()
    else:
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-5 * expected.abs().max().item())
