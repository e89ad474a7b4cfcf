"""Segmentation models: UPerNet's size against the paper, mmseg checkpoints against an independent formulation of
mmseg's heads, the registry's task marker, and sliding-window inference."""

import pytest
import timm
import torch
from torch import nn

import hiermlp
from hiermlp.errors import ConfigError, ShapeError
from hiermlp.models.segment import HierSegmentor, segment_logits, slide_logits
from hiermlp.testing.mmseg_reference import encoder_decoder_logits, mmseg_head_state, param_count

from .conftest import TINY_SWIN, randomize_
from .test_layouts import to_mmpretrain
from .test_swin import to_microsoft_layout

# paper (Swin, Table 3): UPerNet params; the backbones' timm names and channels
PAPER = {
    "upernet_swin_tiny_patch4_window7_512": (60e6, "swin_tiny_patch4_window7_224", (96, 192, 384, 768)),
    "upernet_swin_small_patch4_window7_512": (81e6, "swin_small_patch4_window7_224", (96, 192, 384, 768)),
    "upernet_swin_base_patch4_window7_512": (121e6, "swin_base_patch4_window7_224", (128, 256, 512, 1024)),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_upernet_params_are_mmseg_config_and_paper(name):
    paper, backbone, dims = PAPER[name]
    with torch.device("meta"):
        ours = sum(p.numel() for p in hiermlp.create_model(name).parameters())
        # mmseg's model: the Swin backbone (timm's, without classifier; its final norm is mmseg's norm3), the
        # output norms norm0..norm2, and the heads as mmseg's config shapes them (150 classes)
        swin = sum(p.numel() for p in timm.create_model(backbone, num_classes=0).parameters())
    heads = param_count(mmseg_head_state(dims, 150))
    assert ours == swin + 2 * sum(dims[:3]) + heads
    assert abs(ours - paper) / paper < 0.01, ours
    if name.startswith("upernet_swin_tiny"):
        assert ours == 59_941_862  # mmseg's UPerNet Swin-T ADE20K: 27.52M backbone, 31.50M UPerHead, 0.92M FCNHead


TINY_BACKBONE = {k: v for k, v in TINY_SWIN.items() if k not in ("num_classes", "drop_path_rate", "img_size")}
TINY_HEADS = dict(channels=32, aux_channels=16, num_classes=5)


def tiny_segmentor(**kw):
    kw = {**TINY_BACKBONE, **TINY_HEADS, "img_size": 32, "drop_path_rate": 0.0, **kw}
    return hiermlp.create_model("upernet_swin_tiny_patch4_window7_512", **kw)


def test_mmseg_checkpoint_loads_and_matches_reference_heads():
    torch.manual_seed(0)
    # 64x64: stage maps 32, 16, 8 (shifted windows of 4) and 4 (one window). At sizes that are not window
    # multiples mmseg's Swin attends to its zero padding where hiermlp's blocks mask it (docs/segmentation.md)
    timm_kw = {k: v for k, v in TINY_SWIN.items() if k != "drop_path_rate"} | dict(img_size=64)
    ref = randomize_(timm.models.swin_transformer.SwinTransformer(**timm_kw)).eval()
    mm = {k: v for k, v in to_mmpretrain(to_microsoft_layout(ref.state_dict())["model"]).items() if "head" not in k}
    dims = (16, 32, 64, 128)
    for i, c in enumerate(dims[:3]):  # the output norms a classifier has no counterpart for
        mm[f"backbone.norm{i}.weight"], mm[f"backbone.norm{i}.bias"] = 1 + 0.1 * torch.randn(c), 0.1 * torch.randn(c)
    mm |= mmseg_head_state(dims, 5, channels=32, aux_channels=16, seed=1)

    ours = tiny_segmentor(img_size=64).eval()
    result = hiermlp.load_checkpoint(ours, {"meta": {}, "state_dict": mm})  # mmseg files wrap state_dict
    assert result.layout == "segmentor" and not result.missing and not result.unexpected

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats, h = [], ref.patch_embed(x)
        for i, layer in enumerate(ref.layers):
            h = layer(h)
            y = nn.functional.layer_norm(h, h.shape[-1:], mm[f"backbone.norm{i}.weight"], mm[f"backbone.norm{i}.bias"])
            feats.append(y.permute(0, 3, 1, 2))
        want, want_aux = encoder_decoder_logits(mm, feats, x.shape[2:])
        got, got_aux = ours(x, aux=True)
    assert got.shape == (2, 5, 64, 64)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_aux, want_aux, atol=1e-5, rtol=0)


