import os

import pytest
import torch

from hiermlp.testing import TINY_SWIN, randomize_  # noqa: F401  (shared with benchmarks/)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N runs N worker processes: one intra-op thread each, so N workers never fight over N cores
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
