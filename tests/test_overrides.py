"""The one key=value grammar (hiermlp.overrides) and the one type checker (hiermlp.schema), at every entry point."""

from __future__ import annotations

from typing import Any

import pytest

import hiermlp.overrides as overrides
from hiermlp.errors import ConfigError
from hiermlp.overrides import format_value, parse_overrides, parse_value, split_list

# item -> the mapping it parses to, or the text of its one-line error
GRAMMAR = [
    ("a=3", {"a": 3}),
    ("a=-7", {"a": -7}),
    ("a=0.5", {"a": 0.5}),
    ("a=1e-3", {"a": 0.001}),  # YAML 1.1 alone reads these three as strings
    ("a=5E4", {"a": 50000.0}),
    ("a=-2.5e-1", {"a": -0.25}),
    ("a=true", {"a": True}),
    ("a=False", {"a": False}),
    ("a=null", {"a": None}),
    ("a=", {"a": ""}),
    ("a=[1, 2]", {"a": [1, 2]}),
    ("a=[1e-3, x]", {"a": [0.001, "x"]}),
    ("a=(2, 2,6)", {"a": [2, 2, 6]}),  # a Python tuple reads as the list it spells
    ("a=(1)", {"a": 1}),
    ("a=(1,)", {"a": [1]}),
    ("a={b: 1, c: [true]}", {"a": {"b": 1, "c": [True]}}),
    ("a=hello world", {"a": "hello world"}),
    ("a='3'", {"a": "3"}),
    ("a=x=y", {"a": "x=y"}),
    ("a=rand-m9-mstd0.5-inc1", {"a": "rand-m9-mstd0.5-inc1"}),
    ("a.b.c=1", {"a": {"b": {"c": 1}}}),
    ("--warmup-epochs=2", {"warmup_epochs": 2}),
    (" a =1", {"a": 1}),
    ("a", "override 'a' is not of the form key=value; write it as a=VALUE"),
    ("=3", "override '=3' is not of the form key=value; write it as KEY=VALUE"),
    ("a..b=1", "has an empty part in its key"),
    ("a=[1, 2", "cannot parse the value of a='[1, 2'"),
    ("a={b: 1", "quote it or fix its YAML"),
]


@pytest.mark.parametrize(("item", "expected"), GRAMMAR, ids=[g[0] for g in GRAMMAR])
def test_grammar_table(item, expected):
    if isinstance(expected, dict):
        got = parse_overrides([item])
        assert got == expected and [type(v) for v in got.values()] == [type(v) for v in expected.values()]
        return
    with pytest.raises(ConfigError) as info:
        parse_overrides([item])
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_items_apply_in_order_onto_a_copy_of_the_base():
    base = {"a": {"b": 1, "keep": 2}, "n": 0}
    assert parse_overrides(["a.c=3", "n=4"], base=base) == {"a": {"b": 1, "keep": 2, "c": 3}, "n": 4}
    assert base == {"a": {"b": 1, "keep": 2}, "n": 0}  # never modified
    assert parse_overrides(["a.c=3", "a={z: 1}"], base=base) == {"a": {"z": 1}, "n": 0}  # a whole value replaces
    assert parse_overrides(["a=null", "a.b=1"]) == {"a": {"b": 1}}  # null is an empty mapping to set into
    with pytest.raises(ConfigError, match=r"'n' is 0, not a mapping, so 'n.x' cannot set inside it; set n=VALUE"):
        parse_overrides(["n.x=1"], base=base)


SCHEMA = {"lr": float, "out_dir": str, "model_kwargs": dict[str, Any], "bench": {"batch": int, "train": bool}}


def test_a_schema_names_unknown_keys_and_keeps_strings_verbatim():
    got = parse_overrides(["out_dir=007", "lr=1e-3", "model_kwargs.x.y=1", "bench.batch=8"], SCHEMA)
    assert got == {"out_dir": "007", "lr": 0.001, "model_kwargs": {"x": {"y": 1}}, "bench": {"batch": 8}}
    assert parse_overrides(["out_dir=true"], SCHEMA) == {"out_dir": "true"}  # a str field takes the text
    cases = [
        ("lrr=1", "unknown key 'lrr'. Did you mean: lr?"),
        ("bench.bach=3", "unknown key 'bench.bach'. Did you mean: batch?"),
        ("zzz=1", "unknown key 'zzz'. Valid: bench, lr, model_kwargs, out_dir."),
        ("lr.x=1", "'lr' is not a dict field, so 'lr.x' is not a valid key; set lr=VALUE"),
    ]
    for item, message in cases:
        with pytest.raises(ConfigError) as info:
            parse_overrides([item], SCHEMA)
        assert str(info.value) == message
    assert parse_overrides(["a=1"], ["a", "b"]) == {"a": 1}  # a schema may be just the key names
    with pytest.raises(ConfigError, match="Did you mean: b"):
        parse_overrides(["bb=1"], ["a", "b"])


