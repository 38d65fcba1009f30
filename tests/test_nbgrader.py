"""nbgrader itself, with the shipped nbgrader_config.py and `make nbgrader-source`, on notebook 01:
generate_assignment, then autograde of a solved submission (full marks) and an unsolved one (0 points,
every cell run); nbgrader's generator keeps each exercise's hint (the ### HINT: line sits above
### BEGIN SOLUTION) and its student notebook runs top to bottom (solution and check cells are tagged
raises-exception in solutions/).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

nbgrader = pytest.importorskip(
    "nbgrader",
    reason="nbgrader is not installed (`make test` installs it; NBGRADER_SPEC= skips it)",
)
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENT = "01_soft_weights"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"


def nbgrader_cli(course: Path, *args: str) -> subprocess.CompletedProcess:
    # nbgrader runs `alembic` from PATH: the one next to this Python.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="session")
def course(tmp_path_factory):
    """nbgrader's course folder after both steps, made once per test run: under pytest-xdist the first
    worker to get here builds it (~40 s) while the others wait for it, instead of each building its own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    course = shared / "nbgrader-course"
    with open(shared / "nbgrader-course.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (course / "built").exists():
            shutil.rmtree(course, ignore_errors=True)
            course.mkdir()
            build_course(course)
            (course / "built").touch()
    return course / "nbgrader"


def build_course(course: Path) -> None:
    """As an instructor has it: config, Makefile, solutions/01; then generate_assignment and autograde."""
    for name in ("Makefile", "nbgrader_config.py"):
        shutil.copy(ROOT / name, course / name)
    (course / "solutions").mkdir()
    shutil.copy(ROOT / "solutions" / NOTEBOOK, course / "solutions" / NOTEBOOK)
    linked = subprocess.run(["make", "-s", "nbgrader-source"], cwd=course, capture_output=True)
    assert linked.returncode == 0, linked.stderr
    nbgrader_cli(course, "generate_assignment", ASSIGNMENT, "--create")
    released = course / "nbgrader" / "release" / ASSIGNMENT / NOTEBOOK
    submissions = {"solved": ROOT / "solutions" / NOTEBOOK, "unsolved": released}
    for student, notebook in submissions.items():
        folder = course / "nbgrader" / "submitted" / student / ASSIGNMENT
        folder.mkdir(parents=True)
        shutil.copy(notebook, folder / NOTEBOOK)
    nbgrader_cli(course, "autograde", ASSIGNMENT, "--create")


def grades(course_root: Path, student: str) -> dict[str, tuple[float, float]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_root / 'gradebook.db'}") as gradebook:
        submitted = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
        return {grade.name: (grade.score, grade.max_score) for grade in submitted.grades}


def test_config_sets_the_course_folder_and_a_long_cell_timeout():
    from nbgrader.preprocessors import Execute
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert config.CourseDirectory.root == str(ROOT / "nbgrader")
    assert Execute(config=config).timeout >= 300


def test_solved_submission_gets_full_marks(course):
    scores = grades(course, "solved")
    assert len(scores) == 3
    assert all(score == maximum > 0 for score, maximum in scores.values()), scores


def test_unsolved_submission_runs_to_the_end_with_zero_points(course):
    scores = grades(course, "unsolved")
    assert len(scores) == 3 and all(score == 0 for score, _ in scores.values()), scores
    graded = nbformat.read(course / "autograded" / "unsolved" / ASSIGNMENT / NOTEBOOK, as_version=4)
    code = [cell for cell in graded.cells if cell.cell_type == "code"]
    assert all(cell.execution_count for cell in code), "autograde stopped before the last cell"
    errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
    assert len(errors) == 3
    assert all(e.ename == "CheckFailed" and "not implemented yet" in e.evalue for e in errors)


def exercise_cells(notebook) -> dict[str, str]:
    return {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def test_nbgrader_release_keeps_each_hint(course):
    ours = exercise_cells(nbformat.read(ROOT / "notebooks" / NOTEBOOK, as_version=4))
    theirs = exercise_cells(nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4))
    for grade_id, source in ours.items():
        hint = source.split("raise NotImplementedError(", 1)[1].rsplit(")", 1)[0].strip("'\"")
        assert hint and hint in theirs[grade_id], f"{grade_id}: hint {hint!r} lost"


def test_nbgrader_release_runs_top_to_bottom_for_a_learner(course):
    """Run All (JupyterLab, nbclient, nbval) goes past an error only in a cell tagged raises-exception;
    tests/test_release.py runs our own student notebook top to bottom the same way."""
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    graded = [cell for cell in released.cells if cell.metadata.get("nbgrader", {}).get("grade_id")]
    assert len(graded) == 6
    for cell in graded:
        assert "raises-exception" in cell.metadata.get("tags", []), cell.source[:60]
