"""Release: solutions/ -> notebooks/ strips every answer, clears outputs, and detects staleness."""

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from course_utils.tooling import course_folders
from course_utils.tooling import release as release_module
from course_utils.tooling.course_folders import course_folder
from course_utils.tooling.install_cell import INSTALL_CELL, INSTALL_CELL_ID, insert_install_cell
from course_utils.tooling.release import BEGIN, END, RAISES, ReleaseError, main, release_notebook

SOLUTION_META = {
    "grade": False,
    "locked": False,
    "schema_version": 3,
    "solution": True,
    "task": False,
}
CHECK_META = {
    "grade": True,
    "locked": True,
    "points": 1,
    "schema_version": 3,
    "solution": False,
    "task": False,
}


def solution_cell(grade_id, source):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = dict(SOLUTION_META, grade_id=grade_id)
    return cell


def check_cell(grade_id, source, points=1):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = dict(CHECK_META, grade_id=grade_id, points=points)
    return cell


def toy_solution():
    answer = solution_cell(
        "ex9_1_double",
        f"def double(x):\n    {BEGIN}\n    ### HINT: multiply by two\n    secret_answer = 2 * x\n"
        f"    return secret_answer\n    {END}",
    )
    answer.outputs = [new_output("stream", name="stdout", text="hello\n")]
    answer.execution_count = 3
    return new_notebook(
        cells=[
            new_markdown_cell("# Toy"),
            new_code_cell("import math"),
            answer,
            check_cell("ex9_1_double_check", "assert double(2) == 4"),
            new_code_cell("print('after the exercise')"),
        ]
    )


def test_release_replaces_answer_by_hinted_stub_and_tags_cells(tmp_path):
    student = release_notebook(toy_solution(), tmp_path / "09_toy.ipynb", install_cell=False)
    exercise, checker = student.cells[2], student.cells[3]
    assert exercise.source == (
        "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError('multiply by two')"
    )
    assert "secret_answer" not in nbformat.writes(student)
    assert exercise.outputs == [] and exercise.execution_count is None
    assert RAISES in exercise.metadata["tags"] and RAISES in checker.metadata["tags"]
    assert checker.metadata["nbgrader"]["locked"] is True
    assert "tags" not in student.cells[4].metadata


def test_check_cells_are_locked_for_jupyterlab_and_solution_cells_stay_editable(tmp_path):
    student = release_notebook(toy_solution(), tmp_path / "09_toy.ipynb", install_cell=False)
    exercise, checker = student.cells[2], student.cells[3]
    assert checker.metadata["editable"] is False and checker.metadata["deletable"] is False
    assert "editable" not in exercise.metadata and "deletable" not in exercise.metadata
    assert all("editable" not in cell.metadata for cell in student.cells[:2] + student.cells[4:])


