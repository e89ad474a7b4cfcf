"""A study's results: per-entry rows, the comparison's statistics, and its Markdown, CSV and JSON files.

:class:`CompareResult` holds every run of every entry; :meth:`CompareResult.analyse` derives the paired
differences, supported ranks and claim verdicts (:mod:`hiermlp.study.stats`) from the runs alone, so a
report read back from its JSON (:func:`load_result`) renders the same Markdown as when it was written.

A study ranks by its task's score: test top-1 for classification, mIoU for segmentation (the recipe's
``task``). Records keep it under the names ``top1`` / ``best_top1`` whatever the task, so reports of both read
alike; :attr:`CompareResult.metric` names it in every table. Each claim also states its power: the smallest
difference its seeds could detect, and how many seeds a difference of the paper's size would need.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hiermlp.bench.report import (
    environment_header,
    fmt_num,
    fmt_stats,
    markdown_table,
    write_csv,
    write_json,
    write_text,
)
from hiermlp.bench.timing import Stats
from hiermlp.study.stats import (
    Interval,
    claim_verdict,
    mean_interval,
    minimal_detectable_difference,
    paired_difference,
    paper_value,
    seeds_to_resolve,
    supported_ranks,
    verdict,
)

__all__ = ["CompareResult", "CompareRow", "RunRecord", "load_result"]

# what the recipe's amp means for a comparison's numbers
PRECISION = {
    "none": "Precision: float32 (amp=none): the same arithmetic on every machine, so results compare across machines.",
    "auto": "Precision: amp=auto, bf16 autocast where the device computes bf16 natively and float32 elsewhere: "
    "results from machines of the two kinds differ in precision.",
    "bf16": "Precision: bf16 autocast (amp=bf16).",
    "fp16": "Precision: fp16 autocast with loss scaling (amp=fp16).",
}


@dataclass
class RunRecord:
    """One trained (entry, seed)."""

    seed: int
    top1: float  # the final score: test top-1 %, or mIoU % for a segmentation study (CompareResult.metric)
    best_top1: float  # the best epoch's score
    best_epoch: int
    top5: float | None  # classification only
    test_loss: float
    train_time_s: float
    train_img_s: float  # the trainer's own throughput over the run (includes data loading)
    history: list[dict[str, Any]]
    reused: bool = False  # read back from a finished run directory instead of trained now


@dataclass
class CompareRow:
    """One entry: its runs over the seeds and their statistics."""

    label: str
    model: str
    model_kwargs: dict[str, Any]
    baseline: bool
    params: int
    gmacs: float
    runs: list[RunRecord]
    top1: Interval
    best_top1: Interval
    rank: int = 0  # 1 + the number of entries better than this one by a supported difference
    infer_img_s: Stats | None = None
    train_img_s: Stats | None = None

    @property
    def train_time_s(self) -> float:
        """Mean training time per run (seconds)."""
        return sum(r.train_time_s for r in self.runs) / max(len(self.runs), 1)

    def by_seed(self, key: str = "top1") -> dict[int, float]:
        return {r.seed: getattr(r, key) for r in self.runs}

    def describe(self) -> str:
        mixer = self.model_kwargs.get("mixer") or self.model_kwargs.get("backbone")
        keys = ("shift", "downsample", "mlp_ratio", "mixer_kwargs")
        extra = [f"{k}={v}" for k, v in self.model_kwargs.items() if k in keys]
        desc = self.model if mixer is None else f"{mixer}"
        return desc + (" (" + ", ".join(extra) + ")" if extra else "")

    def flat(self) -> dict[str, Any]:
        """One CSV row of the entry's statistics."""
        d: dict[str, Any] = {
            "label": self.label,
            "model": self.model,
            "model_kwargs": repr(self.model_kwargs),
            "baseline": self.baseline,
            "params": self.params,
            "gmacs": self.gmacs,
            "seeds": len(self.runs),
            "rank": self.rank,
        }
        for key in ("top1", "best_top1"):
            iv: Interval = getattr(self, key)
            d |= {f"{key}_mean": iv.mean, f"{key}_std": iv.std, f"{key}_ci_lo": iv.lo, f"{key}_ci_hi": iv.hi}
        d["train_time_s_mean"] = self.train_time_s
        for key in ("infer_img_s", "train_img_s"):
            st = getattr(self, key)
            for part in ("median", "q1", "q3"):
                d[f"{key}_{part}"] = getattr(st, part) if st else None
        return d


