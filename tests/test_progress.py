"""course-progress on a learner's copy: the copy is filled but never overwritten, and each exercise is
reported passed, failing (with its message) or not started, with the next exercise to do.

One real run: a copy of notebook 01 with exercise 1 solved (the instructor's cell), exercise 2 wrong and
exercise 3 untouched, executed once in its own kernel (~10 s)."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from course_utils.tooling import progress
from course_utils.tooling.progress import (
    FAILING,
    NOT_RUN,
    NOT_STARTED,
    PASSED,
    ExerciseState,
    copy_new_notebooks,
    main,
    state_of_check,
)

NOTEBOOK = "01_soft_weights.ipynb"
ROOT = Path(__file__).resolve().parent.parent


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def check_cell(source: str, outputs=(), execution_count=1):
    cell = new_code_cell(source, execution_count=execution_count)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "exZ_1_f_check"}
    cell.outputs = list(outputs)
    return cell


def error(ename: str, evalue: str):
    return new_output("error", ename=ename, evalue=evalue, traceback=[])


@pytest.mark.parametrize(
    ("outputs", "execution_count", "status", "message"),
    [
        (
            [new_output("stream", name="stdout", text="✔ exZ_1_f: passed all 5 cases\n")],
            1,
            PASSED,
            "",
        ),
        (
            [
                error(
                    "CheckFailed",
                    "exZ_1_f: not implemented yet: replace `raise NotImplementedError`",
                )
            ],
            1,
            NOT_STARTED,
            "",
        ),
        (
            [error("CheckFailed", "exZ_1_f: 0/5 cases pass.\nweights do not sum to 1")],
            1,
            FAILING,
            "0/5 cases pass. weights do not sum to 1",
        ),
        (
            [error("NameError", "name 'f' is not defined")],
            1,
            FAILING,
            "NameError: name 'f' is not defined",
        ),
        ([], None, NOT_RUN, "the notebook stopped before this check"),
        ([], 1, FAILING, "the check printed no ✔ line"),
    ],
)
def test_state_of_a_check_cell_comes_from_its_outputs(outputs, execution_count, status, message):
    cell = check_cell('check("exZ_1_f", f)', outputs, execution_count)
    assert state_of_check("99_toy", cell) == ExerciseState("99_toy", "exZ_1_f", status, message)


def test_copy_adds_missing_notebooks_and_never_overwrites(tmp_path, capsys):
    course, copy = tmp_path / "notebooks", tmp_path / "my-notebooks"
    course.mkdir()
    for name in ("01_a.ipynb", "02_b.ipynb"):
        (course / name).write_text(f"course {name}")
    assert copy_new_notebooks(course, copy) == [copy / "01_a.ipynb", copy / "02_b.ipynb"]
    (copy / "01_a.ipynb").write_text("my work")
    (course / "03_c.ipynb").write_text("course 03")  # the course grows
    assert main(["--copy-only", "--copy", str(copy), "--course", str(course)]) == 0
    assert f"copied notebooks/03_c.ipynb -> {copy}/ (new in the course)" in capsys.readouterr().out
    assert (copy / "01_a.ipynb").read_text() == "my work"
    assert main(["--copy-only", "--copy", str(copy), "--course", str(course)]) == 0
    assert "has every course notebook" in capsys.readouterr().out


def test_misuse_names_the_argument(tmp_path, capsys):
    assert main(["--copy-only", "--course", str(tmp_path / "none"), "--copy", str(tmp_path)]) == 2
    assert (
        f"--course: expected the released notebooks (NN_name.ipynb), got {tmp_path / 'none'}"
        in (capsys.readouterr().err)
    )
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "01_a.ipynb").write_text("{}")
    assert main(["--copy", str(copy), "--course", str(copy), "07"]) == 2
    assert "notebook '07': expected one of 01_a" in capsys.readouterr().err


def course_with_notebook_01(folder: Path) -> Path:
    course = folder / "notebooks"
    course.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, course / NOTEBOOK)
    return course


def test_an_untouched_notebook_is_not_started_without_running_it(tmp_path, monkeypatch, capsys):
    course = course_with_notebook_01(tmp_path)
    copy = tmp_path / "my-notebooks"
    monkeypatch.setattr(progress, "run_notebook", lambda *args: pytest.fail("ran the notebook"))
    assert main(["--copy", str(copy), "--course", str(course)]) == 0
    out = capsys.readouterr().out
    assert "0/3 exercises passed, 0 failing, 3 not started" in out
    assert f"Next: ex1_1_stable_softmax in {copy / NOTEBOOK} (not started)" in out


def test_a_notebook_over_its_time_budget_is_stopped(tmp_path):
    notebook = new_notebook(
        cells=[
            new_code_cell("import time\ntime.sleep(60)"),
            check_cell("check('exZ_1_f', f)", execution_count=None),
        ]
    )
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / "99_slow.ipynb"
    nbformat.write(notebook, path)
    states = progress.notebook_progress(path, None, timeout=3)
    assert states == [
        ExerciseState(
            "99_slow",
            "exZ_1_f",
            NOT_RUN,
            "stopped after the 3 s budget for one notebook (--timeout)",
        )
    ]


def test_an_unreadable_notebook_is_named_not_a_traceback(tmp_path):
    (tmp_path / "01_broken.ipynb").write_text("{ not json")
    (state,) = progress.progress(tmp_path)
    assert state.notebook == "01_broken" and state.status == FAILING
    assert state.message.startswith("cannot read it:")


def test_show_progress_inside_a_progress_run_does_nothing(monkeypatch, capsys):
    monkeypatch.setenv(progress.RUNNING, "1")
    assert progress.show_progress() == []
    assert "skipped while course-progress runs" in capsys.readouterr().out


@pytest.fixture(scope="module")
def learner_copy(tmp_path_factory):
    """my-notebooks/01 with exercise 1 solved, exercise 2 wrong, exercise 3 not started."""
    folder = tmp_path_factory.mktemp("learner")
    course = course_with_notebook_01(folder)
    copy = folder / "my-notebooks"
    copy.mkdir()
    solution = nbformat.read(ROOT / "solutions" / NOTEBOOK, as_version=4)
    answers = {grade_id(cell): cell.source for cell in solution.cells if grade_id(cell)}
    notebook = nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if grade_id(cell) == "ex1_1_stable_softmax":
            cell.source = answers["ex1_1_stable_softmax"]
        if grade_id(cell) == "ex1_2_soft_lookup":
            cell.source = cell.source.replace(
                "raise NotImplementedError", "return values.mean(dim=0), None  #"
            )
    nbformat.write(notebook, copy / NOTEBOOK)
    return course, copy


def test_progress_reports_passed_failing_not_started_and_the_next_exercise(learner_copy, capsys):
    course, learner_copy = learner_copy
    assert main(["--copy", str(learner_copy), "--course", str(course)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[1]: line for line in out.splitlines() if line.startswith("01_soft")}
    assert "✔ passed" in rows["ex1_1_stable_softmax"]
    assert "✘ failing: " in rows["ex1_2_soft_lookup"]
    assert "cases pass" in rows["ex1_2_soft_lookup"]
    assert "· not started" in rows["ex1_3_kernel_regression"]
    assert "1/3 exercises passed, 1 failing, 1 not started" in out
    assert "stopped after" not in out, out
    assert f"Next: ex1_2_soft_lookup in {learner_copy / NOTEBOOK} (failing)" in out


def test_asked_about_some_notebooks_it_copies_nothing_and_reports_only_those(tmp_path, capsys):
    """`course-progress 08 …` on a folder of part II work: notebooks 01-07 of the course are not
    copied in as 'new', and the next exercise is one of the notebooks asked about."""
    course = tmp_path / "notebooks"
    course.mkdir()
    for name in ("01_soft_weights.ipynb", "08_transformer.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, course / name)
    copy = tmp_path / "part-two"
    copy.mkdir()
    shutil.copy(ROOT / "notebooks" / "08_transformer.ipynb", copy / "08_transformer.ipynb")
    assert main(["08", "--copy", str(copy), "--course", str(course)]) == 0
    out = capsys.readouterr().out
    assert sorted(path.name for path in copy.iterdir()) == ["08_transformer.ipynb"]
    assert "new in the course" not in out and "ex1_" not in out
    assert "Next: ex8_1_encoder_block" in out


def test_a_failing_message_is_shown_whole():
    long = "0/5 cases pass. " + "x" * 400 + " it matches the named mistake — hint: the idea"
    cell = check_cell('check("exZ_1_f", f)', [error("CheckFailed", f"exZ_1_f: {long}")])
    assert state_of_check("99_toy", cell).message == long
