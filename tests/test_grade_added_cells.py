"""Cells the learner added run in the grader too, in notebook order (what passes locally, grades).

A helper function in a cell of its own, used by an exercise, passes the check cell in the notebook;
the grader must run that cell before the exercise. An error in an added cell is reported in the
message of the exercise that follows it and does not stop the graded exercises.
"""

from __future__ import annotations

import json
import uuid

from test_grade import EXERCISES, read_rows, run_grader, solution_notebook

HELPER_CELL = """
def my_scores(scores, dim):
    return scores - scores.amax(dim=dim, keepdim=True)
"""
USES_HELPER = """
def stable_softmax(scores, dim=-1):
    exponentials = torch.exp(my_scores(scores, dim))
    return exponentials / exponentials.sum(dim=dim, keepdim=True)
"""
BROKEN_CELL = "undefined_name_in_my_cell + 1\n"


def added_code_cell(source: str) -> dict:
    return {
        "cell_type": "code",
        "id": uuid.uuid4().hex[:8],
        "metadata": {},
        "execution_count": None,
        "outputs": [],
        "source": source,
    }


def write_with_added_cells(folder, added_before: dict[str, list[str]], replace: dict[str, str]):
    notebook = solution_notebook()
    cells = []
    for cell in notebook["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in added_before:
            cells += [added_code_cell(source) for source in added_before[grade_id]]
        if grade_id in replace:
            cell["source"] = replace[grade_id]
        cells.append(cell)
    notebook["cells"] = cells
    folder.mkdir(parents=True)
    (folder / "01_soft_weights.ipynb").write_text(json.dumps(notebook), encoding="utf-8")


def test_helpers_in_added_cells_are_defined_and_errors_there_do_not_stop_grading(tmp_path):
    submissions = tmp_path / "submissions"
    write_with_added_cells(
        submissions / "helper", {EXERCISES[0]: [HELPER_CELL]}, {EXERCISES[0]: USES_HELPER}
    )
    write_with_added_cells(
        submissions / "broken_cell",
        {EXERCISES[0]: [BROKEN_CELL, HELPER_CELL]},
        {EXERCISES[0]: USES_HELPER},
    )
    write_with_added_cells(submissions / "missing_helper", {}, {EXERCISES[0]: USES_HELPER})
    result = run_grader(
        str(submissions), "--out", str(tmp_path / "grades.csv"), "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(tmp_path / "grades.csv")
    for student in ("helper", "broken_cell"):
        for exercise in EXERCISES:
            assert rows[(student, exercise)]["status"] == "passed", rows[(student, exercise)]
    missing = rows[("missing_helper", EXERCISES[0])]
    assert missing["status"] == "error" and "my_scores" in missing["message"], missing
    assert rows[("missing_helper", EXERCISES[1])]["status"] == "passed"


def test_an_error_in_an_added_cell_is_named_in_the_next_exercises_message(tmp_path):
    submissions = tmp_path / "submissions"
    write_with_added_cells(
        submissions / "student", {EXERCISES[0]: [BROKEN_CELL]}, {EXERCISES[0]: USES_HELPER}
    )
    result = run_grader(
        str(submissions), "--out", str(tmp_path / "grades.csv"), "--quiet", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = read_rows(tmp_path / "grades.csv")[("student", EXERCISES[0])]
    assert row["status"] == "error", row
    assert "your own cells before it" in row["message"] and "NameError" in row["message"], row
