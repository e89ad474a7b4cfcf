"""The package's one atomic file writer: a final name only ever holds a complete file.

Every file hiermlp writes for keeps (training checkpoints, saved weights, configs, reports) goes through
:func:`atomic_write`: the bytes go to a temporary file in the same directory whose name never ends in the
final suffix (``.last.pth.tmp-<pid>``), are flushed and fsynced, and the temporary file is then
``os.replace``d onto the final name and the directory fsynced. A reader, or a crash at any moment, sees
either the old file or the new one.

A process killed between creating and renaming its temporary file leaves it behind; the next run in that
directory removes it with :func:`remove_stale_temps` (only files of processes that no longer exist).

Every failure of the file system (disk full, read-only or missing directory, permissions) becomes one
:class:`~hiermlp.errors.OutputError` that names the file and the fix; the earlier file under the final
name is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from hiermlp.errors import OutputError

__all__ = [
    "atomic_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "ensure_writable_dir",
    "output_error",
    "remove_stale_temps",
    "temp_name",
]

_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")

_FIXES = {
    errno.ENOSPC: "free disk space or choose another directory",
    errno.EDQUOT: "free space within your quota or choose another directory",
    errno.EROFS: "the file system is read-only: choose a writable directory",
    errno.EACCES: "choose a directory you can write to, or fix its permissions",
    errno.EPERM: "choose a directory you can write to, or fix its permissions",
    errno.ENOENT: "the directory does not exist (or was removed): create it or choose another",
    errno.ENOTDIR: "a parent of the path is a file, not a directory: choose another path",
    errno.EISDIR: "the path is a directory: give a file name",
    errno.EEXIST: "a parent of the path is a file, not a directory: choose another path",
}


def output_error(path: str | os.PathLike, e: OSError, *, what: str = "file") -> OutputError:
    """``OutputError`` naming ``path``, the system's reason (errno) and the fix, on one line."""
    code = errno.errorcode.get(e.errno or 0, "")
    reason = e.strerror or str(e) or type(e).__name__
    fix = _FIXES.get(e.errno or 0, "check the path and the file system")
    err = OutputError(
        f"cannot write {what} {os.fspath(path)}: {reason}{f' ({code})' if code else ''}; {fix}. "
        "Files written before are left as they were."
    )
    err.errno = e.errno
    return err


def temp_name(path: str | os.PathLike) -> Path:
    """The temporary name of this process's write of ``path``: ``.<name>.tmp-<pid>`` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


def _fsync_dir(directory: Path) -> None:
    # the rename itself is only durable once the directory entry is on disk
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(tmp: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Fill ``tmp`` and force it to disk: where a full disk or a quota reports itself (``OSError``)."""
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], *, what: str = "file") -> Path:
    """Call ``write(f)`` on a temporary binary file, then rename it onto ``path``.

    Args:
        path: the destination; its parent directories are created.
        write: fills the open file (``torch.save(obj, f)``, ``f.write(data)``).
        what: how messages name the file ("checkpoint", "config").

    Returns:
        The destination path.

    Raises:
        OutputError: the file system refused (disk full, read-only, permissions, a parent that is a file).
            The temporary file is removed and an earlier file at ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_file(tmp, write)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as e:
        raise output_error(path, e, what=what) from e
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()  # only present when something above failed
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda f: f.write(data), what=what)


def atomic_write_text(path: str | os.PathLike, text: str, *, what: str = "file") -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), what=what)


def atomic_save(obj: Any, path: str | os.PathLike, *, what: str = "checkpoint") -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`atomic_write`).

    The object is serialised into memory first, so a failure of the file system always surfaces as an
    ``OSError`` of the write (torch's own writer reports some of them as a C++ ``RuntimeError``).
    """
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()), what=what)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete the ``.<name>.tmp-<pid>`` files in ``directory`` left by processes that no longer run.

    Returns:
        The removed paths (empty when the directory does not exist).
    """
    directory = Path(directory)
    removed: list[Path] = []
    if not directory.is_dir():
        return removed
    for p in directory.iterdir():
        m = _TEMP.match(p.name)
        if m is None or not p.is_file():
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            p.unlink()
        except FileNotFoundError:  # another cleaner was faster
            continue
        removed.append(p)
    return removed


def ensure_writable_dir(directory: str | os.PathLike, *, what: str = "output directory") -> Path:
    """Create ``directory`` if needed and check that a file can be created in it.

    Raises:
        OutputError: it cannot be created or written (read-only, permissions, a parent that is a file).
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = temp_name(directory / ".write-probe")
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as e:
        raise output_error(directory, e, what=what) from e
    return directory
