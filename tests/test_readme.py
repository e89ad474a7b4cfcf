"""The README's "Adding a mixer" examples run verbatim, and its Design grep finds nothing."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_adding_a_mixer_examples_run_verbatim(capsys):
    from hiermlp.mixers import MIXERS

    codes = blocks(section("Adding a mixer"), "python")
    assert len(codes) == 2
    namespace: dict = {}
    try:
        for code in codes:
            exec(compile(code, "README.md", "exec"), namespace)
        out = capsys.readouterr().out.split()
        assert "torch.Size([1," in " ".join(out) and "torch.Size([2," in " ".join(out)
        assert namespace["net"].stages[0].blocks[0].norm_placement == "res_post"
    finally:
        for name in ("window_conv", "axial_shift_demo"):
            MIXERS.pop(name, None)


def test_design_grep_finds_no_speed_machinery_in_the_plain_modules():
    (cmd,) = blocks(section("Design"), "bash")
    out = subprocess.run(["bash", "-c", cmd.strip()], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == "", out.stdout  # grep: 1 = no match


def test_quick_start_info_output_is_what_the_command_prints(capsys):
    from hiermlp.cli import main

    (shown,) = re.findall(r"```\n\$ hiermlp info (\S+)\n(.*?)```", README, flags=re.S)
    name, want = shown
    assert main(["info", name]) == 0
    assert capsys.readouterr().out == want


def test_design_package_tree_names_every_subpackage():
    (tree,) = re.findall(r"```\nhiermlp/\n(.*?)\nconfigs/", section("Design"), flags=re.S)
    names = [w for line in tree.splitlines() if line.startswith("  ") and line[2] != " " for w in line.split()]
    listed = {w.rstrip("/") for w in names if w.endswith("/")}
    listed = {w for w in listed if re.fullmatch(r"\w+", w)}
    packages = {p.parent.name for p in (ROOT / "hiermlp").glob("*/__init__.py")}
    assert packages == listed, (sorted(packages), sorted(listed))
    for module in re.findall(r"(\w+)\.py", tree):
        assert (ROOT / "hiermlp" / f"{module}.py").is_file(), module


def test_design_quotes_the_committed_cache_memory():
    import json

    results = ROOT / "benchmarks" / "results" / "cache_rss"
    fast, plain = (json.loads((d / "rss.json").read_text()) for d in (results, results / "plain"))
    text = " ".join(section("Design").split())
    for d, name in ((fast, "the speed layer"), (plain, "the plain modules")):
        assert f"{d['growth_mb']:.1f} MB with {name}" in text
    after = [round(d["rss_after_malloc_trim_mb"] - d["start_rss_mb"], 1) for d in (fast, plain)]
    assert f"`malloc_trim(0)` {after[0]:.1f} MB and {after[1]:.1f} MB stay" in text
    assert f"hold {fast['derived_mb']:.1f} MB" in text and f"{fast['derived_bound_mb']:.0f} MiB of" in text
    big = fast["big_window"]
    assert f"+{big['peak_rss_mb'] - big['rss_before_mb']:.1f} MB of peak RSS" in text
    assert (
        f"over {len(fast['rows'])} random input sizes" in text and "--sizes 80 --low 160 --high 400" in fast["command"]
    )


def test_performance_table_is_the_committed_perf_report():
    import json
    import statistics

    d = json.loads((ROOT / "benchmarks" / "results" / "perf_cpu" / "perf.json").read_text())
    start = README.index("**Performance against timm and the reference formulations**")
    text = README[start : README.index("Every fast path is tested equal", start)]

    def ratio(xs):
        return f"{statistics.median(xs):.2f}x ({', '.join(f'{v:.2f}' for v in xs)})"

    sw, before = d["swin_t"], d["before"]
    for m, label in (("infer", "Swin-T 224 inference img/s"), ("train", "Swin-T 224 training step img/s")):
        row = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        assert f"| {sw[m]['hiermlp']['per_s']:.1f} | timm {sw[m]['timm']['per_s']:.1f} |" in row
        assert ratio(sw["run_ratios"][m]) in row and ratio(before["swin_t"]["run_ratios"][m]) in row
        assert ratio(before["swin_t"]["change_ratios"][m]) in row
    mlp = next(line for line in text.splitlines() if line.startswith("| Swin-MLP-T/C24 256"))
    assert ratio(d["swin_mlp"]["run_ratios"]["infer"]) in mlp
    assert ratio(before["swin_mlp"]["change_ratios"]["infer"]) in mlp
    assert before["commit"].startswith("3238c31") and "`3238c31`" in text
    flat = " ".join(text.split())
    assert (
        f"runs at {d['gemm']['onednn_gflops']:.0f} GFLOP/s where `torch.matmul` reaches {d['gemm']['gemm_gflops']:.0f}"
        in flat
    )
    inf = sw["infer"]
    assert (
        f"{inf['hiermlp']['per_s']:.1f} img/s with the default MKL linears, "
        f"{inf['hiermlp, with oneDNN']['per_s']:.1f} with the oneDNN linears" in flat
    )
    assert "opt-in (`HIERMLP_ACCEL=onednn=1`)" in flat and d["env"]["onednn_linears"] is False
    assert f"{100 * d['gemm']['fraction']:.0f}% of the `torch.matmul` rate" in flat
    floor = "hiermlp's linears alone"
    share = [sw[m][floor]["median_s"] / sw[m]["hiermlp"]["median_s"] for m in ("infer", "train")]
    assert f"take {100 * share[0]:.0f}% of hiermlp's inference time and {100 * share[1]:.0f}% of its training" in flat

    def vs(section, key, base):
        return section[base]["median_s"] / section[key]["median_s"]

    bounds = [vs(sw[m], floor, "timm") for m in ("infer", "train")]
    mlp_ref = "reference formulation (pad-shift, grouped Conv1d)"
    assert f"hiermlp would run {bounds[0]:.2f}x and {bounds[1]:.2f}x timm" in flat
    assert f"Swin-MLP {vs(d['swin_mlp']['infer'], floor, mlp_ref):.2f}x its reference" in flat
    train = sw["train"]
    assert (
        f"({vs(train, 'hiermlp', 'timm'):.2f}x timm with it, {vs(train, 'hiermlp, no chunking', 'timm'):.2f}x without"
        in flat
    )


def test_readme_levers_are_the_default_settings():
    from hiermlp.accel.settings import AccelSettings

    flat = " ".join(README.split())
    defaults = AccelSettings()
    assert f"(at most {defaults.chunk_tokens} tokens per block call)" in flat
    assert f"its hidden activation under {defaults.mlp_chunk_mib} MiB per call" in flat
    assert "The oneDNN linears with fused epilogues are opt-in" in flat and defaults.onednn is False


def test_readme_literature_speed_is_the_committed_report():
    import json

    d = json.loads((ROOT / "benchmarks" / "results" / "literature_cpu" / "literature.json").read_text())
    start = README.index("Speed: [`benchmarks/literature_cpu.py`]")
    text = " ".join(README[start : README.index("\n\n", start)].split())
    names = {"CycleMLP": "CycleMLP-B2", "AS-MLP": "AS-MLP-T", "Wave-MLP": "Wave-MLP-T", "sMLPNet": "sMLPNet-T"}
    for family, row in d["families"].items():
        assert re.search(rf"{row['speedup']:.2f}x (faster )?on {re.escape(names[family])}", text), family
    assert f"{d['repeats']} samples each" in text and "onednn_linears" in d["env"]