def test_segmentor_round_trips_and_new_class_count_reinitialises_both_classifiers(tmp_path):
    model = randomize_(tiny_segmentor()).eval()
    path = hiermlp.weights.save_weights(model, tmp_path / "seg.safetensors")
    again = tiny_segmentor().eval()
    assert hiermlp.load_checkpoint(again, path).layout == "segmentor"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
    other = tiny_segmentor(num_classes=7)
    result = hiermlp.load_checkpoint(other, path)
    assert sorted(result.reinitialized) == sorted(
        f"{h}.conv_seg.{p}" for h in ("decode_head", "auxiliary_head") for p in ("weight", "bias")
    )
    trained = hiermlp.model_from_checkpoint(path, "upernet_swin_tiny_patch4_window7_512", **TINY_BACKBONE, **{
        k: v for k, v in TINY_HEADS.items() if k != "num_classes"})  # fmt: skip
    assert trained.num_classes == 5  # read from conv_seg


def test_segmentation_rows_are_in_hiermlps_registry_only():
    seg = hiermlp.list_models(task="segment")
    assert {"upernet_swin_tiny_patch4_window7_512", "upernet_swin_mlp_tiny_c24_patch4_window8_512"} <= set(seg)
    assert not set(seg) & set(hiermlp.list_models())  # the default lists classifiers, as timm's mirror does
    assert set(seg) <= set(hiermlp.list_models(task=None))
    assert not [n for n in timm.list_models("hiermlp_*") if n[len("hiermlp_") :] in seg]
    with pytest.raises(ConfigError, match="features_only"):
        hiermlp.create_model("upernet_swin_tiny_patch4_window7_512", features_only=True)


@pytest.mark.parametrize("head", ["upernet", "fpn"])
@pytest.mark.parametrize("mixer", ["attention", "spatial_mlp", "cycle"])
def test_any_family_takes_either_head_at_any_size(head, mixer):
    model = tiny_segmentor(head=head, mixer=mixer, aux_channels=16 if head == "upernet" else 0, window_size=4)
    x = torch.randn(2, 3, 44, 36)
    logits, aux = model(x, aux=True)
    assert logits.shape == (2, 5, 44, 36) and (aux is None) == (head == "fpn")
    (logits.mean() + (aux.mean() if aux is not None else 0)).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_bad_options_and_inputs_are_one_line_errors():
    with pytest.raises(ConfigError, match="head='unet' is not a decode head"):
        HierSegmentor(head="unet")
    with pytest.raises(ConfigError, match=r"unknown segmentation model option.*embed_dims.*Did you mean: embed_dim"):
        HierSegmentor(embed_dims=96)
    with pytest.raises(ConfigError, match="aux_index=4 is out of range"):
        tiny_segmentor(aux_index=4)
    model = tiny_segmentor().train()
    with pytest.raises(ShapeError, match="at least 2 images"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ShapeError, match=r"expected images of shape \(B, 3, H, W\)"):
        model(torch.randn(2, 1, 32, 32))


