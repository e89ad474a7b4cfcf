"""What timm's train.py users reach for (fp16 + GradScaler, compile, channels_last, layer decay, fine-tuning,
a log-friendly progress display), and exactly what accumulation and DDP reproduce under the default recipe."""

import copy
import re
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from hiermlp.data import mix_seed
from hiermlp.errors import CheckpointError
from hiermlp.train import load_config, train
from hiermlp.train import loop as train_loop
from hiermlp.train.build import build_data, build_optimization
from hiermlp.train.distributed import DistInfo
from hiermlp.train.optim import lr_factor, scaled_lrs

from .test_train import TINY

SMALL = [*TINY, "limit_train=256", "limit_test=64", "batch_size=64", "epochs=1"]


def small(out, *extra):
    return load_config(None, [*SMALL, f"out_dir={out}", *extra])


def _step_batches(cfg, info, steps=2):
    """The (images, labels) each rank feeds per micro-step, for the first optimizer steps of epoch 0."""
    data = build_data(cfg, info)
    data.sampler.set_epoch(0)
    data.train_ds.set_epoch(0)
    out = []
    for i, batch in enumerate(data.train_loader):
        if i == steps * cfg.accum_steps:
            break
        out.append(batch)
    return out


def test_accumulation_and_two_processes_see_the_same_batches_under_the_default_recipe(tmp_path):
    # the default recipe's augmentation (random resized crop, flip) is seeded per sample, so each global
    # batch is the same images, bit for bit, however it is split over micro-steps and ranks
    cfg = small(tmp_path, "no_aug=false")
    assert cfg.amp == "auto" and cfg.drop_path_rate == 0.05  # the defaults
    one = _step_batches(cfg, DistInfo())
    acc = _step_batches(small(tmp_path, "no_aug=false", "accum_steps=2"), DistInfo())
    ranks = [_step_batches(cfg, DistInfo(rank=r, world_size=2)) for r in (0, 1)]
    for k, (x, y) in enumerate(one):
        torch.testing.assert_close(torch.cat([acc[2 * k][0], acc[2 * k + 1][0]]), x, atol=0, rtol=0)
        assert torch.equal(torch.cat([acc[2 * k][1], acc[2 * k + 1][1]]), y)
        torch.testing.assert_close(torch.cat([ranks[0][k][0], ranks[1][k][0]]), x, atol=0, rtol=0)
        assert torch.equal(torch.cat([ranks[0][k][1], ranks[1][k][1]]), y)
    # the per-step model randomness (drop path, mixup) is seeded by (seed, step, rank): a second rank or
    # micro-batch draws other masks, which is why the README limits the weight claim to drop_path_rate=0
    assert mix_seed(0, 5, 0, 2) != mix_seed(0, 5, 1, 2)


def test_accumulated_default_recipe_is_not_bit_identical(tmp_path):
    # what the README states: under bf16 + drop path, accumulation gives other (not equal) weights
    a = train(small(tmp_path / "a", "limit_train=128"))
    b = train(small(tmp_path / "b", "limit_train=128", "accum_steps=2"))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    diff = max((sa[k] - sb[k]).abs().max().item() for k in sa)
    assert diff > 1e-5


