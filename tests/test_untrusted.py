"""The tools that run notebooks without a sandbox (course-progress, record) say so in their --help, and
refuse a class's submissions (SUBMISSIONS/<student>/NN_name.ipynb) unless --trust-this-code is given,
while a learner's own folder and the course's solutions/ still run.

No notebook is executed: the runners are replaced by stubs, so a test only sees whether a tool would
have run the notebooks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from course_utils.tooling import progress, record
from course_utils.tooling.untrusted import TRUST_FLAG, submissions_folder

NOTEBOOK = "01_soft_weights.ipynb"
ROOT = Path(__file__).resolve().parent.parent
TOOLS = {"course-progress": progress.main, "record": record.main}


@pytest.fixture
def no_execution(monkeypatch):
    """Stub runners that note which notebooks would have run, instead of running them."""
    ran: list[Path] = []

    def run_notebook(path, timeout):
        ran.append(path)
        raise AssertionError("reached only for an edited notebook, and the tests edit none")

    def record_notebook(path, timeout=600):
        ran.append(path)
        return 0.0

    monkeypatch.setattr(progress, "run_notebook", run_notebook)
    monkeypatch.setattr(record, "record", record_notebook)
    return ran


@pytest.fixture
def submissions(tmp_path) -> Path:
    """tmp/SUBMISSIONS/{alice,bob}/01_soft_weights.ipynb (the released notebook, untouched)."""
    folder = tmp_path / "SUBMISSIONS"
    for student in ("alice", "bob"):
        (folder / student).mkdir(parents=True)
        shutil.copy(ROOT / "notebooks" / NOTEBOOK, folder / student / NOTEBOOK)
    return folder


def course_checkout(folder: Path) -> Path:
    """A course's folders side by side: notebooks/, solutions/, my-notebooks/ (each with 01)."""
    for name, source in (("notebooks", "notebooks"), ("solutions", "solutions")):
        (folder / name).mkdir()
        shutil.copy(ROOT / source / NOTEBOOK, folder / name / NOTEBOOK)
    (folder / "my-notebooks").mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, folder / "my-notebooks" / NOTEBOOK)
    return folder


@pytest.mark.parametrize("tool", TOOLS)
def test_help_says_the_code_runs_with_your_rights_without_a_sandbox(tool, capsys):
    with pytest.raises(SystemExit) as exit_:
        TOOLS[tool](["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "runs the notebooks' code with your own rights, without a sandbox" in text
    assert "course-grade SUBMISSIONS" in text and TRUST_FLAG in text


def _refusal(error: str, submissions: Path) -> None:
    text = " ".join(error.split())
    assert "a class's submissions" in text and "without a sandbox" in text, text
    assert f"course-grade {submissions}" in text and TRUST_FLAG in text, text


@pytest.mark.parametrize("student", ["", "alice"], ids=["the class", "one student"])
def test_progress_refuses_submissions_unless_trusted(student, submissions, no_execution, capsys):
    copy = submissions / student if student else submissions
    course = course_checkout(submissions.parent) / "notebooks"
    assert progress.main(["--copy", str(copy), "--course", str(course)]) == 2
    _refusal(capsys.readouterr().err, submissions)
    assert sorted(path.name for path in submissions.iterdir()) == ["alice", "bob"]  # nothing copied
    with pytest.raises(ValueError, match="a class's submissions"):
        progress.progress(copy, course)  # show_progress() goes this way

    assert progress.main([TRUST_FLAG, "--copy", str(copy), "--course", str(course)]) == 0
    assert "3 not started" in capsys.readouterr().out  # untouched, so reported without running


def test_record_refuses_a_students_notebook_unless_trusted(submissions, no_execution, capsys):
    notebooks = [str(submissions / student / NOTEBOOK) for student in ("alice", "bob")]
    assert record.main(notebooks) == 2
    _refusal(capsys.readouterr().err, submissions)
    assert no_execution == []
    assert record.main([TRUST_FLAG, *notebooks]) == 0
    assert no_execution == [Path(path) for path in notebooks]


def test_a_learners_folder_and_the_solutions_still_run(tmp_path, no_execution, capsys):
    """my-notebooks/ beside notebooks/ and solutions/, a folder of one's own with notebooks in it,
    and solutions/ for record: none is a class's submissions."""
    checkout = course_checkout(tmp_path)
    own = tmp_path / "attention-work"
    own.mkdir()
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, own / NOTEBOOK)
    (tmp_path / "attention-link").symlink_to(own)  # the same folder again, not another student
    for copy in (checkout / "my-notebooks", own):
        assert progress.main(["--copy", str(copy), "--course", str(checkout / "notebooks")]) == 0
        assert "0/3 exercises passed" in capsys.readouterr().out
    assert record.main([str(checkout / "solutions" / NOTEBOOK)]) == 0
    assert no_execution == [checkout / "solutions" / NOTEBOOK]
    for folder in ("solutions", "notebooks", "my-notebooks"):
        assert submissions_folder(checkout / folder) is None
    assert submissions_folder(ROOT / "solutions") is None
    assert submissions_folder(ROOT / "notebooks") is None
