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


def suggest(name: str, choices: Iterable[str], n: int = 5) -> str:
    """' Did you mean: a, b?' for the closest names, or '' when nothing is close."""
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:  # substring matches catch short queries such as 'tiny'
        close = [c for c in choices if name.lower() in c.lower()][:n]
    return f" Did you mean: {', '.join(close)}?" if close else ""