def test_fp16_gradscaler_compile_and_channels_last(tmp_path):
    plain = train(small(tmp_path / "plain", "amp=none"))
    comp = train(small(tmp_path / "compiled", "amp=none", "compile=true", "compile_backend=eager"))
    cl = train(small(tmp_path / "cl", "amp=none", "channels_last=true"))
    for k, v in plain.model.state_dict().items():  # compiling changes nothing; channels_last only rounding
        torch.testing.assert_close(comp.model.state_dict()[k], v, atol=1e-6, rtol=1e-5, msg=k)
        torch.testing.assert_close(cl.model.state_dict()[k], v, atol=1e-4, rtol=1e-3, msg=k)
    assert not any(k.startswith("_orig_mod") for k in torch.load(tmp_path / "compiled" / "last.pth")["model"])
    fp16 = train(small(tmp_path / "fp16", "amp=fp16"))
    ckpt = torch.load(tmp_path / "fp16" / "last.pth", weights_only=True)
    # GradScaler starts at 2**16 and halves on each overflow: its state is checkpointed for an exact resume
    assert 0 < ckpt["scaler"]["scale"] <= 2.0**16 and fp16.history[0]["skipped_steps"] <= 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_layer_decay_scales_lr_by_depth_from_group_matcher(tmp_path):
    cfg = small(tmp_path, "layer_decay=0.5")
    model = train_loop.model_from_config(cfg, 10)
    opt = build_optimization(cfg, model, steps_per_epoch=4, device=torch.device("cpu"))
    lr = scaled_lrs(lr=cfg.lr, warmup_lr=0, min_lr=0, batch_size=cfg.batch_size, base_batch=cfg.lr_base_batch)[0]
    start = cfg.warmup_lr / cfg.lr  # LambdaLR applies the warmup factor of step 0 at once
    scale = {}
    for g in opt.optimizer.param_groups:
        torch.testing.assert_close(g["lr"], lr * g["lr_scale"] * start)
        for p in g["params"]:
            scale[id(p)] = g["lr_scale"]
    named = dict(model.named_parameters())
    # timm numbers group_matcher's groups: stem 0, stage blocks 1..n, final norm/head last (scale 1)
    assert scale[id(named["head.fc.weight"])] == 1.0
    deepest = scale[id(named["stages.1.blocks.0.mlp.fc1.weight"])]
    shallow = scale[id(named["stages.0.blocks.0.mlp.fc1.weight"])]
    stem = scale[id(named["patch_embed.proj.weight"])]
    assert stem < shallow < deepest < 1.0 and shallow / stem == 0.5**-1 and deepest / shallow == 2.0


def test_resume_with_a_new_lr_uses_it(tmp_path):
    train(small(tmp_path, "amp=none"))
    res = train(small(tmp_path, "amp=none", "epochs=2", "lr=1e-3", "resume=auto"))
    cfg = res.config
    lr, warmup_lr, min_lr = scaled_lrs(
        lr=1e-3, warmup_lr=cfg.warmup_lr, min_lr=cfg.min_lr, batch_size=64, base_batch=cfg.lr_base_batch
    )
    factor = lr_factor(8, total_steps=8, warmup_steps=2, start=warmup_lr / lr, end=min_lr / lr)
    torch.testing.assert_close(res.history[-1]["lr"], lr * factor)


def test_finetune_preset_from_an_earlier_checkpoint(tmp_path):
    # step 1: a run whose checkpoint has another head (12 classes), window 4 and input 16
    first = train(small(tmp_path / "pre", "num_classes=12", "amp=none"))
    ckpt = tmp_path / "pre" / "best.pth"
    # step 2: the committed fine-tune preset, shrunk to the test model, at window 8, input 32, 10 classes
    tiny_kwargs = next(t for t in TINY if t.startswith("model_kwargs=")).replace("window_size: 4", "window_size: 8")
    cfg = load_config(
        "finetune_fmnist_swin_micro",
        [t for t in SMALL if not t.startswith(("model=", "model_kwargs=", "img_size=", "lr="))]
        + [tiny_kwargs, "img_size=32", f"initial_checkpoint={ckpt}", f"out_dir={tmp_path / 'ft'}", "amp=none"],
    )
    assert cfg.layer_decay == 0.75 and cfg.lr == 1e-3
    res = train(cfg)
    got, pre = res.model.state_dict(), first.model.state_dict()
    assert got["head.fc.weight"].shape == (10, 32) and pre["head.fc.weight"].shape == (12, 32)
    table = next(k for k in got if k.endswith("relative_position_bias_table"))
    assert got[table].shape[0] == 15 * 15 and pre[table].shape[0] == 7 * 7  # resized to the new window
    # the stem started from the checkpoint: 4 steps at lr 1.25e-4 * 0.75**3 move it by < 1e-3, while any
    # fresh initialisation is 0.02-scale noise away from it
    torch.manual_seed(123)
    fresh = train_loop.model_from_config(replace(cfg, initial_checkpoint=""), 10).state_dict()[
        "patch_embed.proj.weight"
    ]
    w, w_pre = got["patch_embed.proj.weight"], pre["patch_embed.proj.weight"]
    assert (w - w_pre).abs().max() < 2e-3 < 1e-2 < (fresh - w_pre).abs().max()
    # anything but the head and the position tables must match: another width is an error naming the file
    other = replace(cfg, model_kwargs={**cfg.model_kwargs, "embed_dim": 24}, out_dir=str(tmp_path / "ft2"))
    with pytest.raises(CheckpointError, match=r"initial_checkpoint=.*best\.pth.*does not match"):
        train(other)


