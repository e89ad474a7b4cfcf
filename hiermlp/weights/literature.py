"""Official CycleMLP, AS-MLP, Wave-MLP and sMLPNet checkpoints -> hiermlp's layout.

Each official repository has its own key names; all four store per-token linear maps as 1x1 ``Conv2d``
weights ``(out, in, 1, 1)``, which become hiermlp's ``(out, in)`` linears (no official model has a 1x1
kernel anywhere else). BatchNorm buffers keep their names. ``{'model': ...}``, ``{'state_dict': ...}`` and
plain dicts are unwrapped by :func:`hiermlp.weights.load.read_state_dict` before detection.

Detection looks for a key only that family has (``attn.sfc_h`` / ``attn.tfc_h`` under ``network.``,
``axial_shift`` under ``layers.``, ``token_mix``), so none collides with the Swin layouts; AS-MLP is tried
before them because it shares Swin's ``layers.i.blocks.j`` / ``layers.i.downsample`` names.
"""

from __future__ import annotations

import re

import torch

from hiermlp.errors import CheckpointError
from hiermlp.weights.convert import StateDict, register_converter, rename


def _linears(sd: StateDict) -> StateDict:
    """Every ``(out, in, 1, 1)`` conv weight as an ``(out, in)`` linear weight."""
    return {k: v.flatten(1) if v.ndim == 4 and v.shape[-2:] == (1, 1) else v for k, v in sd.items()}


def _network_stages(sd: StateDict, name: str) -> dict[int, tuple[str, int]]:
    """CycleMLP/Wave-MLP ``network.k``: blocks (``network.k.j.*``) or a transition (``network.k.proj``).

    Returns ``k -> ("blocks", stage)`` or ``k -> ("downsample", stage it starts)``, in order.
    """
    indices = sorted({int(m.group(1)) for k in sd if (m := re.match(r"network\.(\d+)\.", k))})
    out, stage = {}, -1
    for k in indices:
        if f"network.{k}.proj.weight" in sd:
            out[k] = ("downsample", stage + 1)
        else:
            stage += 1
            out[k] = ("blocks", stage)
    if not out:
        raise CheckpointError(f"{name} checkpoint has no network.* keys")
    return out


def _convert_network(sd: StateDict, name: str) -> StateDict:
    layout = _network_stages(sd, name)

    def stage_key(m: re.Match) -> str:
        kind, stage = layout[int(m.group(1))]
        return f"stages.{stage}.{kind}."

    sd = {k: v for k, v in sd.items() if not re.match(r"norm\d+\.", k)}  # fork_feat (dense) output norms
    return _linears(
        rename(
            sd,
            [
                (r"^network\.(\d+)\.", stage_key),
                (r"\.attn\.", ".mixer."),
                (r"^head\.", "head.fc."),
            ],
        )
    )


# ---- CycleMLP (ShoufaChen/CycleMLP cycle_mlp.py) ----------------------------------------------------
def _is_cyclemlp(sd: StateDict) -> bool:
    return any(re.match(r"network\.\d+\.\d+\.attn\.sfc_h\.", k) for k in sd)


def _check_cycle_offsets(sd: StateDict) -> None:
    """The official ``offset`` buffers must be the constant cycle pattern hiermlp's Cycle FC computes."""
    from hiermlp.mixers.cycle_mlp import cycle_offsets

    for k, v in sd.items():
        if not k.endswith(".offset"):
            continue
        c = v.numel() // 2
        along = 1 if k.split(".")[-2] == "sfc_h" else 0  # sfc_h: a 1xk pseudo-kernel, offsets along W
        pairs = v.reshape(c, 2).float()
        kernel = 2 * int(pairs.abs().max()) + 1
        expect = torch.zeros(c, 2)
        expect[:, along] = torch.tensor(cycle_offsets(c, kernel), dtype=torch.float32)
        if v.numel() != 2 * c or not torch.equal(pairs, expect):
            raise CheckpointError(
                f"{k}: these Cycle FC offsets are not the constant cycle pattern (i + k//2) % k - k//2 of the "
                "official CycleFC, which is what hiermlp's Cycle FC computes; this checkpoint needs another "
                "formulation"
            )


@register_converter("cyclemlp", _is_cyclemlp)
def convert_cyclemlp(sd: StateDict) -> StateDict:
    """``network.{0,2,4,6}.j`` blocks (``attn`` -> ``mixer``), ``network.{1,3,5}.proj`` transitions,
    ``head`` -> ``head.fc``; the constant ``offset`` buffers are checked, then dropped."""
    _check_cycle_offsets(sd)
    return _convert_network({k: v for k, v in sd.items() if not k.endswith(".offset")}, "CycleMLP")


