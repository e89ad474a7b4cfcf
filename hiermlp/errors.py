"""hiermlp's exceptions: each names the problem and the fix.

They subclass the built-in exception a caller would otherwise catch (ValueError, KeyError), so code
written against plain PyTorch keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class HiermlpError(Exception):
    """Base of every error hiermlp raises on purpose."""


class ConfigError(HiermlpError, ValueError):
    """A model or mixer was configured with values that cannot work together."""


class ShapeError(HiermlpError, ValueError):
    """An input tensor does not have the shape the model or op needs."""


class UnknownNameError(HiermlpError, KeyError):
    """A registry lookup failed; the message lists close matches."""

    def __str__(self) -> str:  # KeyError would repr() the message and add quotes
        return str(self.args[0]) if self.args else ""


class CheckpointError(HiermlpError, RuntimeError):
    """A checkpoint is unreadable or does not match the model."""


class NotFoundError(HiermlpError, FileNotFoundError):
    """A file, directory or preset the user named does not exist; the message lists what does."""


class OutputError(HiermlpError, OSError):
    """A file could not be written (disk full, read-only or missing directory, or an output directory that
    holds another run). Earlier files are left as they were."""


class ExportError(HiermlpError, RuntimeError):
    """An export failed (the exporter, or the ONNX checker on its result); no file was written."""


class NonFiniteError(HiermlpError, FloatingPointError):
    """Training produced a NaN/inf loss, gradient or weight; nothing from that step was written."""


def one_line(e: BaseException) -> str:
    """The message of ``e`` on one line, for a command's ``error:`` line.

    An exception re-raised by a DataLoader worker carries the worker's traceback in its message; the
    original message is its last line.
    """
    text = str(e) or type(e).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Caught ") and "Original Traceback" in text:
        last = lines[-1]
        head, sep, rest = last.partition(": ")
        is_type = sep and " " not in head and head.split(".")[-1].endswith(("Error", "Exception"))
        return rest if is_type else last
    return "; ".join(lines)


def suggest(name: str, choices: Iterable[str], n: int = 5) -> str:
    """' Did you mean: a, b?' for the closest names, or '' when nothing is close."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:  # substring matches catch short queries such as 'tiny'
        close = [c for c in choices if name.lower() in c.lower()][:n]
    return f" Did you mean: {', '.join(close)}?" if close else ""
