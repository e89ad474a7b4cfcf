"""Samplers and seeding that make a run a pure function of its seed.

Two choices make resume exact and runs comparable across world sizes:

- :class:`GlobalBatchSampler` draws one permutation per epoch from ``(seed, epoch)`` and cuts it into
  *global* batches; each rank takes its own slice of each global batch (and each accumulation micro-step
  its own slice of that). A 2-process run therefore sees exactly the global batches of a 1-process run,
  and resuming at step ``k`` just starts the cut at ``k``.
- :class:`SeededDataset` seeds Python, NumPy and torch RNGs from ``(seed, epoch, index)`` around each
  sample's transform, so an augmentation never depends on which worker or rank loaded it, nor on what was
  loaded before.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["GlobalBatchSampler", "SeededDataset", "ShardSampler", "mix_seed"]


def mix_seed(*parts: int) -> int:
    """Hash integers into one 63-bit seed (splitmix64-style; stable across runs and platforms)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def subset_indices(n: int, limit: int, seed: int) -> np.ndarray:
    """The first ``limit`` items of a fixed permutation of ``range(n)`` (all of them when limit is 0)."""
    if limit <= 0 or limit >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(mix_seed(seed, 77)).permutation(n)[:limit])


class SeededDataset(Dataset):
    """Wrap a dataset so that sample ``i`` of epoch ``e`` is transformed under RNG seed ``(seed, e, i)``.

    The global RNG states are restored after each sample, so loading in the main process does not disturb
    the training RNG.

    Args:
        dataset: any map-style dataset whose transform uses ``random``, ``numpy.random`` or torch's RNG.
        seed: the run seed.
    """

    def __init__(self, dataset: Dataset, *, seed: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch; call before creating the DataLoader iterator (workers pickle it)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # guard against recursion during unpickling
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> Any:
        s = mix_seed(self.seed, self.epoch, index)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(s)
            np.random.seed(s % 2**32)
            # the CPU generator only: torch.manual_seed would also queue a lazy CUDA seeding that records
            # a stack trace per call (milliseconds per sample)
            torch.default_generator.manual_seed(s)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


class GlobalBatchSampler(Sampler[list[int]]):
    """Yield this rank's micro-batches of the epoch's global batches (drop-last).

    Global batch ``k`` of epoch ``e`` is ``perm_e[k*B:(k+1)*B]``; it is split into ``world * accum``
    equal slices, and micro-step ``j`` of rank ``r`` gets slice ``j * world + r``.

    Args:
        indices: the dataset indices to sample from (e.g. a limited subset).
        batch_size: global batch ``B`` per optimizer step.
        world_size: number of processes.
        rank: this process.
        accum_steps: micro-steps per optimizer step.
        seed: run seed; the epoch permutation comes from ``(seed, epoch)``.
    """

    def __init__(
        self,
        *,
        indices: np.ndarray,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        accum_steps: int = 1,
        seed: int = 0,
    ) -> None:
        parts = world_size * accum_steps
        if batch_size % parts:
            raise ValueError(
                f"batch_size={batch_size} must be divisible by world_size*accum_steps ({world_size}*{accum_steps})"
            )
        self.indices = np.asarray(indices, dtype=np.int64)
        self.batch_size, self.world_size, self.rank = batch_size, world_size, rank
        self.accum_steps, self.seed = accum_steps, seed
        self.micro = batch_size // parts
        self.steps_per_epoch = len(self.indices) // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"dataset of {len(self.indices)} samples is smaller than one batch ({batch_size})")
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch and the optimizer step (within it) to start from (for resume)."""
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum_steps

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, 1))
        perm = self.indices[torch.randperm(len(self.indices), generator=g).numpy()]
        for step in range(self.start_step, self.steps_per_epoch):
            batch = perm[step * self.batch_size : (step + 1) * self.batch_size]
            for j in range(self.accum_steps):
                k = j * self.world_size + self.rank
                yield batch[k * self.micro : (k + 1) * self.micro].tolist()


class ShardSampler(Sampler[int]):
    """Evaluation sampler: rank ``r`` of ``w`` takes ``indices[r::w]``, no padding and no duplicates,
    so summed metrics over ranks are exact."""

    def __init__(self, *, indices: np.ndarray, world_size: int = 1, rank: int = 0) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)[rank::world_size]

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices.tolist())
