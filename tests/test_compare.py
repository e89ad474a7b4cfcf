"""hiermlp compare: presets, overrides, the 2-seed smoke preset end to end, and a killed compare resumed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import hiermlp.study.runner as runner
from hiermlp.cli import main
from hiermlp.errors import ConfigError
from hiermlp.study.preset import find_compare_preset, load_preset
from hiermlp.study.report import load_result
from hiermlp.study.stats import mean_interval, paired_difference

ROOT = Path(__file__).resolve().parents[1]


def test_compare_smoke_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "smoke", "bench.repeats=1", "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "| **linear** (baseline) |" in stdout and "| **window-attention** |" in stdout
    assert "## Claims of the papers, tested" in stdout and "| shifted windows | swin |" in stdout
    data = json.loads((out / "compare.json").read_text())
    assert data["seeds"] == [0, 1] and data["command"].startswith("hiermlp compare smoke")
    rows = {r["label"]: r for r in data["rows"]}
    assert set(rows) == {"linear", "cnn", "window-attention", "window-attention-noshift"}
    assert rows["linear"]["baseline"] and rows["cnn"]["baseline"] and not rows["window-attention"]["baseline"]
    for r in rows.values():  # the statistics are those of the per-seed runs
        assert [run["seed"] for run in r["runs"]] == [0, 1] and len(r["runs"][0]["history"]) == 1
        iv = mean_interval([run["top1"] for run in r["runs"]])
        assert r["top1"]["mean"] == pytest.approx(iv.mean) and r["top1"]["lo"] == pytest.approx(iv.lo)
        assert r["top1"]["n"] == 2 and r["gmacs"] > 0 and r["params"] > 0
    (claim,) = data["claims"]
    a, b = (
        {run["seed"]: run["top1"] for run in rows[k]["runs"]} for k in ("window-attention", "window-attention-noshift")
    )
    assert claim["diff"]["mean"] == pytest.approx(paired_difference(a, b).mean)
    assert claim["verdict"] in ("supported", "reversed", "inconclusive") and claim["paper"].startswith("+1.1")
    assert len(data["pairs"]) == 6 and all(p["diff"]["mean"] >= 0 for p in data["pairs"])
    table = list(csv.DictReader((out / "compare.csv").open()))
    assert [int(r["rank"]) for r in table] == sorted(int(r["rank"]) for r in table)
    assert {"top1_mean", "top1_std", "top1_ci_lo", "top1_ci_hi", "best_top1_mean"} <= set(table[0])
    assert len(list(csv.DictReader((out / "runs.csv").open()))) == 8
    for png in ("curves.png", "acc_vs_speed.png", "claims.png"):
        assert (out / png).stat().st_size > 1000
    for label in rows:  # every (entry, seed) trained in its own directory, kept for reruns
        assert (out / "runs" / label / "seed1" / runner.RESULT_FILE).is_file()


def test_killed_compare_reuses_finished_runs_and_resumes_the_interrupted_one(tmp_path, monkeypatch):
    """Run 1 finishes; run 2 is killed after its first epoch's checkpoint; the rerun trains only what is left."""
    real = runner._train_run
    calls: list[tuple[str, str]] = []
    partial: dict = {}

    def killed_after_one_epoch(cfg, run_dir, progress):
        calls.append((run_dir.parent.name, cfg.resume))
        if len(calls) == 1:
            return real(cfg, run_dir, progress)
        # train the first of its two epochs (leaving last.pth as a kill after that epoch would), then die
        from dataclasses import replace

        partial["history"] = real(replace(cfg, epochs=1), run_dir, progress).history
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "_train_run", killed_after_one_epoch)
    args = ["compare", "smoke", "only=linear,cnn", "seeds=1", "epochs=2", "bench.skip=true", "--no-progress"]
    args += ["--out", str(tmp_path / "cmp")]
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert calls == [("linear", ""), ("cnn", "")]
    first_linear = json.loads((tmp_path / "cmp" / "runs" / "linear" / "seed0" / runner.RESULT_FILE).read_text())

    calls.clear()
    monkeypatch.setattr(
        runner,
        "_train_run",
        lambda cfg, run_dir, progress: (calls.append((run_dir.parent.name, cfg.resume)), real(cfg, run_dir, progress))[
            1
        ],
    )
    assert main(args) == 0
    assert calls == [("cnn", "auto")]  # linear was not retrained; cnn resumed from its checkpoint
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    linear, cnn = data["rows"]
    assert linear["runs"][0]["reused"] and linear["runs"][0]["top1"] == first_linear["record"]["top1"]
    assert not cnn["runs"][0]["reused"] and len(cnn["runs"][0]["history"]) == 2
    # epoch 1 came from the interrupted run's checkpoint (its measured epoch time, to the last digit)
    assert cnn["runs"][0]["history"][0] == partial["history"][0]
    assert "reused from earlier" in (tmp_path / "cmp" / "compare.md").read_text()


