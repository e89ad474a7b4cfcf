"""A timm user's workflow around the model: timm's scripts see hiermlp's models (the launcher and the opt-in
hook, in fresh interpreters that never import hiermlp themselves), hub and local-dir copies round-trip for every
family with identical logits, every layout hiermlp detects loads through timm's own entry points, and timm's
factory arguments are accepted where they mean something and rejected where they are typos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch

import hiermlp
from hiermlp.errors import ConfigError
from hiermlp.models.zoo_micro import MICRO_VARIANTS
from hiermlp.weights import export_state_dict, save_weights

from .conftest import randomize_
from .test_layouts import to_hf, to_mmpretrain
from .test_timm_citizen import offline_hub  # noqa: F401  (the offline hub fixture)

ROOT = Path(__file__).resolve().parents[1]
MICRO = "swin_micro_patch4_window4_32"

# a user's own module: registers a model with hiermlp, as docs/timm.md shows
USER_NET = dict(embed_dim=24, depths=(2, 2), num_heads=(1, 2), window_size=4, img_size=32)
USER_MODULE = f"""
import hiermlp

hiermlp.register_model("my_micro_net", **{USER_NET!r})
"""

# a script that never imports hiermlp: it asks timm for a hiermlp model and prints its logits on a seeded input
SCRIPT = """
import sys

import timm
import torch

torch.manual_seed(0)
name = sys.argv[1]
model = timm.create_model(name, num_classes=3).eval()
with torch.no_grad():
    out = model(torch.ones(1, 3, 32, 32))
