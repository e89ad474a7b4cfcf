"""``hiermlp timm``: run timm's scripts (or any module) with hiermlp's models in timm's registry, or install the
import hook that does it for every interpreter of this environment.

    hiermlp timm [--import MODULE]... SCRIPT.py [ARGS...]      e.g. hiermlp timm validate.py DIR --model hiermlp_...
    hiermlp timm [--import MODULE]... -m MODULE [ARGS...]      e.g. hiermlp timm -m pytest tests/test_models.py
    hiermlp timm --install-hook [--site-dir DIR]               then plain `python train.py ...` works too
    hiermlp timm --uninstall-hook [--site-dir DIR]

The script's exit status is the command's. See :mod:`hiermlp.timm_plugin`.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_timm_arguments", "run_timm"]


def add_timm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="also import MODULE first (a module registering its own models); repeatable",
    )
    hook = parser.add_mutually_exclusive_group()
    hook.add_argument(
        "--install-hook",
        action="store_true",
        help="write hiermlp_timm_hook.pth into site-packages: every `import timm` there then imports hiermlp",
    )
    hook.add_argument("--uninstall-hook", action="store_true", help="remove the hook's files")
    parser.add_argument(
        "--site-dir", default=None, help="the hook's folder (default: this interpreter's site-packages)"
    )
    parser.add_argument(
        "-m",
        dest="module",
        nargs=argparse.REMAINDER,
        metavar="MODULE [ARGS]",
        help="run a module as `python -m MODULE ARGS` would (the rest of the line is its arguments)",
    )
    parser.add_argument(
        "script",
        nargs=argparse.REMAINDER,
        metavar="SCRIPT [ARGS]",
        help="the script and its arguments, passed as they are (e.g. train.py DIR --model hiermlp_...)",
    )


def run_timm(args: argparse.Namespace) -> int:
    from hiermlp.timm_plugin import hook_files, install_hook, run, uninstall_hook

    if args.install_hook or args.uninstall_hook:
        if args.script or args.module:
            print("hiermlp timm: error: --install-hook/--uninstall-hook take no script", file=sys.stderr)
            return 2
        if args.install_hook:
            for path in install_hook(args.site_dir):
                print(f"wrote {path}")
            print("every `import timm` of this environment now imports hiermlp; undo: hiermlp timm --uninstall-hook")
        else:
            removed = uninstall_hook(args.site_dir)
            print("\n".join(f"removed {p}" for p in removed) or f"no hook in {hook_files(args.site_dir)[0].parent}")
        return 0
    target = args.module if args.module else args.script
    if not target:
        print(
            "hiermlp timm: error: give a script (hiermlp timm train.py ARGS...) or a module (-m MODULE ARGS...)",
            file=sys.stderr,
        )
        return 2
    if args.site_dir is not None:
        print("hiermlp timm: error: --site-dir goes with --install-hook/--uninstall-hook", file=sys.stderr)
        return 2
    try:
        run(target[0], target[1:], module=bool(args.module), imports=args.imports)
    except SystemExit as e:  # the script's own exit status (a message instead of a status: printed, then 1)
        if isinstance(e.code, int) or e.code is None:
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    return 0
