"""Every notebook (01–13), read by a learner: every exercise says what it may not call, and leaves
the formula to the theory cell.

* each exercise's docstring ends with a "Forbidden (scores 0): …" paragraph naming every call its
  spec forbids (``Exercise.forbidden_calls``, less ``course_utils.exercises``: a function of that
  package always scores 0, and the notebook's list says so once);
* no docstring line is a formula assigning a value (``w_i = softmax_i(…)``, ``lr = d^-0.5 · …``) or
  a chain of comparisons (``i - window < j <= i``): the docstring says in words what the function
  computes, the markdown cell before it holds the formula;
* each notebook's intro says "You may use: … / Do not use (they score 0): …", naming every call
  its exercises forbid.

A forbidden call is named by its short name: ``masked_softmax`` for a course function,
``EncoderBlock.forward`` for a method, ``torch.softmax`` for torch's (``F.`` may stand for
``torch.nn.functional.``).
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from course_utils.exercises import all_exercises
from course_utils.feedback.shortcuts import SPEC_PACKAGE

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = tuple(sorted(path.stem for path in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")))
EXERCISES = sorted(
    (exercise for exercise in all_exercises().values() if exercise.notebook in NOTEBOOKS),
    key=lambda exercise: exercise.grade_id,
)
IDS = [exercise.grade_id for exercise in EXERCISES]

# A formula line: "<symbol> = <expression>" whose expression holds one of these, or a chain of two
# comparisons. Contract lines stay legal: "True = may attend", "n = H·W positions", "ε = 1e-8".
FORMULA_MARKS = ("@", "softmax", "Σ", "exp(", "^", "min(", "max(", "ᵀ", "tanh(")
ASSIGNMENT = re.compile(r"\S = (?P<expression>.+)")
COMPARISON_CHAIN = re.compile(r"\w\s*<=?\s*[\w.]+\s*<=?\s*\w")


def short_names(dotted: str) -> tuple[str, ...]:
    """How a text may name the forbidden call ``dotted``: any one of these."""
    if dotted.startswith("torch.nn.functional."):
        return (dotted, "F." + dotted.removeprefix("torch.nn.functional."))
    if dotted.startswith("torch."):
        return (dotted,)
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable prefix is the module
        try:
            importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return (".".join(parts[cut:]),)  # "masked_softmax", "EncoderBlock.forward"
    raise AssertionError(f"{dotted}: no module to import")


def named_calls(exercise) -> list[str]:
    """The forbidden calls a learner must be told about (not the spec package's own functions)."""
    return sorted({name for name in exercise.forbidden_calls if not name.startswith(SPEC_PACKAGE)})


def unnamed(text: str, calls: list[str]) -> list[str]:
    return [call for call in calls if not any(name in text for name in short_names(call))]


def notebook_cells(notebook: str) -> list[dict]:
    return json.loads((ROOT / "solutions" / f"{notebook}.ipynb").read_text())["cells"]


def test_every_notebook_has_its_exercises():
    assert len(NOTEBOOKS) == 13
    assert {exercise.notebook for exercise in EXERCISES} == set(NOTEBOOKS)
    assert len(EXERCISES) == len(all_exercises())


def test_short_names_read_the_module_off():
    assert short_names("course_utils.softmax.masked_softmax") == ("masked_softmax",)
    assert short_names("course_utils.transformer.EncoderBlock.forward") == ("EncoderBlock.forward",)
    assert "F.cosine_similarity" in short_names("torch.nn.functional.cosine_similarity")
    assert short_names("torch.softmax") == ("torch.softmax",)


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_docstring_names_every_forbidden_call(exercise):
    docstring = exercise.docstring
    start = re.search(r"^Forbidden \(scores 0\):", docstring, re.M)
    assert start, f"{exercise.grade_id}: no 'Forbidden (scores 0): …' paragraph in the docstring"
    assert "\n\n" not in docstring[start.start() :], "the Forbidden paragraph closes the docstring"
    missing = unnamed(docstring[start.start() :], named_calls(exercise))
    assert not missing, f"{exercise.grade_id}: the docstring does not forbid {missing}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_docstring_holds_no_formula(exercise):
    formulas = []
    for line in exercise.docstring.splitlines():
        assignments = [match["expression"] for match in ASSIGNMENT.finditer(line)]
        if any(mark in expression for expression in assignments for mark in FORMULA_MARKS):
            formulas.append(line)
        elif COMPARISON_CHAIN.search(line):
            formulas.append(line)
    assert not formulas, (
        f"{exercise.grade_id}: say in words what the function computes, and leave the formula "
        f"to the markdown cell before it: {formulas}"
    )


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_lists_what_the_learner_may_and_may_not_use(notebook):
    cells = notebook_cells(notebook)
    first_exercise = next(
        index
        for index, cell in enumerate(cells)
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution")
    )
    lists = [
        "".join(cell["source"])
        for cell in cells[:first_exercise]
        if cell["cell_type"] == "markdown"
        and "You may use:" in "".join(cell["source"])
        and "Do not use (they score 0):" in "".join(cell["source"])
    ]
    assert len(lists) == 1, f"{notebook}: one markdown cell before the first exercise lists them"
    forbidden_part = lists[0].split("Do not use (they score 0):", 1)[1]
    assert SPEC_PACKAGE in forbidden_part, f"{notebook}: say that {SPEC_PACKAGE} scores 0 too"
    calls = sorted(
        {
            call
            for exercise in EXERCISES
            if exercise.notebook == notebook
            for call in named_calls(exercise)
        }
    )
    missing = unnamed(forbidden_part, calls)
    assert not missing, f"{notebook}: the 'Do not use' list does not name {missing}"
