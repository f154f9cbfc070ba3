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


# The packages by layer, lowest first: a module imports from its own package or from a lower layer, never
# from its own layer's other packages or from above (docs/architecture.md says what each holds).
LAYERS = [
    {"unetbench", "errors", "model", "metrics"},  # the ground: the version, errors, the network, the metrics
    {"spec"},  # the file format and the paper's settings as data
    {"system"},  # the machine: files, CPU share, interrupts, processes, devices
    {"datasets", "records"},  # the data sets; what a run leaves behind
    {"inference", "training", "challenges", "report"},  # the stages, specs checked against the data
    {"evaluation", "tracking"},  # scoring without a network; showing runs elsewhere
    {"run"},  # unetbench run
    {"exports", "ablation"},  # what leaves a run; many runs
    {"leaderboard"},  # unetbench compare
    {"cli"},
    {"__main__"},  # python -m unetbench: the CLI
]


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if package(module) in names)


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a package of the same or a higher layer than the importer's own."""
    found = []
    for source, targets in graph.items():
        for target in targets:
            if package(source) != package(target) and layer_of(target) >= layer_of(source):
                found.append(f"{source} -> {target}")
    return sorted(found)


def test_every_package_has_a_layer():
    assert {package(m) for m in import_graph()} <= set().union(*LAYERS)


def test_no_import_runs_up_or_sideways_and_a_planted_one_is_found():
    graph = import_graph()
    assert upward(graph) == []
    planted = {
        **graph,
        "unetbench.records.run_folder": graph["unetbench.records.run_folder"] | {"unetbench.run.runner"},
    }
    assert upward(planted) == ["unetbench.records.run_folder -> unetbench.run.runner"]


def test_the_graph_is_read_and_a_planted_circle_is_found():
    graph = import_graph()
    assert "unetbench.evaluation.scoring" in graph["unetbench.ablation.crossval"]
    assert "unetbench.model.sizes" in graph["unetbench.spec.schema"]
    planted = {**graph, "unetbench.errors": graph["unetbench.errors"] | {"unetbench.run.runner"}}
    assert any("unetbench.run.runner" in group and "unetbench.errors" in group for group in circles(planted))


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_only_the_cli_and_the_ablations_executors_import_the_runner():
    graph = import_graph()
    importers = sorted(m for m, targets in graph.items() if "unetbench.run.runner" in targets)
    assert importers == ["unetbench.ablation.executors", "unetbench.cli.run"], importers


# --------------------------------------------------------------------------------------------------
# Sizes: no module over 450 lines, no function body over 50 (the metric kernels, numba loops, excepted)

KERNELS = {PACKAGE / "metrics" / "_kernels.py"}


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its docstring left out."""
    has_docstring = ast.get_docstring(node, clean=False) is not None and len(node.body) > 1
    first = node.body[1] if has_docstring else node.body[0]
    return node.end_lineno - first.lineno + 1


def oversized(paths) -> list[str]:
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > 450:
            found.append(f"{path.name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _body_lines(node) > 50:
                found.append(f"{path.name}:{node.name}: a body of {_body_lines(node)} lines")
    return found


def test_no_module_over_450_lines_and_no_body_over_50_and_a_planted_one_is_found(tmp_path):
    assert oversized(p for p in PACKAGE.rglob("*.py") if p not in KERNELS) == []
    planted = tmp_path / "planted.py"
    planted.write_text("def long():\n    '''doc'''\n" + "    x = 1\n" * 51)
    assert oversized([planted]) == ["planted.py:long: a body of 51 lines"]
