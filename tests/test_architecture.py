"""The shape of the code: packages form layers (no two import each other, directly or through others), so do
modules (a cycle inside one package too), and functions stay small.

Imports inside functions count too (a lazy import is still a dependency). Modules directly under
``dcac/`` (api, __init__) are not a package and are left out of the package graph, not of the module graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dcac"
PACKAGES = sorted(p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def _package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "dcac" and parts[1] in PACKAGES else None


def _imports(path: Path, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside the package
                continue
            modules = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        else:
            continue
        found.update(p for p in map(_package_of, modules) if p is not None and p != package)
    return found


def package_graph() -> dict[str, set[str]]:
    return {pkg: set().union(*(_imports(f, pkg) for f in (SRC / pkg).rglob("*.py"))) for pkg in PACKAGES}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state and (found := visit(nxt, path + [nxt])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def _module_name(path: Path) -> str:
    parts = ("dcac", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """The nodes of a module that run on import: those under ``if TYPE_CHECKING:`` only exist for type checkers."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for child in node.body for inner in ast.walk(child))
    return [node for node in ast.walk(tree) if id(node) not in skipped]


def module_graph() -> dict[str, set[str]]:
    """Each module of ``dcac`` and the ``dcac`` modules it imports when it runs (``from a import b`` counts ``a.b``
    when ``b`` is a module, else ``a``)."""
    files = {_module_name(path): path for path in SRC.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        found = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.update(
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files else node.module for a in node.names
                )
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in files and m != name}
    return graph


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_between_packages():
    graph = package_graph()
    assert {"data", "models", "engine", "inference", "evaluation"} <= set(graph)
    cycle = _cycle(graph)
    assert cycle is None, f"packages import each other: {' -> '.join(cycle)}"


def test_no_import_cycle_between_modules():
    graph = module_graph()
    assert {"dcac.cli.main", "dcac.hub.upload", "dcac.inference.predictor"} <= set(graph)
    assert "dcac.hub.download" in graph["dcac.inference.predictor"]  # the graph sees imports
    cycle = _cycle(graph)
    assert cycle is None, f"modules import each other: {' -> '.join(cycle)}"


def test_no_function_over_sixty_lines():
    """Small functions are the code's style; a long one is a sign it does more than one thing."""
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(SRC)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, long
