"""Training config: presets, key=value overrides, type checks, unknown keys, round trip."""

from pathlib import Path

import pytest

from hiermlp.models.registry import get_entry
from hiermlp.train import ConfigError, TrainConfig, load_config, save_config
from hiermlp.train.config import config_from_dict

PRESETS = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))


def test_defaults_are_the_demo():
    cfg = load_config(None, [])
    assert cfg == TrainConfig()
    assert cfg.data == "embedded" and cfg.model == "swin_micro_patch2_window4_32" and cfg.model_kwargs == {}
    assert get_entry(cfg.model).kwargs["embed_dim"] > 0  # a named micro model: no options needed


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_load(preset):
    cfg = load_config(preset, [])
    assert cfg.epochs >= 1
    assert load_config(preset.stem, []) == cfg  # by name too


def test_overrides_are_parsed_and_typed():
    model = ["model_kwargs={depths: [2, 2, 2]}", "model_kwargs.embed_dim=48"]  # a dotted key sets inside
    cfg = load_config(None, ["lr=5e-4", "epochs=3", "ema=true", "scale=[0.5, 1]", "mean=0.5", *model, "data=folder"])
    assert cfg.lr == 5e-4 and isinstance(cfg.lr, float)  # YAML 1.1 reads 5e-4 as a string
    assert cfg.epochs == 3 and cfg.ema is True
    assert cfg.scale == (0.5, 1.0) and cfg.mean == (0.5,)
    assert cfg.model_kwargs["embed_dim"] == 48 and cfg.model_kwargs["depths"] == [2, 2, 2]
    assert cfg.data == "folder"
    assert load_config(None, ["out_dir=123"]).out_dir == "123"  # strings stay verbatim


def test_unknown_key_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'warmup_epoch'\. Did you mean: warmup_epochs"):
        load_config(None, ["warmup_epoch=2"])
    with pytest.raises(ConfigError, match="Did you mean: batch_size"):
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
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'epochz'\. Did you mean: epochs"):
        load_config(tmp_path / "bad.yaml", [])
    with pytest.raises(FileNotFoundError, match="train preset not found"):
        load_config(tmp_path / "nope.yaml", [])


def test_default_config_is_the_demo_preset():
    from dataclasses import replace

    preset = load_config("fmnist_swin_micro", [])
    assert replace(preset, out_dir=TrainConfig().out_dir) == TrainConfig()


# ---------------------------------------------------------------------------------------------------------
# property: a random bad value for any key is a ConfigError that names the key, never another exception

from dataclasses import fields  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

KEYS = [f.name for f in fields(TrainConfig)]
_scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
)
VALUES = st.one_of(_scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.text(max_size=4), _scalars, max_size=2))
PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _accepts_or_names(fn, key):
    try:
        fn()
    except ConfigError as e:
        assert key in str(e), (key, str(e))
        assert "\n" not in str(e)


@PROPS
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_value_from_python_is_accepted_or_named(key, value):
    _accepts_or_names(lambda: config_from_dict({key: value}), key)


@PROPS
@given(key=st.sampled_from(KEYS), raw=st.one_of(st.text(max_size=16), VALUES.map(repr)))
def test_any_override_text_is_accepted_or_named(key, raw):
    _accepts_or_names(lambda: load_config(None, [f"{key}={raw}"]), key)


def test_python_construction_is_checked_too():
    with pytest.raises(ConfigError, match="epochs expects int"):
        TrainConfig(epochs="3")
    with pytest.raises(ConfigError, match=r"lr=-1\.0 is invalid"):
        TrainConfig(lr=-1)
    assert TrainConfig(out_dir=Path("runs/x")).out_dir == "runs/x"


@PROPS
@given(data=st.data())
def test_out_of_range_numbers_are_rejected_naming_the_key(data):
    from hiermlp.train.config import _RANGES

    key = data.draw(st.sampled_from(sorted(_RANGES)))
    lo, hi, lo_in, hi_in = _RANGES[key]
    if isinstance(TrainConfig.__dataclass_fields__[key].default, int):
        below = st.integers(max_value=lo - lo_in) if lo is not None else st.nothing()
        above = st.integers(min_value=hi + hi_in) if hi is not None else st.nothing()
        value = data.draw(st.one_of(below, above))
    else:
        below = st.floats(max_value=lo, exclude_max=lo_in) if lo is not None else st.nothing()
        above = st.floats(min_value=hi, exclude_min=hi_in) if hi is not None else st.nothing()
        value = data.draw(st.one_of(below, above, st.just(float("nan"))))
    with pytest.raises(ConfigError, match=rf"^{key}="):
        config_from_dict({key: value})
