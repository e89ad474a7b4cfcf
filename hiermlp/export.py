"""Export a model to ONNX or a ``torch.export`` program, and verify the export against eager PyTorch.

:func:`export_model` takes a module, a model name (hiermlp's or timm's) or any trained checkpoint
(:func:`hiermlp.model_from_checkpoint`); ``hiermlp export`` (:mod:`hiermlp.cli.export`) is its command.

How it works. The model is traced once with ``torch.export.export`` (non-strict) with a symbolic batch
axis (and, with ``dynamic_size``, symbolic spatial sizes: H and W, or a clip's T, H and W). ``torch-export``
saves that program (``.pt2``); ``onnx`` hands the same program to ``torch.onnx.export(..., dynamo=True)``.
The dynamo ONNX exporter is used rather than the TorchScript one because it is the maintained path in torch
2.x (the TorchScript exporter is deprecated), it emits current opsets (18+), and it shares the torch.export
trace, so both formats have the same graph and the same dynamic-shape semantics; the TorchScript exporter's
``dynamic_axes`` is only a renaming of a trace taken at fixed sizes, which is exactly how Python ints
from shapes used to break dynamic batch in Swin exports.

Verification is built in: the exported artifact is serialised, loaded back from those bytes and run
(onnxruntime for ONNX, the loaded program for torch.export) on seeded random inputs, at two batch sizes
when the batch is dynamic and at a second image size when the size is dynamic, and compared with the eager
model. Each check prints its max abs difference; any above ``atol`` fails (the CLI exits 1).

The output file is written once, by the package's one atomic writer (:mod:`hiermlp.io`), and only after
the artifact passed the ONNX checker and the verification: a failed check, a failed export or a full disk
leaves no file, or the earlier one under that name, untouched. A trained checkpoint's class names
(``pretrained_cfg["label_names"]``) go into the artifact: ONNX metadata ``label_names``, a ``.pt2``'s extra
file ``label_names.json``, both JSON lists.

Dynamic image size. Every hiermlp model exports with a dynamic H, W: the block pads to window multiples,
rolls and masks with branch-free code when sizes are symbolic. One limit is PyTorch's, not hiermlp's:
``torch.export`` specialises sizes 0 and 1 ("0/1 specialisation"), so a size-dependent quantity that is 1
at the traced size stays 1 and one that is larger stays larger. For a windowed stage that quantity is the
number of windows per axis, ``ceil(H / (r_i * ws_i))`` with ``r_i`` the stage's stride. The exported
program is therefore valid on an interval of sizes around the traced one (printed by the CLI, computed by
:func:`dynamic_size_range`): e.g. Swin-T traced at 224 has a single 7x7 window in stage 4, so its program
covers 113..224; traced at 448 it covers every size above 224. ``torch.export`` programs check this at
run time and raise; an ONNX graph carries no such checks, so stay inside the printed range. Models from
timm (not hiermlp) are exported with a static size unless they trace dynamically themselves.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hiermlp.errors import ConfigError, ExportError, HiermlpError, OutputError
from hiermlp.io import atomic_write, atomic_write_bytes, ensure_writable_dir, output_error
from hiermlp.limits import check_bytes

FORMATS = ("onnx", "torch-export")
DEFAULT_OPSET = 18
_SUFFIX = {"onnx": ".onnx", "torch-export": ".pt2"}
_MAX_BATCH = 65536


@dataclass
class Check:
    """One comparison of the exported program with eager PyTorch."""

    batch: int
    img_size: tuple[int, ...]  # (H, W); a 1-D model's (L,), a 3-D model's (T, H, W)
    max_abs_diff: float
    ok: bool

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAIL"
        return f"batch={self.batch} size={_x(self.img_size)}: max|diff| = {self.max_abs_diff:.3e} {verdict}"


@dataclass
class ExportResult:
    """What :func:`export_model` produced and how the verification went."""

    path: Path
    fmt: str
    model: str
    img_size: tuple[int, ...]
    in_chans: int
    dynamic_batch: bool
    dynamic_size: bool
    opset: int | None
    atol: float
    size_range: tuple[tuple[int, int | None], ...] | None = None  # per axis (min, max); max None: unbounded
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    export_s: float = 0.0
    written: bool = False  # the file is at ``path`` (False: verification failed, nothing was written)

    @property
    def ok(self) -> bool:
        """All checks within tolerance (True when verification was skipped)."""
        return all(c.ok for c in self.checks)

    @property
    def max_abs_diff(self) -> float:
        return max((c.max_abs_diff for c in self.checks), default=0.0)


# ---- loading ---------------------------------------------------------------------------------------------
def model_to_export(
    source: str | os.PathLike,
    *,
    model_name: str | None = None,
    num_classes: int | None = None,
    in_chans: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> tuple[nn.Module, str]:
    """``(model in eval mode, name)`` from a model name (hiermlp's or timm's) or any trained checkpoint.

    A checkpoint goes through :func:`hiermlp.model_from_checkpoint` (every layout :func:`hiermlp.load_checkpoint`
    reads; the model name and options a trainer checkpoint stores; ``model_name`` for bare weights).
    ``num_classes``, ``in_chans`` and ``model_kwargs`` override what the checkpoint says.
    """
    from hiermlp.factory import create_any_model, model_from_checkpoint
    from hiermlp.models.registry import UnknownModelError, list_models

    kwargs = dict(model_kwargs or {})
    kwargs.update({k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if v is not None})
    path = Path(os.fspath(source))
    if path.is_file():
        model = model_from_checkpoint(path, model_name, **kwargs)
        name = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or model_name or path.stem
        return model.eval(), name
    try:
        return create_any_model(os.fspath(source), **kwargs).eval(), os.fspath(source)
    except UnknownModelError:
        from hiermlp.errors import suggest

        raise ConfigError(
            f"{os.fspath(source)!r} is neither a registered model nor a checkpoint file."
            f"{suggest(os.fspath(source), list_models())} See `hiermlp list`."
        ) from None


# ---- geometry: the size range a dynamic-size export covers -----------------------------------------------
def dynamic_size_range(model: nn.Module, img_size: tuple[int, ...]) -> tuple[tuple[int, int | None], ...] | None:
    """Input sizes ``((h_min, h_max), (w_min, w_max))`` (one pair per spatial axis) a dynamic-size trace at
    ``img_size`` is valid for.

    A trace fixes, for every size-derived dimension, whether it is 1 or larger (PyTorch's 0/1
    specialisation). In a hiermlp model those dimensions are the map of each stage, ``ceil(H / r_i)``, and
    its number of windows, ``ceil(H / (r_i * ws_i))``. ``ceil(H / k) == 1`` exactly when ``H <= k``, which
    turns every such fact into a bound on H (and likewise W). ``h_max`` is None when unbounded. Returns
    None for models that are not a hiermlp :class:`~hiermlp.models.network.HierNet`.
    """
    from hiermlp.models.network import HierNet

    if not isinstance(model, HierNet):
        return None
    bounds = []
    for axis, size in enumerate(img_size):
        patch = model.stem_strides[axis]
        lo, hi = patch, None  # an image smaller than a patch is an error (ShapeError)
        quanta = [patch]
        for info, stage in zip(model.feature_info, model.stages):
            r = info.get("reductions", (info["reduction"],) * len(img_size))[axis]
            quanta.append(r)
            for block in stage.blocks:
                if not block.global_window:
                    quanta.append(r * block.window_size[axis])
        for k in quanta:
            if math.ceil(size / k) == 1:
                hi = k if hi is None else min(hi, k)
            else:
                lo = max(lo, k + 1)
        bounds.append((lo, hi))
    return tuple(bounds)


def second_size(
    img_size: tuple[int, ...], size_range: tuple[tuple[int, int | None], ...] | None, stride: int
) -> tuple[int, ...] | None:
    """Another image size inside ``size_range`` to verify a dynamic-size export at: non-square, and not a
    multiple of the stride where possible, so padding paths are exercised. None if the range is one size."""
    out = []
    for axis, size in enumerate(img_size):
        lo, hi = size_range[axis] if size_range else (1, None)
        deltas = (
            (stride + 3, -(stride // 2) - 1, 5, -3, 1, -1) if axis == 0 else (-(stride // 2) - 3, stride + 1, -1, 1)
        )
        pick = next((size + d for d in deltas if lo <= size + d and (hi is None or size + d <= hi)), None)
        out.append(pick if pick is not None else size)
    return None if tuple(out) == tuple(img_size) else tuple(out)


# ---- export ----------------------------------------------------------------------------------------------
def export_model(
    model_or_name: nn.Module | str | os.PathLike,
    fmt: str,
    img_size: int | Sequence[int],
    *,
    dynamic_batch: bool = True,
    dynamic_size: bool = False,
    out: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    atol: float = 1e-4,
    in_chans: int | None = None,
    seed: int = 0,
    log: Any = None,
    **load_kwargs: Any,
) -> ExportResult:
    """Export ``model_or_name`` to ``fmt`` (``"onnx"`` or ``"torch-export"``) and verify it.

    Args:
        model_or_name: A module, a model name, or a checkpoint path (see :func:`model_to_export`).
        fmt: ``"onnx"`` (an ``.onnx`` file for onnxruntime/TensorRT) or ``"torch-export"`` (a ``.pt2``
            program for ``torch.export.load``, AOTInductor, ExecuTorch).
        img_size: The traced input's size: one int for every spatial axis, or one per axis (``(H, W)``; a
            3-D model's ``(T, H, W)``, a 1-D model's ``(L,)``).
        dynamic_batch: Symbolic batch axis (the exported program takes any batch size).
        dynamic_size: Symbolic spatial sizes, valid on the range :func:`dynamic_size_range` reports.
        out: Output file (default ``<name>_<H>x<W>.onnx`` / ``.pt2`` in the working directory).
        opset: ONNX opset (18 or later).
        verify: Reload the artifact, run it and compare with eager PyTorch.
        atol: Largest acceptable max abs difference of any check.
        in_chans: Input channels (default: the model's).
        seed: Seed of the random inputs.
        log: ``print``-like callable for progress lines (default: silent).
        **load_kwargs: ``model_name``, ``num_classes``, ``model_kwargs`` for :func:`model_to_export`.

    Returns:
        An :class:`ExportResult`; ``result.ok`` is False when a check exceeded ``atol`` (nothing raises then,
        so the caller sees every difference) and ``result.written`` is False: no file was written.

    Raises:
        ConfigError: Unknown format, bad size or opset.
        ExportError: The exporter or the ONNX checker failed; nothing was written.
        OutputError: The file could not be written; an earlier file there is left as it was.
    """
    say = log or (lambda *a, **k: None)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    given = (img_size,) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
    if not 1 <= len(given) <= 3 or min(given) < 1:
        raise ConfigError(f"img_size must be one size or one per spatial axis (positive ints), got {img_size!r}")
    if fmt == "onnx" and opset < 18:
        raise ConfigError(f"opset {opset} is too old for the dynamo ONNX exporter; use 18 or later")

    if out is not None:  # an unwritable destination fails now, in one line, not after loading and tracing
        _check_destination(Path(out))
    if isinstance(model_or_name, nn.Module):
        model, name = model_or_name.eval(), type(model_or_name).__name__
        name = getattr(model, "pretrained_cfg", {}).get("architecture", name)
    else:
        model, name = model_to_export(model_or_name, in_chans=in_chans, **load_kwargs)
    chans = in_chans or getattr(model, "in_chans", None) or 3
    ndim = int(getattr(model, "spatial_dims", 2))
    if len(given) not in (1, ndim):
        axes = "x".join(_axis_labels(ndim))
        raise ConfigError(
            f"img_size {_x(given)} has {len(given)} sizes but {name} takes {ndim}-D inputs ({axes}): give one size "
            f"or {ndim}"
        )
    size = given * ndim if len(given) == 1 else given
    out_path = Path(out) if out is not None else Path(f"{Path(str(name)).stem}_{_x(size)}{_SUFFIX[fmt]}")
    _check_destination(out_path)

    result = ExportResult(
        out_path, fmt, str(name), size, chans, dynamic_batch, dynamic_size, opset if fmt == "onnx" else None, atol
    )
    size_range = dynamic_size_range(model, size) if dynamic_size else None
    result.size_range = size_range
    if dynamic_size and size_range is not None:
        valid = ", ".join(
            f"{axis} in [{lo}, {hi if hi else 'inf'}]" for axis, (lo, hi) in zip(_axis_labels(ndim), size_range)
        )
        result.notes.append(
            f"dynamic size: valid for {valid} "
            "(stage maps and window counts keep the traced size's 1-or-more pattern; torch.export checks it at "
            "run time, ONNX does not)"
        )
        if any(hi is not None for _, hi in size_range):
            result.notes.append(
                f"at {_x(size)} some stage has a single window (or a 1-token map) along an axis, which "
                "caps the range; trace at a larger size for an unbounded one"
            )
    elif dynamic_size:
        result.notes.append("dynamic size: not a hiermlp HierNet, range unknown; verified at the traced size only")

    # the traced batch is 2, never 1: torch.export would specialise a size-1 batch to a constant
    gen = torch.Generator().manual_seed(seed)
    check_bytes(4 * 3 * chans * math.prod(size), f"--img-size {' '.join(map(str, size))}", "trace at a smaller size")
    example = torch.randn(2 if dynamic_batch else 1, chans, *size, generator=gen)
    dims: dict[int, Any] = {}
    if dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    if dynamic_size:
        for axis in range(2, 2 + ndim):
            dims[axis] = torch.export.Dim.DYNAMIC
    say(f"tracing {name} at {tuple(example.shape)} with torch.export (dynamic: {_describe(dims, ndim)})")
    t0 = time.perf_counter()
    # trace with the math SDPA backend: a fused kernel's output strides differ from those of the math
    # decomposition that ONNX conversion runs, and a view recorded against them then fails to replay
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
            program = torch.export.export(model, (example,), dynamic_shapes=({**dims} if dims else None,), strict=False)
    except Exception as e:  # a model torch.export cannot trace: one line, not the tracer's traceback
        if isinstance(e, HiermlpError):  # the model's own input check
            raise
        raise ExportError(f"torch.export could not trace {name}: {_first(e)}; nothing was written") from e
    labels = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
    try:  # only ONNX's external data goes through files before the destination; they are copied from here
        scratch_dir = tempfile.TemporaryDirectory(prefix="hiermlp-export-")
    except OSError as e:
        raise output_error(Path(tempfile.gettempdir()), e, what="export scratch files in") from e
    with scratch_dir as scratch:
        artifact = _serialise(fmt, program, example, opset, model, labels, Path(scratch) / out_path.name)
        result.export_s = time.perf_counter() - t0
        say(f"exported {name} ({artifact.nbytes / 1e6:.2f} MB) in {result.export_s:.1f} s")
        if verify:
            _verify(result, model, artifact, example, size, size_range, dynamic_batch, dynamic_size, chans, gen, say)
        if not result.ok:
            kept = "an earlier file there is left as it was" if out_path.exists() else "no file"
            say(f"not written: {out_path} ({kept})")
            return result
        artifact.write(out_path)
    result.written = True
    say(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.2f} MB)")
    return result


def _verify(
    result: ExportResult,
    model: nn.Module,
    artifact: _Artifact,
    example: torch.Tensor,
    size: tuple[int, ...],
    size_range: Any,
    dynamic_batch: bool,
    dynamic_size: bool,
    chans: int,
    gen: torch.Generator,
    say: Any,
) -> None:
    """Run the serialised artifact against the eager model; each comparison becomes a :class:`Check`."""
    batches = (1, 3) if dynamic_batch else (example.shape[0],)
    sizes = [size]
    if dynamic_size:
        stride = model.feature_info[-1]["reduction"] if hasattr(model, "feature_info") else 32
        other = second_size(size, size_range, stride)
        if other is None:
            result.notes.append("dynamic size: the valid range holds only the traced size; no second size to check")
        else:
            sizes.append(other)
    run = artifact.runner()
    for s in sizes:
        for b in batches:
            x = torch.randn(b, chans, *s, generator=gen)
            with torch.no_grad():
                want = _flat(model(x))
            got = run(x)
            diff = max(float((g - w).abs().max()) for g, w in zip(got, want))
            if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
                diff = float("inf")
            check = Check(b, s, diff, bool(diff <= result.atol))  # NaN compares False: a NaN fails
            result.checks.append(check)
            say(f"  check {check}")


def _check_destination(out_path: Path) -> None:
    """Raises OutputError when ``out_path`` cannot be written (a directory, or an unwritable parent)."""
    if out_path.is_dir():
        raise OutputError(f"--out {out_path} is a directory; give a file name such as {out_path / 'model.onnx'}")
    ensure_writable_dir(out_path.parent, what="directory of --out")


def _axis_labels(ndim: int) -> tuple[str, ...]:
    """The spatial axes' names: ``("H", "W")``; ``("T", "H", "W")`` in 3-D, ``("L",)`` in 1-D."""
    return {1: ("L",), 2: ("H", "W"), 3: ("T", "H", "W")}[ndim]


def _x(size: Sequence[int]) -> str:
    return "x".join(str(s) for s in size)


def _describe(dims: dict[int, Any], ndim: int = 2) -> str:
    names = {0: "batch", **{2 + i: axis for i, axis in enumerate(_axis_labels(ndim))}}
    return ", ".join(names[i] for i in sorted(dims)) or "none"


@dataclass
class _Artifact:
    """An exported program serialised in memory (or, for ONNX weights over protobuf's 2 GB, in a scratch
    directory beside the destination), ready to be verified and then written."""

    fmt: str
    data: bytes = b""
    files: list[Path] = field(default_factory=list)  # external-data ONNX: the graph last, its data before

    @property
    def nbytes(self) -> int:
        return len(self.data) + sum(f.stat().st_size for f in self.files)

    def runner(self):
        """A function running the artifact: ``x -> [outputs]``."""
        if self.fmt == "torch-export":
            module = torch.export.load(io.BytesIO(self.data)).module()

            def run(x: torch.Tensor) -> list[torch.Tensor]:
                with torch.no_grad():
                    return _flat(module(x))

            return run
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        source = self.data if self.data else str(self.files[-1])
        session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name

        def run(x: torch.Tensor) -> list[torch.Tensor]:
            return [torch.from_numpy(o) for o in session.run(None, {input_name: x.numpy()})]

        return run

    def write(self, path: Path) -> None:
        """Write the artifact to ``path`` atomically (external data first, the graph that names it last).

        Raises:
            OutputError: the file system refused; an earlier file at ``path`` is left as it was.
        """
        if self.data:
            atomic_write_bytes(path, self.data, what="export")
            return
        for f in self.files:
            with open(f, "rb") as src:
                atomic_write(path.parent / f.name, lambda dst, src=src: shutil.copyfileobj(src, dst), what="export")


def _serialise(
    fmt: str, program: Any, example: torch.Tensor, opset: int, model: nn.Module, labels: Any, scratch: Path
) -> _Artifact:
    """The exported program as an :class:`_Artifact`, checked by ONNX's checker.

    Raises:
        ExportError: the exporter or the ONNX checker failed (nothing is written).
    """
    if fmt == "torch-export":
        buf = io.BytesIO()
        extra = {"label_names.json": json.dumps(list(labels))} if labels else None
        try:
            torch.export.save(program, buf, extra_files=extra)
        except Exception as e:
            raise ExportError(f"saving the torch.export program failed: {_first(e)}; nothing was written") from e
        return _Artifact(fmt, buf.getvalue())
    import logging
    import warnings

    import onnx

    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    external = n_bytes > 1.5e9  # protobuf's 2 GB limit
    # onnxscript logs every pass at INFO and the exporter prints progress lines; keep the CLI output readable
    logging.getLogger("onnxscript").setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(
                program, (example,), dynamo=True, opset_version=opset, input_names=["images"], verbose=False
            )
        if external:
            onnx_program.save(str(scratch), external_data=True)
            onnx.checker.check_model(str(scratch), full_check=False)
            data_files = [p for p in scratch.parent.iterdir() if p != scratch]
            return _Artifact(fmt, files=[*data_files, scratch])
        proto = onnx_program.model_proto
        if labels:
            onnx.helper.set_model_props(proto, {"label_names": json.dumps(list(labels))})
        onnx.checker.check_model(proto, full_check=False)
        return _Artifact(fmt, proto.SerializeToString())
    except Exception as e:
        raise ExportError(f"ONNX export or its check failed ({_first(e)}); nothing was written") from e


def _first(e: BaseException) -> str:
    """``Type: the first line of the message`` of an exception from deep inside a library."""
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"


def _flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flat(o)]
