"""Bad input gets hiermlp's own error naming the problem and the fix, never a deep traceback."""

import re

import pytest
import torch

import hiermlp
from hiermlp.errors import ConfigError, ShapeError, UnknownNameError
from hiermlp.models.registry import UnknownModelError

from .conftest import TINY_SWIN


@pytest.fixture(scope="module")
def tiny():
    return hiermlp.HierNet(**TINY_SWIN).eval()


def test_wrong_channel_count(tiny):
    with pytest.raises(ShapeError, match=r"expected images of shape \(B, 3, H, W\), got \(1, 1, 32, 32\).*in_chans=1"):
        tiny(torch.randn(1, 1, 32, 32))
    with pytest.raises(ShapeError, match="expected images"):
        tiny(torch.randn(3, 32, 32))


def test_image_smaller_than_a_patch(tiny):
    # the stem zero-pads an input up to a multiple of the patch (the reference detection code's rule), but an
    # image smaller than one patch would be mostly padding: an error naming the size
    with pytest.raises(ShapeError, match="smaller than one 2x2 patch"):
        tiny(torch.randn(1, 3, 1, 40))
    with pytest.raises(ConfigError, match="smaller than one 4x4 patch"):
        hiermlp.create_model("swin_tiny_patch4_window7_224", img_size=3)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModelError, match="Did you mean: swin_tiny_patch4_window7_224"):
        hiermlp.create_model("swin_tiny_patch4_window7")
    with pytest.raises(KeyError):  # still a KeyError for callers that catch that
        hiermlp.create_model("nope")
    with pytest.raises(UnknownModelError, match="has no prefix"):
        hiermlp.create_model("hiermlp_swin_tiny_patch4_window7_224")


def test_unknown_model_option():
    with pytest.raises(ConfigError, match=r"unknown model option\(s\) \['window'\].*Did you mean: window_size"):
        hiermlp.create_model("swin_tiny_patch4_window7_224", window=7)


def test_unknown_mixer_and_option():
    with pytest.raises(UnknownNameError, match=r"unknown mixer 'atention'.*Did you mean: attention.*Known mixers"):
        hiermlp.HierNet(**{**TINY_SWIN, "mixer": "atention"})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['qkv_bais'\] for mixer 'attention'.*qkv_bias"):
        hiermlp.HierNet(**{**TINY_SWIN, "mixer_kwargs": {"qkv_bais": False}})


def test_windows_that_cannot_fit():
    with pytest.raises(ConfigError, match="window_size must be >= 1"):
        hiermlp.HierNet(**{**TINY_SWIN, "window_size": 0})
    with pytest.raises(ConfigError, match="window_size has 2 entries but the model has 4 stages"):
        hiermlp.HierNet(**{**TINY_SWIN, "window_size": [4, 4]})
    with pytest.raises(ConfigError, match=r"shift .* cannot fit window"):
        hiermlp.models.HierBlock(dim=8, num_heads=2, window_size=(4, 4), shift_size=(4, 0))
    with pytest.raises(ConfigError, match="num_heads=3 must be >= 1 and divide dim=16"):
        hiermlp.HierNet(**{**TINY_SWIN, "num_heads": 3})


def test_mixer_breaking_the_contract():
    class Bad(torch.nn.Module):
        def __init__(self, dim, *, window_size, num_heads):
            super().__init__()

        def forward(self, x, mask=None):
            return x[:, :-1]

    model = hiermlp.HierNet(**{**TINY_SWIN, "mixer": Bad})
    with pytest.raises(ShapeError, match="broke the mixer contract"):
        model(torch.randn(1, 3, 32, 32))

    class NoHeads(torch.nn.Module):
        def __init__(self, dim):
            super().__init__()

    with pytest.raises(ConfigError, match="breaks the window-mixer contract"):
        hiermlp.HierNet(**{**TINY_SWIN, "mixer": NoHeads})


# ---------------------------------------------------------------------------------------------------------
# the command line: every bad value is one line naming it, exit code 2 (issue 18's table, as commands)


