"""Training checkpoints: atomic writes, RNG capture, ``weights_only`` loading.

A checkpoint is a dict of tensors and plain Python values only, so ``torch.load(weights_only=True)``
reads it (loading never runs code):

``{"model": state_dict, "model_ema": state_dict | None, "optimizer": ..., "scheduler": ...,
"epoch": int, "step": int, "epoch_step": int, "best_top1": float, "rng": {...}, "config": dict,
"history": list[dict], "format": "hiermlp-train-v1"}``

``model`` holds the plain (un-wrapped) model weights, so ``hiermlp.load_checkpoint(model, "best.pth")``
works on it directly. ``epoch`` is the epoch in progress and ``epoch_step`` the optimizer steps already
taken in it (0 at an epoch boundary).

Files are written by the package's one atomic writer, :func:`hiermlp.io.atomic_save`: a temporary file
in the same directory whose name never ends in ``.pth`` (``.last.pth.tmp-<pid>``), flushed and fsynced,
then ``os.replace``d onto the final name and the directory fsynced. A reader (or a crash at any moment)
sees either the old file or the new one; the next run removes temporary files of killed writes.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiermlp.errors import CheckpointError
from hiermlp.io import atomic_save

__all__ = ["CheckpointError", "atomic_save", "capture_rng", "load_training_checkpoint", "restore_rng"]

FORMAT = "hiermlp-train-v1"


def capture_rng() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA RNG states as tensors and plain values (weights_only-safe)."""
    version, state, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(state, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_checkpoint(path: str | os.PathLike, *, purpose: str = "resume from") -> dict[str, Any]:
    """Read a training checkpoint with ``weights_only=True``.

    Args:
        path: the file.
        purpose: what the checkpoint is for, in messages ("resume from", "evaluate").

    Raises:
        CheckpointError: missing, empty, truncated/corrupt, or not a hiermlp training checkpoint. The
            message names the file; the file is never modified.
    """
    path = Path(path)
    if not path.is_file():
        kind = "a directory, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint to {purpose} {kind}: {path}; give the path of a .pth file")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint to {purpose} is empty (0 bytes): {path}; a write into it was interrupted "
            "or it was created by another tool: use another checkpoint (e.g. best.pth)"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise CheckpointError(
            f"cannot load checkpoint {path}: it is corrupt or truncated ({type(e).__name__}: {first}). "
            "It was left untouched; resume from another checkpoint (e.g. best.pth) or start a new out_dir."
        ) from e
    required = ("model", "optimizer", "scheduler", "epoch", "step", "rng")
    missing = [k for k in required if k not in ckpt] if isinstance(ckpt, dict) else list(required)
    if missing:
        raise CheckpointError(
            f"{path} is not a hiermlp training checkpoint (missing {missing}); for plain weights use "
            "'hiermlp eval MODEL --checkpoint FILE' or initial_checkpoint=FILE"
        )
    return ckpt
