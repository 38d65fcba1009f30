"""course_utils has no import cycle: one concept per module, each depending only on those below it.

The graph is read from the source (``ast``), not by importing: an edge A → B for every
``import B`` / ``from B import x`` in A that names a course_utils module (importing
``course_utils.x.y`` also runs the package ``course_utils.x``, except from inside it).
Module-level imports (including those under a module-level ``if`` or ``try``) are what run at import
time; imports inside functions are checked too, because a function-level import is how a cycle
usually hides.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "course_utils"
ROOT = Path(__file__).resolve().parent.parent


def module_files() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _module_level_nodes(tree: ast.Module) -> list[ast.AST]:
    """Statements that run when the module is imported: the body and its if/try blocks."""
    nodes, pending = [], list(tree.body)
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.If | ast.Try):
            pending.extend(node.body + node.orelse)
        if isinstance(node, ast.Try):
            pending.extend(node.finalbody)
            for handler in node.handlers:
                pending.extend(handler.body)
    return nodes


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:  # relative: from . import x / from ..y import z
        anchor = module.split(".")
        anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
        base = ".".join(anchor + ([base] if base else []))
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def import_graph(module_level_only: bool) -> dict[str, set[str]]:
    modules = module_files()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        nodes = _module_level_nodes(tree) if module_level_only else list(ast.walk(tree))
        for node in nodes:
            for target in _imported_names(node, name, path.name == "__init__.py"):
                if target not in modules:
                    continue
                parts = target.split(".")
                # importing a.b.c runs a.b too; a module's own enclosing packages are already running
                for stop in range(2, len(parts) + 1):
                    imported = ".".join(parts[:stop])
                    if imported != name and not name.startswith(imported + "."):
                        graph[name].add(imported)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    components = []

    def visit(node: str) -> None:
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                lowlink[node] = min(lowlink[node], lowlink[successor])
            elif successor in stack:
                lowlink[node] = min(lowlink[node], index[successor])
        if lowlink[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_the_package():
    graph = import_graph(module_level_only=True)
    assert {"course_utils.flash", "course_utils.flash_fast", "course_utils.bench"} <= set(graph)
    assert "course_utils.flash" in graph["course_utils.flash_fast"]
    assert "course_utils.dot_product" in graph["course_utils.flash"]


def test_cycles_are_found():
    """The detector can fail: a two-module loop and a three-module loop are reported."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert cycles(graph) == [["a", "b"], ["c", "d", "e"]]


@pytest.mark.parametrize("module_level_only", [True, False], ids=["module-level", "all imports"])
def test_course_utils_has_no_import_cycle(module_level_only):
    found = cycles(import_graph(module_level_only))
    assert found == [], f"import cycles in {PACKAGE}: {found}"
