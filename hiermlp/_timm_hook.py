"""The opt-in startup hook that puts hiermlp's models into timm's registry wherever timm is imported.

``hiermlp timm --install-hook`` copies this file into site-packages as ``hiermlp_timm_hook.py`` beside
``hiermlp_timm_hook.pth`` (one line, ``import hiermlp_timm_hook``), which the interpreter runs at start-up.
At start-up it only adds one finder to ``sys.meta_path``: nothing else is imported, so an interpreter that
never imports timm pays for this file and nothing more. The first ``import timm`` then imports hiermlp (and
the modules named in ``HIERMLP_TIMM_IMPORTS``, comma separated: a user's own registered models) right after
timm itself, so ``timm.create_model("hiermlp_...")``, timm's scripts and ``hf-hub:`` / ``local-dir:`` names
work unchanged. ``hiermlp timm --uninstall-hook`` removes both files.

Standard library only, and self-contained: site-packages holds a copy of this file, not an import of hiermlp.
"""

import sys

ENV_IMPORTS = "HIERMLP_TIMM_IMPORTS"


class _AfterTimm:
    """timm's own loader, then hiermlp's registration once timm's module has run."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        register()

    def __getattr__(self, name):  # resource readers and the rest of the loader's interface
        return getattr(self.loader, name)


class TimmFinder:
    """A ``sys.meta_path`` finder for the top-level ``timm`` only; it removes itself on first use."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        from importlib.util import find_spec

        spec = find_spec("timm")
        if spec is not None and spec.loader is not None:
            spec.loader = _AfterTimm(spec.loader)
        return spec


def register():
    """Import hiermlp and the modules of ``HIERMLP_TIMM_IMPORTS``; on failure warn once and leave timm as is."""
    import importlib
    import os

    own = sys.modules.get("hiermlp")
    if own is not None and getattr(getattr(own, "__spec__", None), "_initializing", False):
        return  # hiermlp itself is importing timm: it registers its models when it is done
    try:
        importlib.import_module("hiermlp")
        for name in (s.strip() for s in os.environ.get(ENV_IMPORTS, "").split(",")):
            if name:
                importlib.import_module(name)
    except Exception as e:
        import warnings

        warnings.warn(
            f"hiermlp's timm hook ({__file__}) could not import hiermlp or {ENV_IMPORTS} "
            f"({type(e).__name__}: {e}); timm runs without those models. Fix the import, or remove the hook with "
            "`hiermlp timm --uninstall-hook` (or delete hiermlp_timm_hook.pth)",
            stacklevel=2,
        )


def install():
    """Called by the .pth line at start-up: one finder, before the path finder, if timm is not loaded yet."""
    if "timm" in sys.modules:
        register()
    elif not any(isinstance(f, TimmFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, TimmFinder())