# ---- Wave-MLP (huawei-noah/Efficient-AI-Backbones wavemlp_pytorch/models/wavemlp.py) -----------------
def _is_wavemlp(sd: StateDict) -> bool:
    return any(re.match(r"network\.\d+\.\d+\.attn\.tfc_h\.", k) for k in sd)


@register_converter("wavemlp", _is_wavemlp)
def convert_wavemlp(sd: StateDict) -> StateDict:
    """CycleMLP's ``network`` layout; norms (BatchNorm or GroupNorm) keep their names and buffers."""
    return _convert_network(sd, "Wave-MLP")


# ---- AS-MLP (svip-lab/AS-MLP models/as_mlp.py) ------------------------------------------------------
def _is_asmlp(sd: StateDict) -> bool:
    return any(k.startswith("layers.") and ".axial_shift." in k for k in sd)


@register_converter("asmlp", _is_asmlp, first=True)
def convert_asmlp(sd: StateDict) -> StateDict:
    """Swin's reference layout (merging at the END of stages 0-2 -> start of 1-3), ``axial_shift`` ->
    ``mixer``, 1x1 convs (mixer, MLP, merging ``reduction``) -> linears, ``head`` -> ``head.fc``."""
    return _linears(
        rename(
            sd,
            [
                (r"^layers\.(\d+)\.downsample\.", lambda m: f"stages.{int(m.group(1)) + 1}.downsample."),
                (r"^layers\.", "stages."),
                (r"\.axial_shift\.", ".mixer."),
                (r"^head\.", "head.fc."),
            ],
        )
    )


# ---- sMLPNet (microsoft/SPACH models/smlp.py) -------------------------------------------------------
def _is_smlpnet(sd: StateDict) -> bool:
    return any(k.startswith("token_mix.") for k in sd) and any(k.startswith("to_patch_embedding.") for k in sd)


_SMLP_BLOCK_RULES = [
    (r"^token_mix\.0\.conv_merge\.BN\.", "norm1."),
    (r"^token_mix\.0\.conv_merge\.Conv\.", "mixer.dwconv."),
    (r"^token_mix\.1\.BN\.", "mixer.norm."),
    (r"^token_mix\.1\.proj_h\.", "mixer.row_mlp."),  # mixes along W (see hiermlp.mixers.smlp)
    (r"^token_mix\.1\.proh_w\.", "mixer.col_mlp."),
    (r"^token_mix\.1\.fuse\.", "mixer.fuse."),
    (r"^channel_mix\.1\.", "norm2."),
    (r"^channel_mix\.2\.net\.0\.", "mlp.fc1."),
    (r"^channel_mix\.2\.net\.3\.", "mlp.fc2."),
]


@register_converter("smlpnet", _is_smlpnet)
def convert_smlpnet(sd: StateDict) -> StateDict:
    """Flat ``token_mix.k`` / ``channel_mix.k`` lists -> ``stages.i.blocks.j`` (the stage of block k is told by
    its width, which doubles per stage), ``to_patch_embedding.0`` -> stem, ``.i`` -> ``stages.i.downsample``,
    ``batch_norm`` -> ``norm``, ``mlp_head.0`` -> ``head.fc``."""
    widths = {}
    for k, v in sd.items():
        if m := re.match(r"channel_mix\.(\d+)\.1\.weight$", k):
            widths[int(m.group(1))] = v.shape[0]
    if not widths:
        raise CheckpointError("sMLPNet checkpoint has no channel_mix.k.1.weight (LayerNorm) keys")
    stage_of, order = {}, []
    for k in sorted(widths):
        if not order or widths[k] != widths[order[-1][0]]:
            order.append((k, len(order)))
        stage_of[k] = (order[-1][1], k - order[-1][0])
    out: StateDict = {}
    for key, v in sd.items():
        if m := re.match(r"(token_mix|channel_mix)\.(\d+)\.(.*)$", key):
            stage, j = stage_of[int(m.group(2))]
            inner = rename({f"{m.group(1)}.{m.group(3)}": v}, _SMLP_BLOCK_RULES)
            (inner_key,) = inner
            if inner_key.startswith(("token_mix.", "channel_mix.")):
                raise CheckpointError(f"unexpected sMLPNet key {key!r}")
            out[f"stages.{stage}.blocks.{j}.{inner_key}"] = v
        elif m := re.match(r"to_patch_embedding\.(\d+)\.0\.(.*)$", key):
            i = int(m.group(1))
            out[f"patch_embed.proj.{m.group(2)}" if i == 0 else f"stages.{i}.downsample.proj.{m.group(2)}"] = v
        else:
            out[key] = v
    return _linears(rename(out, [(r"^batch_norm\.", "norm."), (r"^mlp_head\.0\.", "head.fc.")]))
