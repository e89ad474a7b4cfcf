"""The house rules, checked on the import graph drawn from the code itself (``ast``, nothing imported).

Every ``import`` / ``from ... import`` of a hiermlp module is an edge, whether it sits at module level or
inside a function (a deferred import still couples the two modules). The rules:

* no cycle;
* no upward import: a module imports only from its own layer or the layers below it (``LAYERS``, the rows
  of the module map, bottom first);
* no module of ``hiermlp/`` is over ``MAX_LINES`` lines;
* exactly one module defines ``create_model``: the model factory.

Failures print the offending edges, so a move that breaks a rule says where.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hiermlp"
MAX_LINES = 600

# bottom first; a module belongs to the layer of the longest prefix that names it. "hiermlp" is the package
# itself (its __init__: the public API re-exported), above every library module and below the command line;
# testing (references shared by tests and benchmarks) sits on top, so no library module may import it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("hiermlp.errors", "hiermlp.io", "hiermlp.limits", "hiermlp.overrides", "hiermlp.schema", "hiermlp._timm_hook"),
    ("hiermlp.ops",),
    ("hiermlp.layers",),
    ("hiermlp.mixers",),
    ("hiermlp.models",),
    ("hiermlp.weights",),
    ("hiermlp.accel",),
    ("hiermlp.factory",),
    ("hiermlp.data",),
    ("hiermlp.train",),
    ("hiermlp.bench",),
    ("hiermlp.study",),
    ("hiermlp.export", "hiermlp.detection", "hiermlp.info", "hiermlp.hub", "hiermlp.timm_plugin"),
    ("hiermlp",),
    ("hiermlp.cli", "hiermlp.__main__"),
    ("hiermlp.testing",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The hiermlp modules ``name`` imports anywhere in its file, module level or inside functions."""
    out: set[str] = set()
    package = name if is_package(name, modules) else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import sub" imports the submodule; "from mod import name" the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            # the deepest hiermlp module the name reaches ("hiermlp.models.registry.get_entry" -> the registry)
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(name: str) -> int:
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    if best is None:
        raise AssertionError(f"{name} is in no layer of LAYERS; add its row to tests/test_imports.py")
    return best


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan), as a path a -> ... -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_path(graph, set(c)) for c in components]


def _cycle_path(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first inside the component)."""
    start = min(comp)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    chain = [v]  # v, its parent, ..., start
                    while chain[-1] != start:
                        chain.append(parents[chain[-1]])
                    return [*reversed(chain), start]
                if w not in parents:
                    parents[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {sorted(comp)}")


def upward_edges(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})"
        for a in sorted(graph)
        for b in sorted(graph[a])
        if layer_of(b) > layer_of(a)
    ]


def test_every_module_has_a_layer():
    for name in all_modules():
        layer_of(name)


def test_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n  " + "\n  ".join(" -> ".join(c) for c in cycles)


def test_imports_point_down():
    edges = upward_edges(import_graph())
    assert not edges, "upward imports (a module may import only its own layer or those below):\n  " + "\n  ".join(edges)


def test_no_module_over_the_line_limit():
    long = {n: len(p.read_text().splitlines()) for n, p in all_modules().items()}
    long = {n: k for n, k in long.items() if k > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_one_model_factory():
    defining = sorted(
        name
        for name, path in all_modules().items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "create_model"
    )
    assert defining == ["hiermlp.factory"], f"modules defining create_model: {defining} (only hiermlp.factory may)"


# ---- the checker itself: it must see what it claims to see ------------------------------------------------
def test_checker_finds_cycles_and_upward_edges():
    graph = {"hiermlp.ops.a": {"hiermlp.models.b"}, "hiermlp.models.b": {"hiermlp.ops.a"}, "hiermlp.errors": set()}
    assert find_cycles(graph) == [["hiermlp.models.b", "hiermlp.ops.a", "hiermlp.models.b"]]
    assert upward_edges(graph) == ["hiermlp.ops.a (layer 1) -> hiermlp.models.b (layer 4)"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_checker_reads_function_level_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "hiermlp"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("from . import net\n")
    (pkg / "models" / "net.py").write_text("def f():\n    from hiermlp.errors import E\n    from ..models import x\n")
    monkeypatch.setitem(globals(), "ROOT", pkg)
    graph = import_graph()
    assert graph["hiermlp.models"] == {"hiermlp.models.net"}
    assert graph["hiermlp.models.net"] == {"hiermlp.errors", "hiermlp.models"}


@pytest.mark.parametrize("name, layer", [("hiermlp", 13), ("hiermlp.cli.train", 14), ("hiermlp.models.zoo", 4)])
def test_layer_of(name, layer):
    assert layer_of(name) == layer