def _cli(capsys, *argv):
    from hiermlp.cli import main

    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def _one_line_error(rc, err, *needles):
    assert rc == 2, err
    # torch may log its own warnings (W1201 ... lines) to stderr; hiermlp's error is one line of its own
    ours = [ln for ln in err.splitlines() if not re.match(r"[WI]\d{4} ", ln)]
    assert "Traceback" not in err and len(ours) == 1, err
    err = ours[0]
    for n in needles:
        assert n in err, err


TRAIN = ["limit_train=64", "limit_test=16", "batch_size=16", "epochs=1", "progress=false", "tensorboard=false"]


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("lr=-1", ["lr=-1.0 is invalid: lr must be > 0", "lr=0.005"]),  # not the scaled -0.125
        ("limit_train=-5", ["limit_train=-5 is invalid", ">= 0"]),
        ("warmup_epochs=-1", ["warmup_epochs=-1.0 is invalid", ">= 0"]),
        ("clip_grad=-1", ["clip_grad=-1.0 is invalid", ">= 0"]),
        ("drop_path_rate=2", ["drop_path_rate=2.0 is invalid", "in [0, 1)"]),
        ("num_classes=-1", ["num_classes=-1 is invalid"]),
        ("batch_size=0", ["batch_size=0 is invalid"]),
        ("eps=0", ["eps=0.0 is invalid", "> 0"]),
        ("betas=[0.9, 1.5]", ["betas[1]=1.5 is invalid"]),
        ("nan_policy=ignore", ["nan_policy='ignore' is invalid", "stop, skip"]),
        ("device=gpu", ["device='gpu' is invalid", "auto, cpu, cuda"]),
        ("lr=abc", ["lr expects float, got str 'abc'"]),
        ("batch_size=100000", ["batch_size=100000", "smaller than one batch", "raise limit_train"]),
        ("opt=adamz", ["opt='adamz' cannot be built"]),
        ("model_kwargs.depths=abc", ["model_kwargs", "depths"]),
        ("model_kwargs.patch_size=0", ["model_kwargs", "patch_size"]),
    ],
)
def test_cli_train_bad_values(capsys, tmp_path, override, needles):
    _one_line_error(*_cli(capsys, "train", *TRAIN, f"out_dir={tmp_path}", override), *needles)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cli_train_on_a_missing_gpu(capsys, tmp_path):
    rc, err = _cli(capsys, "train", *TRAIN, f"out_dir={tmp_path}", "device=cuda")
    _one_line_error(rc, err, "device='cuda' but no CUDA GPU is visible", "device=cpu")


def test_cli_train_binary_or_broken_config_file(capsys, tmp_path):
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(256)))
    _one_line_error(*_cli(capsys, "train", str(binary)), str(binary), "not a text YAML file")
    broken = tmp_path / "broken.yaml"
    broken.write_text("epochs: [1\n")
    _one_line_error(*_cli(capsys, "train", str(broken)), str(broken), "invalid YAML at line")
    _one_line_error(*_cli(capsys, "train", "no_such_preset"), "train preset not found: no_such_preset")
    _one_line_error(*_cli(capsys, "train", "fmnist_swin_micro", "epochs"), "expected key=value")


def test_cli_train_corrupt_image_in_folder(capsys, tmp_path):
    from .test_data import _folder

    root = _folder(tmp_path / "data")
    bad = root / "train" / "cat" / "1.png"
    bad.write_bytes(bad.read_bytes()[:40])
    args = ["data=folder", f"data_root={root}", "in_chans=3", "img_size=16", "batch_size=2", "epochs=1"]
    args += ["progress=false", "tensorboard=false", "model_kwargs={patch_size: 4, embed_dim: 8, depths: [1], "]
    args[-1] += "num_heads: [1], window_size: 4}"
    for workers in (0, 2):  # a worker re-raises it with its traceback inside the message
        rc, err = _cli(capsys, "train", *args, f"num_workers={workers}", f"out_dir={tmp_path / str(workers)}")
        _one_line_error(rc, err, "cat/1.png", "corrupt=skip")