def test_changed_config_is_retrained_not_reused(tmp_path, monkeypatch):
    real = runner._train_run
    calls = []
    monkeypatch.setattr(runner, "_train_run", lambda c, d, p: (calls.append(c.lr), real(c, d, p))[1])
    base = ["compare", "smoke", "only=linear", "seeds=1", "bench.skip=true"]
    opts = ["--out", str(tmp_path / "cmp"), "--no-progress"]
    assert main(base + opts) == 0 and main(base + opts) == 0 and main([*base, "lr=0.002", *opts]) == 0
    assert calls == [0.004, 0.002]  # the identical rerun reused; the changed lr trained again


def test_jobs_train_runs_side_by_side_with_the_same_results(tmp_path, capsys):
    # one torch thread per run either way, so both invocations compute exactly the same runs
    base = ["compare", "smoke", "only=linear,window-attention", "seeds=[0, 1]", "epochs=1", "bench.skip=true"]
    assert main([*base, "jobs=1", "--threads", "1", "--no-progress", "--out", str(tmp_path / "one")]) == 0
    assert main([*base, "--jobs", "2", "--threads", "2", "--no-progress", "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / d / "compare.json").read_text()) for d in ("one", "two"))
    assert two["jobs"] == 2 and two["job_threads"] == 1 and one["jobs"] == 1
    for a, b in zip(one["rows"], two["rows"]):
        assert [r["top1"] for r in a["runs"]] == [r["top1"] for r in b["runs"]]
        assert [r["test_loss"] for r in a["runs"]] == [r["test_loss"] for r in b["runs"]]
    assert "2 runs at a time, 1 torch thread(s) each" in (tmp_path / "two" / "compare.md").read_text()
    capsys.readouterr()
    for bad, msg in (("--jobs=0", "jobs must be a count >= 1 or 'auto', got 0"), ("jobs=x", "got 'x'")):
        assert main(["compare", "smoke", bad, "--out", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and msg in err, err
    with pytest.raises(ConfigError, match="CPU cores only, not on device 'cuda'"):
        runner.resolve_jobs(2, "cuda", runs=4)
    assert runner.resolve_jobs("auto", "cuda", runs=4) == 1 and runner.resolve_jobs("auto", "cpu", runs=1) == 1


def test_preset_overrides_and_selection():
    p = load_preset("smoke", ["epochs=3", "bench.batch=8", "defaults.model_kwargs.window_size=2", "seeds=4"])
    assert p.recipe["epochs"] == 3 and p.bench["batch"] == 8 and p.seeds == [0, 1, 2, 3]
    assert p.entries[2]["model_kwargs"]["window_size"] == 2 and p.entries[2]["model_kwargs"]["mixer"] == "attention"
    assert p.entries[0]["model_kwargs"] == {}  # a baseline with its own model takes none of the defaults
    assert [c["a"] for c in p.claims] == ["window-attention"]
    sub = load_preset("smoke", ["only=linear,window-attention", "seeds=[3, 5]"])
    assert [e["label"] for e in sub.entries] == ["linear", "window-attention"] and sub.seeds == [3, 5]
    assert sub.claims == []  # its other side was left out


def test_preset_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"known: .*smoke"):
        find_compare_preset("smok")
    with pytest.raises(ConfigError, match="no such entry"):
        load_preset("smoke", ["only=swin"])
    with pytest.raises(ConfigError, match="unknown bench option"):
        load_preset("smoke", ["bench.batchsize=8"])
    with pytest.raises(ConfigError, match="seeds must be >= 1"):
        load_preset("smoke", ["seeds=0"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipes: {}\nentries: []\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_preset(bad)
    bad.write_text("entries: [{label: x, model: linear_pixels}]\nclaims: [{a: x, b: y}]\n")
    with pytest.raises(ConfigError, match="claim 0 names no entry 'y'"):
        load_preset(bad)


def test_cli_unknown_recipe_key_is_a_message(capsys):
    assert main(["compare", "smoke", "epochz=1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "epochs" in err and "Traceback" not in err


@pytest.mark.parametrize("preset", sorted((ROOT / "configs" / "compare").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_preset_loads(preset):
    from hiermlp.train.config import config_from_dict

    p = load_preset(preset)
    assert len(p.seeds) >= 2 and any(e["baseline"] for e in p.entries) and p.claims
    for e in p.entries:  # every entry is a valid training config
        config_from_dict({**p.recipe, "model": e["model"], "model_kwargs": e["model_kwargs"]})


HOLD = """
import sys
from pathlib import Path
from hiermlp.study.runner import _run_lock

with _run_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()  # until the test lets go (or kills this process)
"""


def test_a_run_held_by_a_live_process_is_refused_and_a_dead_holders_lock_taken_over(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    run_dir = tmp_path / "swin" / "seed0"
    script = tmp_path / "hold.py"
    script.write_text(HOLD)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen(
        [sys.executable, str(script), str(run_dir)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    held = rf"being trained by process {holder.pid} .*another --runs-dir"
    with pytest.raises(ConfigError, match=held), runner._run_lock(run_dir):
        pass
    os.kill(holder.pid, signal.SIGKILL)  # killed while holding it: the kernel releases an flock
    holder.wait()
    with runner._run_lock(run_dir):
        assert (run_dir / runner.LOCK_FILE).read_text() == str(os.getpid())


WORKER_PARENT = """
import concurrent.futures as cf, multiprocessing, os, sys, time
from hiermlp.study.runner import _worker_init

if __name__ == "__main__":
    pool = cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init)
    pool.submit(time.sleep, 120)
    while not pool._processes:
        time.sleep(0.05)
    time.sleep(float(sys.argv[1]))  # 0: the parent dies while its worker is still starting up
    print(*pool._processes, flush=True)
    os._exit(0)  # killed: no cleanup of the pool
"""


def test_compare_workers_die_with_a_killed_compare(tmp_path, delay=6.0):
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(WORKER_PARENT)
    out = subprocess.run([sys.executable, str(script), str(delay)], capture_output=True, text=True, check=True)
    (pid,) = map(int, out.stdout.split())
    for _ in range(200):  # the worker goes within seconds, not after its 120 s job
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    raise AssertionError(f"worker {pid} outlived its compare")


@pytest.mark.parametrize(
    "folder", sorted(p.parent.name for p in (ROOT / "benchmarks" / "results").glob("compare_*/compare.json"))
)
def test_committed_reports_reproduce_from_their_runs(folder, tmp_path):
    """Each committed report, rebuilt from its per-seed runs alone (intervals, pairs, ranks, claims recomputed),
    writes the committed Markdown, CSV and JSON files byte for byte."""
    src = ROOT / "benchmarks" / "results" / folder
    data = json.loads((src / "compare.json").read_text())
    load_result(data).save(tmp_path, command=data["command"])
    for name in ("compare.md", "compare.csv", "runs.csv", "pairs.csv", "claims.csv", "compare.json"):
        assert (tmp_path / name).read_text() == (src / name).read_text(), name


def test_a_segmentation_study_records_no_top5_and_a_rerun_reads_back_the_same_runs(tmp_path):
    """A segmentation run has no top-5: the fresh record says None (not NaN, which JSON cannot hold), so the report
    written now, the report of a rerun that reuses the finished runs and the report rebuilt from compare.json agree."""
    args = ["compare", "dense", "only=pixel", "seeds=1", "epochs=1", "limit_train=16", "limit_test=8"]
    args += ["batch_size=8", "bench.skip=true", "--no-progress"]
    fresh, rerun = tmp_path / "fresh", tmp_path / "rerun"
    assert main([*args, "--out", str(fresh), "--runs-dir", str(tmp_path / "runs")]) == 0
    assert main([*args, "--out", str(rerun), "--runs-dir", str(tmp_path / "runs")]) == 0
    (row,) = json.loads((rerun / "compare.json").read_text())["rows"]
    assert row["runs"][0]["reused"] and row["runs"][0]["top5"] is None
    (run,) = csv.DictReader((fresh / "runs.csv").open())
    assert run["top5"] == "" and float(run["top1"]) >= 0
    reused = (rerun / "runs.csv").read_text()  # the reused flag is its one difference
    assert reused.replace(",True\n", ",False\n") == (fresh / "runs.csv").read_text()
    data = json.loads((fresh / "compare.json").read_text())
    load_result(data).save(tmp_path / "rebuilt", command=data["command"])
    assert (tmp_path / "rebuilt" / "runs.csv").read_text() == (fresh / "runs.csv").read_text()