@dataclass
class CompareResult:
    """All rows, pairwise differences, claims, the environment, the resolved recipe and the command."""

    title: str
    rows: list[CompareRow]
    env: dict[str, Any]
    recipe: dict[str, Any]
    bench: dict[str, Any]
    seeds: list[int] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)  # a, b, diff (Interval of a - b), verdict
    claims: list[dict[str, Any]] = field(default_factory=list)  # claim, family, a, b, paper, diff, verdict
    wall_s: float = 0.0
    jobs: int = 1  # runs trained at a time
    job_threads: int = 0  # torch threads of each run (0: not recorded)
    # what a run's identity holds besides its config (a finished run is reused only when all of it matches)
    run_identity: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        """What the entries were trained for: the recipe's ``task`` (``classify`` or ``segment``)."""
        return str(self.recipe.get("task", "classify"))

    @property
    def metric(self) -> str:
        """The name of the score the study ranks by: ``top-1`` or ``mIoU``."""
        return "mIoU" if self.task == "segment" else "top-1"

    @property
    def score_key(self) -> str:
        """The history key of the score (``top1`` / ``miou``)."""
        return "miou" if self.task == "segment" else "top1"

    @property
    def train_time_total_s(self) -> float:
        """Sum of the training times of every run (trained now or earlier): the compute the table cost."""
        return sum(r.train_time_s for row in self.rows for r in row.runs)

    def row(self, label: str) -> CompareRow:
        return next(r for r in self.rows if r.label == label)

    def diff(self, a: str, b: str) -> Interval:
        """Paired interval of score(a) - score(b)."""
        return paired_difference(self.row(a).by_seed(), self.row(b).by_seed())

    def ranked(self) -> list[CompareRow]:
        """Rows by supported rank, then by mean score."""
        return sorted(self.rows, key=lambda r: (r.rank, -r.top1.mean))

    def vs_baselines(self, row: CompareRow) -> str:
        """``> linear, ≈ cnn``: supported better (>), supported worse (<) or inconclusive (≈), per baseline."""
        parts = []
        for b in (r for r in self.rows if r.baseline and r is not row):
            d = self.diff(row.label, b.label)
            sign = "≈" if verdict(d) != "supported" else (">" if d.mean > 0 else "<")
            parts.append(f"{sign} {b.label}")
        return ", ".join(parts) or "-"

    # ---- report ----------------------------------------------------------------------------------------
    def table(self) -> str:
        b, metric = self.bench.get("batch", 64), self.metric
        level = f"{round(100 * self.rows[0].top1.level)}%" if self.rows else "95%"
        header = [
            "rank",
            "entry",
            "model (mixer)",
            "params (M)",
            "GMACs",
            f"{metric} % (mean ± std)",
            f"{metric} {level} CI",
            f"best-epoch {metric} % ({level} CI)",
            "vs baselines",
            f"infer img/s @{b}",
            f"train img/s @{b}",
            "train s/run",
        ]
        rows = []
        for r in self.ranked():
            ci = "-" if not math.isfinite(r.top1.lo) else f"[{r.top1.lo:.2f}, {r.top1.hi:.2f}]"
            rows.append(
                [
                    str(r.rank),
                    f"**{r.label}**" + (" (baseline)" if r.baseline else ""),
                    r.describe(),
                    fmt_num(r.params / 1e6),
                    fmt_num(r.gmacs),
                    r.top1.fmt_std(),
                    ci,
                    r.best_top1.fmt(),
                    "-" if r.baseline else self.vs_baselines(r),
                    fmt_stats(r.infer_img_s),
                    fmt_stats(r.train_img_s),
                    f"{r.train_time_s:.0f}",
                ]
            )
        return markdown_table(header, rows, "rll" + "r" * (len(header) - 3))

    def claims_table(self) -> str:
        header = [
            "claim",
            "family",
            "a − b",
            f"Δ {self.metric} (pp) [95% CI]",
            "verdict",
            "detectable Δ (95%, 80% power)",
            "paper",
            "seeds for the paper's Δ",
        ]
        rows = [
            [
                c["claim"],
                c["family"],
                f"{c['a']} − {c['b']}",
                c["diff"].fmt(sign=True),
                c["verdict"],
                _fmt_mdd(c["mdd"], c["diff"].n),
                c["paper"],
                _fmt_seeds(c),
            ]
            for c in self.claims
        ]
        return markdown_table(header, rows, "llllllll")

    def pairs_table(self) -> str:
        header = ["a", "b", f"Δ {self.metric} a − b (pp) [95% CI]", "verdict"]
        rows = [[p["a"], p["b"], p["diff"].fmt(sign=True), p["verdict"]] for p in self.pairs]
        return markdown_table(header, rows, "llrl")

    def findings(self) -> list[str]:
        """What the intervals support, as Markdown bullets (the README's findings are these)."""
        if not self.rows:
            return []
        ranked = self.ranked()

        def score(iv: Interval) -> str:
            return f"mIoU {iv.fmt_std()}" if self.task == "segment" else f"{iv.fmt_std()}%"

        top = [r.label for r in ranked if r.rank == 1]
        out = [
            f"- best (rank 1, no entry better by a supported difference): {', '.join(f'`{t}`' for t in top)}; "
            f"highest mean `{ranked[0].label}` {score(ranked[0].top1)} over {_plural(len(ranked[0].runs), 'seed')}"
        ]
        base = [r for r in self.rows if r.baseline]
        for b in base:
            beat = [r.label for r in self.rows if not r.baseline and _better(self.diff(r.label, b.label))]
            lose = [r.label for r in self.rows if not r.baseline and _better(self.diff(b.label, r.label))]
            tied = [r.label for r in self.rows if not r.baseline and r.label not in beat + lose]
            line = f"- baseline `{b.label}` ({score(b.top1)}): beaten by {_names(beat)}"
            line += f"; better than {_names(lose)}" if lose else ""
            line += f"; not separated from {_names(tied)}" if tied else ""
            out.append(line)
        for c in self.claims:
            out.append(f"- claim {c['claim']} ({c['family']}): {claim_sentence(c)}")
        supported = [p for p in self.pairs if p["verdict"] == "supported"]
        out.append(
            f"- {len(supported)} of {len(self.pairs)} pairwise differences are supported at 95% "
            "(each interval on its own; see the pairs table)"
        )
        return out

    def notes(self) -> str:
        rc = self.recipe
        keys = ("data", "img_size", "in_chans", "epochs", "limit_train", "limit_test", "batch_size", "opt", "lr")
        keys += ("min_lr", "warmup_epochs", "weight_decay", "no_aug", "label_smoothing", "drop_path_rate", "amp")
        recipe = ", ".join(f"{k}={rc.get(k)}" for k in keys if k in rc)
        reused = sum(r.reused for row in self.rows for r in row.runs)
        return "\n".join(
            [
                f"Recipe (shared by every entry): {recipe}. Seeds: {self.seeds}.",
                "",
                PRECISION.get(rc.get("amp"), f"Precision: amp={rc.get('amp')}."),
                "",
                f"{self.metric} = {_METRIC_TEXT[self.task]}, mean ± sample std over the seeds; CI = 95% Student-t "
                f"interval of the mean; best-epoch = the best epoch's test {self.metric} of each run (an optimistic "
                "number: it picks on the test set). rank = 1 + the number of entries better by a supported paired "
                "difference "
                "(entries no interval separates share a rank). vs baselines: > better, < worse (supported), "
                "≈ inconclusive. Claims: detectable Δ = the smallest true difference the seeds detect at 95% "
                "confidence with 80% power, (t_{0.975,n-1} + t_{0.8,n-1}) · s_d / √n from the paired differences' "
                "std s_d; an inconclusive claim is smaller than that at this budget, and the last column solves the "
                "same formula for the seeds a difference of the paper's size needs (seeds=N buys more). "
                "Throughput = median (q1–q3) of the architectures timed together round-robin "
                "after training (training = forward+backward+AdamW step); train s/run = the trainer's wall time "
                "of the training epochs, mean over seeds.",
                "",
                f"Total wall time {self.wall_s:.0f}s; sum of per-run training times {self.train_time_total_s:.0f}s "
                f"over {sum(len(r.runs) for r in self.rows)} runs"
                + (f" ({reused} reused from earlier, interrupted invocations)" if reused else "")
                + (
                    f"; {self.jobs} runs at a time, {self.job_threads} torch thread(s) each"
                    if self.jobs > 1
                    else f"; one run at a time, {self.job_threads} torch thread(s)"
                    if self.job_threads
                    else ""
                )
                + ".",
                *(
                    [
                        "",
                        "A finished run is reused only when its whole config (recipe, model, seed) and its run "
                        "environment match: " + ", ".join(f"{k}={v}" for k, v in self.run_identity.items()) + ".",
                    ]
                    if self.run_identity
                    else []
                ),
            ]
        )

    def markdown(self, command: str | None = None) -> str:
        parts = [environment_header(self.title, self.env, command), self.table(), ""]
        parts += ["## Findings (what the intervals support)", "", *self.findings(), ""]
        if self.claims:
            parts += ["## Claims of the papers, tested", "", self.claims_table(), ""]
        if self.pairs:
            parts += ["## Pairwise differences (paired over seeds)", "", self.pairs_table(), ""]
        parts += ["## Notes", "", self.notes()]
        return "\n".join(parts)

    def as_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["top1"], d["best_top1"] = r.top1.as_dict(), r.best_top1.as_dict()
            d["infer_img_s"] = r.infer_img_s.as_dict() if r.infer_img_s else None
            d["train_img_s"] = r.train_img_s.as_dict() if r.train_img_s else None
            d["train_time_s"] = r.train_time_s
            rows.append(d)
        return {
            "title": self.title,
            "env": self.env,
            "recipe": self.recipe,
            "bench": self.bench,
            "seeds": self.seeds,
            "wall_s": self.wall_s,
            "jobs": self.jobs,
            "job_threads": self.job_threads,
            **({"run_identity": self.run_identity} if self.run_identity else {}),
            "train_time_total_s": self.train_time_total_s,
            "rows": rows,
            "findings": self.findings(),
            "pairs": [p | {"diff": p["diff"].as_dict()} for p in self.pairs],
            "claims": [c | {"diff": c["diff"].as_dict()} for c in self.claims],
        }

    def save(self, out_dir: str | Path, *, command: str | None = None) -> list[Path]:
        """Write compare.md/.csv/.json, runs.csv, pairs.csv and claims.csv (the plots: :mod:`hiermlp.study.plots`)."""
        out = Path(out_dir)
        runs = [
            {"label": row.label, **{k: v for k, v in asdict(r).items() if k != "history"}}
            for row in self.rows
            for r in row.runs
        ]
        paths = [
            write_text(out / "compare.md", self.markdown(command)),
            write_csv(out / "compare.csv", [r.flat() for r in self.ranked()]),
            write_csv(out / "runs.csv", runs),
            write_json(out / "compare.json", self.as_dict() | {"command": command}),
        ]
        if self.pairs:
            paths.append(write_csv(out / "pairs.csv", [_flat_diff(p) for p in self.pairs]))
        if self.claims:
            paths.append(write_csv(out / "claims.csv", [_flat_diff(c) for c in self.claims]))
        return paths

    # ---- statistics ------------------------------------------------------------------------------------
    def analyse(self, claims: list[dict[str, Any]]) -> CompareResult:
        """Fill in every pair's paired difference, the supported ranks and the ``claims``' verdicts.

        Each pair is stated as "higher minus lower", so the pairs table reads one way; pairs are sorted by
        their mean difference, largest first.
        """
        self.pairs, diffs = [], {}
        for i, a in enumerate(self.rows):
            for b in self.rows[i + 1 :]:
                hi, lo = (b, a) if self.diff(a.label, b.label).mean < 0 else (a, b)
                d = self.diff(hi.label, lo.label)
                diffs[(hi.label, lo.label)] = d
                self.pairs.append({"a": hi.label, "b": lo.label, "diff": d, "verdict": verdict(d)})
        self.pairs.sort(key=lambda p: -p["diff"].mean)
        ranks = supported_ranks([r.label for r in self.rows], diffs)
        for r in self.rows:
            r.rank = ranks[r.label]
        self.claims = []
        for c in claims:
            d = self.diff(c["a"], c["b"])
            paper = paper_value(c["paper"])
            power = {
                "mdd": minimal_detectable_difference(d.std, d.n),
                "seeds_for_paper": seeds_to_resolve(paper, d.std) if paper is not None else None,
            }
            self.claims.append(c | {"diff": d, "verdict": claim_verdict(d)} | power)
        return self