def test_cli_eval_missing_empty_or_mismatched_checkpoint(capsys, tmp_path):
    _one_line_error(*_cli(capsys, "eval", str(tmp_path / "nope.pth")), "checkpoint to evaluate does not exist")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    _one_line_error(*_cli(capsys, "eval", str(empty)), "is empty (0 bytes)")
    rc, err = _cli(capsys, "eval", "swin_tiny_patch4_window7_224", "--checkpoint", str(empty))
    _one_line_error(rc, err, "is empty (0 bytes)")
    rc, err = _cli(capsys, "eval", "swin_tiny_patch4_window7_224", "--checkpoint", str(tmp_path / "no.pth"))
    _one_line_error(rc, err, "--checkpoint", "does not exist")
    _one_line_error(*_cli(capsys, "eval", str(empty), "--batch-size", "0"), "--batch-size 0 is invalid")


@pytest.mark.parametrize("batch", ["0", "-1"])
def test_cli_bench_bad_batch(capsys, batch):
    rc, err = _cli(capsys, "bench", "swin_tiny_patch4_window7_224", "--batch", batch)
    _one_line_error(rc, err, f"--batch {batch} is invalid: it must be >= 1")


def test_cli_bench_info_export_bad_numbers(capsys):
    _one_line_error(*_cli(capsys, "bench", "swin_tiny_patch4_window7_224", "--repeats", "0"), "--repeats 0")
    _one_line_error(*_cli(capsys, "info", "swin_tiny_patch4_window7_224", "--batch", "0"), "--batch 0 is invalid")
    rc, err = _cli(capsys, "info", "swin_tiny_patch4_window7_224", "--img-size", "-3")
    _one_line_error(rc, err, "--img-size -3 is invalid")
    rc, err = _cli(capsys, "export", "swin_tiny_patch4_window7_224", "--img-size", "0")
    _one_line_error(rc, err, "--img-size 0 is invalid")


def test_cli_export_to_an_unwritable_path_fails_before_tracing(capsys, tmp_path, monkeypatch):
    def no_trace(*a, **k):
        raise AssertionError("traced although the destination cannot be written")

    monkeypatch.setattr(torch.export, "export", no_trace)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    rc, err = _cli(capsys, "export", "swin_tiny_patch4_window7_224", "--img-size", "32", "--out", f"{blocker}/m.onnx")
    _one_line_error(rc, err, "cannot write directory of --out", "a_file", "a parent of the path is a file")
    rc, err = _cli(capsys, "export", "swin_tiny_patch4_window7_224", "--img-size", "32", "--out", str(tmp_path))
    _one_line_error(rc, err, "is a directory")


def test_one_line_of_worker_and_multi_line_errors():
    from hiermlp.errors import one_line

    worker = ConfigError(
        "Caught CorruptImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nhiermlp.data.datasets.CorruptImageError: cannot decode x.png (set corrupt=skip)\n'
    )
    assert one_line(worker) == "cannot decode x.png (set corrupt=skip)"
    assert one_line(ConfigError("a:\n  missing (2): x, y\n  fix it")) == "a:; missing (2): x, y; fix it"


# property: create_model with a random bad value of a geometry argument raises a HiermlpError naming it
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from hiermlp.errors import HiermlpError  # noqa: E402

_BAD = st.one_of(
    st.integers(-8, 0),
    st.floats(max_value=-1e-3) | st.just(float("nan")),
    st.text(max_size=4),
    st.none(),
    st.lists(st.integers(-2, 0), min_size=1, max_size=5),
)
_ARGS = ["mlp_ratio", "num_classes", "patch_size", "embed_dim", "drop_path_rate", "depths", "window_size"]
_ARGS += ["num_heads", "img_size", "in_chans"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(_ARGS), value=_BAD)
def test_create_model_random_bad_values_name_the_argument(key, value):
    base = {k: v for k, v in TINY_SWIN.items() if k != key}
    try:
        hiermlp.create_model("swin_tiny_patch4_window7_224", **base, **{key: value})
    except HiermlpError as e:
        assert key in str(e), (key, value, str(e))
    # building is fine where the value is valid for that argument (num_classes=0: no head; None: default)


def test_create_model_infinite_mlp_ratio_names_it():
    with pytest.raises(HiermlpError, match="mlp_ratio"):
        hiermlp.create_model("swin_tiny_patch4_window7_224", **{**TINY_SWIN, "mlp_ratio": float("inf")})


def test_cli_compare_bad_recipe_value(capsys):
    rc, err = _cli(capsys, "compare", "smoke", "lr=-1", "--no-progress")
    _one_line_error(rc, err, "lr=-1.0 is invalid: lr must be > 0")