print("hiermlp" in sys.modules, type(model).__module__, *out.flatten().tolist())
"""


def expected_logits() -> list[float]:
    """The logits the script prints for the user's model, computed here without registering it: the same seed,
    the same constructor (the factory's only additions are the speed layer and the cfg, neither of which
    changes the weights)."""
    torch.manual_seed(0)
    model = hiermlp.HierNet(**USER_NET, num_classes=3).eval()
    with torch.no_grad():
        return model(torch.ones(1, 3, 32, 32)).flatten().tolist()


def python(*args: str, cwd: Path, env: dict | None = None, exe: str = sys.executable) -> subprocess.CompletedProcess:
    """A fresh interpreter in ``cwd``, one torch thread (the user's folder is on the path only through
    ``env``'s PYTHONPATH: hiermlp timm finds --import modules there by itself)."""
    full = {k: v for k, v in os.environ.items() if k not in ("HIERMLP_TIMM_IMPORTS", "PYTHONPATH")}
    full |= {"OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([exe, *args], cwd=cwd, env=full, capture_output=True, text=True, timeout=300)


# the console script, whose sys.path holds its own folder, not the working directory (unlike python -m)
HIERMLP = str(Path(sys.executable).with_name("hiermlp"))


def parse(out: str) -> tuple[str, str, list[float]]:
    imported, module, *values = out.split()
    return imported, module, [float(v) for v in values]


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    (tmp_path / "my_models.py").write_text(USER_MODULE)
    return tmp_path


def test_launcher_runs_a_script_that_never_imports_hiermlp(workdir):
    # the user's own model through --import, and a zoo row; one interpreter each, as a user runs them
    r = python("timm", "--import", "my_models", "script.py", "hiermlp_my_micro_net", cwd=workdir, exe=HIERMLP)
    assert r.returncode == 0, r.stderr
    imported, module, got = parse(r.stdout)
    assert imported == "True" and module == "hiermlp.models.network"  # hiermlp's class, built through timm
    assert got == expected_logits()
    # the script's exit status and argv are its own; a missing script is one line and exit 2
    (workdir / "fail.py").write_text("import sys\nsys.exit(len(sys.argv))\n")
    assert python("-m", "hiermlp", "timm", "fail.py", "a", "b", cwd=workdir).returncode == 3
    r = python("-m", "hiermlp", "timm", "nosuch.py", cwd=workdir)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "script 'nosuch.py' not found" in r.stderr


def test_hook_registers_hiermlp_only_when_timm_is_imported(workdir):
    from hiermlp.timm_plugin import hook_files, install_hook, uninstall_hook

    site_dir = workdir / "site"
    pth, hook_module = install_hook(site_dir)
    assert pth.read_text().startswith("import hiermlp_timm_hook")
    # site.addsitedir runs the .pth exactly as interpreter start-up does for site-packages
    probe = textwrap.dedent(f"""
        import site, sys
        site.addsitedir({str(site_dir)!r})
        heavy = sorted(m for m in ("hiermlp", "timm", "torch") if m in sys.modules)
        print(heavy or "none", file=sys.stderr)
        sys.argv = ["script.py", sys.argv[1]]
        exec(open("script.py").read())
    """)
    env = {"HIERMLP_TIMM_IMPORTS": "my_models", "PYTHONPATH": str(workdir)}
    r = python("-c", probe, "hiermlp_my_micro_net", cwd=workdir, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[0] == "none"  # the hook imported nothing at start-up
    imported, module, got = parse(r.stdout)
    assert imported == "True" and module == "hiermlp.models.network"
    assert got == expected_logits()
    # a broken plugin module warns once and leaves timm working
    r = python("-c", probe, "resnet18", cwd=workdir, env={**env, "HIERMLP_TIMM_IMPORTS": "no_such_module"})
    assert r.returncode == 0 and "hiermlp's timm hook" in r.stderr and "no_such_module" in r.stderr
    assert parse(r.stdout)[1] == "timm.models.resnet"
    assert uninstall_hook(site_dir) == [pth, hook_module] and not any(p.exists() for p in hook_files(site_dir))


def test_hook_module_is_standard_library_only():
    import ast

    source = (ROOT / "hiermlp" / "_timm_hook.py").read_text()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
    }
    assert imported <= set(sys.stdlib_module_names), imported  # hiermlp is imported by name, at run time


# ---- timm's factory arguments ------------------------------------------------------------------------------------
def test_timm_factory_arguments_are_accepted_and_typos_are_not():
    # what timm's create_model passes for a hub or local-dir source, and the placement timm's models take
    with torch.device("meta"):
        m = timm.create_model(f"hiermlp_{MICRO}", pretrained_model_args={"embed_dim": 64}, device="meta")
    assert m.pretrained_model_args == {"embed_dim": 64} and {p.device.type for p in m.parameters()} == {"meta"}
    m = timm.create_model(f"hiermlp_{MICRO}", dtype=torch.float64)
    assert {p.dtype for p in m.parameters()} == {torch.float64}
    assert {p.dtype for p in hiermlp.create_model(MICRO, dtype="bfloat16").parameters()} == {torch.bfloat16}
    with pytest.raises(ConfigError, match="dtype='float33' is not a torch dtype"):
        hiermlp.create_model(MICRO, dtype="float33")
    for build in (timm.create_model, hiermlp.create_model):
        name = f"hiermlp_{MICRO}" if build is timm.create_model else MICRO
        with pytest.raises(TypeError, match=r"unknown model option\(s\) \['embed_dmi'\].*Did you mean: embed_dim"):
            build(name, embed_dmi=32)
        with pytest.raises(ConfigError):  # still hiermlp's one-line error class
            build(name, pretrained_model_argz={})


def test_reset_and_resize_keep_device_dtype_mode_and_frozen_weights():
    m = hiermlp.create_model(MICRO, num_classes=5).to(torch.float64).eval().requires_grad_(False)
    m.reset_classifier(7)
    fc = m.get_classifier()
    assert fc.weight.dtype == torch.float64 and not fc.training and fc.out_features == 7
    m.set_input_size(img_size=64)
    assert not any(p.requires_grad for p in m.stages.parameters()) and not m.stages.training
    assert {p.dtype for p in m.parameters()} == {torch.float64}
    assert m(torch.randn(1, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64


# ---- hub and local-dir round trips ----------------------------------------------------------------------------
FAMILIES = sorted(MICRO_VARIANTS)


def micro_input(name: str) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(len(name)))


@pytest.mark.parametrize("name", FAMILIES)
def test_save_for_hf_round_trips_through_local_dir_and_the_hub(name, tmp_path, offline_hub):  # noqa: F811
    torch.manual_seed(0)
    ours = randomize_(hiermlp.create_model(name, num_classes=6)).eval()
    x = micro_input(name)
    with torch.no_grad():
        want = ours(x)
    d = hiermlp.save_for_hf(ours, tmp_path / "copy")
    config = json.loads((d / "config.json").read_text())
    assert config["architecture"] == f"hiermlp_{name}" and config["num_classes"] == 6
    # the hub: the same files in huggingface_hub's offline cache layout
    repo = offline_hub / "models--me--micro" / "snapshots" / ("0" * 40)
    repo.mkdir(parents=True)
    for f in d.iterdir():
        shutil.copy(f, repo / f.name)
    (offline_hub / "models--me--micro" / "refs").mkdir()
    (offline_hub / "models--me--micro" / "refs" / "main").write_text("0" * 40)
    for source in (f"local-dir:{d}", "hf-hub:me/micro"):
        for build in (timm.create_model, hiermlp.create_model):
            torch.manual_seed(1)  # another init: every tensor must come from the copy
            model = build(source, pretrained=True).eval()
            with torch.no_grad():
                got = model(x)
            assert torch.equal(got, want), f"{name} via {build.__module__} {source}: {(got - want).abs().max()}"


def test_timm_save_for_hf_of_a_timm_built_model_keeps_its_options(tmp_path):
    ours = randomize_(timm.create_model(f"hiermlp_{MICRO}", embed_dim=32, num_heads=(1, 2, 4), num_classes=4)).eval()
    timm.models.save_for_hf(ours, tmp_path)
    back = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    assert back.num_features == 128
    x = micro_input(MICRO)
    with torch.no_grad():
        assert torch.equal(back(x), ours(x))


def test_local_dir_of_a_timm_model_is_not_hiermlps(tmp_path):
    timm.models.save_for_hf(timm.create_model("resnet18", num_classes=2), tmp_path)
    with pytest.raises(hiermlp.UnknownNameError, match=r"not a hiermlp model; build it with timm\.create_model"):
        hiermlp.create_model(f"local-dir:{tmp_path}")
    with pytest.raises(hiermlp.NotFoundError, match=r"has no config\.json"):
        hiermlp.create_model(f"local-dir:{tmp_path / 'nothing'}")


# ---- foreign layouts through timm's entry points ----------------------------------------------------------------
@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """One randomised micro Swin saved in every layout hiermlp detects, and its logits."""
    torch.manual_seed(0)
    model = randomize_(hiermlp.create_model(MICRO, num_classes=5)).eval()
    d = tmp_path_factory.mktemp("layouts")
    official = export_state_dict(model, "microsoft")
    files = {
        "timm": hiermlp.save_checkpoint(model, d / "timm.pth", layout="timm"),
        "microsoft": hiermlp.save_checkpoint(model, d / "ms.pth", layout="microsoft"),
        "hf": save_weights(to_hf(official), d / "hf.safetensors"),
        "hiermlp": save_weights(model, d / "ours.pth"),
    }
    torch.save({"meta": {"mmcls_version": "1.0"}, "state_dict": to_mmpretrain(official)}, d / "mm.pth")
    files["mmpretrain"] = d / "mm.pth"
    x = micro_input(MICRO)
    with torch.no_grad():
        return files, x, model(x)


@pytest.mark.parametrize("layout", ["timm", "microsoft", "mmpretrain", "hf", "hiermlp"])
def test_every_layout_loads_through_timms_entry_points(layouts, layout):
    files, x, want = layouts
    path = str(files[layout])
    torch.manual_seed(1)
    a = timm.create_model(f"hiermlp_{MICRO}", num_classes=5, checkpoint_path=path).eval()
    b = timm.create_model(f"hiermlp_{MICRO}", num_classes=5).eval()
    timm.models.load_checkpoint(b, path)  # validate.py --checkpoint
    with torch.no_grad():
        for model in (a, b):
            assert torch.equal(model(x), want), layout


def test_timms_loader_stays_strict_for_keys_that_are_really_wrong(layouts):
    files, *_ = layouts
    sd = torch.load(files["timm"], weights_only=True)
    model = timm.create_model(f"hiermlp_{MICRO}", num_classes=5)
    with pytest.raises(RuntimeError, match=r"Unexpected key.*blocks\.0\.mixer\.bogus"):  # converted, then refused
        model.load_state_dict({**sd, "layers.0.blocks.0.attn.bogus": torch.zeros(1)})
    del sd["norm.weight"]
    with pytest.raises(RuntimeError, match=r"Missing key.*norm\.weight"):
        model.load_state_dict(sd)
    wrong = hiermlp.create_model(MICRO, num_classes=5, embed_dim=32, num_heads=(1, 2, 4))
    with pytest.raises(RuntimeError, match="size mismatch"):
        wrong.load_state_dict(torch.load(files["timm"], weights_only=True))