_METRIC_TEXT = {
    "classify": "final test top-1 accuracy (%)",
    "segment": "final test mIoU (%, the mean IoU over classes from one confusion matrix of the whole test set)",
}


def _fmt_mdd(mdd: float, n: int) -> str:
    return f"±{mdd:.2f} ({n} seeds)" if math.isfinite(mdd) else "- (one seed)"


def _fmt_seeds(c: dict[str, Any]) -> str:
    if paper_value(c["paper"]) is None or not math.isfinite(c["diff"].std):
        return "-"
    n = c.get("seeds_for_paper")
    return f"{n}" if n is not None else "> 10,000"


def claim_sentence(c: dict[str, Any]) -> str:
    """A claim's result in words: its difference, verdict and power (what a budget that missed it could see)."""
    d: Interval = c["diff"]
    text = f"Δ {d.fmt(sign=True)} pp — {c['verdict']}"
    if c["verdict"] == "inconclusive" and math.isfinite(c["mdd"]):
        text += f": smaller than ±{c['mdd']:.2f} pp at this budget ({d.n} seeds, 95% confidence, 80% power)"
    paper = paper_value(c["paper"])
    if paper is not None and math.isfinite(d.std):
        n = c.get("seeds_for_paper")
        need = f"{n} seeds" if n is not None else "more than 10,000 seeds"
        text += f"; a difference of the paper's size ({str(c['paper']).split()[0]}) needs {need} at this spread"
    return text + f" (paper: {c['paper']})"


