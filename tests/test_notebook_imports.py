"""Every ``course_utils`` import a notebook makes still works (a learner's copy makes the same ones).

The imports are read from the code cells of ``solutions/*.ipynb`` and ``notebooks/*.ipynb`` (``ast``,
magics left out) and each one is run on its own, in a fresh namespace: a module that moved into a
folder keeps a stand-in at its old name.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "solutions").glob("*.ipynb")) + sorted(
    (ROOT / "notebooks").glob("*.ipynb")
)


def _code(cell: dict) -> str:
    source = cell.get("source", "")
    source = "".join(source) if isinstance(source, list) else source
    return "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )


def course_imports(notebook: Path) -> set[str]:
    """Each import statement of a course_utils module in the notebook's code cells, as source."""
    found = set()
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(_code(cell))
        except SyntaxError:  # a stub a learner has not written yet is still Python; be safe
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("course_utils"):
                found.add(ast.unparse(node))
            elif isinstance(node, ast.Import) and any(
                alias.name.split(".")[0] == "course_utils" for alias in node.names
            ):
                found.add(ast.unparse(node))
    return found


# A learner's copy made before the setup cells imported `hint` still holds this line.
EARLIER_IMPORTS = {"from course_utils.checks import check"}
IMPORTS = sorted(
    {statement for notebook in NOTEBOOKS for statement in course_imports(notebook)}
    | EARLIER_IMPORTS
)


def test_the_notebooks_are_read():
    assert len(NOTEBOOKS) >= 24
    assert "from course_utils.checks import check, hint" in IMPORTS
    assert any(statement.startswith("from course_utils.plots import") for statement in IMPORTS)


@pytest.mark.parametrize("statement", IMPORTS)
def test_a_notebook_import_works(statement):
    exec(compile(statement, "<notebook import>", "exec"), {})
