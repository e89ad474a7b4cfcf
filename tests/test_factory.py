"""The model factory's checkpoint path: one trained model written in every layout hiermlp reads comes back with
identical logits through every consumer (the library function, ``hiermlp eval``'s model, ``hiermlp export``'s,
fine-tuning's ``initial_checkpoint`` and ``hiermlp.load_checkpoint``), and a trainer checkpoint rebuilds the
architecture its stored config names."""

from __future__ import annotations

import argparse

import pytest
import torch

import hiermlp
from hiermlp.errors import CheckpointError, ConfigError, UnknownNameError
from hiermlp.export import model_to_export
from hiermlp.io import atomic_save
from hiermlp.train.build import model_from_config
from hiermlp.train.config import config_from_dict, config_to_dict
from hiermlp.weights import export_state_dict, read_checkpoint, save_weights

from .conftest import TINY_SWIN, randomize_
from .test_layouts import to_hf, to_mmpretrain

NAME = "swin_tiny_patch4_window7_224"
# the architecture options a run stores in its config (num_classes and the input come from elsewhere)
ARCH = {k: TINY_SWIN[k] for k in ("patch_size", "embed_dim", "depths", "num_heads", "window_size")}
SIZE = TINY_SWIN["img_size"]
CLASSES = TINY_SWIN["num_classes"]
# what a caller names for weights that do not record their model
NAMED = dict(img_size=SIZE, **ARCH)


