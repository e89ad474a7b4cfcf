"""What a run shows and records on rank 0: the progress display, metrics.jsonl and the run records."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from hiermlp.io import atomic_write_text
from hiermlp.train.config import TrainConfig
from hiermlp.train.records import RunRecords

__all__ = ["Progress", "Writers"]


def _is_terminal() -> bool:
    return all(getattr(s, "isatty", lambda: False)() for s in (sys.stdout, sys.stderr))


class Progress:
    """A tqdm bar over optimizer steps on a terminal; otherwise one line per epoch and nothing else.

    A bar redraws itself with carriage returns and escape codes, which a log file keeps as noise, so when
    stdout or stderr is redirected the epoch summary lines are all that is printed.

    Args:
        enabled: False prints nothing at all (other ranks, ``progress=false``).
        total: optimizer steps of the run.
        initial: steps already done (resume).
        desc: the bar's label.
        bar: force the bar on or off (None: only on a terminal).
    """

    def __init__(self, *, enabled: bool, total: int, initial: int, desc: str, bar: bool | None = None) -> None:
        self.enabled = enabled
        use_bar = enabled and (_is_terminal() if bar is None else bar)
        self.bar = tqdm(total=total, initial=initial, dynamic_ncols=True, unit="step", desc=desc) if use_bar else None

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)

    def step(self, **postfix: str) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(refresh=False, **postfix)

    def line(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Writers:
    """Rank-0 records: metrics.jsonl (rewritten atomically each epoch) and the run records of
    :class:`~hiermlp.train.records.RunRecords` (summary.csv, args.yaml, curves.png, TensorBoard, W&B).

    Args:
        out_dir: the run directory (None: write nothing).
        history: the rows of the epochs already done (a resumed run starts from its checkpoint's rows, so
            no line of a lost epoch survives).
        cfg: the run's config: its ``tensorboard``, ``log_wandb`` and ``wandb_project`` (None: neither).
        resolved: the resolved run, for args.yaml.
    """

    def __init__(
        self,
        out_dir: Path | None,
        *,
        history: list[dict[str, Any]],
        cfg: TrainConfig | None = None,
        resolved: dict[str, Any] | None = None,
    ) -> None:
        self.out_dir, self.rows, self.records = out_dir, list(history), None
        if out_dir is None:
            return
        self._write()
        self.records = RunRecords(
            out_dir,
            resolved=resolved or {},
            history=self.rows,
            tensorboard=cfg is not None and cfg.tensorboard,
            wandb_project=cfg.wandb_project if cfg is not None and cfg.log_wandb else None,
        )

    def _write(self) -> None:
        assert self.out_dir is not None
        text = "".join(json.dumps(r) + "\n" for r in self.rows)
        atomic_write_text(self.out_dir / "metrics.jsonl", text, what="metrics")

    def epoch(self, row: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        self.rows.append(row)
        self._write()
        if self.records is not None:
            self.records.epoch(self.rows)

    def close(self) -> None:
        if self.records is not None:
            self.records.close()
