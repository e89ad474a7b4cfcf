"""Every committed compare preset builds every entry's model and runs it on one image (or clip) of the preset's size."""

from pathlib import Path

import pytest
import torch

from hiermlp.study.preset import load_preset
from hiermlp.train.build import input_shape
from hiermlp.train.config import config_from_dict
from hiermlp.train.loop import model_from_config

PRESETS = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs" / "compare").glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_entry_of_every_preset_builds_and_runs(name):
    preset = load_preset(name)
    for e in preset.entries:
        cfg = config_from_dict({**preset.recipe, "model": e["model"], "model_kwargs": e["model_kwargs"]})
        model = model_from_config(cfg, cfg.num_classes or 10).eval()
        with torch.no_grad():
            out = model(torch.randn(1, *input_shape(cfg)))
        # a classifier's logits per image; a segmentor's per pixel
        want = (1, cfg.num_classes or 10) + ((cfg.img_size,) * 2 if cfg.task == "segment" else ())
        assert out.shape == want and torch.isfinite(out).all(), (name, e["label"])


@pytest.mark.parametrize("name", ["default", "literature"])
def test_entries_cost_about_the_same(name):
    # the presets' comments promise ~equal GMACs (0.020-0.022 at 32x32), baselines included except linear
    from hiermlp.bench import count_gmacs

    preset = load_preset(name)
    for e in preset.entries:
        if e["model"] == "linear_pixels":
            continue
        cfg = config_from_dict({**preset.recipe, "model": e["model"], "model_kwargs": e["model_kwargs"]})
        gmacs = count_gmacs(model_from_config(cfg, 10), (cfg.in_chans, cfg.img_size, cfg.img_size))
        assert 0.0195 <= gmacs <= 0.0222, (e["label"], gmacs)
