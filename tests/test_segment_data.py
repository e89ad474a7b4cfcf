"""Segmentation data: the scene generator's labels and determinism, joint transforms that keep image and mask
aligned (a property test), the folder layouts (ADE20K, Cityscapes, image + mask pairs), and the metrics."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hiermlp.data import EMBEDDED_PATH, JointTransform, build_seg_dataset, collate_pairs, make_scenes
from hiermlp.data.scenes import SCENE_CLASSES, load_scenes
from hiermlp.errors import ConfigError
from hiermlp.train.metrics import ConfusionMatrix
from hiermlp.train.tasks import segmentation_loss


def _items(split="train"):
    with np.load(EMBEDDED_PATH) as z:
        return z[f"{split}_images"], z[f"{split}_labels"].astype(np.int64)


def test_scene_labels_are_the_topmost_covering_item():
    items, labels = _items()
    scenes = make_scenes(items, labels, count=40, seed=3)
    overlapped = 0
    for image, mask, placed in zip(scenes.images, scenes.masks, scenes.placements):
        placed = placed[placed[:, 0] >= 0]
        assert 2 <= len(placed) <= 4
        # independently of the generator: for every pixel, the last pasted item whose pixel there is above the
        # threshold decides the label (its class + 1) and the value; no such item: background, value 0
        want_mask = np.zeros_like(mask)
        want_image = np.zeros_like(image)
        covered = np.zeros(mask.shape, int)
        for i, top, left in placed:
            ys, xs = np.nonzero(items[i] > 32)
            covered[ys + top, xs + left] += 1
        for y, x in np.ndindex(mask.shape):
            for i, top, left in placed[::-1]:
                dy, dx = y - top, x - left
                if 0 <= dy < 28 and 0 <= dx < 28 and items[i][dy, dx] > 32:
                    want_mask[y, x], want_image[y, x] = labels[i] + 1, items[i][dy, dx]
                    break
        np.testing.assert_array_equal(mask, want_mask)
        np.testing.assert_array_equal(image, want_image)
        overlapped += int((covered > 1).any())
    assert overlapped > 10  # items do overlap, so occlusion is exercised
    assert set(np.unique(scenes.masks)) == set(range(11))


def test_scenes_are_deterministic_and_seeded():
    items, labels = _items()
    a = make_scenes(items, labels, count=20, seed=7)
    b = make_scenes(items, labels, count=20, seed=7)
    c = make_scenes(items, labels, count=20, seed=8)
    assert a.images.tobytes() == b.images.tobytes() and a.masks.tobytes() == b.masks.tobytes()
    assert a.masks.tobytes() != c.masks.tobytes()
    train, test = load_scenes("train"), load_scenes("test")
    assert train.images.shape == (4000, 64, 64) and test.images.shape == (1000, 64, 64)
    assert load_scenes("train") is train  # generated once per process
    # test scenes are made of test items only: every placed item index is one of the 2k test items
    assert test.placements[..., 0].max() < 2000 and len(SCENE_CLASSES) == 11


def test_scene_label_statistics_the_docs_quote():
    # docs/segmentation.md: background everywhere scores 7.1 mIoU on 78.4% of the pixels, and the majority label of
    # each 4x4 (2x2) block, upsampled, 74.4 (84.5) mIoU: the ceiling of a stride-4 (stride-2) decoder
    masks = torch.from_numpy(load_scenes("test").masks.astype(np.int64))
    n = len(masks)
    cm = ConfusionMatrix(11)
    cm.update(torch.zeros_like(masks), masks)
    m = cm.compute()
    assert round(m["miou"], 1) == 7.1 and round(m["aacc"], 1) == 78.4
    for k, want in ((4, 74.4), (2, 84.5)):
        g = 64 // k
        blocks = masks.reshape(n, g, k, g, k).permute(0, 1, 3, 2, 4).reshape(n, g, g, k * k)
        majority = torch.nn.functional.one_hot(blocks, 11).sum(3).argmax(-1)
        cm = ConfusionMatrix(11)
        cm.update(majority.repeat_interleave(k, 1).repeat_interleave(k, 2), masks)
        assert round(cm.compute()["miou"], 1) == want, k


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(6, 60),
    w=st.integers(6, 60),
    size=st.integers(4, 48),
    lo=st.floats(0.3, 2.0),
    span=st.floats(0.0, 1.5),
    flip=st.sampled_from([0.0, 1.0]),
    seed=st.integers(0, 2**31 - 1),
)
def test_joint_transform_keeps_image_and_mask_aligned(h, w, size, lo, span, flip, seed):
    # the image's channels are each pixel's row and column; the mask encodes the same, row * w + col
    rows, cols = np.mgrid[:h, :w]
    img = Image.fromarray(np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8), "RGB")
    mask = (rows * w + cols).astype(np.int64)
    tf = JointTransform(
        is_training=True, img_size=size, mean=(0, 0, 0), std=(1 / 255,) * 3, ignore_index=-1,
        scale=(lo, lo + span), hflip=flip,
    )  # fmt: skip
    torch.manual_seed(seed)
    x, y = tf(img, mask)
    assert x.shape == (3, size, size) and y.shape == (size, size)
    valid = y >= 0
    # padding: the mask's ignore region and the image's zero fill are the same pixels
    assert torch.equal(x[2].round() == 7, valid)
    r_mask, c_mask = (y[valid] // w).double(), (y[valid] % w).double()
    # bilinear image coordinates vs nearest mask coordinates: the same source point, within half a pixel
    assert (x[0][valid].double() - r_mask).abs().max() <= 0.5 + 1e-3
    assert (x[1][valid].double() - c_mask).abs().max() <= 0.5 + 1e-3


def test_eval_transform_keeps_size_and_labels():
    tf = JointTransform(is_training=False, img_size=16, mean=(0.5,), std=(0.5,))
    mask = np.random.default_rng(0).integers(0, 5, (30, 41))
    x, y = tf(Image.fromarray(np.zeros((30, 41), np.uint8)), mask)
    assert x.shape == (1, 30, 41) and torch.equal(y, torch.from_numpy(mask))
    with pytest.raises(ValueError, match="differ in size"):
        tf(Image.fromarray(np.zeros((30, 40), np.uint8)), mask)


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_folder_layouts_map_labels_and_keep_sizes(tmp_path):
    rng = np.random.default_rng(0)
    # ADE20K: 0 is "other" (ignored), 1..150 -> 0..149
    ade = tmp_path / "ade"
    for name, shape in (("a", (10, 12)), ("b", (14, 9))):
        _png(ade / "images" / "validation" / f"ADE_val_{name}.jpg", rng.integers(0, 255, (*shape, 3)))
        _png(ade / "annotations" / "validation" / f"ADE_val_{name}.png", np.full(shape, 3) * (np.arange(shape[1]) % 2))
    ds = build_seg_dataset("ade20k", split="val", root=ade, mode="RGB")
    _, m = ds[0]
    assert set(np.unique(m)) == {255, 2} and len(ds.classes) == 150
    tf = JointTransform(is_training=False, img_size=8, mean=(0, 0, 0), std=(1, 1, 1))
    ds.transform = tf
    xs, _ = collate_pairs([ds[0], ds[1]])  # two sizes: lists, evaluated one by one
    assert isinstance(xs, list) and [tuple(x.shape[1:]) for x in xs] == [(10, 12), (14, 9)]
    # Cityscapes label ids -> train ids (26 = car -> 13; 1 = ego vehicle -> ignored)
    city = tmp_path / "city"
    _png(city / "leftImg8bit" / "val" / "lindau" / "lindau_0_0_leftImg8bit.png", rng.integers(0, 255, (6, 8, 3)))
    _png(
        city / "gtFine" / "val" / "lindau" / "lindau_0_0_gtFine_labelIds.png",
        np.array([[26, 1, 7, 33]] * 6)[:, [0, 1, 2, 3, 0, 1, 2, 3]],
    )
    _, m = build_seg_dataset("cityscapes", split="val", root=city, mode="RGB")[0]
    assert m[0].tolist() == [13, 255, 0, 18] * 2
    # a plain folder: a missing mask is named
    folder = tmp_path / "pairs"
    _png(folder / "train" / "images" / "x.png", np.zeros((4, 4)))
    _png(folder / "train" / "masks" / "y.png", np.zeros((4, 4)))
    with pytest.raises(FileNotFoundError, match=r"have no mask, e\.g\. .*x\.png"):
        build_seg_dataset("seg_folder", split="train", root=folder)


# ---- metrics ---------------------------------------------------------------------------------------------------
def test_miou_from_a_hand_made_confusion_matrix():
    # rows true, columns predicted:   [[3, 1, 0, 0],
    #                                  [0, 2, 2, 0],
    #                                  [0, 0, 0, 0],   class 2 only predicted: IoU 0, counted
    #                                  [0, 0, 0, 0]]   class 3 nowhere: left out of every mean
    target = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 255, 255])
    pred = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 3, 0])
    cm = ConfusionMatrix(4, ignore_index=255)
    cm.update(pred[:5].reshape(1, 5), target[:5].reshape(1, 5))  # two batches of any shape
    cm.update(pred[5:], target[5:])
    assert cm.mat.tolist() == [[3, 1, 0, 0], [0, 2, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    m = cm.compute()
    # IoU: 3 / (4 + 3 - 3) = 75, 2 / (4 + 3 - 2) = 40, 0 / 2 = 0; accuracy: 3/4, 2/4; Dice: 6/7, 4/7, 0
    assert m["class_iou"] == [75.0, 40.0, 0.0, None]
    assert m["miou"] == pytest.approx((75 + 40 + 0) / 3)
    assert m["macc"] == pytest.approx((75 + 50) / 2)
    assert m["aacc"] == pytest.approx(100 * 5 / 8)
    assert m["mdice"] == pytest.approx(100 * (6 / 7 + 4 / 7 + 0) / 3)
    assert m["pixels"] == 8


def test_miou_pools_batches_instead_of_averaging_them():
    a = (torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]))  # batch 1: IoU0 = 3/4, IoU1 = 0 -> 37.5
    b = (torch.tensor([1]), torch.tensor([1]))  # batch 2: IoU1 = 1 -> 100
    pooled = ConfusionMatrix(2)
    for p, t in (a, b):
        pooled.update(p, t)
    assert pooled.compute()["miou"] == pytest.approx((75 + 50) / 2)  # not (37.5 + 100) / 2


def test_labels_outside_the_classes_are_an_error_naming_them():
    cm = ConfusionMatrix(3, ignore_index=255)
    with pytest.raises(
        ConfigError, match=r"a mask holds label 7, which is neither a class \(0\.\.2\) nor ignore_index=255"
    ):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ConfigError, match="label 9"):
        segmentation_loss(torch.zeros(1, 3, 2), torch.tensor([[0, 9]]), ignore_index=255)


def test_segmentation_loss_averages_valid_pixels_in_any_dimension():
    logits = torch.randn(2, 4, 3, 5, 6, requires_grad=True)  # (B, K, D, H, W): volumes too
    target = torch.randint(0, 4, (2, 3, 5, 6))
    target[0, 0] = 255
    loss = segmentation_loss(logits, target, ignore_index=255)
    keep = target != 255
    want = torch.nn.functional.cross_entropy(logits.movedim(1, -1)[keep], target[keep])
    torch.testing.assert_close(loss, want)
    empty = segmentation_loss(logits, torch.full_like(target, 255), ignore_index=255)
    empty.backward()
    assert empty.item() == 0.0 and not math.isnan(empty.item()) and logits.grad.abs().sum() == 0
