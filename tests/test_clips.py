"""The embedded clips and the 3-D classification path: frames rebuilt from each clip's recorded motion by an
independent per-pixel reference, the statistics the trainer normalises with, the clip baselines and the 3-D conv
stem against plain torch, training and evaluating a micro Video Swin on clips, and ``compare video`` end to end."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import hiermlp
from hiermlp.cli import main
from hiermlp.data import DATASET_STATS, EMBEDDED_PATH, ClipDataset, ClipSceneDataset, load_clips, make_clips
from hiermlp.data.clips import shrink_items
from hiermlp.errors import ConfigError, ShapeError
from hiermlp.models.baselines import LinearPixels, cnn3d_micro

MICRO = "swin3d_micro_conv_window2x4_8x32"


def _items(split="train"):
    with np.load(EMBEDDED_PATH) as z:
        return z[f"{split}_images"], z[f"{split}_labels"].astype(np.int64)


def test_shrink_items_is_the_2x2_block_mean():
    items = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    small = shrink_items(items)
    assert small.shape == (3, 14, 14) and small.dtype == np.uint8
    for n, y, x in [(0, 0, 0), (1, 13, 2), (2, 7, 13)]:
        block = items[n, 2 * y : 2 * y + 2, 2 * x : 2 * x + 2].astype(float)
        assert small[n, y, x] == round(block.mean())


def test_every_frame_is_the_still_item_and_the_mover_at_its_recorded_place():
    items, labels = _items()
    small = shrink_items(items)
    clips = make_clips(small, labels, count=30, seed=5)
    assert clips.clips.shape == (30, 8, 32, 32)
    moved_across_a_window_border = 0
    for clip, mask, label, (mover, still, top, left, dy, dx, s_top, s_left), front in zip(
        clips.clips, clips.masks, clips.labels, clips.motion, clips.mover_in_front
    ):
        assert label == labels[mover] and labels[still] != labels[mover] and (dy, dx) != (0, 0)
        assert -2 <= dy <= 2 and -2 <= dx <= 2
        # independently of the generator: each pixel of frame t is the front item's value where its own value is
        # above the threshold, else the back item's, else 0; its label (clip_scenes) that item's class + 1, else 0
        for t in range(8):
            places = {"mover": (top + dy * t, left + dx * t, mover), "still": (s_top, s_left, still)}
            order = ["mover", "still"] if front else ["still", "mover"]
            want, want_label = np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8)
            for y, x in np.ndindex(32, 32):
                for kind in order:
                    oy, ox, i = places[kind]
                    if 0 <= y - oy < 14 and 0 <= x - ox < 14 and small[i][y - oy, x - ox] > 32:
                        want[y, x], want_label[y, x] = small[i][y - oy, x - ox], labels[i] + 1
                        break
            np.testing.assert_array_equal(clip[t], want)
            np.testing.assert_array_equal(mask[t], want_label)
            assert 0 <= top + dy * t <= 18 and 0 <= left + dx * t <= 18  # wholly inside in every frame
        ends = {(top // 16, left // 16), ((top + 7 * dy + 13) // 16, (left + 7 * dx + 13) // 16)}
        moved_across_a_window_border += len(ends) > 1
    assert moved_across_a_window_border > 15  # the mover's path crosses the 16-pixel windows of stage 1


def test_clips_are_deterministic_seeded_and_of_every_class():
    items, labels = _items()
    small = shrink_items(items)
    a, b = (make_clips(small, labels, count=20, seed=7) for _ in range(2))
    c = make_clips(small, labels, count=20, seed=8)
    assert a.clips.tobytes() == b.clips.tobytes() and a.clips.tobytes() != c.clips.tobytes()
    train, test = load_clips("train"), load_clips("test")
    assert len(train.clips) == 4000 and len(test.clips) == 1000
    assert np.bincount(train.labels, minlength=10).min() > 300  # every class moves, about equally often
    assert load_clips("train") is train  # cached
    with pytest.raises(ValueError, match="size - item side"):
        make_clips(small, labels, count=1, seed=0, frames=12)
    with pytest.raises(ValueError, match="splits 'train' and 'test'"):
        load_clips("val")


def test_the_normalisation_statistics_are_the_clips_own():
    x = load_clips("train").clips.astype(np.float64) / 255.0
    (mean,), (std,) = DATASET_STATS["clips"]
    assert x.mean() == pytest.approx(mean, abs=1e-4) and x.std() == pytest.approx(std, abs=1e-4)
    ds = ClipDataset(load_clips("test"))
    clip, label = ds[3]
    assert clip.shape == (1, 8, 32, 32) and clip.dtype == torch.float32 and label == ds.labels[3]
    raw = torch.from_numpy(load_clips("test").clips[3]).double() / 255.0
    torch.testing.assert_close(clip[0].double(), (raw - mean) / std, rtol=0, atol=1e-6)


def test_3d_conv_stem_is_a_strided_conv3d_then_channels_last():
    torch.manual_seed(0)
    stem = hiermlp.layers.build_layer(
        hiermlp.layers.STEMS,
        "stem",
        "conv_overlap",
        in_chans=2,
        embed_dim=5,
        kernel_size=(3, 7, 7),
        stride=(2, 4, 4),
        padding=(1, 2, 2),
        spatial_dims=3,
    )
    x = torch.randn(2, 2, 8, 32, 32)
    want = F.conv3d(x, stem.proj.weight, stem.proj.bias, stride=(2, 4, 4), padding=(1, 2, 2)).permute(0, 2, 3, 4, 1)
    torch.testing.assert_close(stem(x), want)
    assert stem.strides == (2, 4, 4) and tuple(stem(x).shape) == (2, 4, 8, 8, 5)
    with pytest.raises(ConfigError, match="one per spatial axis"):
        hiermlp.layers.build_layer(
            hiermlp.layers.STEMS, "stem", "conv_overlap", in_chans=1, embed_dim=4, stride=(2, 4), spatial_dims=3
        )


def test_clip_baselines():
    torch.manual_seed(0)
    lin = LinearPixels(img_size=(8, 32, 32), in_chans=1, num_classes=10)
    torch.nn.init.normal_(lin.fc.weight)
    x = torch.randn(3, 1, 8, 32, 32)
    torch.testing.assert_close(lin(x), x.reshape(3, -1) @ lin.fc.weight.T + lin.fc.bias)
    with pytest.raises(ShapeError, match=r"\('B', 1, 8, 32, 32\)"):
        lin(torch.randn(3, 1, 4, 32, 32))
    cnn = cnn3d_micro(num_classes=7)
    assert cnn(x).shape == (3, 7) and cnn(torch.randn(2, 1, 4, 20, 24)).shape == (2, 7)
    with pytest.raises(ConfigError, match="drop_path_rate"):
        cnn3d_micro(drop_path_rate=0.1)


def test_train_and_eval_a_micro_video_swin_on_clips(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", f"model={MICRO}", "data=clips", "img_size=32", "in_chans=1", "epochs=1", "limit_train=32"]
    args += ["limit_test=20", "batch_size=16", "eval_batch_size=10", "warmup_epochs=0", "amp=none", "device=cpu"]
    assert main([*args, f"out_dir={out}", "progress=false"]) == 0
    ckpt = hiermlp.weights.load.read_checkpoint(out / "last.pth")
    assert tuple(ckpt.data_config["input_size"]) == (1, 8, 32, 32)
    capsys.readouterr()
    assert main(["eval", str(out / "last.pth"), "--json"]) == 0  # the checkpoint's data: the 1000 test clips
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["count"] == 1000 and 0 <= m["top1"] <= 100


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["img_size=16"], "set img_size=32 (or more) in_chans=1"),
        (["cutmix=1.0"], "mixup/cutmix mix images, not clips"),
    ],
)
def test_clip_config_errors_are_one_line(tmp_path, capsys, extra, message):
    args = ["train", f"model={MICRO}", "data=clips", "img_size=32", "in_chans=1", "epochs=1", "limit_train=16"]
    assert main([*args, *extra, f"out_dir={tmp_path / 'r'}", "progress=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_clip_scenes_are_the_clips_labelled_per_voxel_on_any_canvas():
    clips, big = load_clips("test"), load_clips("test", size=40)
    ds = ClipSceneDataset(clips)
    clip, mask = ds[5]
    assert clip.shape == (1, 8, 32, 32) and mask.shape == (8, 32, 32) and mask.dtype == torch.int64
    torch.testing.assert_close(clip, ClipDataset(clips)[5][0], rtol=0, atol=0)  # the clips' own frames
    assert ds.classes[0] == "background" and len(ds.classes) == 11
    # every voxel an item shows is labelled with a class, every other is background; the mover's class is there
    np.testing.assert_array_equal(clips.masks > 0, clips.clips > 32)
    assert all(label + 1 in m for label, m in zip(clips.labels[:50], clips.masks[:50]))
    # a larger canvas: the same generator, so the same labelling rule holds there too
    assert big.clips.shape == big.masks.shape == (1000, 8, 40, 40)
    np.testing.assert_array_equal(big.masks > 0, big.clips > 32)
    assert all(label + 1 in m for label, m in zip(big.labels[:50], big.masks[:50]))


SCENE_RUN = ["train", "task=segment", "data=clip_scenes", "img_size=40", "in_chans=1", "epochs=1", "limit_train=16"]
SCENE_RUN += ["limit_test=8", "batch_size=8", "eval_batch_size=8", "warmup_epochs=0", "amp=none", "device=cpu"]
SCENE_RUN += [
    "no_aug=true",
    "model_kwargs={feature_size: 12, depths: [1, 1, 1, 1]}",
    "progress=false",
    "tensorboard=false",
]


@pytest.mark.parametrize("model", ["swin_unetr_small", "swin_unetr_mlp_small"])
def test_swin_unetr_trains_on_clip_scenes_and_its_checkpoint_evaluates_with_dice(tmp_path, capsys, model):
    out = tmp_path / "run"
    assert main([*SCENE_RUN, f"model={model}", f"out_dir={out}"]) == 0
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert len(row["class_iou"]) == 11 and 0 <= row["mdice"] <= 100 and math.isfinite(row["test_loss"])
    ckpt = hiermlp.weights.load.read_checkpoint(out / "last.pth")
    assert tuple(ckpt.data_config["input_size"]) == (1, 8, 40, 40)
    capsys.readouterr()
    # sliding-window inference over a larger canvas than the model trained at (crops of 8x40x40)
    args = ["eval", str(out / "last.pth"), "--img-size", "48", "--set", "limit_test=2", "inference=slide"]
    assert main([*args, "--json"]) == 0
    m = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert m["count"] == 2 and m["pixels"] == 2 * 8 * 48 * 48 and 0 <= m["mdice"] <= 100


def test_swin_unetr_says_in_one_line_when_its_deepest_map_is_one_voxel(tmp_path, capsys):
    run = [a if a != "img_size=40" else "img_size=32" for a in SCENE_RUN]
    assert main([*run, "model=swin_unetr_small", f"out_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "one voxel at input 8x32x32" in err, err


def test_compare_video_end_to_end(tmp_path):
    args = ["compare", "video", "only=linear,swin3d,swin3d-noshift", "seeds=2", "epochs=1", "limit_train=32"]
    args += ["limit_test=20", "bench.repeats=1", "bench.batch=4", "--no-progress", "--out", str(tmp_path / "cmp")]
    assert main(args) == 0
    data = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = {r["label"]: r for r in data["rows"]}
    assert set(rows) == {"linear", "swin3d", "swin3d-noshift"} and rows["linear"]["baseline"]
    # GMACs counted and throughput timed on whole clips (1, 8, 32, 32)
    assert rows["swin3d"]["gmacs"] > 0.001 and rows["swin3d"]["infer_img_s"]["median"] > 0
    assert rows["linear"]["gmacs"] == pytest.approx(8 * 32 * 32 * 10 / 1e9, rel=0.01)
    (claim,) = data["claims"]
    assert claim["a"] == "swin3d" and claim["b"] == "swin3d-noshift"
