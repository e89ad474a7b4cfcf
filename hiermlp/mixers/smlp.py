"""sMLPNet's token mixer (Tang et al. 2021, "Sparse MLP for Image Recognition: Is Self-Attention Really
Necessary?").

The sparse MLP mixes each token only with the tokens of its own row and its own column: one linear map
along W shared by every row, one along H shared by every column, and a linear fusion of the input with
both. It is preceded by a depthwise 3x3 convolution (the official ``DWConvBlock``). The maps along W and H
are sized to the feature map, so a model is tied to its input resolution. Official code: microsoft/SPACH
``models/smlp.py``.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from hiermlp.errors import ConfigError, ShapeError
from hiermlp.layers import BatchNormNHWC, ConvCL
from hiermlp.mixers.base import register_mixer

# the size check compares traced sizes: an opaque call under torch.fx (timm's and torchvision's feature extractors)
torch.fx.wrap("check_feat_size")
# einops calls run as opaque nodes under torch.fx (it does not know fx proxies)
torch.fx.wrap("rearrange")


def check_feat_size(x: torch.Tensor, feat_size: tuple[int, int]) -> torch.Tensor:
    """``x`` (B, H, W, C), or a ShapeError naming the supported size if ``(H, W) != feat_size``."""
    h, w = x.shape[1:3]
    if (h, w) != feat_size:
        fh, fw = feat_size
        raise ShapeError(
            f"sMLPNet is resolution-tied: this sparse MLP mixes whole {fh}x{fw} rows and columns but got a "
            f"{h}x{w} map; feed the input size the model was built for (its pretrained_cfg input_size) or "
            "build it with that img_size"
        )
    return x


@register_mixer("smlp")
class SparseMlp(nn.Module):
    """sMLPNet's token mixing, ``(B, H, W, C) -> (B, H, W, C)`` for the ``feat_size`` it was built for.

    ``GELU -> dwconv 3x3 -> BatchNorm -> GELU``, then ``fuse(cat(x, row_mlp(x), col_mlp(x)))``. In the
    official block the first BatchNorm (``DWConvBlock.conv_merge.BN``) comes before the GELU: in hiermlp it
    is the block's pre-norm (``norm1``). Official names: ``dwconv`` = ``conv_merge.Conv``, ``norm`` =
    ``sMLPBlock.BN``, ``row_mlp`` = ``proj_h`` (a ``Conv2d(W, W, 1)`` on a permuted map: it mixes along W,
    within each row), ``col_mlp`` = ``proh_w`` (along H, within each column), ``fuse`` = ``fuse``.

    Args:
        dim: Channels C.
        feat_size: ``(H, W)`` of the stage's map (the block passes the stage's nominal size).
    """

    kind = "map"

    def __init__(self, dim: int, *, feat_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        if feat_size is None or len(feat_size) != 2:
            raise ConfigError(
                f"the smlp mixer is tied to its map size and needs feat_size=(H, W), got {feat_size!r}; in a "
                "HierNet the stage passes its nominal map size (from img_size)"
            )
        self.dim = dim
        self.feat_size = (int(feat_size[0]), int(feat_size[1]))
        fh, fw = self.feat_size
        self.act = nn.GELU()
        self.dwconv = ConvCL(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.norm = BatchNormNHWC(dim)
        self.row_mlp = nn.Linear(fw, fw)
        self.col_mlp = nn.Linear(fh, fh)
        self.fuse = nn.Linear(3 * dim, dim, bias=False)

    def init_weights(self) -> None:
        """The official init: PyTorch's defaults (``sMLPNet`` has no init of its own)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.BatchNorm2d)):
                m.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm(self.dwconv(self.act(check_feat_size(x, self.feat_size)))))
        b, h, w, _ = x.shape
        # along W within each row: one (W, W) @ (W, C) product per row, batched over the B*H rows
        rows = rearrange(x, "b h w c -> (b h) w c")
        x_row = torch.baddbmm(self.row_mlp.bias[:, None], self.row_mlp.weight.expand(b * h, w, w), rows)
        # along H within each column: one (H, H) @ (H, W*C) product per image
        cols = rearrange(x, "b h w c -> b h (w c)")
        x_col = torch.baddbmm(self.col_mlp.bias[:, None], self.col_mlp.weight.expand(b, h, h), cols)
        return self.fuse(torch.cat([x, x_row.view_as(x), x_col.view_as(x)], dim=-1))

    def extra_repr(self) -> str:
        return f"dim={self.dim}, feat_size={self.feat_size}"