def _better(d: Interval) -> bool:
    return verdict(d) == "supported" and d.mean > 0


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _names(labels: list[str]) -> str:
    return ", ".join(f"`{x}`" for x in labels) if labels else "none"


def _flat_diff(d: dict[str, Any]) -> dict[str, Any]:
    iv: Interval = d["diff"]
    rest = {k: v for k, v in d.items() if k != "diff"}
    return rest | {"diff_mean": iv.mean, "diff_std": iv.std, "ci_lo": iv.lo, "ci_hi": iv.hi, "n": iv.n}


def load_result(source: str | Path | dict[str, Any]) -> CompareResult:
    """A result read back from its ``compare.json`` (a path or the parsed dict), statistics recomputed from the runs.

    Raises:
        FileNotFoundError: No such file.
        KeyError: The JSON is not a compare report.
    """
    data = source if isinstance(source, dict) else json.loads(Path(source).read_text())
    rows = []
    for r in data["rows"]:
        runs = [RunRecord(**run) for run in r["runs"]]
        rows.append(
            CompareRow(
                label=r["label"],
                model=r["model"],
                model_kwargs=r["model_kwargs"],
                baseline=r["baseline"],
                params=r["params"],
                gmacs=r["gmacs"],
                runs=runs,
                top1=mean_interval([run.top1 for run in runs]),
                best_top1=mean_interval([run.best_top1 for run in runs]),
                infer_img_s=Stats(**r["infer_img_s"]) if r.get("infer_img_s") else None,
                train_img_s=Stats(**r["train_img_s"]) if r.get("train_img_s") else None,
            )
        )
    result = CompareResult(
        data["title"],
        rows,
        data["env"],
        data["recipe"],
        data["bench"],
        list(data["seeds"]),
        wall_s=data["wall_s"],
        jobs=data.get("jobs", 1),
        job_threads=data.get("job_threads", 0),
        run_identity=data.get("run_identity", {}),
    )
    keys = ("claim", "family", "a", "b", "paper")
    return result.analyse([{k: c[k] for k in keys} for c in data.get("claims", [])])
