"""Window operators against the reference constructions (Microsoft swin_transformer.py)."""

import pytest
import torch

from hiermlp.ops import (
    cyclic_shift,
    pad_shift,
    pad_to_multiple,
    region_labels,
    relative_position_index,
    unpad_shift,
    window_mask,
    window_merge,
    window_partition,
)

SIZES = [
    (1, 7, 7, 3, (7, 7)),
    (2, 14, 21, 5, (7, 7)),
    (3, 8, 12, 2, (4, 6)),
    (1, 16, 16, 1, (8, 8)),
    (2, 6, 9, 4, (3, 3)),
]


def ref_partition(x, ws):  # reference window_partition (view/permute)
    b, h, w, c = x.shape
    x = x.view(b, h // ws[0], ws[0], w // ws[1], ws[1], c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, ws[0] * ws[1], c)


def ref_mask(h, w, ws, s):  # reference attn_mask construction: 0 allowed, -100 forbidden
    img = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
        for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    mw = ref_partition(img, (ws, ws)).squeeze(-1)
    m = mw.unsqueeze(1) - mw.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def ref_rel_index(ws):
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)


@pytest.mark.parametrize("b,h,w,c,ws", SIZES)
def test_partition_merge_round_trip(b, h, w, c, ws):
    x = torch.randn(b, h, w, c)
    win = window_partition(x, ws)
    assert win.shape == (b * (h // ws[0]) * (w // ws[1]), ws[0] * ws[1], c)
    assert torch.equal(win, ref_partition(x, ws))
    assert torch.equal(window_merge(win, ws, (h // ws[0], w // ws[1])), x)


@pytest.mark.parametrize("h,w,ws,s", [(14, 14, 7, 3), (56, 56, 7, 3), (8, 8, 4, 2), (16, 24, 8, 4), (12, 12, 12, 6)])
def test_mask_equals_reference(h, w, ws, s):
    ours = window_mask((h, w), (ws, ws), (s, s))
    ref = ref_mask(h, w, ws, s)
    assert ours.shape == ref.shape
    assert torch.equal(ours, ref == 0)


def test_mask_gives_padding_its_own_region():
    # a 5x5 map padded to 8x8 (window 4, shift 2): padded tokens never meet real ones
    labels = region_labels((8, 8), (4, 4), (2, 2), (5, 5))
    rows = (torch.arange(8) + 2) % 8  # original row held at each shifted position
    is_pad = (rows[:, None] >= 5) | (rows[None, :] >= 5)
    assert torch.equal(labels == -1, is_pad)
    mask = window_mask((8, 8), (4, 4), (2, 2), (5, 5))
    assert mask.diagonal(dim1=1, dim2=2).all()  # a token may always see itself: no empty softmax row


@pytest.mark.parametrize("ws", [2, 4, 7, 12])
def test_relative_position_index(ws):
    assert torch.equal(relative_position_index((ws, ws)), ref_rel_index(ws))


def test_shift_and_pad_shift():
    x = torch.randn(2, 8, 12, 3)
    assert torch.equal(cyclic_shift(x, (2, 3)), torch.roll(x, (-2, -3), dims=(1, 2)))
    assert torch.equal(cyclic_shift(cyclic_shift(x, (2, 3)), (-2, -3)), x)
    p = pad_shift(x, (4, 4), (2, 2))
    assert p.shape == (2, 12, 16, 3)
    assert torch.equal(unpad_shift(p, (4, 4), (2, 2)), x)
    # pad-shift windows hold the same tokens, at the same positions, as the rolled map's interior windows
    rolled = window_partition(cyclic_shift(x, (2, 2)), (4, 4)).view(2, 2, 3, 16, 3)
    padded = window_partition(p, (4, 4)).view(2, 3, 4, 16, 3)
    assert torch.equal(rolled[:, 0, 0], padded[:, 1, 1])


def test_pad_to_multiple():
    x = torch.randn(1, 5, 9, 2)
    y = pad_to_multiple(x, (4, 4))
    assert y.shape == (1, 8, 12, 2) and torch.equal(y[:, :5, :9], x) and y[:, 5:].abs().sum() == 0


def test_partition_rejects_non_multiple():
    with pytest.raises(ValueError, match="pad it first"):
        window_partition(torch.randn(1, 5, 8, 2), (4, 4))