def test_comma_lists_split_outside_brackets_and_quotes():
    assert split_list("a=[1, 2],b={c: 1, d: 2}, e='x,y',,") == ["a=[1, 2]", "b={c: 1, d: 2}", "e='x,y'"]
    assert split_list("a=(1, 2),b=3") == ["a=(1, 2)", "b=3"]
    assert split_list("") == []


@pytest.mark.parametrize(
    "value", [True, False, None, "", "bf16", "007", "true", "a b", 3, -1, 0.5, 1e-8, [0.9, 0.999], {"a": [1, "x"]}]
)
def test_format_value_is_read_back_as_the_value(value):
    assert parse_value(format_value(value)) == value
    assert type(parse_value(format_value(value))) is type(value)


def test_preset_files_read_exponents_as_floats(tmp_path):
    from hiermlp.train import load_config

    (tmp_path / "p.yaml").write_text("lr: 2e-3\nwarmup_lr: 1E-6\n")
    cfg = load_config(tmp_path / "p.yaml")
    assert (cfg.lr, cfg.warmup_lr) == (0.002, 1e-6)


# ---------------------------------------------------------------------------------------------------------
# every entry point reads an item with the same grammar: the same text gives the same typed value


@pytest.fixture
def seen(monkeypatch):
    """The items that went through hiermlp.overrides (the grammar's one entry: split_item)."""
    items: list[str] = []
    real = overrides.split_item

    def spy(item: str) -> tuple[str, str]:
        items.append(item)
        return real(item)

    monkeypatch.setattr(overrides, "split_item", spy)
    return items


def _train(item: str) -> Any:
    from hiermlp.train import load_config

    key = item.partition("=")[0]
    return getattr(load_config(None, [item]), key)


def _bench(*items: str) -> Any:
    """The value ``-k`` options give the first item's key."""
    from hiermlp.cli import _parser_for
    from hiermlp.cli.bench import bench_entries

    argv = ["bench", "m", *[a for item in items for a in ("-k", item)]]
    (entry,) = bench_entries(_parser_for("bench").parse_args(argv))
    return entry.model_kwargs[items[0].partition("=")[0]]


def _compare(item: str) -> Any:
    from hiermlp.study.preset import load_preset

    preset = load_preset("smoke", [item])
    key = item.partition("=")[0]
    section, _, sub = key.partition(".")
    return getattr(preset, section)[sub] if sub else preset.recipe[key]


def _accel(item: str) -> Any:
    from hiermlp.accel.settings import from_env

    return getattr(from_env(item), item.partition("=")[0])


# (text, typed value) -> one item per entry point whose key takes that type
SAME = [
    ("false", False, {_train: "ema", _bench: "shift", _compare: "bench.train", _accel: "onednn"}),
    ("true", True, {_train: "no_aug", _bench: "qkv_bias", _compare: "bench.latency", _accel: "enabled"}),
    ("3", 3, {_train: "epochs", _bench: "window_size", _compare: "bench.batch", _accel: "chunk_tokens"}),
    ("1e-3", 0.001, {_train: "lr", _bench: "drop_path_rate", _compare: "lr"}),
    ("[2, 2]", [2, 2], {_bench: "depths"}),
    ("bf16", "bf16", {_train: "amp", _bench: "norm", _compare: "amp"}),
    ("sdpa", "sdpa", {_accel: "attention"}),
]


@pytest.mark.parametrize(("text", "value", "where"), SAME, ids=[s[0] for s in SAME])
def test_every_entry_point_types_an_item_the_same_way(text, value, where, seen):
    for entry, key in where.items():
        item = f"{key}={text}"
        seen.clear()
        got = entry(item)
        assert got == value and type(got) is type(value), (entry.__name__, item, got)
        assert any(s.endswith(item) for s in seen), (entry.__name__, seen)  # it went through the grammar


def test_the_same_dotted_item_sets_inside_a_mapping_everywhere():
    from hiermlp.train import load_config

    assert load_config(None, ["model_kwargs.mixer_kwargs.ratio=1e-3"]).model_kwargs["mixer_kwargs"] == {"ratio": 0.001}
    assert _bench("mixer_kwargs=null", "mixer_kwargs.ratio=1e-3") == {"ratio": 0.001}
    from hiermlp.study.preset import load_preset

    p = load_preset("smoke", ["defaults.model_kwargs.mixer_kwargs.ratio=1e-3"])
    assert p.entries[2]["model_kwargs"]["mixer_kwargs"] == {"ratio": 0.001}


def test_accel_keeps_its_switch_shorthands():
    from hiermlp.accel.settings import AccelSettings, from_env

    assert from_env("onednn=1,enabled=0") == AccelSettings(onednn=True, enabled=False)
    assert not from_env("0").enabled and from_env("1") == from_env("") == from_env(None) == AccelSettings()
    assert from_env("onednn=auto").onednn is None and AccelSettings().onednn is None  # the machine decides
    with pytest.raises(ConfigError, match="onednn expects bool or auto, got int 2"):
        from_env("onednn=2")


