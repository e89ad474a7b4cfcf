"""The run directory's guarantees: whose it is, what a resume may change, and that no fault loses a file.

A run writes ``config.yaml``, ``last.pth``, ``best.pth``, ``metrics.jsonl`` (and ``tb/``) into its
``out_dir``, each file atomically (:mod:`hiermlp.io`). On top of that:

- **claim** (:func:`claim_out_dir`): a directory that holds another run is refused unless the run resumes it
  or ``overwrite=true`` replaces it;
- **resume** (:func:`check_resume`): a run resumes only under the config that wrote its checkpoint, except
  for the keys of :data:`RESUMABLE` (where and how it runs, how long, the rest-of-run learning rate); any
  other change is refused, naming the keys, so a resumed run either reproduces the interrupted one or does
  not start;
- **overwrite** (:class:`PreviousRun`): the replaced run's files are moved into ``.previous-run.tmp-<pid>/``
  inside ``out_dir`` and deleted only once the new run's first ``last.pth`` has landed; a new run that fails
  before that puts them back, and one that was killed has them put back by the next run in the directory;
- **best** (:func:`repair_best`): at an epoch's end ``last.pth`` (which records the best epoch) is written
  before ``best.pth``, and ``metrics.jsonl`` after both. A kill between the two leaves ``last.pth`` recording
  an epoch as best whose weights are its own, so a resume rebuilds ``best.pth`` from it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch

from hiermlp.errors import ConfigError, OutputError
from hiermlp.io import _alive, _fsync_dir, atomic_save, ensure_writable_dir, output_error, remove_stale_temps
from hiermlp.overrides import format_value
from hiermlp.train.config import TrainConfig, config_to_dict
from hiermlp.train.distributed import DistInfo, all_reduce_sum
from hiermlp.train.records import RECORD_FILES

__all__ = [
    "RESUMABLE",
    "RUN_FILES",
    "PreviousRun",
    "check_resume",
    "claim_out_dir",
    "recover_previous_runs",
    "repair_best",
]

# files that mark a directory as holding a run (metrics.jsonl only when it has a row)
RUN_FILES = ("last.pth", "best.pth", "metrics.jsonl")
# everything overwrite=true replaces
_REPLACED = ("last.pth", "best.pth", "metrics.jsonl", "config.yaml", "tb", *RECORD_FILES)
_ASIDE = re.compile(r"^\.previous-run\.tmp-(?P<pid>\d+)$")

# config keys that may differ between a run and its resume. Where and how it runs (numerics equal up to
# float rounding), how it is shown and checkpointed, the weights it started from (replaced by the
# checkpoint's), how long it goes on, and the learning rate and gradient policies of the steps still to
# come. Anything else (data, model, seed, batch, augmentation, optimizer) would make the resumed run
# another run, and is refused.
RESUMABLE = (
    "out_dir",
    "resume",
    "overwrite",
    "progress",
    "tensorboard",
    "log_wandb",
    "wandb_project",
    "ckpt_every",
    "device",
    "threads",
    "num_workers",
    "deterministic",
    "compile",
    "compile_backend",
    "channels_last",
    "grad_checkpointing",
    "pretrained",
    "initial_checkpoint",
    "eval_batch_size",
    "epochs",
    "lr",
    "warmup_lr",
    "min_lr",
    "clip_grad",
    "nan_policy",
)


# ---------------------------------------------------------------------------------------------------------
# claiming the directory


def claim_out_dir(cfg: TrainConfig, info: DistInfo) -> Path | None:
    """Decide (before anything is built or written) where this run resumes from, and check ``out_dir``.

    On rank 0: put back a replaced run whose replacement was killed before its first checkpoint, remove
    temporary files of killed writes, check that the directory is writable, and refuse a directory that
    holds another run's outputs unless ``resume`` continues it or ``overwrite=true`` replaces it. Every rank
    gets the same outcome.

    Returns:
        The checkpoint to resume from, or None to start afresh.

    Raises:
        OutputError: the directory holds a previous run, or cannot be written.
    """
    out = Path(cfg.out_dir)
    error: OutputError | None = None
    if info.is_main:
        try:
            recover_previous_runs(out)
            remove_stale_temps(out)
        except OSError as e:
            error = output_error(out, e, what="previous run's files in")
    resume = None
    if cfg.resume == "auto":
        resume = out / "last.pth" if (out / "last.pth").exists() else None
    elif cfg.resume:
        resume = Path(cfg.resume)
    if info.is_main and error is None:
        try:
            previous = _previous_outputs(out)
            inside = resume is not None and resume.resolve().parent == out.resolve()
            if previous and not cfg.overwrite and not inside:
                raise OutputError(
                    f"out_dir={str(out)!r} holds a previous run ({', '.join(previous)}); pass resume=auto to "
                    "continue it, overwrite=true to replace it, or choose another out_dir"
                )
            ensure_writable_dir(out)
        except OutputError as e:
            error = e
    if all_reduce_sum([float(error is not None)], info)[0] > 0:
        raise error or OutputError(f"out_dir={str(out)!r} was refused on rank 0 (see its message)")
    return resume


def _previous_outputs(out: Path) -> list[str]:
    found = []
    for name in RUN_FILES:
        p = out / name
        if p.is_file() and (name != "metrics.jsonl" or p.stat().st_size > 0):
            found.append(name)
    return found


# ---------------------------------------------------------------------------------------------------------
# overwrite=true: the previous run is kept until the new one has a checkpoint


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class PreviousRun:
    """The outputs of the run ``overwrite=true`` replaces, moved aside into ``.previous-run.tmp-<pid>/``.

    :meth:`commit` deletes them (call it once the new run's first checkpoint has landed); :meth:`restore`
    puts them back over whatever the new run wrote (call it when the new run fails before that). A
    ``.complete`` marker in the directory says every file was moved, so the new run may have written its own.
    """

    def __init__(self, out: Path, directory: Path) -> None:
        self.out, self.dir = out, directory

    @classmethod
    def set_aside(cls, out: Path) -> PreviousRun | None:
        """Move the previous run's files aside (None when there are none).

        Raises:
            OutputError: the files cannot be moved (those moved are put back).
        """
        names = [n for n in _REPLACED if (out / n).exists()]
        if not names:
            return None
        previous = cls(out, out / f".previous-run.tmp-{os.getpid()}")
        try:
            previous.dir.mkdir()
            for n in names:
                os.replace(out / n, previous.dir / n)  # same file system: a rename, never a copy
            (previous.dir / _COMPLETE).touch()
            _fsync_dir(previous.dir)
            _fsync_dir(out)
        except OSError as e:
            with contextlib.suppress(OSError):
                previous.restore()
            raise output_error(out, e, what="previous run's files in") from e
        return previous

    def commit(self) -> None:
        """The new run has a checkpoint: delete the previous run's files."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def restore(self) -> None:
        """Put the previous run's files back, replacing what the new run wrote in their place."""
        complete = (self.dir / _COMPLETE).exists()
        for n in _REPLACED:
            if (self.dir / n).exists():
                _remove(self.out / n)
                os.replace(self.dir / n, self.out / n)
            elif complete:  # the previous run had no such file: the new run's goes
                _remove(self.out / n)
        shutil.rmtree(self.dir, ignore_errors=True)
        _fsync_dir(self.out)


_COMPLETE = ".complete"


def recover_previous_runs(out: Path) -> list[Path]:
    """Settle the ``.previous-run.tmp-<pid>/`` directories of processes that no longer run.

    A replacing run killed before its first ``last.pth`` landed (or while it moved the previous run aside)
    has the previous run put back; one killed after that has the leftovers deleted. Returns the directories
    settled.
    """
    settled: list[Path] = []
    if not out.is_dir():
        return settled
    for d in sorted(out.iterdir()):
        m = _ASIDE.match(d.name)
        if m is None or not d.is_dir() or int(m["pid"]) == os.getpid() or _alive(int(m["pid"])):
            continue
        previous = PreviousRun(out, d)
        landed = (d / _COMPLETE).exists() and (out / "last.pth").exists()
        previous.commit() if landed else previous.restore()
        settled.append(d)
    return settled


# ---------------------------------------------------------------------------------------------------------
# resuming


def _show(values: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}={format_value(values.get(k))}" for k in keys)


def check_resume(ckpt: dict[str, Any], cfg: TrainConfig, path: Path) -> list[str]:
    """Refuse to resume ``ckpt`` under a config that would make it another run.

    Returns:
        Notes naming the :data:`RESUMABLE` keys that did change (for the run's log).

    Raises:
        ConfigError: A key outside :data:`RESUMABLE` changed (the message names every changed key with both
            values), or ``epochs`` ends before the epoch the checkpoint is in.
    """
    old = ckpt.get("config")
    new = config_to_dict(cfg)
    defaults = config_to_dict(TrainConfig())
    if not isinstance(old, dict):
        raise ConfigError(f"{path} records no config; resume from a checkpoint written by hiermlp's trainer")
    changed = [k for k in new if k not in RESUMABLE and old.get(k, defaults[k]) != new[k]]
    changed += [k for k in old if k not in new and k not in RESUMABLE]  # keys this trainer no longer knows
    if changed:
        raise ConfigError(
            f"cannot resume {path}: it was trained with {_show(old, changed)} but this config has "
            f"{_show(new, changed)}; resume with the run's values (its config.yaml) or start afresh in "
            "another out_dir (or overwrite=true). Only where and how it runs, epochs and the rest-of-run "
            "lr/clip_grad/nan_policy may change on resume (docs/training.md)"
        )
    epoch, epoch_step = int(ckpt["epoch"]), int(ckpt["epoch_step"])
    if cfg.epochs < epoch or (epoch_step > 0 and cfg.epochs <= epoch):
        where = f"in epoch {epoch + 1} (step {epoch_step})" if epoch_step > 0 else f"after {epoch} epochs"
        raise ConfigError(
            f"cannot resume {path} with epochs={cfg.epochs}: the run stopped {where}, so nothing would be "
            f"trained; resume with epochs >= {epoch + 1 if epoch_step > 0 else epoch}"
        )
    moved = [k for k in RESUMABLE if k in old and k in new and old[k] != new[k] and k not in _BOOKKEEPING]
    return [f"resuming with {k} {format_value(old[k])} -> {format_value(new[k])}" for k in moved]


# keys whose change on resume is not worth a note
_BOOKKEEPING = ("out_dir", "resume", "overwrite", "progress", "tensorboard", "ckpt_every", "initial_checkpoint")
_BOOKKEEPING += ("pretrained",)


def check_same_data(ckpt: dict[str, Any], *, steps_per_epoch: int, classes: list[str], path: Path) -> None:
    """Refuse to resume when the training data the config names is not the data the run trained on (a
    dataset rewritten in place gives another number of steps per epoch or another class map).

    Raises:
        ConfigError: The steps per epoch or the class names differ.
    """
    was = ckpt.get("steps_per_epoch")
    if was is not None and int(was) != steps_per_epoch:
        raise ConfigError(
            f"cannot resume {path}: the run had {was} optimizer steps per epoch, this data gives {steps_per_epoch} "
            "(the training set changed); resume on the data it trained on, or start afresh in another out_dir"
        )
    stored = ckpt.get("classes")
    if stored and classes and list(stored) != list(classes):
        raise ConfigError(
            f"cannot resume {path}: it was trained on classes {list(stored)[:10]}, this data has "
            f"{list(classes)[:10]}; resume on the data it trained on, or start afresh in another out_dir"
        )
    if int(ckpt.get("epoch_step", 0)) > steps_per_epoch:
        raise ConfigError(
            f"cannot resume {path}: it stopped at step {ckpt['epoch_step']} of an epoch of {steps_per_epoch} steps"
        )


# ---------------------------------------------------------------------------------------------------------
# best.pth


def _step_of(path: Path) -> int | None:
    """The ``step`` a checkpoint file records (None: missing or unreadable)."""
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:
        return None


def repair_best(out: Path, ckpt: dict[str, Any], source: Path) -> tuple[float, int] | None:
    """Make ``out/best.pth`` hold the best epoch ``ckpt`` records.

    A kill between writing ``last.pth`` and ``best.pth`` leaves a checkpoint whose best epoch is the epoch it
    ends: ``best.pth`` is rebuilt from it. A best epoch whose weights are nowhere (``best.pth`` deleted by
    hand) cannot be rebuilt: the run's best record is reset to what ``best.pth`` holds, with a warning.

    Returns:
        The ``(best_top1, best_epoch)`` the run must continue with when its record was reset, else None.
    """
    best_epoch, history = int(ckpt.get("best_epoch", 0)), list(ckpt.get("history", []))
    if not 1 <= best_epoch <= len(history):
        return None
    want = int(history[best_epoch - 1]["step"])
    best = out / "best.pth"
    have = _step_of(best)
    if have == want:
        return None
    if int(ckpt["step"]) == want and int(ckpt["epoch_step"]) == 0:
        atomic_save(ckpt, best)
        return None
    record = (-1.0, 0)
    if have is not None:
        file = torch.load(best, map_location="cpu", weights_only=True, mmap=True)
        record = (float(file.get("best_top1", -1.0)), int(file.get("best_epoch", 0)))
    warnings.warn(
        f"{best} does not hold the best epoch {best_epoch} that {source} records and cannot be rebuilt from it; "
        f"the run's best is reset to {'epoch ' + str(record[1]) if record[1] else 'none'}",
        stacklevel=2,
    )
    return record
