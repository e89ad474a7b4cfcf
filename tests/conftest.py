import pytest
import torch

from hiermlp.testing import TINY_SWIN, randomize_  # noqa: F401  (shared with benchmarks/)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
