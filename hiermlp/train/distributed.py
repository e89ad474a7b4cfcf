"""DistributedDataParallel set-up: ``torchrun`` sets RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, NCCL on GPU.

Only rank 0 writes files and logs; metrics are summed over ranks with :func:`all_reduce_sum`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "all_reduce_sum", "barrier", "cleanup_distributed", "setup_distributed"]


@dataclass(frozen=True, kw_only=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0  # global rank
    local_rank: int = 0  # rank on this machine (picks the GPU)
    world_size: int = 1  # number of processes
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # this process's device
    initialized_here: bool = False  # we called init_process_group, so we tear it down

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _pick_device(device: str, local_rank: int) -> torch.device:
    """The device this process runs on.

    Raises:
        ConfigError: the device is not there (no CUDA GPU, an index beyond the GPUs, no MPS).
    """
    from hiermlp.errors import ConfigError

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ConfigError(f"device={device!r} is not a device ({e}); use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ConfigError(f"device={device!r} but no CUDA GPU is visible to PyTorch; use device=cpu or device=auto")
        if dev.index >= n:
            raise ConfigError(f"device={str(dev)!r} but only {n} CUDA GPU(s) are visible; use cuda:0 .. cuda:{n - 1}")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ConfigError(f"device={device!r} but MPS is not available here; use device=cpu or device=auto")
    return dev


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (or when one is already initialized).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; with several processes on GPU each takes
            ``cuda:LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank))
        dev = _pick_device(device, local)
        return DistInfo(rank=rank, local_rank=local, world_size=world, device=dev)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=_pick_device(device, 0))
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank=rank, local_rank=local, world_size=world, device=dev, initialized_here=True)


def cleanup_distributed(info: DistInfo) -> None:
    """Destroy the process group if :func:`setup_distributed` created it."""
    if info.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], info: DistInfo) -> list[float]:
    """Sum a list of numbers over all ranks (identity when not distributed)."""
    if not info.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
