"""Checkpoint I/O: formats, wrappers, heads, resizing, and every way a checkpoint can be wrong."""

import logging
import pickle

import pytest
import torch

import hiermlp
from hiermlp.errors import CheckpointError, OutputError
from hiermlp.weights import read_state_dict, save_weights

from .conftest import TINY_SWIN


@pytest.fixture
def tiny():
    return hiermlp.HierNet(**TINY_SWIN).eval()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip(tiny, tmp_path, suffix):
    path = save_weights(tiny, tmp_path / f"w{suffix}")
    other = hiermlp.HierNet(**TINY_SWIN).eval()
    result = hiermlp.load_checkpoint(other, path)
    assert result.layout == "hiermlp" and not result.missing
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(other(x), tiny(x), rtol=0, atol=0)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # atomic write leaves no temp file


@pytest.mark.parametrize("layout, suffix", [("hiermlp", ".safetensors"), ("hiermlp", ".pth"), ("microsoft", ".pth")])
def test_a_failed_save_keeps_the_earlier_file(tiny, tmp_path, monkeypatch, layout, suffix):
    import errno

    import hiermlp.io

    path = hiermlp.save_checkpoint(tiny, tmp_path / f"w{suffix}", layout=layout)
    before = path.read_bytes()

    def full(tmp, write):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hiermlp.io, "_write_file", full)
    with pytest.raises(OutputError, match=r"No space left on device \(ENOSPC\); free disk space") as e:
        hiermlp.save_checkpoint(hiermlp.HierNet(**TINY_SWIN), path, layout=layout)
    assert len(str(e.value).splitlines()) == 1
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_wrapped_and_ddp_prefixed(tiny):
    sd = {f"module.{k}": v for k, v in tiny.state_dict().items()}
    other = hiermlp.HierNet(**TINY_SWIN)
    hiermlp.load_checkpoint(other, {"model": sd, "optimizer": {}, "epoch": 3})
    torch.testing.assert_close(other.stages[0].blocks[0].mixer.qkv.weight, tiny.stages[0].blocks[0].mixer.qkv.weight)


def test_head_with_other_class_count_is_reinitialised(tiny, caplog):
    other = hiermlp.HierNet(**{**TINY_SWIN, "num_classes": 4})
    with caplog.at_level(logging.WARNING, logger="hiermlp"):
        result = hiermlp.load_checkpoint(other, tiny.state_dict())
    assert result.reinitialized == ["head.fc.weight", "head.fc.bias"]
    assert "re-initialised head.fc.weight" in caplog.text and "10 classes" in caplog.text
    torch.testing.assert_close(other.patch_embed.proj.weight, tiny.patch_embed.proj.weight)


def test_create_model_checkpoint_path(tmp_path):
    src = hiermlp.create_model("swin_tiny_patch4_window7_224", num_classes=5)
    path = save_weights(src, tmp_path / "t.safetensors")
    dst = hiermlp.create_model("swin_tiny_patch4_window7_224", num_classes=5, checkpoint_path=path)
    torch.testing.assert_close(dst.head.fc.weight, src.head.fc.weight)


def test_mismatched_checkpoint_names_the_keys(tiny):
    wrong = hiermlp.HierNet(**{**TINY_SWIN, "embed_dim": 24, "num_heads": (1, 2, 4, 4)})
    with pytest.raises(CheckpointError) as e:
        hiermlp.load_checkpoint(wrong, tiny.state_dict())
    msg = str(e.value)
    assert "shape mismatch" in msg and "patch_embed.proj.weight" in msg and "(16, 3, 2, 2)" in msg
    sd = tiny.state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["norm.weight"]
    with pytest.raises(CheckpointError, match=r"missing \(1\): norm.weight[\s\S]*unexpected \(1\): extra.weight"):
        hiermlp.load_checkpoint(hiermlp.HierNet(**TINY_SWIN), sd)
    # strict=False loads what matches and reports the rest
    result = hiermlp.load_checkpoint(hiermlp.HierNet(**TINY_SWIN), sd, strict=False)
    assert result.missing == ["norm.weight"] and result.unexpected == ["extra.weight"]


def test_corrupt_and_missing_files(tiny, tmp_path):
    path = save_weights(tiny, tmp_path / "good.pth")
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"truncated.pth.*truncated or corrupt"):
        hiermlp.load_checkpoint(tiny, bad)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        hiermlp.load_checkpoint(tiny, bad_st)
    with pytest.raises(CheckpointError, match="does not exist"):
        hiermlp.load_checkpoint(tiny, tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="not a state dict"):
        hiermlp.load_checkpoint(tiny, {"config": {"a": 1}})


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_loading_never_executes_code(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(CheckpointError, match="weights_only"):
        read_state_dict(path)
    assert "pwned" not in capsys.readouterr().out


def test_timm_train_checkpoint_with_argparse_namespace_loads(tmp_path):
    """Release files written by timm's train.py carry its args as an argparse.Namespace: still loadable."""
    import argparse

    model = hiermlp.HierNet(**TINY_SWIN)
    path = tmp_path / "model_best.pth.tar"
    torch.save({"state_dict": model.state_dict(), "args": argparse.Namespace(lr=0.1), "epoch": 3}, path)
    other = hiermlp.HierNet(**TINY_SWIN)
    result = hiermlp.load_checkpoint(other, path)
    assert not result.missing and not result.unexpected
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
