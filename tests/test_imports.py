"""The package's import graph has no circle: every ``import`` of a unetbench module, at the top of a file or
inside a function (a deferred import is still a dependency), read from the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

PACKAGE = Path(__file__).resolve().parents[1] / "unetbench"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from .sizes import y
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # from unetbench import contention: the submodule; from unetbench.spec import X: the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    names = sorted(graph)
    index = {n: i for i, n in enumerate(names)}
    edges = [(index[a], index[b]) for a in names for b in graph[a]]
    rows, cols = zip(*edges, strict=True) if edges else ((), ())
    matrix = coo_matrix((np.ones(len(edges)), (rows, cols)), shape=(len(names), len(names)))
    _, labels = connected_components(matrix, directed=True, connection="strong")
    groups: dict[int, list[str]] = {}
    for name, label in zip(names, labels, strict=True):
        groups.setdefault(int(label), []).append(name)
    return [group for group in groups.values() if len(group) > 1]


def test_the_graph_is_read_and_a_planted_circle_is_found():
    graph = import_graph()
    assert "unetbench.evaluation" in graph["unetbench.ablation.crossval"]
    assert "unetbench.model.sizes" in graph["unetbench.spec"]
    planted = {**graph, "unetbench.errors": graph["unetbench.errors"] | {"unetbench.runner"}}
    assert any("unetbench.runner" in group and "unetbench.errors" in group for group in circles(planted))


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_prediction_and_export_do_not_import_the_runner():
    graph = import_graph()
    assert "unetbench.runner" not in graph["unetbench.predict_export"]
    assert "unetbench.runner" not in graph["unetbench.evaluation"]
