"""Running a study: every (entry, seed) trained once in its own directory, resumable, optionally side by side.

Every (entry, seed) is trained by :func:`hiermlp.train.train` in its own run directory
(``RUNS/<label>/seed<k>``, one per label: :func:`~hiermlp.study.preset.run_dir_name`). Before training, the
run's identity is written there: its config without where it writes or how it shows progress, and its run
environment (:func:`run_environment`: torch threads, device, the speed layer's settings and the versions of
torch, timm, NumPy and Pillow), everything that changes what it computes; once it has finished, its record.
So a study that is killed and rerun with the same arguments reuses the finished runs, resumes the
unfinished one from its last checkpoint, and retrains a run whose identity changed. A file lock (the
``filelock`` package: ``flock``, released by the kernel when its process dies) keeps two studies on one
runs directory from training the same run.

With ``jobs`` > 1 (CPU only) the runs are spread over worker processes with ``cores // jobs`` torch threads
each: micro models keep one core busy far better than two, so two one-thread runs side by side finish
sooner than the same two runs one after the other on two threads. The thread count is part of a run's
identity (reductions split over threads round differently). A worker dies with the study that started it;
a worker that dies (killed by the system, e.g. out of memory) or a run that fails (diverged) stops the study
with an error naming the entry and seed, and the runs that finished are kept for the rerun.

Afterwards the trained architectures' inference and training throughput are measured together,
round-robin, by :func:`hiermlp.bench.benchmark_models`, so speed is compared under the same conditions,
and :meth:`~hiermlp.study.report.CompareResult.analyse` gives the statistics.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import math
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from hiermlp.bench.env import available_cores, cpu_model, environment, finish_environment, set_threads
from hiermlp.bench.flops import count_gmacs
from hiermlp.bench.speed import BenchEntry, benchmark_models
from hiermlp.errors import ConfigError, HiermlpError, one_line
from hiermlp.io import atomic_write_text
from hiermlp.study.preset import ComparePreset, run_dir_name
from hiermlp.study.report import CompareResult, CompareRow, RunRecord
from hiermlp.study.stats import mean_interval
from hiermlp.train import config_to_dict, model_from_config, train
from hiermlp.train.build import input_shape
from hiermlp.train.config import TrainConfig, config_from_dict

__all__ = [
    "FINGERPRINT_FILE",
    "LOCK_FILE",
    "RESULT_FILE",
    "RunFailedError",
    "resolve_jobs",
    "run_comparison",
    "run_environment",
]

# TrainConfig keys that do not change what a run computes: a finished or interrupted run is reused
# whatever they are (the out_dir moves with --runs-dir, the rest is bookkeeping). The thread count a run
# uses is in its run environment instead (the config's threads is not what compare runs it with).
_VOLATILE = ("out_dir", "resume", "overwrite", "progress", "tensorboard", "threads", "ckpt_every", "num_workers")
RESULT_FILE = "compare_run.json"  # written into a run directory once its training has finished
FINGERPRINT_FILE = "compare_config.json"  # the run's identity, written before training starts
LOCK_FILE = "compare.lock"  # flock'd by the process training the run (it holds that process's pid)


class RunFailedError(HiermlpError, RuntimeError):
    """A run of a study failed or its worker died; the message names the entry and the seed."""


def resolve_jobs(jobs: int | str, device: str, runs: int) -> int:
    """How many runs to train at a time: ``auto`` is one per CPU core; a GPU or torchrun trains one at a time.

    Raises:
        ConfigError: jobs > 1 asked for on a GPU or under torchrun.
    """
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    on_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    if jobs == "auto":
        return max(1, min(runs, available_cores())) if on_cpu and not distributed else 1
    if jobs > 1 and (distributed or not on_cpu):
        where = "under torchrun" if distributed else f"on device {device!r}"
        raise ConfigError(f"jobs={jobs} trains runs side by side on CPU cores only, not {where}; use jobs=1")
    return int(jobs)


def run_environment(device: str, threads: int) -> dict[str, Any]:
    """Everything outside the config that changes what a run computes, down to the last bit.

    The torch threads (reductions split over threads round differently), the device (CPU model or GPU name:
    kernels differ between them), the speed layer's settings and the float32 CPU GEMM path they resolve to
    (MKL or oneDNN), the deterministic flag lives in the config,
    and the versions of the libraries whose code runs in a step (torch, timm, NumPy; Pillow decodes and
    resizes the images).
    """
    import numpy
    import PIL
    import timm

    from hiermlp import accel

    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    name = torch.cuda.get_device_name(torch.device(device if device.startswith("cuda") else "cuda")) if on_gpu else ""
    from hiermlp.accel.linear import gemm_choice

    return {
        "threads": int(threads),
        "device": f"cuda ({name})" if on_gpu else f"cpu ({cpu_model()})",
        "accel": ",".join(f"{k}={v}" for k, v in asdict(accel.settings.current()).items()),
        # the float32 CPU GEMM path the runs take (the machine profile's, at the runs' thread count, or pinned),
        # and the attention kernel their evaluation runs (the two round differently)
        **({} if on_gpu else _cpu_paths(gemm_choice(int(threads) or None))),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
    }


def _cpu_paths(choice: dict[str, Any]) -> dict[str, Any]:
    paths = {"gemm": choice["gemm"]}
    if "cpu_attention_explicit" in choice:
        paths["attention"] = "explicit" if choice["cpu_attention_explicit"]["float32"] else "sdpa"
    return paths


def _fingerprint(cfg: Any, environment: dict[str, Any] | None = None) -> dict[str, Any]:
    """A run's identity: its config without the keys that only say where and how it is shown, and the run
    environment it is trained in (:func:`run_environment`)."""
    fp = {k: v for k, v in config_to_dict(cfg).items() if k not in _VOLATILE}
    if environment is not None:
        fp["environment"] = dict(environment)
    return fp


def _same_config(old: Any, new: dict[str, Any]) -> bool:
    """Whether a run recorded with config ``old`` computed what ``new`` asks for.

    A key only ``new`` has (a trainer option added since the run) matches when it is at its default: the
    older trainer behaved as that default does.
    """
    if not isinstance(old, dict):
        return False
    defaults = _fingerprint(TrainConfig())
    for k, v in new.items():
        if k in old:
            if old[k] != v:
                return False
        elif k not in defaults or defaults[k] != v:
            return False
    return all(k in new for k in old)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or half-written: treated as absent


def _write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj), what="compare record")  # a kill mid-write leaves the old file


def is_main() -> bool:
    """Rank 0 of a torchrun launch (or a plain process): the one that writes compare's files."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for this process: two compares on one runs directory must not train the same run.

    An ``flock`` (the ``filelock`` package) on ``compare.lock``: atomic, and released by the kernel when the
    holding process dies, so a killed compare's runs are free again at once. The holder writes its pid into
    the file for the message of the one refused.

    Raises:
        ConfigError: another process holds it.
    """
    if not is_main():
        yield
        return
    import filelock

    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE

    lock = filelock.FileLock(path, timeout=0, thread_local=False)
    try:
        lock.acquire()
    except filelock.Timeout:
        try:
            holder = f"process {int(path.read_text().strip())}"
        except (OSError, ValueError):
            holder = "another process"
        raise ConfigError(
            f"{run_dir} is being trained by {holder} (another hiermlp compare on the same runs directory): wait "
            "for it to finish, or pass another --runs-dir"
        ) from None
    try:
        with open(path, "r+") as f:  # the lock is the flock, not the content: the pid only names the holder
            f.truncate(0)
            f.write(str(os.getpid()))
        yield
    finally:
        lock.release()


def _train_run(cfg: Any, run_dir: Path, progress: bool) -> Any:
    """Train one (entry, seed); the one place a study calls the trainer (tests wrap it)."""
    return train(cfg, out_dir=run_dir, progress=progress)


def _run_one(
    cfg: Any, run_dir: Path, *, seed: int, progress: bool, environment: dict[str, Any]
) -> tuple[RunRecord, Any, int]:
    """Reuse a finished run of the same identity, resume an interrupted one, or train afresh.

    Returns:
        The record, the trained model (None when reused) and its parameter count.
    """
    fp = _fingerprint(cfg, environment)
    done = _read_json(run_dir / RESULT_FILE)
    if done is not None and _same_config(done.get("config"), fp):
        rec = RunRecord(**{k: v for k, v in done["record"].items() if k != "reused"}, reused=True)
        return rec, None, int(done["params"])
    same = _same_config(_read_json(run_dir / FINGERPRINT_FILE), fp)
    resuming = same and (run_dir / "last.pth").is_file()
    keys: dict[str, Any] = {"resume": "auto" if resuming else ""}
    if "overwrite" in {f.name for f in fields(TrainConfig)}:
        keys["overwrite"] = not resuming  # the directory is compare's own: a stale or changed run is replaced
    cfg = replace(cfg, **keys)
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / RESULT_FILE).unlink(missing_ok=True)
        _write_json_atomic(run_dir / FINGERPRINT_FILE, fp)
    result = _train_run(cfg, run_dir, progress)
    rec = RunRecord(
        seed=seed,
        top1=result.score,  # the task's score: top-1, or mIoU for a segmentation study
        best_top1=result.best_score,
        best_epoch=result.best_epoch,
        top5=result.top5 if math.isfinite(result.top5) else None,  # a segmentation run has none (NaN)
        test_loss=result.loss,
        train_time_s=_train_time(result),
        train_img_s=result.img_s,
        history=result.history,
    )
    record = {k: v for k, v in asdict(rec).items() if k != "reused"}
    if is_main():
        _write_json_atomic(run_dir / RESULT_FILE, {"config": fp, "record": record, "params": result.params})
    return rec, result.model, result.params


def _train_time(result: Any) -> float:
    """Training time over all epochs, also those trained before a resume (the history keeps each epoch's time)."""
    times = [h.get("epoch_time_s") for h in result.history]
    if times and all(isinstance(t, int | float) for t in times):
        return float(sum(times))
    return float(result.train_time_s)


_started: Any = None  # in a worker: the queue it announces (pid, entry, seed) on before each run


def _worker_init(started: Any = None) -> None:
    """A worker dies with the compare that started it (Linux): a killed compare leaves no run training on.

    Its run resumes from its checkpoint when the compare is run again. ``started``: a queue the worker
    announces each run on, so the compare can name the run of a worker that dies.
    """
    import ctypes

    global _started
    _started = started

    # not Linux (no prctl): Ctrl-C still reaches the whole process group
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died while this worker was starting
        os._exit(1)


def _train_job(
    cfg: Any, run_dir: str, seed: int, threads: int, index: int, environment: dict[str, Any]
) -> tuple[RunRecord, int]:
    """One (entry, seed) in a worker process of ``jobs`` > 1 (module level: picklable for spawn)."""
    if _started is not None:
        _started.put((os.getpid(), index, seed))
    torch.set_num_threads(threads)
    with _run_lock(Path(run_dir)):
        rec, _, params = _run_one(cfg, Path(run_dir), seed=seed, progress=False, environment=environment)
    return rec, params


def _failed(label: str, seed: int, runs_dir: Path, e: BaseException) -> RunFailedError:
    return RunFailedError(
        f"entry {label!r} seed {seed} failed: {one_line(e)} (finished runs are kept in {runs_dir}; rerunning "
        "the command reuses them)"
    )


def _died(procs: list[Any], started: Any, names: list[str], unfinished: set[tuple[int, int]], runs_dir: Path) -> str:
    """The one-line account of a broken worker pool: the run whose worker died, and how it died."""
    jobs: dict[int, tuple[int, int]] = {}  # worker pid -> the (entry, seed) it last started
    with contextlib.suppress(Exception):
        while not started.empty():
            pid, i, seed = started.get()
            jobs[pid] = (i, seed)
    parts = []
    for p in procs:  # the pool terminates the other workers (SIGTERM) once one has died
        if p.exitcode in (None, 0, -signal.SIGTERM) or jobs.get(p.pid) not in unfinished:
            continue
        i, seed = jobs[p.pid]
        how = f"killed by {signal.Signals(-p.exitcode).name}" if p.exitcode < 0 else f"exit code {p.exitcode}"
        oom = ", e.g. by the out-of-memory killer" if p.exitcode == -signal.SIGKILL else ""
        parts.append(f"entry {names[i]!r} seed {seed} ({how}{oom})")
    what = f"the worker training {' and '.join(parts)} died" if parts else "a compare worker died"
    return (
        f"{what}; finished runs are kept in {runs_dir} and a rerun reuses them (use fewer jobs or a smaller batch "
        "if memory ran out)"
    )


def _train_all(
    preset: ComparePreset, configs: list[Any], runs_dir: Path, *, progress: bool, threads: int, jobs: int | str | None
) -> tuple[list[list[tuple[RunRecord, int]]], int, int, dict[str, Any]]:
    """Every (entry, seed), one after the other or ``jobs`` at a time.

    Returns:
        Per entry its (record, params) by seed; the jobs used, the torch threads of each run, and the run
        environment every run's identity holds.

    Raises:
        RunFailedError: A run failed (diverged, bad data) or its worker died; the message names the entry
            and seed. The runs that finished are kept.
    """
    todo = [(i, seed) for i in range(len(configs)) for seed in preset.seeds]
    n_jobs = min(resolve_jobs(preset.jobs if jobs is None else jobs, configs[0].device, len(todo)), len(todo))
    per_run_threads = threads if n_jobs == 1 else max(1, threads // n_jobs)
    environment = run_environment(configs[0].device, per_run_threads)
    names = [e["label"] for e in preset.entries]
    done: dict[tuple[int, int], tuple[RunRecord, int]] = {}
    bar = tqdm(total=len(todo), desc="compare", disable=not progress, position=0)

    def report(i: int, seed: int, rec: RunRecord) -> None:
        bar.update()
        reused = " (reused)" if rec.reused else ""
        metric = "mIoU" if configs[i].task == "segment" else "top-1"  # the run's score (RunRecord.top1)
        bar.write(f"{names[i]} seed {seed}: {metric} {rec.top1:.2f}% | {rec.train_time_s:.0f}s{reused}")

    def run_dir(i: int, seed: int) -> Path:
        return runs_dir / run_dir_name(names[i]) / f"seed{seed}"

    if n_jobs == 1:
        for i, seed in todo:
            bar.set_postfix_str(f"{names[i]} seed {seed}")
            cfg = replace(configs[i], seed=seed)
            with _run_lock(run_dir(i, seed)):
                try:
                    rec, model, params = _run_one(
                        cfg, run_dir(i, seed), seed=seed, progress=progress, environment=environment
                    )
                except (HiermlpError, FloatingPointError) as e:
                    raise _failed(names[i], seed, runs_dir, e) from e
            del model
            done[i, seed] = rec, params
            report(i, seed, rec)
    else:
        # spawn: a forked child would inherit the parent's OpenMP thread pool in an undefined state
        context = multiprocessing.get_context("spawn")
        started = context.SimpleQueue()
        broken: BaseException | None = None
        with cf.ProcessPoolExecutor(
            max_workers=n_jobs, mp_context=context, initializer=_worker_init, initargs=(started,)
        ) as pool:
            futures = {}
            for i, seed in todo:
                cfg = replace(configs[i], seed=seed, progress=False)
                args = (cfg, str(run_dir(i, seed)), seed, per_run_threads, i, environment)
                futures[pool.submit(_train_job, *args)] = i, seed
            procs = list(getattr(pool, "_processes", {}).values())  # their exit codes tell a killed worker
            try:
                for future in cf.as_completed(futures):
                    i, seed = futures[future]
                    try:
                        done[i, seed] = future.result()
                    except cf.process.BrokenProcessPool as e:
                        broken = e  # told once the pool has shut down and every exit code is known
                        break
                    except (HiermlpError, FloatingPointError) as e:
                        raise _failed(names[i], seed, runs_dir, e) from e
                    report(i, seed, done[i, seed][0])
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        if broken is not None:
            unfinished = {key for key in todo if key not in done}
            raise RunFailedError(_died(procs, started, names, unfinished, runs_dir)) from broken
    bar.close()
    return [[done[i, seed] for seed in preset.seeds] for i in range(len(configs))], n_jobs, per_run_threads, environment


def run_comparison(
    preset: ComparePreset,
    *,
    progress: bool = True,
    threads: int | None = None,
    runs_dir: str | Path,
    jobs: int | str | None = None,
) -> CompareResult:
    """Train every entry of ``preset`` once per seed with its shared recipe, then time the architectures.

    Args:
        preset: From :func:`~hiermlp.study.preset.load_preset`.
        progress: Show a tqdm bar over runs (and the trainer's own bars).
        threads: Torch intra-op threads (None: the bench section's, else one per core).
        runs_dir: Each (entry, seed) trains in ``runs_dir/<label>/seed<k>``; a finished run of the same
            config found there is reused, an interrupted one resumed from its last checkpoint.
        jobs: Runs trained at a time (None: the preset's ``jobs``); see the module docstring.

    Returns:
        The comparison.

    Raises:
        ConfigError: A recipe key or value is invalid (the trainer's message, with close keys).
    """
    t_start = time.perf_counter()
    threads = set_threads(threads or preset.bench.get("threads"))
    configs = []
    for e in preset.entries:  # validate every config before training anything
        # TensorBoard off unless asked for: event files are of no use to a comparison and cost time
        recipe = {"tensorboard": False, **preset.recipe}
        cfg = config_from_dict({**recipe, "model": e["model"], "model_kwargs": e["model_kwargs"], "progress": progress})
        configs.append(cfg)
    env = environment(configs[0].device if configs[0].device != "auto" else "cpu")
    runs_of, n_jobs, job_threads, run_env = _train_all(
        preset, configs, Path(runs_dir), progress=progress, threads=threads, jobs=jobs
    )
    rows: list[CompareRow] = []
    for i, (e, cfg) in enumerate(zip(preset.entries, configs)):
        runs = [rec for rec, _ in runs_of[i]]
        params = runs_of[i][0][1]
        # GMACs do not depend on the weights: counted on a freshly built model
        gmacs = count_gmacs(model_from_config(cfg, cfg.num_classes or 10).cpu(), input_shape(cfg))
        rows.append(
            CompareRow(
                label=e["label"],
                model=e["model"],
                model_kwargs=e["model_kwargs"],
                baseline=e["baseline"],
                params=params,
                gmacs=float(gmacs or 0.0),
                runs=runs,
                top1=mean_interval([r.top1 for r in runs]),
                best_top1=mean_interval([r.best_top1 for r in runs]),
            )
        )
    bench = {"batch": 64, "repeats": 5, "warmup": 1, "memory": False, "train": True, "latency": False}
    bench |= preset.bench
    if not bench.pop("skip", False) and is_main():  # under torchrun rank 0 times the models alone
        num_classes = configs[0].num_classes or 10
        shape = input_shape(configs[0])
        # a clip is no square image: each model is built for its (T, H, W) and timed on the whole shape
        size_kw = {"img_size": configs[0].img_size} if len(shape) == 3 else {"input_size": shape}
        report = benchmark_models(
            [
                BenchEntry(
                    e["model"],
                    e["label"],
                    {**e["model_kwargs"], "drop_path_rate": c.drop_path_rate}
                    | ({"img_size": shape[1:]} if len(shape) != 3 else {}),
                )
                for e, c in zip(preset.entries, configs)
            ],
            **size_kw,
            in_chans=configs[0].in_chans,
            num_classes=num_classes,
            threads=threads,
            progress=progress,
            **{k: v for k, v in bench.items() if k != "threads"},
        )
        for row, b in zip(rows, report.rows):
            row.infer_img_s, row.train_img_s = b.infer_img_s, b.train_img_s
    recipe = config_to_dict(configs[0])
    for k in ("model", "model_kwargs", "seed", *_VOLATILE):
        recipe.pop(k, None)
    result = CompareResult(preset.title, rows, finish_environment(env), recipe, bench, list(preset.seeds))
    result.analyse(preset.claims)
    result.wall_s = time.perf_counter() - t_start
    result.jobs, result.job_threads = n_jobs, job_threads
    result.run_identity = {"deterministic": configs[0].deterministic, **run_env}
    return result
