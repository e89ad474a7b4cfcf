"""hiermlp backbones under torchvision's detectors, and attention maps read through a hook."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

import hiermlp
from hiermlp.detection import HierBackbone, fpn_backbone
from hiermlp.models.features import record_attention
from hiermlp.models.zoo import cfg

# a Swin small enough to train a detector for a few steps at 800x1216 on a CPU in seconds
MICRO = "micro_swin_for_tests"
hiermlp.register_model(
    MICRO,
    family="swin",
    overwrite=True,
    pretrained_cfg=cfg(),  # a complete (weightless) cfg: the registry-wide tests may collect this row too
    embed_dim=8,
    depths=(2, 2, 2, 2),
    num_heads=(1, 1, 2, 2),
    window_size=7,
    drop_path_rate=0.0,
)
DOC = Path(__file__).resolve().parents[1] / "docs" / "detection.md"


def doc_block(marker: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"<!-- {marker} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"docs/detection.md has no python block after <!-- {marker} -->"
    return match.group(1)


def test_docs_detection_example_trains_and_evaluates():
    code = doc_block("detection-example")
    # the page's model and FPN width, swapped for the micro model (the only edits)
    code = code.replace('MODEL = "swin_tiny_patch4_window7_224"', f"MODEL = {MICRO!r}", 1)
    code = code.replace("out_channels=256", "out_channels=32", 1)
    assert MICRO in code and "out_channels=32" in code
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, str(DOC), "exec"), scope)
    history = scope["history"]
    assert len(history) >= 4 and all(torch.isfinite(torch.tensor(history)))
    assert history[-1] < history[0], history  # the same batch every step: the loss goes down
    detections = scope["detections"]
    assert len(detections) == 2 and set(detections[0]) == {"boxes", "labels", "scores"}


def test_mask_rcnn_train_and_eval_steps():
    torch.manual_seed(0)
    backbone = fpn_backbone(MICRO, out_channels=32, frozen_stages=1)
    model = MaskRCNN(
        backbone,
        min_size=800,
        max_size=1216,
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100,
        box_batch_size_per_image=64,
        box_head=TwoMLPHead(32 * 7 * 7, 64),
        box_predictor=FastRCNNPredictor(64, 3),
        mask_head=MaskRCNNHeads(32, (32, 32), 1),
        mask_predictor=MaskRCNNPredictor(32, 32, 3),
    )
    images = [torch.rand(3, 800, 1216), torch.rand(3, 613, 911)]  # a detection size and an odd one
    masks = [torch.zeros(1, *im.shape[1:], dtype=torch.uint8) for im in images]
    masks[0][:, 100:380, 120:400] = 1
    masks[1][:, 60:500, 50:300] = 1
    targets = [
        dict(boxes=torch.tensor([[120.0, 100.0, 400.0, 380.0]]), labels=torch.tensor([1]), masks=masks[0]),
        dict(boxes=torch.tensor([[50.0, 60.0, 300.0, 500.0]]), labels=torch.tensor([2]), masks=masks[1]),
    ]
    model.train()
    losses = model(images, targets)
    assert {"loss_mask", "loss_classifier", "loss_objectness"} <= set(losses)
    sum(losses.values()).backward()
    frozen = [n for n, p in model.backbone.body.named_parameters() if p.grad is None]
    assert frozen and all(n.startswith(("patch_embed", "stages.0", "stages.1.downsample", "norm0")) for n in frozen)
    model.eval()
    with torch.no_grad():
        out = model(images[1:])
    assert set(out[0]) == {"boxes", "labels", "scores", "masks"}
    assert out[0]["masks"].shape[-2:] == (613, 911)


def test_backbone_outputs_frozen_stages_norm_eval():
    class ChannelsLastBN(nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    model = hiermlp.create_model(MICRO, norm_layer=ChannelsLastBN)
    body = HierBackbone(model, frozen_stages=2, norm_eval=True).train()
    x = torch.randn(2, 3, 613, 911)
    out = body(x)
    # 613x911 -> 154x228 -> 77x114 -> 39x57 -> 20x29 (each step rounds up), NCHW, one norm per output
    assert [tuple(t.shape) for t in out.values()] == [
        (2, 8, 154, 228), (2, 16, 77, 114), (2, 32, 39, 57), (2, 64, 20, 29),
    ]  # fmt: skip
    assert list(body.state_dict())[-8:] == [f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")]
    frozen = {n for n, p in body.named_parameters() if not p.requires_grad}
    frozen_parts = ("patch_embed.", "stages.0.", "stages.1.", "stages.2.downsample.", "norm0.", "norm1.")
    assert frozen == {n for n, _ in body.named_parameters() if n.startswith(frozen_parts)}
    assert body.stages[2].blocks[0].norm1.weight.requires_grad  # stage 2's blocks train
    assert not body.stages[2].downsample.training and body.stages[2].blocks[0].training
    # norm_eval: BatchNorm statistics stay as they were while training
    bn = body.stages[3].blocks[0].norm1
    before = bn.running_mean.clone()
    body(x)
    assert not bn.training and torch.equal(bn.running_mean, before)
    with pytest.raises(hiermlp.ConfigError, match=r"frozen_stages must be in -1\.\.4"):
        HierBackbone(model, frozen_stages=5)


def test_attention_maps_through_a_hook():
    model = hiermlp.create_model(MICRO).eval()
    x = torch.randn(2, 3, 56, 56)
    with record_attention(model) as maps, torch.no_grad():
        model(x)
    assert len(maps) == 8 and not model.stages[0].blocks[1].mixer._forward_hooks  # hooks removed
    shifted = maps["stages.0.blocks.1.mixer"]  # 14x14 map, window 7, shift 3: 4 windows of 49 tokens
    assert shifted.shape == (2, 4, 1, 49, 49)
    torch.testing.assert_close(shifted.sum(-1), torch.ones(2, 4, 1, 49))
    assert (shifted[:, 3] == 0).any() and not (maps["stages.0.blocks.0.mixer"] == 0).any()  # the shift mask
    # the recorded weights are the ones the mixer applies: proj(attn @ v) is its output
    block = model.stages[0].blocks[1]
    captured = {}
    handle = block.mixer.register_forward_hook(lambda m, a, o: captured.update(x=a[0], mask=a[1], out=o))
    with record_attention(model) as maps, torch.no_grad():
        model(x)
    handle.remove()
    mixer = block.mixer
    v = mixer.qkv(captured["x"]).unflatten(-1, (3, 1, -1))[:, :, 2].transpose(1, 2)  # (B*nW, heads, N, d)
    attn = maps["stages.0.blocks.1.mixer"].flatten(0, 1)
    recomputed = mixer.proj((attn @ v).transpose(1, 2).flatten(2))
    torch.testing.assert_close(recomputed, captured["out"], atol=1e-5, rtol=1e-5)
    with pytest.raises(hiermlp.ConfigError, match="no attention mixer"):
        record_attention(hiermlp.create_model("winpool_tiny_patch4_window7_224"))
