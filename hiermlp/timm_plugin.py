"""timm's own scripts and tools on hiermlp's models: the launcher and the opt-in import hook.

hiermlp's models enter timm's registry (as ``hiermlp_<name>``) when hiermlp is imported; timm's scripts
(train.py, validate.py, benchmark.py, inference.py) never import it. Two ways to run them unchanged, neither
of which costs an interpreter that does not use them anything:

* the launcher, :func:`run`: ``hiermlp timm [--import MODULE]... SCRIPT.py ARGS...`` (or ``-m MODULE ARGS...``
  for a module, as ``python -m``) imports hiermlp, then the modules named (a user's own registered models), then
  runs the script exactly as ``python SCRIPT.py ARGS...`` would: as ``__main__``, with ``sys.argv`` and
  ``sys.path[0]`` the script's. ``torchrun --nproc_per_node N -m hiermlp timm train.py ARGS...`` starts it in
  every process.
* the hook, :func:`install_hook`: ``hiermlp timm --install-hook`` writes ``hiermlp_timm_hook.pth`` and the
  small module it imports into site-packages; from then on every interpreter of that environment imports
  hiermlp right after its first ``import timm`` (see :mod:`hiermlp._timm_hook`), so plain ``python train.py``
  and ``timm.create_model("hf-hub:...")`` in any code find hiermlp's models. It costs an interpreter that
  never imports timm one finder on ``sys.meta_path``; one that imports timm, the import of hiermlp.

Both read ``HIERMLP_TIMM_IMPORTS`` (comma-separated modules to import after hiermlp) as well.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from hiermlp.errors import ConfigError, NotFoundError

__all__ = ["ENV_IMPORTS", "HOOK_NAME", "hook_files", "import_plugins", "install_hook", "run", "uninstall_hook"]

ENV_IMPORTS = "HIERMLP_TIMM_IMPORTS"
HOOK_NAME = "hiermlp_timm_hook"
_HOOK_SOURCE = Path(__file__).with_name("_timm_hook.py")
_PTH_LINE = f"import {HOOK_NAME}; {HOOK_NAME}.install()\n"


def import_plugins(modules: Sequence[str] = ()) -> list[str]:
    """Import hiermlp, then ``modules`` and those of ``HIERMLP_TIMM_IMPORTS`` (found on ``sys.path``, or in the
    working directory); returns the modules imported.

    Raises:
        ConfigError: a module cannot be imported (one line naming it and the fix).
    """
    names = ["hiermlp", *modules, *(s.strip() for s in os.environ.get(ENV_IMPORTS, "").split(",") if s.strip())]
    if len(names) > 1 and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # a module beside the user, as `python -m` would find it (last: no shadowing)
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(
                f"cannot import {name!r} ({e}); install it or put its folder on PYTHONPATH "
                "(--import takes a module name, e.g. --import my_models)"
            ) from e
    return names


def run(target: str, args: Sequence[str] = (), *, module: bool = False, imports: Sequence[str] = ()) -> None:
    """Run a script (or, with ``module``, a module) as ``__main__`` with hiermlp's models registered in timm.

    ``sys.argv`` becomes ``[target, *args]`` and ``sys.path[0]`` the script's folder (the working directory
    for a module), as ``python SCRIPT ARGS`` / ``python -m MODULE ARGS`` set them. A ``SystemExit`` of the
    script propagates with its code.

    Raises:
        NotFoundError: the script does not exist.
        ConfigError: an ``imports`` module cannot be imported.
    """
    if not module and not Path(target).is_file():
        raise NotFoundError(
            f"script {target!r} not found; give the path of timm's script (e.g. pytorch-image-models/train.py), "
            "or -m MODULE to run a module"
        )
    import_plugins(imports)
    sys.argv = [target, *args]
    if module:
        sys.path[0:1] = [os.getcwd()]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.path[0:1] = [str(Path(target).resolve().parent)]
        runpy.run_path(target, run_name="__main__")


def site_packages() -> Path:
    """This interpreter's site-packages (``sysconfig``'s purelib: the virtual environment's, when in one)."""
    return Path(sysconfig.get_paths()["purelib"])


def hook_files(directory: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """``(the .pth file, the hook module)`` in ``directory`` (default :func:`site_packages`)."""
    root = Path(directory) if directory is not None else site_packages()
    return root / f"{HOOK_NAME}.pth", root / f"{HOOK_NAME}.py"


def install_hook(directory: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Write the hook's .pth file and module into ``directory`` (default :func:`site_packages`).

    Raises:
        OutputError: the directory is not writable.
    """
    from hiermlp.io import atomic_write_text

    pth, hook = hook_files(directory)
    atomic_write_text(hook, _HOOK_SOURCE.read_text(), what="timm hook module")
    atomic_write_text(pth, _PTH_LINE, what="timm hook .pth file")  # last: it imports the module
    return pth, hook


def uninstall_hook(directory: str | os.PathLike | None = None) -> list[Path]:
    """Remove the hook's files from ``directory`` (default :func:`site_packages`); returns those removed."""
    removed = []
    for path in hook_files(directory):  # the .pth first: a half-removed hook never imports a missing module
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed
