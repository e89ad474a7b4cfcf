import atexit
import os
import shutil
import tempfile

# Before hiermlp is imported (its settings are read at import): the suite never reads or writes the user's
# machine-profile cache (it gets its own, removed at exit; subprocesses inherit it), and float32 CPU linears
# run on MKL unless a test picks the path, so every tolerance and recorded value holds on one GEMM path,
# whatever this machine's profile would choose. CPU inference's attention kernel stays the profile's choice (the
# default path, measured once per suite run into that cache: explicit and SDPA are tested equal to each other
# and to the plain module, tests/test_fast_paths.py). The choices themselves are tested with a fake timing
# (tests/test_machine.py).
_CACHE = tempfile.mkdtemp(prefix="hiermlp-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ["HIERMLP_CACHE_DIR"] = _CACHE
os.environ.setdefault("HIERMLP_ACCEL", "onednn=0")

import pytest  # noqa: E402
import torch  # noqa: E402

from hiermlp.testing import TINY_SWIN, randomize_  # noqa: E402, F401  (shared with benchmarks/)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N runs N worker processes: one intra-op thread each, so N workers never fight over N cores
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