def test_every_released_check_cell_is_locked(repo_root):
    for path in sorted((repo_root / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        checks = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
        assert checks, path.name
        for cell in checks:
            assert cell.metadata.get("editable") is False, f"{path.name}: {cell.source!r}"
            assert cell.metadata.get("deletable") is False, f"{path.name}: {cell.source!r}"


def test_every_student_notebook_opens_with_the_install_cell(repo_root):
    for path in sorted((repo_root / "notebooks").glob("*.ipynb")):
        code = [
            cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"
        ]
        assert code[0].id == INSTALL_CELL_ID, path.name


def test_install_cell_goes_before_the_first_code_cell_once_and_only_when_asked(
    tmp_path, monkeypatch
):
    path = tmp_path / "09_toy.ipynb"
    monkeypatch.setattr(release_module, "INSERT_INSTALL_CELL", False)
    assert all(
        cell.get("id") != INSTALL_CELL_ID for cell in release_notebook(toy_solution(), path).cells
    )
    student = release_notebook(toy_solution(), path, install_cell=True)
    assert student.cells[0].cell_type == "markdown"
    assert (
        student.cells[1].id == INSTALL_CELL_ID and student.cells[1].source == INSTALL_CELL.rstrip()
    )
    assert student.cells[2].source == "import math"
    solution_with_cell = insert_install_cell(toy_solution())
    again = release_notebook(solution_with_cell, path, install_cell=True)
    assert [cell.get("id") for cell in again.cells].count(INSTALL_CELL_ID) == 1
    monkeypatch.setattr(release_module, "INSERT_INSTALL_CELL", True)
    assert release_notebook(toy_solution(), path).cells[1].id == INSTALL_CELL_ID


def test_markdown_answers_are_replaced():
    cell = new_markdown_cell(f"Why?\n{BEGIN}\nBecause of the secret.\n{END}")
    cell.metadata["nbgrader"] = dict(SOLUTION_META, grade_id="ex9_2_why")
    student = release_notebook(new_notebook(cells=[cell]), Path("x.ipynb"))
    assert student.cells[0].source == "Why?\nYOUR ANSWER HERE"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda nb: setattr(nb.cells[2], "source", "def double(x):\n    return 2 * x"),
            r"09_toy.ipynb cell 2 \(grade_id 'ex9_1_double'\): solution cell has no ### BEGIN SOLUTION",
        ),
        (
            lambda nb: nb.cells[3].metadata["nbgrader"].update(grade_id="ex9_1_double"),
            r"cell 3 \(grade_id 'ex9_1_double'\): duplicate grade_id 'ex9_1_double' \(first used in cell 2\)",
        ),
        (
            lambda nb: setattr(nb.cells[2], "source", f"def f():\n    {BEGIN}\n    return 1"),
            "is never closed",
        ),
        (
            lambda nb: setattr(nb.cells[2], "source", f"{BEGIN}\n{BEGIN}\nx = 1\n{END}"),
            "nested ### BEGIN SOLUTION on line 2",
        ),
        (
            lambda nb: setattr(nb.cells[2], "source", f"{END}\nx = 1"),
            "### END SOLUTION without ### BEGIN SOLUTION on line 1",
        ),
        (
            lambda nb: setattr(nb.cells[1], "source", f"{BEGIN}\nleak = 1\n{END}"),
            "cell 1: solution markers in a cell without nbgrader 'solution: true' metadata",
        ),
        (
            lambda nb: nb.cells[3].metadata["nbgrader"].pop("points"),
            "graded check cell needs positive 'points'",
        ),
        (
            lambda nb: nb.cells[3].metadata["nbgrader"].pop("grade_id"),
            "cell 3: nbgrader cell without a grade_id",
        ),
        (
            lambda nb: setattr(nb.cells[2], "source", f"if True:\n{BEGIN}\n    x = 1\n{END}"),
            "released cell is not valid Python",
        ),
    ],
)
def test_malformed_solutions_fail_with_notebook_and_cell(tmp_path, mutate, message):
    notebook = toy_solution()
    mutate(notebook)
    with pytest.raises(ReleaseError, match=message):
        release_notebook(notebook, tmp_path / "09_toy.ipynb")


def test_cli_reports_release_errors_with_exit_2(tmp_path, capsys):
    solutions, notebooks = tmp_path / "solutions", tmp_path / "notebooks"
    solutions.mkdir()
    notebook = toy_solution()
    notebook.cells[2].source = "def double(x):\n    return 2 * x"
    nbformat.write(notebook, solutions / "09_toy.ipynb")
    assert main(["--solutions", str(solutions), "--notebooks", str(notebooks)]) == 2
    assert "release error: 09_toy.ipynb cell 2" in capsys.readouterr().err


def copy_course(repo_root, tmp_path):
    for folder in ("solutions", "notebooks"):
        shutil.copytree(repo_root / folder, tmp_path / folder)
    return tmp_path / "solutions", tmp_path / "notebooks"