class _Identity(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * 1.0


def test_slide_inference_places_and_averages_crops_as_mmseg():
    x = torch.randn(1, 2, 512, 2048)
    model = _Identity()
    out = slide_logits(model, x, crop=(512, 512), stride=(341, 341))
    torch.testing.assert_close(out, x, atol=0, rtol=0)  # every crop back in its place, averages of equal values
    assert model.calls == 1 * 6  # mmseg: h_grids = 1, w_grids = (2048 - 512 + 340) // 341 + 1 = 6
    ones = slide_logits(lambda t: torch.ones_like(t), x, crop=(300, 300), stride=(200, 200))
    torch.testing.assert_close(ones, torch.ones_like(x))  # count-normalised: overlaps do not add up
    # a map smaller than the crop is one crop of its own size
    small = torch.randn(1, 2, 20, 30)
    torch.testing.assert_close(segment_logits(_Identity(), small, mode="slide", crop=(64, 64)), small)


def _mmseg_slide_inference(model, img, crop, stride):
    """mmseg's ``EncoderDecoder.slide_inference`` (1.x), transcribed for the test."""
    (h_stride, w_stride), (h_crop, w_crop) = stride, crop
    batch, _, h_img, w_img = img.shape
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    preds, count_mat = None, img.new_zeros((batch, 1, h_img, w_img))
    for h_idx in range(h_grids):
        for w_idx in range(w_grids):
            y1, x1 = h_idx * h_stride, w_idx * w_stride
            y2, x2 = min(y1 + h_crop, h_img), min(x1 + w_crop, w_img)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            crop_seg_logit = model(img[:, :, y1:y2, x1:x2])
            if preds is None:
                preds = img.new_zeros((batch, crop_seg_logit.shape[1], h_img, w_img))
            preds += nn.functional.pad(crop_seg_logit, (int(x1), int(w_img - x2), int(y1), int(h_img - y2)))
            count_mat[:, :, y1:y2, x1:x2] += 1
    return preds / count_mat


def test_slide_inference_equals_mmsegs_for_a_model_that_sees_its_crop():
    # each crop's output depends on the whole crop (its mean), so misplaced or miscounted crops change the result
    def context(t):
        return torch.cat([t - t.mean(dim=(2, 3), keepdim=True), t.amax(dim=(2, 3), keepdim=True).expand_as(t)], 1)

    x = torch.randn(2, 3, 70, 97)
    for crop, stride in (((32, 32), (21, 21)), ((64, 40), (20, 30)), ((80, 120), (10, 10))):
        want = _mmseg_slide_inference(context, x, crop, stride)
        torch.testing.assert_close(slide_logits(context, x, crop=crop, stride=stride), want, atol=1e-6, rtol=0)


def test_slide_and_whole_agree_for_a_per_pixel_model():
    model = hiermlp.create_model("pixel_linear", in_chans=3, num_classes=4).eval()
    x = torch.randn(2, 3, 70, 90)
    with torch.no_grad():
        whole = segment_logits(model, x)
        slide = segment_logits(model, x, mode="slide", crop=(32, 32), stride=(20, 24))
    torch.testing.assert_close(slide, whole, atol=1e-6, rtol=0)
    with pytest.raises(ConfigError, match="inference mode 'tiles' is unknown"):
        segment_logits(model, x, mode="tiles")


def test_a_classifier_checkpoint_starts_a_segmentors_backbone(tmp_path):
    # the Swin recipe: an ImageNet classifier's weights initialise the segmentor's backbone; heads start fresh
    backbone = dict(TINY_BACKBONE, in_chans=1, img_size=32)  # the same window rule as the segmentor at 32
    classifier = randomize_(hiermlp.create_model("swin_tiny_patch4_window7_224", **backbone, num_classes=10))
    path = hiermlp.weights.save_weights(classifier, tmp_path / "cls.safetensors")
    seg = hiermlp.model_from_checkpoint(
        path, "upernet_swin_tiny_patch4_window7_512", finetune=True, **TINY_BACKBONE, **TINY_HEADS, img_size=32
    )
    assert seg.in_chans == 1 and seg.num_classes == 5  # channels read from the stem, classes as asked
    ours, theirs = seg.backbone.state_dict(), classifier.state_dict()
    shared = [k for k in theirs if k.startswith(("patch_embed.", "stages."))]
    assert shared and all(torch.equal(ours[k], theirs[k]) for k in shared)
    with pytest.raises(hiermlp.errors.CheckpointError, match="do not fit this segmentor's backbone"):
        hiermlp.model_from_checkpoint(
            path, "upernet_swin_tiny_patch4_window7_512", finetune=True, **{**TINY_BACKBONE, "embed_dim": 24},
            **TINY_HEADS,
        )  # fmt: skip
