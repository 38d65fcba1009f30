"""course_utils has no import cycle, and its layers import only the layers below them.

The layers are the package's folders (``course_utils/__init__.py`` lists them): helpers, the lessons
at the top level, display, benchmark, feedback, exercises, ``checks.py``, tooling and grade. A stand-in
at an old path (``course_utils/plots.py`` ...) imports only the module that moved.

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
    assert {"course_utils.flash", "course_utils.flash_fast", "course_utils.benchmark.bench"} <= set(
        graph
    )
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


# ----------------------------------------------------------------------------------------------
# Layers: which folder a module belongs to, and which layers each may import.

STAND_INS = {
    "course_utils.plots": "course_utils.display.plots",
    "course_utils.widgets": "course_utils.display.widgets",
    "course_utils.addressing_explorer": "course_utils.display.addressing_explorer",
    "course_utils.timing": "course_utils.helpers.timing",
    "course_utils.bench": "course_utils.benchmark.bench",
    "course_utils.progress": "course_utils.tooling.progress",
    "course_utils.release": "course_utils.tooling.release",
    "course_utils.runtime": "course_utils.helpers.runtime",
    "course_utils.record": "course_utils.tooling.record",
}
MOVED_COMMANDS = {"course_utils.bench": "course_utils.benchmark.cli"}
FOLDER_LAYERS = ("helpers", "display", "benchmark", "feedback", "exercises", "tooling", "grade")
TOP_LEVEL_LAYERS = {
    "course_utils.checks": "checks",
}
MAY_IMPORT = {
    "helpers": set(),
    "lessons": {"helpers"},
    "display": {"lessons", "helpers"},
    "benchmark": {"lessons", "helpers"},
    "feedback": {"lessons", "helpers"},
    "exercises": {"feedback", "lessons", "helpers"},
    "checks": {"exercises", "feedback"},
    "tooling": {"helpers"},
    "grade": {"feedback", "exercises", "tooling", "helpers"},
}


def layer(module: str) -> str:
    """The layer of a course_utils module (every module not in a layer folder is a lesson)."""
    if module in STAND_INS:
        return "stand-in"
    if module in TOP_LEVEL_LAYERS:
        return TOP_LEVEL_LAYERS[module]
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in FOLDER_LAYERS:
        return parts[1]
    return "package" if module == PACKAGE else "lessons"


def test_every_module_has_a_layer_and_the_layers_are_known():
    layers = {layer(module) for module in module_files()}
    assert layers == set(MAY_IMPORT) | {"stand-in", "package"}
    assert layer("course_utils.softmax") == layer("course_utils.seq2seq.model") == "lessons"
    assert layer("course_utils.feedback.run") == "feedback"
    assert set(STAND_INS.values()) <= set(module_files())


def test_the_layer_check_can_fail():
    """A lesson importing display, feedback importing grade: both are reported."""
    graph = {
        "course_utils.softmax": {"course_utils.display.plots"},
        "course_utils.feedback.run": {"course_utils.grade.child"},
        "course_utils.grade.child": {"course_utils.feedback.run"},
    }
    assert layer_violations(graph) == [
        "course_utils.feedback.run (feedback) imports course_utils.grade.child (grade)",
        "course_utils.softmax (lessons) imports course_utils.display.plots (display)",
    ]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, imported in sorted(graph.items()):
        source = layer(module)
        for target in sorted(imported):
            if source == "stand-in":  # the moved module, its package, or (bench) its command line
                moved = STAND_INS[module]
                allowed = target in (moved, moved.rpartition(".")[0], MOVED_COMMANDS.get(module))
            else:
                allowed = layer(target) in MAY_IMPORT[source] | {source}
            if not allowed:
                found.append(f"{module} ({source}) imports {target} ({layer(target)})")
    return found


@pytest.mark.parametrize("module_level_only", [True, False], ids=["module-level", "all imports"])
def test_each_layer_imports_only_the_layers_below_it(module_level_only):
    found = layer_violations(import_graph(module_level_only))
    assert found == [], "imports across layers:\n" + "\n".join(found)


def test_grade_imports_feedback_and_never_the_reverse():
    graph = import_graph(module_level_only=False)
    assert any(
        target.startswith("course_utils.feedback") for target in graph["course_utils.grade.child"]
    )
    for module, imported in graph.items():
        if layer(module) in ("feedback", "exercises"):
            assert not any(layer(target) == "grade" for target in imported), module