# ---------------------------------------------------------------------------------------------------------
# booleans are strict: a string or a number is never a truthy bool, whichever way it comes in


def _train_python(key: str, value: Any) -> None:
    from hiermlp.train import TrainConfig

    TrainConfig(**{key: value})


def _train_override(key: str, value: Any) -> None:
    from hiermlp.train import load_config

    load_config(None, [f"{key}={format_value(value)}"])


def _train_file(key: str, value: Any, tmp_path) -> None:
    import yaml

    from hiermlp.train import load_config

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({key: value}))
    load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("value", ["False", "false", "0", 5, 1, 0, 1.0, None, [True]])
def test_bool_fields_take_only_bools(value, tmp_path):
    from hiermlp import accel

    for check in (_train_python, _train_override, lambda k, v: _train_file(k, v, tmp_path)):
        if check is _train_override and value in (0, 1):
            continue  # the text 0/1 is an int to the grammar: it fails below, as an int
        with pytest.raises(ConfigError, match=r"ema expects bool, got ") as info:
            check("ema", value)
        assert "\n" not in str(info.value) and "e.g. ema=false (the default)" in str(info.value)
    if value is not None:  # None is onednn's "auto" (the machine profile decides)
        with pytest.raises(ConfigError, match="onednn expects bool"), accel.override(onednn=value):
            pass


def test_other_fields_refuse_bools_and_strings():
    from hiermlp.train import TrainConfig

    for key, value, expected in [
        ("epochs", True, "epochs expects int, got bool True"),
        ("epochs", "3", "epochs expects int, got str '3'"),
        ("lr", False, "lr expects float, got bool False"),
        ("out_dir", True, "out_dir expects str, got bool True"),
        ("betas", [0.9, "x"], "betas[1] expects float, got str 'x'"),
        ("betas", [0.9], "betas needs 2 values, got 1: [0.9]"),
        ("model_kwargs", "x", "model_kwargs expects a mapping, got str 'x'"),
    ]:
        with pytest.raises(ConfigError) as info:
            TrainConfig(**{key: value})
        assert str(info.value).startswith(expected), str(info.value)
    cfg = TrainConfig(epochs=3.0, lr=1, mean=0.5, std="")  # the safe conversions stay
    assert (cfg.epochs, cfg.lr, cfg.mean, cfg.std) == (3, 1.0, (0.5,), ())
    assert type(cfg.epochs) is int and type(cfg.lr) is float


def test_compare_preset_sections_are_typed(tmp_path):
    from hiermlp.study.preset import load_preset

    with pytest.raises(ConfigError) as info:
        load_preset("smoke", ["bench.train=no_thanks"])
    assert str(info.value).endswith("smoke.yaml: train expects bool, got str 'no_thanks'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("entries: [{label: x, model: linear_pixels, baseline: 'false'}]\n")
    with pytest.raises(ConfigError, match=r"entry 0: baseline expects bool, got str 'false'"):
        load_preset(bad)
    bad.write_text("entries: [{lable: x, model: linear_pixels}]\n")
    with pytest.raises(ConfigError, match=r"entry 0: unknown entry key 'lable'\. Did you mean: label"):
        load_preset(bad)


# ---------------------------------------------------------------------------------------------------------
# unknown keys name the closest known ones, at every entry point


def test_unknown_keys_are_suggested_everywhere(capsys):
    from hiermlp.accel.settings import from_env
    from hiermlp.cli import main
    from hiermlp.study.preset import load_preset
    from hiermlp.train import load_config

    cases = [
        (
            lambda: load_config(None, ["warmup_epoch=2"]),
            "unknown config key 'warmup_epoch'. Did you mean: warmup_epochs",
        ),
        (lambda: from_env("onedn=1"), "unknown speed-layer setting 'onedn'. Did you mean: onednn"),
        (lambda: load_preset("smoke", ["bench.batchsize=8"]), "unknown bench option 'batchsize'. Did you mean: batch"),
        (lambda: load_preset("smoke", ["defaults.modl=x"]), "unknown compare key 'defaults.modl'. Did you mean: model"),
        (lambda: load_preset("smoke", ["epohcs=1"]), "unknown compare key 'recipe.epohcs'. Did you mean: epochs"),
    ]
    for call, message in cases:
        with pytest.raises(ConfigError) as info:
            call()
        assert message in str(info.value) and "\n" not in str(info.value)
    assert main(["train", "lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hiermlp train: error: unknown config key 'lrr'. Did you mean: lr?"
    assert main(["bench", "m", "-k", "mixer"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "hiermlp bench: error: override 'mixer' is not of the form key=value; write it as mixer=VALUE"


def test_a_dataclass_is_a_schema():
    from hiermlp.train import TrainConfig

    assert parse_overrides(["out_dir=007", "epochs=2"], TrainConfig) == {"out_dir": "007", "epochs": 2}
    with pytest.raises(ConfigError, match="Did you mean: epochs"):
        parse_overrides(["epoch=2"], TrainConfig)
