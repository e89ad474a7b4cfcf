"""Stem and downsampling: patch embedding and patch merging, channels-last."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from hiermlp.errors import ShapeError
from hiermlp.layers.linear import Linear
from hiermlp.ops import is_symbolic, pad_to_multiple, padding_for


class PatchEmbed(nn.Module):
    """Image to patch tokens, ``(B, C_in, H, W) -> (B, ceil(H/p), ceil(W/p), C)``.

    A strided convolution then an optional norm, as in Swin. Unlike a fixed-size stem, H and W need not be
    multiples of the patch: the image is zero-padded bottom/right up to the next multiple (what the reference
    detection code does) rather than rejected.
    """

    def __init__(
        self,
        *,
        patch_size: int = 4,
        in_chans: int = 3,
        embed_dim: int = 96,
        norm_layer: type[nn.Module] | None = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.in_chans = in_chans
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ShapeError(
                f"expected images of shape (B, {self.in_chans}, H, W), got {tuple(x.shape)}; build the model "
                f"with in_chans={x.shape[1] if x.ndim == 4 else '...'} or convert the images"
            )
        ph, pw = self.patch_size
        if x.shape[-2] < ph or x.shape[-1] < pw:
            raise ShapeError(
                f"image {x.shape[-2]}x{x.shape[-1]} is smaller than one {ph}x{pw} patch; resize it to at "
                f"least {ph}x{pw} (the model was trained near its pretrained_cfg input_size)"
            )
        if is_symbolic(*x.shape[-2:]) or x.shape[-2] % ph or x.shape[-1] % pw:
            pad_h, pad_w = padding_for(x.shape[-2:], self.patch_size)
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = rearrange(self.proj(x), "b c h w -> b h w c")
        return self.norm(x)


class PatchMerging(nn.Module):
    """Swin's 2x downsampling, ``(B, H, W, C) -> (B, ceil(H/2), ceil(W/2), out_dim)``.

    Concatenates each 2x2 neighbourhood in the reference channel order (x[0::2, 0::2], x[1::2, 0::2],
    x[0::2, 1::2], x[1::2, 1::2]), then LayerNorm(4C) and a bias-free Linear(4C, out_dim). Odd sizes are
    zero-padded.
    """

    def __init__(self, *, dim: int, out_dim: int | None = None, norm_layer: type[nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.dim = dim
        self.out_dim = out_dim or 2 * dim
        self.norm = norm_layer(4 * dim)
        self.reduction = Linear(4 * dim, self.out_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, (2, 2))
        x = rearrange(x, "b (h s1) (w s2) c -> b h w (s2 s1 c)", s1=2, s2=2)
        return self.reduction(self.norm(x))