def run_config(**changes):
    return config_from_dict(
        {"model": NAME, "model_kwargs": dict(ARCH), "img_size": SIZE, "in_chans": 3, "drop_path_rate": 0.0, **changes}
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A randomised small Swin, its EMA twin, probe inputs, and the same weights saved in every layout."""
    torch.manual_seed(0)
    model = randomize_(hiermlp.create_model(NAME, img_size=SIZE, num_classes=CLASSES, **ARCH)).eval()
    ema = randomize_(hiermlp.create_model(NAME, img_size=SIZE, num_classes=CLASSES, **ARCH)).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    d = tmp_path_factory.mktemp("layouts")
    sd = model.state_dict()
    official = export_state_dict(model, "microsoft")
    files = {}
    files["hiermlp-train"] = atomic_save(
        {
            "model": sd,
            "model_ema": ema.state_dict(),
            "optimizer": {},
            "scheduler": {},
            "epoch": 1,
            "step": 4,
            "epoch_step": 0,
            "rng": {},
            "config": config_to_dict(run_config(num_classes=CLASSES)),
            "format": "hiermlp-train-v1",
        },
        d / "best.pth",
    )
    timm_args = argparse.Namespace(model="hiermlp_" + NAME, model_kwargs=dict(NAMED), in_chans=3, lr=0.1)
    torch.save(
        {
            "epoch": 3,
            "arch": "hiermlp_" + NAME,
            "state_dict": sd,
            "state_dict_ema": ema.state_dict(),
            "optimizer": {},
            "version": 2,
            "args": timm_args,
        },
        d / "model_best.pth.tar",
    )
    files["timm-train"] = d / "model_best.pth.tar"
    files["microsoft"] = hiermlp.save_checkpoint(model, d / "ms.pth", layout="microsoft")
    files["timm"] = hiermlp.save_checkpoint(model, d / "timm.safetensors", layout="timm")
    files["bare"] = save_weights(model, d / "bare.pth")
    files["safetensors"] = save_weights(model, d / "bare.safetensors")
    torch.save({"meta": {"mmcls_version": "1.0"}, "state_dict": to_mmpretrain(official)}, d / "mm.pth")
    files["mmpretrain"] = d / "mm.pth"
    files["hf"] = save_weights(to_hf(official), d / "hf.safetensors")
    with torch.no_grad():
        want, want_ema = model(x), ema(x)
    return files, x, want, want_ema, model


RECORDS_MODEL = ("hiermlp-train", "timm-train")
LAYOUTS = (*RECORDS_MODEL, "microsoft", "timm", "bare", "safetensors", "mmpretrain", "hf")


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_trained_logits_through_every_consumer(trained, layout):
    files, x, want, *_ = trained
    path = files[layout]
    name, named = (None, {}) if layout in RECORDS_MODEL else (NAME, NAMED)
    consumers = {
        "model_from_checkpoint": lambda: hiermlp.model_from_checkpoint(path, name, **named),
        "export": lambda: model_to_export(path, model_name=name, model_kwargs=named)[0],
        "eval": lambda: model_from_config(run_config(), CLASSES, weights=path),
        "fine-tune": lambda: model_from_config(run_config(initial_checkpoint=str(path)), CLASSES),
    }
    for consumer, build in consumers.items():
        torch.manual_seed(1)  # another init than the trained model's: every tensor must come from the file
        got = logits(build(), x)
        assert torch.equal(got, want), f"{layout} through {consumer}: max |diff| {(got - want).abs().max():.3g}"
    fresh = hiermlp.create_model(NAME, num_classes=CLASSES, **NAMED)
    hiermlp.load_checkpoint(fresh, path)
    assert torch.equal(logits(fresh, x), want)


@pytest.mark.parametrize("layout", RECORDS_MODEL)
def test_ema_weights_are_taken_only_when_asked(trained, layout):
    files, x, want, want_ema, _ = trained
    assert not torch.equal(want, want_ema)
    assert torch.equal(logits(hiermlp.model_from_checkpoint(files[layout], ema=True), x), want_ema)
    assert torch.equal(logits(model_from_config(run_config(), CLASSES, weights=files[layout], ema=True), x), want_ema)
    with pytest.raises(CheckpointError, match="no EMA weights"):
        hiermlp.model_from_checkpoint(files["microsoft"], NAME, ema=True, **NAMED)


def test_a_trainer_checkpoint_rebuilds_its_architecture(tmp_path):
    # a run whose model differs from the registered variant in width, depth, heads, window, input and classes
    arch = dict(embed_dim=12, depths=(1, 2), num_heads=(2, 3), window_size=3, patch_size=2)
    cfg = config_from_dict({"model": NAME, "model_kwargs": arch, "img_size": 24, "in_chans": 1, "num_classes": 7})
    model = randomize_(hiermlp.create_model(NAME, img_size=24, in_chans=1, num_classes=7, **arch)).eval()
    ckpt = {"model": model.state_dict(), "model_ema": None, "config": config_to_dict(cfg)}
    path = atomic_save(ckpt, tmp_path / "b.pth")
    rebuilt = hiermlp.model_from_checkpoint(path)
    assert (rebuilt.num_features, len(rebuilt.stages), rebuilt.in_chans, rebuilt.num_classes) == (24, 2, 1, 7)
    assert rebuilt.stages[1].blocks[0].window_size == (3, 3) and rebuilt.pretrained_cfg["input_size"] == (1, 24, 24)
    x = torch.randn(2, 1, 24, 24)
    assert torch.equal(logits(rebuilt, x), logits(model, x))
    # the stored options are what makes it: the same weights under the bare name do not fit the variant
    with pytest.raises(CheckpointError, match="does not match"):
        hiermlp.model_from_checkpoint(save_weights(model, tmp_path / "bare.pth"), NAME)
    # an explicit option wins over the stored one (and then the weights must fit it)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        hiermlp.model_from_checkpoint(path, embed_dim=18)


def test_what_the_file_records(trained):
    files, *_ = trained
    train_ckpt = read_checkpoint(files["hiermlp-train"])
    assert (train_ckpt.kind, train_ckpt.model, train_ckpt.img_size) == ("hiermlp-train", NAME, SIZE)
    assert train_ckpt.model_kwargs == {**ARCH, "in_chans": 3}  # lists from the YAML-able config back to tuples
    timm_ckpt = read_checkpoint(files["timm-train"])
    assert (timm_ckpt.kind, timm_ckpt.model) == ("timm-train", "hiermlp_" + NAME)
    assert timm_ckpt.model_kwargs == {**NAMED, "in_chans": 3}
    for layout in ("microsoft", "mmpretrain", "hf", "safetensors"):
        assert (read_checkpoint(files[layout]).kind, read_checkpoint(files[layout]).model) == ("weights", None)


def test_weights_without_a_model_name_say_how_to_give_one(trained):
    files, *_ = trained
    for layout in ("microsoft", "bare", "safetensors", "hf"):
        with pytest.raises(ConfigError, match=r"no model name .*name=NAME.*--model NAME"):
            hiermlp.model_from_checkpoint(files[layout])


def test_an_unknown_recorded_name_names_the_file(tmp_path):
    path = tmp_path / "old.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "arch": "swintransformer"}, path)
    with pytest.raises(UnknownNameError, match=r"old\.pth\.tar.*was saved for model 'swintransformer'"):
        hiermlp.model_from_checkpoint(path)


def test_eval_refuses_a_head_of_another_class_count_that_fine_tuning_replaces(trained):
    files, x, _, _, model = trained
    with pytest.raises(CheckpointError, match=r"head\.fc\.weight: checkpoint \(10, 128\) vs model \(3, 128\)"):
        model_from_config(run_config(), 3, weights=files["bare"])
    tuned = model_from_config(run_config(initial_checkpoint=str(files["bare"])), 3).eval()
    assert tuned.head.fc.weight.shape == (3, 128)
    with torch.no_grad():  # everything but the head is the checkpoint's
        got = tuned.forward_head(tuned.forward_features(x), pre_logits=True)
        assert torch.equal(got, model.forward_head(model.forward_features(x), pre_logits=True))


def test_a_timm_model_loads_its_own_keys(tmp_path):
    model = randomize_(hiermlp.create_any_model("timm:resnet10t", num_classes=4)).eval()
    path = save_weights(model, tmp_path / "r.safetensors")
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(logits(hiermlp.model_from_checkpoint(path, "resnet10t"), x), logits(model, x))
    # timm's Swin has keys hiermlp's layouts would rename: they load as saved, not converted
    swin = randomize_(hiermlp.create_any_model("timm:" + NAME, num_classes=CLASSES, **{**ARCH, "img_size": SIZE}))
    path = save_weights(swin, tmp_path / "s.pth")
    got = hiermlp.model_from_checkpoint(path, "timm:" + NAME, img_size=SIZE, **ARCH)
    assert type(got).__module__.startswith("timm.")
    x = torch.randn(1, 3, SIZE, SIZE)
    assert torch.equal(logits(got, x), logits(swin, x))