def test_progress_is_one_line_per_epoch_without_a_terminal(tmp_path, capsys):
    train(small(tmp_path, "epochs=2", "progress=true", "limit_train=128"))
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [bool(re.match(r"epoch \d/2 train_loss", ln)) for ln in lines] == [True, True, False]
    assert "test top-1" in lines[-1]
    assert "\r" not in out + err and "\x1b" not in out + err


def test_progress_bar_only_on_a_terminal(monkeypatch, capsys):
    from hiermlp.train.progress import Progress

    assert Progress(enabled=True, total=3, initial=0, desc="x").bar is None  # pytest captures: no terminal
    for stream in (sys.stdout, sys.stderr):
        monkeypatch.setattr(stream, "isatty", lambda: True, raising=False)
    p = Progress(enabled=True, total=3, initial=0, desc="x")
    assert p.bar is not None
    p.close()
    assert Progress(enabled=False, total=3, initial=0, desc="x").bar is None


# --- the trainer's own speed: prepared data, fused AdamW, one-norm weight check -----------------------------


def test_prepared_dataset_is_the_dataset_transformed_once():
    from hiermlp.data import ArrayImageDataset, PreparedDataset, build_transform

    rng = np.random.default_rng(0)
    base = ArrayImageDataset(
        images=rng.integers(0, 256, (20, 12, 12), dtype=np.uint8),
        labels=rng.integers(0, 10, 20),
        classes=[str(i) for i in range(10)],
        transform=build_transform(is_training=False, img_size=8, mean=(0.3,), std=(0.4,)),
    )
    idx = np.array([3, 7, 11, 19, 0])
    prep = PreparedDataset(base, idx)
    assert len(prep) == len(base) and prep.classes == base.classes
    for i in idx:
        x, y = prep[int(i)]
        x0, y0 = base[int(i)]
        assert torch.equal(x, x0) and y == y0
    xb, yb = prep.__getitems__([19, 3, 3])
    assert torch.equal(xb, torch.stack([base[19][0], base[3][0], base[3][0]]))
    assert yb.tolist() == [base[19][1], base[3][1], base[3][1]]
    with pytest.raises(IndexError, match=r"\[5\] were not prepared"):
        prep[5]
    with pytest.raises(IndexError, match="out of range"):
        prep[20]


@pytest.mark.parametrize("no_aug", [True, False])
def test_prepared_data_trains_exactly_as_per_sample_loading(tmp_path, monkeypatch, no_aug):
    """no_aug runs train on prepared tensors (augmented ones cannot be); either way the run is the one that
    transforms every sample every epoch, to the bit."""
    from hiermlp.data import PreparedDataset
    from hiermlp.train import build as train_build

    cfg = small(tmp_path / "a", f"no_aug={str(no_aug).lower()}", "epochs=2")
    data = build_data(cfg, DistInfo())
    assert isinstance(data.train_ds, PreparedDataset) is no_aug
    assert isinstance(data.test_loader.dataset, PreparedDataset)
    fast = train(cfg, progress=False)
    monkeypatch.setattr(train_build, "PREPARE_MAX_BYTES", 0)  # too big to prepare: per-sample loading
    assert not isinstance(build_data(cfg, DistInfo()).test_loader.dataset, PreparedDataset)
    slow = train(replace(cfg, out_dir=str(tmp_path / "b")), progress=False)
    keys = ("train_loss", "test_loss", "top1", "top5")
    assert [[h[k] for k in keys] for h in fast.history] == [[h[k] for k in keys] for h in slow.history]


