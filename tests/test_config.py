"""Training config: presets, key=value overrides, type checks, unknown keys, round trip."""

from pathlib import Path

import pytest

from hiermlp.train import ConfigError, TrainConfig, load_config, save_config
from hiermlp.train.config import config_from_dict

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))


def test_defaults_are_the_demo():
    cfg = load_config(None, [])
    assert cfg == TrainConfig()
    assert cfg.data == "embedded" and cfg.model_kwargs["embed_dim"] > 0


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_load(preset):
    cfg = load_config(preset, [])
    assert cfg.epochs >= 1
    assert load_config(preset.stem, []) == cfg  # by name too


def test_overrides_are_parsed_and_typed():
    cfg = load_config(
        None,
        ["lr=5e-4", "epochs=3", "ema=true", "scale=[0.5, 1]", "mean=0.5", "model_kwargs.embed_dim=48", "data=folder"],
    )
    assert cfg.lr == 5e-4 and isinstance(cfg.lr, float)  # YAML 1.1 reads 5e-4 as a string
    assert cfg.epochs == 3 and cfg.ema is True
    assert cfg.scale == (0.5, 1.0) and cfg.mean == (0.5,)
    assert cfg.model_kwargs["embed_dim"] == 48 and cfg.model_kwargs["depths"] == [2, 2, 2]
    assert cfg.data == "folder"
    assert load_config(None, ["out_dir=123"]).out_dir == "123"  # strings stay verbatim


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'warmup_epoch'; did you mean 'warmup_epochs'"):
        load_config(None, ["warmup_epoch=2"])
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        config_from_dict({"batchsize": 3})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs=abc", "epochs expects int"),
        ("ema=3", "ema expects bool"),
        ("betas=[0.9]", "betas needs 2 values"),
        ("amp=fp8", "amp='fp8' is invalid: amp must be one of bf16, fp16, none"),
        ("epochs", "not of the form key=value"),
        ("lr.x=1", "'lr' is not a dict field"),
        ("batch_size=10", None),  # fine
    ],
)
def test_bad_values_are_named(override, message):
    if message is None:
        load_config(None, [override])
        return
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_yaml_round_trip_and_bad_file(tmp_path):
    cfg = load_config(None, ["seed=7", "model_kwargs.depths=[1, 1]"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml", []) == cfg
    (tmp_path / "bad.yaml").write_text("epochz: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'epochz'; did you mean 'epochs'"):
        load_config(tmp_path / "bad.yaml", [])
    with pytest.raises(FileNotFoundError, match="train preset not found"):
        load_config(tmp_path / "nope.yaml", [])


def test_default_config_is_the_demo_preset():
    from dataclasses import replace

    preset = load_config("fmnist_swin_micro", [])
    assert replace(preset, out_dir=TrainConfig().out_dir) == TrainConfig()