def test_repository_notebooks_are_in_sync(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main(["--check"]) == 0


def test_folders_default_to_the_current_directory(repo_root, tmp_path, monkeypatch, capsys):
    copy_course(repo_root, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert course_folder("solutions") == tmp_path / "solutions"
    assert main(["--check"]) == 0
    assert "in sync" in capsys.readouterr().out
    # a new course: solutions/ only; notebooks/ goes next to it
    shutil.rmtree(tmp_path / "notebooks")
    assert main([]) == 0
    assert (tmp_path / "notebooks" / "01_soft_weights.ipynb").is_file()


def test_from_elsewhere_the_checkout_is_found_and_an_install_names_the_missing_folder(
    repo_root, tmp_path, monkeypatch, capsys
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert course_folder("solutions") == repo_root / "solutions"  # editable install: the checkout
    site_packages = tmp_path / "site-packages"  # a wheel's install: no course folders next to it
    (site_packages / "course_utils").mkdir(parents=True)
    monkeypatch.setattr(course_folders, "CHECKOUT", site_packages)
    assert course_folder("solutions") == elsewhere / "solutions"
    assert main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "--solutions: expected a folder of solution notebooks (NN_name.ipynb)" in err
    assert f"got {elsewhere / 'solutions'}, which does not exist" in err


def test_check_detects_a_touched_solution_and_release_fixes_it(repo_root, tmp_path, capsys):
    solutions, notebooks = copy_course(repo_root, tmp_path)
    args = ["--solutions", str(solutions), "--notebooks", str(notebooks)]
    path = solutions / "01_soft_weights.ipynb"
    notebook = nbformat.read(path, as_version=4)
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    first_code.source += "\n# touched"
    nbformat.write(notebook, path)
    assert main([*args, "--check"]) == 1
    assert "stale: 01_soft_weights.ipynb: differs from a fresh release" in capsys.readouterr().err
    assert main(args) == 0
    assert main([*args, "--check"]) == 0


def test_check_detects_missing_and_orphan_notebooks(repo_root, tmp_path, capsys):
    solutions, notebooks = copy_course(repo_root, tmp_path)
    (notebooks / "01_soft_weights.ipynb").unlink()
    (notebooks / "99_orphan.ipynb").write_text("{}")
    assert main(["--solutions", str(solutions), "--notebooks", str(notebooks), "--check"]) == 1
    err = capsys.readouterr().err
    assert "01_soft_weights.ipynb: missing" in err and "99_orphan.ipynb: has no source" in err


def answer_lines(source):
    inside, lines = False, []
    for line in source.splitlines():
        if line.strip() in (BEGIN, END):
            inside = line.strip() == BEGIN
        elif inside and line.strip() and not line.strip().startswith("### HINT"):
            lines.append(line.strip())
    return lines


def test_no_answer_survives_in_any_student_notebook(repo_root):
    solution_paths = sorted((repo_root / "solutions").glob("*.ipynb"))
    assert solution_paths
    for path in solution_paths:
        solution = nbformat.read(path, as_version=4)
        student_text = (repo_root / "notebooks" / path.name).read_text()
        student = nbformat.reads(student_text, as_version=4)
        assert BEGIN not in student_text and END not in student_text
        assert '"output_type"' not in student_text, f"{path.name}: student notebook has outputs"
        by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in student.cells}
        for cell in solution.cells:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            for line in answer_lines(cell.source):
                assert line not in by_id[grade_id].source, f"{path.name} {grade_id} leaks {line!r}"


def test_unsolved_student_notebook_runs_top_to_bottom(repo_root):
    notebook = nbformat.read(repo_root / "notebooks" / "01_soft_weights.ipynb", as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3", allow_errors=True).execute()
    errors = [
        (cell, output)
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    check_cells = [c for c in notebook.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert len(errors) == len(check_cells) >= 3
    for cell, output in errors:
        assert RAISES in cell.metadata.get("tags", [])
        assert output.ename == "CheckFailed" and "not implemented yet" in output.evalue