def test_fused_adamw_is_the_for_loop_adamw():
    """The trainer's AdamW runs torch's fused kernel on CPU; its update is the per-tensor loop's."""
    from hiermlp.train.optim import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.LayerNorm(5), torch.nn.Linear(5, 3))
    twin = copy.deepcopy(model)
    fused = build_optimizer(model, lr=1e-2, weight_decay=0.05)
    assert all(g.get("fused") for g in fused.param_groups)
    loop = torch.optim.AdamW(
        [
            {"params": [p for p in twin.parameters() if p.ndim > 1], "weight_decay": 0.05},
            {"params": [p for p in twin.parameters() if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=1e-2,
        foreach=False,
    )
    for _ in range(5):
        x = torch.randn(4, 6)
        for m, opt in ((model, fused), (twin, loop)):
            opt.zero_grad()
            m(x).square().sum().backward()
            opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_weight_check_names_nonfinite_tensors_and_not_huge_finite_ones():
    from types import SimpleNamespace

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))
    check = lambda: train_loop._Run._nonfinite_weights(SimpleNamespace(model=model))
    assert check() == []
    with torch.no_grad():
        model[0].weight.fill_(3e30)  # squares overflow float32: the one-norm check is not finite, the tensors are
    assert not torch.isfinite(torch.nn.utils.get_total_norm(list(model.state_dict().values())[:1]))
    assert check() == []
    with torch.no_grad():
        model[1].running_var[1] = float("nan")
        model[0].bias[0] = float("-inf")
    assert check() == ["0.bias", "1.running_var"]


def test_prepared_sets_are_reused_only_for_the_same_content(tmp_path, monkeypatch):
    """A later run of the process reuses a prepared set only when images, labels, indices and transform are
    the same: a data file rewritten in place, another seed's subset or another normalisation is prepared anew."""
    from hiermlp.data import EMBEDDED_PATH
    from hiermlp.train import build as train_build

    monkeypatch.setattr(train_build, "_prepared_cache", train_build.OrderedDict())
    with np.load(EMBEDDED_PATH) as z:
        arrays = {k: z[k] for k in z.files}
    data_file = tmp_path / "data.npz"
    np.savez(data_file, **arrays)
    base = [*SMALL, "no_aug=true", f"data_root={data_file}", f"out_dir={tmp_path / 'o'}"]

    def loaders(*extra):
        d = build_data(load_config(None, [*base, *extra]), DistInfo())
        return d.train_ds, d.test_loader.dataset

    train_a, test_a = loaders()
    train_b, test_b = loaders()
    assert train_b is train_a and test_b is test_a  # the same content: reused
    train_c, test_c = loaders("seed=1")  # another subset of the same files
    assert train_c is not train_a and test_c is not test_a  # limit_test subsets by seed as well
    assert loaders("mean=[0.5]")[1] is not test_a
    arrays["test_images"] = 255 - arrays["test_images"]  # the file rewritten at the same path
    np.savez(data_file, **arrays)
    _, test_d = loaders()
    assert test_d is not test_a and not torch.equal(test_d.images, test_a.images)
    x, _ = test_d[int(test_d._row.argmax())]
    assert torch.equal(test_d.images[-1], x)
    monkeypatch.setattr(train_build, "PREPARED_CACHE_BYTES", 0)  # bounded: nothing is kept
    train_build._prepared_cache.clear()
    loaders()
    assert not train_build._prepared_cache
