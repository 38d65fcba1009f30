"""The grader is fair to honest students and bounded for hostile ones, in one grading run.

* a scratch cell that defines a helper and then raises keeps its helper and its own error message
  after a restart of the child (another exercise timed out): nothing honest becomes a violation;
* a notebook of 100 slow added cells holds its grading slot no longer than ``--notebook-timeout``;
* an exercise's hidden inputs are not in the child while another exercise's code runs;
* a forbidden shortcut is refused in the sandbox by the routes the profiler used to miss, and an
  honest ``@torch.no_grad()`` helper is not;
* a function that changes its input in place scores 0, with the argument named.
"""

from __future__ import annotations

import json
import time

import pytest
from test_grade import EXERCISES, read_rows, run_grader, write_submission

from course_utils.exercises import find_exercise

S1, S2, S3 = EXERCISES
TIMEOUT_S = 4
NOTEBOOK_TIMEOUT_S = 12

CORRECT_SOFTMAX = """
def stable_softmax(scores, dim=-1):
    shifted = (scores - scores.amax(dim, keepdim=True)).exp()
    return shifted / shifted.sum(dim, keepdim=True)
"""
LOOPS_FOREVER = """
def stable_softmax(scores, dim=-1):
    while True:
        pass
"""
SCRATCH_THEN_RAISES = """
def normalise_rows(weights):  # a helper the later exercises use
    return weights / weights.sum(-1, keepdim=True)

print(undefined_name)  # a scratch line that raises
"""
LOOKUP_WITH_HELPER = """
def soft_lookup_answer(query, keys, values, temperature):
    scores = keys @ query / temperature
    weights = normalise_rows((scores - scores.max()).exp())
    return weights @ values, weights
"""
SLOW_SCRATCH = "import time\ntime.sleep(0.5)\n"
# Looks in the child's memory for any other exercise's hidden inputs while ex1_1's cases run.
LOOKS_FOR_OTHER_INPUTS = """
import gc

def _other_exercises_inputs():
    found = 0
    for thing in gc.get_objects():
        if isinstance(thing, dict) and thing.get("exercise") in ("ex1_2_soft_lookup", "ex1_3_kernel_regression"):
            found += bool(thing.get("cases"))
        elif isinstance(thing, list) and len(thing) > 4 and all(
            isinstance(case, dict) and set(case) == {"args", "kwargs"} for case in thing
        ) and len(thing[0]["args"]) == 4:
            found += 1
    return found

FOUND = []

def stable_softmax(scores, dim=-1):
    if not FOUND:  # one look (it is slow), while the first hidden case runs
        FOUND.append(_other_exercises_inputs())
    if FOUND[0]:
        raise RuntimeError("another exercise's hidden inputs are in the child")
    shifted = (scores - scores.amax(dim, keepdim=True)).exp()
    return shifted / shifted.sum(dim, keepdim=True)
"""
THREAD_SHORTCUT = """
import threading

def stable_softmax(scores, dim=-1):
    out = {}
    worker = threading.Thread(target=lambda: out.setdefault("y", torch.softmax(scores, dim)))
    worker.start()
    worker.join()
    return out["y"]
"""
PARTIAL_SHORTCUT = """
import functools

SOFTMAX = functools.partial(torch.softmax)

def stable_softmax(scores, dim=-1):
    return SOFTMAX(scores, dim)
"""
CODE_COPY_SHORTCUT = """
import types
import course_utils.softmax as library

COPY = types.FunctionType(library.softmax.__code__.replace(co_name="mine"), library.softmax.__globals__)

def stable_softmax(scores, dim=-1):
    return COPY(scores, dim)
"""
SPEC_HELPER_SHORTCUT = """
from course_utils.exercises import soft_weights

def stable_softmax(scores, dim=-1):
    return soft_weights._exp_without_shift.returns(scores - scores.amax(dim, keepdim=True), dim)
"""
TUPLE_SHORTCUT = """
from course_utils.pooling import soft_lookup

class Later(tuple):  # the grader's codec iterates a returned tuple: the work happens then
    def __iter__(self):
        return iter(soft_lookup(*self.inputs))

def soft_lookup_answer(query, keys, values, temperature):
    later = Later()
    later.inputs = (query, keys, values, temperature)
    return later
"""
IN_PLACE = """
def stable_softmax(scores, dim=-1):
    scores -= scores.amax(dim, keepdim=True)  # overwrites the caller's scores
    scores.exp_()
    return scores / scores.sum(dim, keepdim=True)
"""
WITHOUT_THE_SHIFT = """
def stable_softmax(scores, dim=-1):
    exponentials = scores.exp()
    return exponentials / exponentials.sum(dim, keepdim=True)
"""
NO_GRAD_HELPER = """
@torch.no_grad()
def _normalised(exponentials, dim):
    return exponentials / exponentials.sum(dim, keepdim=True)

def stable_softmax(scores, dim=-1):
    return _normalised((scores - scores.amax(dim, keepdim=True)).exp(), dim)
"""


