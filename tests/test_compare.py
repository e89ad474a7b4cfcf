"""hiermlp compare: presets, overrides, and the smoke preset end to end (report files parse)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hiermlp.bench.compare import find_compare_preset, load_preset
from hiermlp.cli import main
from hiermlp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_compare_smoke_end_to_end(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "smoke", "bench.repeats=1", "--out", str(out), "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "| **window-attention** |" in stdout and "| **pool** |" in stdout
    rows = list(csv.DictReader((out / "compare.csv").open()))
    assert [r["label"] for r in rows] == ["window-attention", "pool"]
    for r in rows:
        assert 0.0 <= float(r["top1"]) <= 100.0
        assert int(r["params"]) > 0 and float(r["gmacs"]) > 0 and float(r["infer_img_s_median"]) > 0
    data = json.loads((out / "compare.json").read_text())
    assert data["recipe"]["epochs"] == 1 and len(data["rows"][0]["history"]) == 1
    assert data["command"].startswith("hiermlp compare smoke")
    for png in ("curves.png", "acc_vs_speed.png"):
        assert (out / png).stat().st_size > 1000


def test_preset_overrides_and_selection():
    p = load_preset("smoke", ["epochs=3", "bench.batch=8", "defaults.model_kwargs.window_size=2", "only=pool"])
    assert p.recipe["epochs"] == 3 and p.bench["batch"] == 8
    assert [e["label"] for e in p.entries] == ["pool"]
    assert p.entries[0]["model_kwargs"]["window_size"] == 2 and p.entries[0]["model_kwargs"]["mixer"] == "pool"


def test_preset_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"known: .*smoke"):
        find_compare_preset("smok")
    with pytest.raises(ConfigError, match="no such entry"):
        load_preset("smoke", ["only=swin"])
    with pytest.raises(ConfigError, match="unknown bench option"):
        load_preset("smoke", ["bench.batchsize=8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipes: {}\nentries: []\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_preset(bad)


def test_cli_unknown_recipe_key_is_a_message(capsys):
    assert main(["compare", "smoke", "epochz=1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "epochs" in err and "Traceback" not in err


@pytest.mark.parametrize("preset", sorted((ROOT / "configs" / "compare").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_committed_preset_loads(preset):
    from hiermlp.train.config import config_from_dict

    p = load_preset(preset)
    for e in p.entries:  # every entry is a valid training config
        config_from_dict({**p.recipe, "model": e["model"], "model_kwargs": e["model_kwargs"]})
