"""What a model is, without training anything: params, GMACs, output and stage shapes, mixers and windows;
and what this machine's fast path is.

:func:`model_info` and :func:`machine_info` are the library entry points; ``hiermlp info``, ``hiermlp info
--machine`` and ``hiermlp list`` (:mod:`hiermlp.cli.info`) print them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from hiermlp.bench.flops import count_gmacs
from hiermlp.errors import ConfigError
from hiermlp.factory import create_model
from hiermlp.limits import check_bytes

__all__ = ["machine_info", "model_info"]


def machine_info(*, remeasure: bool = False) -> dict[str, Any]:
    """This machine's profile (measured once per machine and cached, or measured again with ``remeasure``),
    the float32 GEMM path in force and why, and what ``amp: auto`` means here."""
    from hiermlp.accel import machine
    from hiermlp.accel.linear import gemm_choice
    from hiermlp.train.build import resolve_amp

    p = machine.profile(remeasure=remeasure)
    choice = gemm_choice()
    return {
        "machine": {k: v for k, v in p.key.items() if k not in ("flags", "shapes")},
        "bf16_flags": sorted(machine.cpu_flags() & machine.BF16_FLAGS),
        "native_bf16": machine.native_bf16("cpu"),
        "amp_auto": resolve_amp("auto", "cpu"),
        "rates_gflops": {k: round(v, 1) for k, v in p.rates.items()},
        "peak_gflops": round(p.peak, 1),
        "bf16_slowdown": None if p.bf16_slowdown is None else round(p.bf16_slowdown, 2),
        "profile_onednn": p.onednn,
        "margin": machine.MARGIN,
        "gemm": choice["gemm"],
        "gemm_choice": choice["gemm_choice"],
        "profile_attention": dict(p.attention),
        "cpu_attention_explicit": choice.get("cpu_attention_explicit"),
        "measured": p.measured,
        "measured_load": p.load,
        "source": p.source,
        "cache": None if p.path is None else str(p.path),
    }


def model_info(
    name: str,
    *,
    img_size: int | Sequence[int] | None = None,
    batch: int = 1,
    num_classes: int | None = None,
    in_chans: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the registered model ``name`` (with ``model_kwargs`` over its row's options) and run one random
    probe batch ``(batch, C, H, W)`` through it.

    Returns ``model``, ``params``, ``params_m``, ``gmacs`` (at the probe size), ``input``, ``output`` and
    ``stages`` (shapes; a segmentor's are its backbone's, NCHW), per stage the ``mixers``, ``windows`` and
    ``shifts`` (None for a map mixer, which sees the whole feature map), and ``img_size`` ``(H, W)`` of the probe
    (default: the model's cfg).

    Raises:
        ConfigError: an option value no model can use (batch < 1, sizes < 1, num_classes < 0, in_chans < 1).
    """
    size = None if img_size is None else ([img_size] if isinstance(img_size, int) else list(img_size))
    if batch < 1:
        raise ConfigError(f"--batch {batch} is invalid: it must be >= 1")
    if size is not None and (len(size) not in (1, 2, 3) or min(size) < 1):
        raise ConfigError(f"--img-size {' '.join(map(str, size))} is invalid: give H or H W (T H W), each >= 1")
    if num_classes is not None and num_classes < 0:
        raise ConfigError(f"--num-classes {num_classes} is invalid: it must be >= 0 (0 = no head)")
    if in_chans is not None and in_chans < 1:
        raise ConfigError(f"--in-chans {in_chans} is invalid: it must be >= 1")
    kwargs = dict(model_kwargs or {})
    kwargs.update({k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None})
    model = create_model(name, **kwargs).eval()
    c, *spatial = model.pretrained_cfg["input_size"]  # (C, H, W), or (C, T, H, W) / (C, L) for 3-D / 1-D rows
    if size and len(spatial) == 2:
        spatial = [size[0], size[-1]]
    elif size:
        if len(size) not in (1, len(spatial)):
            raise ConfigError(f"--img-size: {name} has {len(spatial)} spatial axes; give 1 or {len(spatial)} sizes")
        spatial = size * len(spatial) if len(size) == 1 else size
    shown = f"--batch {batch} --img-size {' '.join(map(str, spatial))}"
    check_bytes(4 * batch * c * math.prod(spatial), shown, "lower --batch or --img-size")
    x = torch.randn(batch, c, *spatial)
    net = getattr(model, "backbone", model)  # a segmentor's stages are its backbone's
    encoder = getattr(model, "swinViT", None)  # SwinUNETR's encoder
    stages = list(getattr(encoder if encoder is not None else net, "stages", []))  # none without a hierarchy
    with torch.inference_mode():
        logits = model(x)
        if net is not model:
            feats = list(net(x).values())
        elif encoder is not None:  # the encoder's maps; stage i's blocks run on map i (MONAI merges after each)
            feats = model.forward_features(x)[: len(stages)]
        else:
            # one map per stage (an isotropic network's levels are its blocks: its one stage's map is the last)
            feats = model.forward_intermediates(x, intermediates_only=True)[-len(stages) :] if stages else []
    params = sum(p.numel() for p in model.parameters())
    return dict(
        model=name,
        params=params,
        params_m=round(params / 1e6, 2),
        gmacs=round(count_gmacs(model, (c, *spatial)), 3),
        img_size=list(spatial),
        input=list(x.shape),
        output=list(logits.shape),
        stages=[list(f.shape) for f in feats],
        mixers=[s.blocks[0].mixer_name for s in stages],
        windows=[None if _is_map(s) else list(s.window_size) for s in stages],
        shifts=[None if _is_map(s) else list(s.shift_size) for s in stages],
    )


def _is_map(stage: torch.nn.Module) -> bool:
    return stage.blocks[0].kind == "map"