def _with_added_cells(path, before: str, sources: list[str]) -> None:
    """Insert plain code cells (the learner's own) before the cell of exercise ``before``."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = notebook["cells"]
    index = next(
        position
        for position, cell in enumerate(cells)
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == before
    )
    added = [
        {
            "cell_type": "code",
            "metadata": {},
            "source": source,
            "outputs": [],
            "execution_count": None,
        }
        for source in sources
    ]
    notebook["cells"] = cells[:index] + added + cells[index:]
    path.write_text(json.dumps(notebook), encoding="utf-8")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("fairness")
    submissions = root / "submissions"
    write_submission(submissions / "correct")
    restarted = write_submission(
        submissions / "scratch_then_timeout", {S1: LOOPS_FOREVER, S2: LOOKUP_WITH_HELPER}
    )
    _with_added_cells(restarted, S2, [SCRATCH_THEN_RAISES])
    slow = write_submission(submissions / "hundred_slow_cells")
    _with_added_cells(slow, S1, [SLOW_SCRATCH] * 100)
    write_submission(submissions / "looks_for_other_inputs", {S1: LOOKS_FOR_OTHER_INPUTS})
    write_submission(submissions / "thread", {S1: THREAD_SHORTCUT})
    write_submission(submissions / "partial", {S1: PARTIAL_SHORTCUT})
    write_submission(submissions / "code_copy", {S1: CODE_COPY_SHORTCUT})
    write_submission(submissions / "spec_helper", {S1: SPEC_HELPER_SHORTCUT})
    write_submission(submissions / "tuple_subclass", {S2: TUPLE_SHORTCUT})
    write_submission(submissions / "no_grad_helper", {S1: NO_GRAD_HELPER})
    write_submission(submissions / "in_place", {S1: IN_PLACE})
    write_submission(submissions / "without_the_shift", {S1: WITHOUT_THE_SHIFT})
    started = time.monotonic()
    result = run_grader(
        str(submissions),
        "--out", str(root / "grades.csv"),
        "--jobs", "2",
        "--timeout", str(TIMEOUT_S),
        "--notebook-timeout", str(NOTEBOOK_TIMEOUT_S),
        cwd=root,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    return read_rows(root / "grades.csv"), elapsed, json.loads((root / "grades.json").read_text())


def _row(graded, student, exercise):
    rows, _, _ = graded
    return rows[(student, exercise)]


def test_a_restart_keeps_an_honest_scratch_cell_and_its_own_error(graded):
    assert _row(graded, "scratch_then_timeout", S1)["status"] == "timeout"
    lookup = _row(graded, "scratch_then_timeout", S2)
    assert lookup["status"] == "passed", lookup["message"]  # the helper survived the restart
    assert _row(graded, "scratch_then_timeout", S3)["status"] == "passed"


def test_a_notebook_of_slow_cells_is_bounded_by_its_time_budget(graded):
    rows, elapsed, document = graded
    for exercise in EXERCISES:
        row = rows[("hundred_slow_cells", exercise)]
        assert row["status"] == "timeout" and "time budget" in row["message"], row
    # 100 cells x 0.5 s would hold the slot 50 s; the budget stops it at 12 s, and the whole class
    # (12 students on 2 slots) grades well within 50 s.
    assert elapsed < 45, elapsed
    assert document["grader"]["notebook_timeout_s"] == NOTEBOOK_TIMEOUT_S
    for exercise in EXERCISES:
        assert _row(graded, "correct", exercise)["status"] == "passed"


def test_hidden_inputs_of_other_exercises_are_not_in_the_child(graded):
    row = _row(graded, "looks_for_other_inputs", S1)
    assert row["status"] == "passed", row["message"]


@pytest.mark.parametrize(
    ("student", "exercise", "name"),
    [
        ("thread", S1, "torch.softmax"),
        ("partial", S1, "torch.softmax"),
        ("code_copy", S1, "course_utils.softmax.softmax"),
        ("spec_helper", S1, "course_utils.exercises.soft_weights._exp_without_shift"),
        ("tuple_subclass", S2, "course_utils.pooling.soft_lookup"),
    ],
)
def test_a_shortcut_is_refused_in_the_sandbox_by_any_route(graded, student, exercise, name):
    row = _row(graded, student, exercise)
    assert row["points"] == "0" and name in row["message"], row
    assert "which does this exercise for you" in row["message"]


def test_an_honest_no_grad_helper_gets_full_marks(graded):
    row = _row(graded, "no_grad_helper", S1)
    assert row["status"] == "passed", row["message"]


def test_changing_an_input_in_place_scores_0_and_says_which(graded):
    row = _row(graded, "in_place", S1)
    assert row["points"] == "0" and "changes its input `scores` in place" in row["message"], row


def test_feedback_gives_the_conceptual_hint_never_the_code(graded):
    exercise = find_exercise(S1)
    row = _row(graded, "without_the_shift", S1)
    assert row["status"] == "partial" and "without the shift" in row["message"]
    assert f"hint: {exercise.hint}" in row["message"] and exercise.code_hint not in row["message"]
