"""What this machine can hold: the bounds every numeric option is checked against where it is parsed.

A thread count or a tensor size is not wrong in itself, only for a machine: 100,000 torch threads or a batch
of a million 224x224 images would not fail with a message but by exhausting the process (an OpenMP abort,
the out-of-memory killer, a segfault). :func:`check_threads` and :func:`check_bytes` turn such values into
one :class:`~hiermlp.errors.ConfigError` before anything is started or allocated.
"""

from __future__ import annotations

import os

from hiermlp.errors import ConfigError

__all__ = ["MAX_THREADS", "check_bytes", "check_threads", "memory_bytes"]

# far above any core count torch runs on, far below what OpenMP can start
MAX_THREADS = 1024


def check_threads(value: int, name: str, *, zero_ok: bool = False) -> int:
    """``value`` if it is a usable torch thread count (``zero_ok``: 0 means "the default").

    Raises:
        ConfigError: Not in ``[1, MAX_THREADS]`` (or 0 when allowed), naming ``name`` and the range.
    """
    low = 0 if zero_ok else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_THREADS:
        default = " (0 = the default)" if zero_ok else ""
        raise ConfigError(
            f"{name} {value!r} is invalid: torch threads must be an integer in [{low}, {MAX_THREADS}]{default}; "
            f"this machine has {os.cpu_count() or 1} cores"
        )
    return value


def memory_bytes() -> int:
    """The memory this process may use: physical memory, or the cgroup's limit where one is lower."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no bound known
        return 1 << 62
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n < 2**40 else f"{n / 2**40:,.1f} TiB"


def check_bytes(nbytes: float, what: str, fix: str) -> None:
    """Refuse an allocation that cannot fit in this machine's memory (:func:`memory_bytes`).

    Args:
        nbytes: The bytes the allocation needs (a lower bound is enough: the input batch alone).
        what: What would be allocated, with the values that size it (``"--batch 100000 --img-size 224"``).
        fix: What to change.

    Raises:
        ConfigError: It would not fit.
    """
    limit = memory_bytes()
    if nbytes > limit:
        raise ConfigError(
            f"{what} needs {_gib(nbytes)} for the input alone, more than this machine's {_gib(limit)}; {fix}"
        )
