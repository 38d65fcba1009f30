"""Every solution notebook follows the course's conventions (DESIGN.md), so every path that reads them works:
GPU runs (setup calls device()), strict nbval (seeded, no stored errors), grading (exercise ↔ check pairing),
and learners (objectives, recap, further reading, ≥ 3 graded exercises)."""

import re
from pathlib import Path

import nbformat
import pytest

from course_utils.checks import available_checks

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
CHECK_CALL = re.compile(r'^check\("(?P<name>\w+)", (?P<function>\w+)\)$')


def nbgrader(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


@pytest.fixture(params=SOLUTIONS, ids=[path.stem for path in SOLUTIONS])
def solution(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_setup_cell_seeds_and_picks_the_device(solution):
    path, notebook = solution
    setup = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "seed_everything(" in setup.source, (
        f"{path.name}: setup cell must call seed_everything()"
    )
    assert "device()" in setup.source, (
        f"{path.name}: setup cell must call device() (GPU runs rely on it)"
    )


def test_exercises_pair_with_check_cells(solution):
    path, notebook = solution
    number = int(path.name[:2])
    cells = notebook.cells
    exercises = [(i, c) for i, c in enumerate(cells) if nbgrader(c).get("solution")]
    assert len(exercises) >= 3, f"{path.name}: needs at least 3 graded exercises"
    known = set(available_checks())
    for index, cell in exercises:
        grade_id = nbgrader(cell)["grade_id"]
        assert grade_id.startswith(f"ex{number}_"), (
            f"{path.name}: {grade_id} should start ex{number}_"
        )
        following = cells[index + 1]
        assert nbgrader(following).get("grade_id") == f"{grade_id}_check", (
            f"{path.name}: exercise {grade_id} must be followed by its check cell {grade_id}_check"
        )
        assert nbgrader(following).get("locked") and nbgrader(following).get("points", 0) > 0
        call = CHECK_CALL.match(following.source.strip())
        assert call and call["name"] == grade_id, (
            f"{path.name}: check cell must be check({grade_id!r}, fn)"
        )
        assert grade_id in known, f"{path.name}: no visible check registered for {grade_id}"
        assert re.search(rf"^def {call['function']}\(", cell.source, re.M), (
            f"{path.name}: check cell calls {call['function']} but the exercise does not define it"
        )


def test_stored_outputs_have_no_errors(solution):
    path, notebook = solution
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None, (
            f"{path.name} cell {index} was never run: `make record`"
        )
        for output in cell.outputs:
            assert output.output_type != "error", f"{path.name} cell {index} stored an error"


def test_learner_facing_sections_exist(solution):
    path, notebook = solution
    markdown = "\n".join(
        cell.source for cell in notebook.cells if cell.cell_type == "markdown"
    ).lower()
    for section in ("learning objectives", "recap", "further reading"):
        assert section in markdown, f"{path.name}: missing a '{section}' section"
    assert any(c.cell_type == "code" and "assert " in c.source for c in notebook.cells), (
        f"{path.name}: claims must be asserted in code"
    )
