"""torch.compile with the batch symbolic and every other size static (hiermlp.accel.compiling), and the
compile / recompile times ``hiermlp bench --compile`` reports.

Dynamo traces with a counting backend that runs the graphs eagerly (no code generation): these tests check
which graphs are made and with which symbolic sizes, and that the values are the model's; compile times are
reported by bench, never asserted.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo as dynamo
from torch import fx

import hiermlp
from hiermlp.accel.compiling import BatchDynamic, compile_model
from hiermlp.bench import speed
from hiermlp.bench.speed import benchmark_models
from tests.test_bench import FAST, MICRO, micro


class Graphs:
    """A dynamo backend that records each graph's ``ndim``-d inputs other than the model's own tensors (the
    images, or clips with ``ndim=5``), symbolic sizes as their names, and runs the graph."""

    def __init__(self, ndim: int = 4):
        self.shapes: list[list[tuple]] = []
        self.ndim = ndim

    def __call__(self, gm: fx.GraphModule, example_inputs):
        shapes = []
        for node in gm.graph.nodes:
            value = node.meta.get("example_value")
            parameter = "self" in node.name.lower()  # dynamo lifts parameters and buffers as L_self_... inputs
            if (
                node.op == "placeholder"
                and isinstance(value, torch.Tensor)
                and value.dim() == self.ndim
                and not parameter
            ):
                shapes.append(tuple(d if isinstance(d, int) else str(d) for d in value.shape))
        self.shapes.append(shapes)
        return gm.forward


@pytest.fixture
def graphs():
    dynamo.reset()
    yield Graphs()
    dynamo.reset()


def test_batch_sizes_share_one_graph_and_a_new_size_compiles_a_static_one(graphs):
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **MICRO, num_classes=10).eval()
    compiled = compile_model(model, backend=graphs)
    assert isinstance(compiled, BatchDynamic) and compiled.compiled._orig_mod is model
    with torch.no_grad():
        for batch, size in ((4, 32), (3, 32), (2, 32), (2, 40)):
            x = torch.randn(batch, 3, size, size)
            torch.testing.assert_close(compiled(x), model(x))
    # the image input of each graph: the batch symbolic, the spatial sizes constants
    images = [s for g in graphs.shapes for s in g]
    assert len(images) == 2, graphs.shapes  # batches 4, 3 and 2 ran one graph; 40x40 made the second
    (b0, *rest0), (b1, *rest1) = images
    assert isinstance(b0, str) and isinstance(b1, str)
    assert rest0 == [3, 32, 32] and rest1 == [3, 40, 40]


def test_default_dynamic_shapes_would_retrace_symbolically(graphs):
    """What compile_model avoids: torch's default makes the second size's graph symbolic in H and W."""
    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **MICRO, num_classes=10).eval()
    compiled = torch.compile(model, backend=graphs)
    with torch.no_grad():
        for size in (32, 40):
            compiled(torch.randn(2, 3, size, size))
    [image] = graphs.shapes[-1]
    assert all(isinstance(d, str) for d in image[2:]), graphs.shapes


def test_bench_reports_first_compile_and_recompile_times(monkeypatch, graphs):
    monkeypatch.setattr(speed, "compile_model", lambda model: compile_model(model, backend=graphs))
    report = benchmark_models(
        [micro("attention")], img_size=16, compile=True, memory=False, train=False, latency=False, **FAST
    )
    [row] = report.rows
    assert row.status == "ok" and row.infer_img_s is not None
    assert all(t is not None and t > 0 for t in (row.compile_s, row.recompile_size_s, row.recompile_batch_s))
    notes = report.notes()
    assert "first compile s" in notes and f"{speed.NEW_SIZE_STEP} pixels more per side" in notes
    flat = row.flat()
    assert flat["compile_s"] == row.compile_s and flat["recompile_size_s"] == row.recompile_size_s


def test_a_3d_model_compiles_with_the_batch_symbolic_and_each_clip_size_static(graphs):
    # the micro Video Swin: 3-D windows, shifts, masks and padding are Python-level geometry, as in 2-D
    graphs.ndim = 5
    model = hiermlp.create_model("swin3d_micro_conv_window2x4_8x32").eval()
    compiled = compile_model(model, backend=graphs)
    with torch.no_grad():
        for batch, size in ((3, (8, 32, 32)), (2, (8, 32, 32)), (2, (6, 40, 36))):
            x = torch.randn(batch, 1, *size)
            torch.testing.assert_close(compiled(x), model(x))
    images = [s for g in graphs.shapes for s in g]
    assert len(images) == 2, graphs.shapes  # batches 3 and 2 share one graph; 6x40x36 made the second
    assert all(isinstance(b, str) for b, *_ in images)
    assert [rest for _, *rest in images] == [[1, 8, 32, 32], [1, 6, 40, 36]]


def test_the_chunking_levers_never_chunk_a_traced_graph(graphs):
    """CPU inference runs a stage a few images at a time and training the MLP branch (accel/block.py): a
    compiler tracing that loop would unroll it and specialise the batch to the example's. Under a compiler
    both levers step aside, so the batch stays symbolic where they would have chunked (1 image per call here)."""
    from hiermlp import accel

    model = hiermlp.create_model("swin_tiny_patch4_window7_224", **MICRO, num_classes=10)
    compiled = compile_model(model, backend=graphs)
    with accel.override(chunk_tokens=256), torch.no_grad():  # 256 tokens per image at stage 1: one image a call
        model.eval()
        for batch in (4, 3):
            x = torch.randn(batch, 3, 32, 32)
            torch.testing.assert_close(compiled(x), model(x))
    with accel.override(mlp_chunk_mib=1):  # 64 KB of hidden activations per image: 16 images a call
        model.train()
        for batch in (20, 19):
            compiled(torch.randn(batch, 3, 32, 32))
    images = [s for g in graphs.shapes for s in g]
    assert len(images) == 2, graphs.shapes  # one graph for eval, one for train, each for both batch sizes
    assert all(isinstance(b, str) for b, *_ in images), images
