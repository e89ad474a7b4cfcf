"""The ``hiermlp`` command: one entry point, one module of this package per subcommand.

Each subcommand module (``hiermlp.cli.<name>``) exposes ``add_<name>_arguments(parser)`` (or
``add_arguments``) and ``run_<name>(args) -> int`` (or ``run``); the library code it drives lives below it.
Modules are imported lazily so ``hiermlp info`` does not pay for the trainer.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("hiermlp.cli.info", "build a model and print its params, GMACs and output shapes"),
    "list": ("hiermlp.cli.info", "list registered models (and mixers)"),
    "train": ("hiermlp.cli.train", "train a model from a YAML preset with key=value overrides"),
    "eval": ("hiermlp.cli.train", "evaluate a checkpoint or a model on a dataset"),
    "bench": ("hiermlp.cli.bench", "measure params, GMACs, speed and memory of models"),
    "compare": ("hiermlp.cli.compare", "train several models under one recipe and compare them"),
    "plot": ("hiermlp.cli.plot", "overlay the learning curves of runs (hiermlp train's or timm train.py's)"),
    "export": ("hiermlp.cli.export", "export a model to ONNX or torch.export and verify it"),
    "convert": ("hiermlp.cli.convert", "save a checkpoint in another layout (hiermlp, timm, microsoft)"),
    "timm": ("hiermlp.cli.timm", "run timm's scripts (train.py, validate.py, ...) with hiermlp's models registered"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hiermlp", description="Swin-style hierarchical vision models for any token mixer."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:  # a subcommand whose module is not installed stays listed
            p.set_defaults(_missing=f"'hiermlp {name}' is unavailable: {e}")
            continue
        add = getattr(mod, f"add_{name}_arguments", None) or mod.add_arguments
        add(p)
        p.set_defaults(_run=getattr(mod, f"run_{name}", None) or mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # parse only the chosen subcommand's module so unrelated imports never slow or break a command
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser() if chosen not in COMMANDS else _parser_for(chosen)
    args, extra = parser.parse_known_args(argv)
    if extra:
        _place_overrides(parser, args, extra)
    if getattr(args, "_missing", None):
        parser.error(args._missing)
    from hiermlp.errors import HiermlpError, one_line

    try:
        return int(args._run(args) or 0)
    except HiermlpError as e:  # our errors already say what is wrong and how to fix it: no traceback
        print(f"hiermlp {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # an allocation no up-front check foresaw
        if not _out_of_memory(e):
            raise
        print(
            f"hiermlp {args.command}: error: out of memory ({one_line(e)[:200]}); lower the batch, the image size "
            "or the model",
            file=sys.stderr,
        )
        return 2


# the list each subcommand collects key=value items in (train: after the preset; compare: after the preset;
# eval: --set), so items given after an option land there too
_OVERRIDE_LISTS = {"train": "items", "compare": "overrides", "eval": "overrides"}


def _place_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """Put ``key=value`` items argparse left over (they followed an option) into the command's override list;
    anything else is argparse's usual error, saying where overrides go."""
    target = _OVERRIDE_LISTS.get(args.command)
    items = [a for a in extra if "=" in a and not a.startswith("-")]
    others = [a for a in extra if a not in items]
    if others or (items and target is None):
        where = f"; key=value overrides go after the {args.command} arguments" if target else ""
        parser.error(f"unrecognized arguments: {' '.join(extra)}{where}")
    getattr(args, target).extend(items)


def _out_of_memory(e: BaseException) -> bool:
    text = str(e).lower()
    oom = ("out of memory", "not enough memory", "can't allocate memory", "cannot allocate memory")
    return isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or any(t in text for t in oom)


def _parser_for(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hiermlp")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module, help_ = COMMANDS[name]
    p = sub.add_parser(name, help=help_, description=help_)
    mod = importlib.import_module(module)
    add = getattr(mod, f"add_{name}_arguments", None) or mod.add_arguments
    add(p)
    p.set_defaults(_run=getattr(mod, f"run_{name}", None) or mod.run)
    return parser


if __name__ == "__main__":
    sys.exit(main())
