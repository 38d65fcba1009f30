"""The autograder (course_utils.grade): a battery of good, wrong and hostile submissions.

The battery is built from solutions/01_soft_weights.ipynb (one student per kind of submission,
each replacing some exercise cells) and graded in ONE grader run per sandbox mode, as a
subprocess (so a submission that managed to kill the grader fails the test instead of pytest).
"""

from __future__ import annotations

import copy
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from course_utils.feedback import codec
from course_utils.feedback.judge import close
from course_utils.grade import cli, seccomp
from course_utils.grade.cases import draw_cases, gradable_notebooks
from course_utils.grade.protocol import ChildFailure, ChildRun
from course_utils.grade.report import COLUMNS, feedback_markdown
from course_utils.grade.results import ExerciseRun, Row
from course_utils.grade.runner import Settings
from course_utils.grade.sandbox import Limits, Sandbox
from course_utils.grade.submission import load_released, read_submission
from course_utils.tooling.install_cell import INSTALL_CELL_ID

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "01_soft_weights.ipynb"
RELEASED = ROOT / "notebooks" / "01_soft_weights.ipynb"
EXERCISES = ("ex1_1_stable_softmax", "ex1_2_soft_lookup", "ex1_3_kernel_regression")
HAS_BWRAP = shutil.which("bwrap") is not None
TIMEOUT_S = 5  # per exercise in the battery: the correct cells take milliseconds

# --- replacement cells ------------------------------------------------------------------------

NAIVE_SOFTMAX = """
def stable_softmax(scores, dim=-1):
    exponentials = torch.exp(scores)  # no max shift: overflows for large logits
    return exponentials / exponentials.sum(dim=dim, keepdim=True)
"""
TIMES_TEMPERATURE = """
def soft_lookup_answer(query, keys, values, temperature):
    weights = torch.softmax(keys @ query * temperature, dim=0)  # multiplies instead of divides
    return weights @ values, weights
"""
TWO_H_KERNEL = """
def kernel_regression(query_points, train_points, train_values, bandwidth):
    differences = query_points[:, None] - train_points[None, :]
    weights = torch.softmax(-(differences**2) / (2 * bandwidth), dim=1)  # 2h instead of 2h^2
    return weights @ train_values, weights
"""
SUMMED_SOFTMAX = """
def stable_softmax(scores, dim=-1):
    return torch.exp(scores).sum(dim)
"""
WEIGHTS_ONLY = """
def soft_lookup_answer(query, keys, values, temperature):
    return torch.softmax(keys @ query / temperature, dim=0)
"""
FLAT_WEIGHTS = """
def kernel_regression(query_points, train_points, train_values, bandwidth):
    differences = query_points[:, None] - train_points[None, :]
    weights = torch.softmax(-(differences**2) / (2 * bandwidth**2), dim=1)
    return weights @ train_values, weights.reshape(-1)
"""
NAN_SOFTMAX = """
def stable_softmax(scores, dim=-1):
    return torch.full_like(scores, float("nan"))
"""
NAN_OUTPUT = """
def soft_lookup_answer(query, keys, values, temperature):
    weights = torch.softmax(keys @ query / temperature, dim=0)
    return weights @ values * float("nan"), weights
"""
RAISES_VALUE_ERROR = """
def stable_softmax(scores, dim=-1):
    raise ValueError("my bug")
"""
BROKEN_IMPORT = """
import a_module_that_does_not_exist_anywhere

def kernel_regression(query_points, train_points, train_values, bandwidth):
    return None
"""
SYNTAX_ERROR = """
def stable_softmax(scores, dim=-1):
    return (scores
"""
INFINITE_LOOP = """
def stable_softmax(scores, dim=-1):
    while True:
        pass
"""
HUGE_TENSOR = """
def stable_softmax(scores, dim=-1):
    return torch.empty(10**11)  # 400 GB
"""
GROWING_LIST = """
import numpy

def soft_lookup_answer(query, keys, values, temperature):
    blocks = []
    while True:
        blocks.append(numpy.empty(10**8))  # 800 MB each, reserved but never touched
"""
FORK_BOMB = """
import os
import time

def stable_softmax(scores, dim=-1):
    for _ in range(6):  # bounded (64 processes) in case the filter were missing
        os.fork()
    time.sleep(600)
"""
SUBPROCESS = """
import subprocess

def soft_lookup_answer(query, keys, values, temperature):
    subprocess.run(["sleep", "600"])
"""
SYS_EXIT = """
import sys

def stable_softmax(scores, dim=-1):
    sys.exit(3)
"""
OS_EXIT = """
import os

def soft_lookup_answer(query, keys, values, temperature):
    os._exit(7)
"""
HUGE_PRINT = """
def stable_softmax(scores, dim=-1):
    print("x" * 50_000_000)
    shifted = scores - scores.amax(dim=dim, keepdim=True)
    return torch.exp(shifted) / torch.exp(shifted).sum(dim=dim, keepdim=True)
"""
HUGE_RETURN = """
def soft_lookup_answer(query, keys, values, temperature):
    return torch.zeros(10**7), torch.zeros(len(keys))
"""
GARBAGE_CHANNEL = """
import os

def kernel_regression(query_points, train_points, train_values, bandwidth):
    for fd in range(3, 64):
        try:
            os.write(fd, b'{"event": "result", "garbage\\n')
        except OSError:
            pass
    return None
"""
WRITE_OUTSIDE = """
def stable_softmax(scores, dim=-1):
    try:
        with open({target!r}, "w") as handle:
            handle.write("escaped")
    except OSError:
        pass
    shifted = scores - scores.amax(dim=dim, keepdim=True)
    return torch.exp(shifted) / torch.exp(shifted).sum(dim=dim, keepdim=True)
"""
READ_ANSWERS = """
import json

with open({other!r}) as handle:  # another student's submission
    handle.read()
with open({solutions!r}) as handle:  # the instructor's notebook
    for cell in json.load(handle)["cells"]:
        if cell.get("metadata", {{}}).get("nbgrader", {{}}).get("grade_id") == "ex1_2_soft_lookup":
            exec("".join(cell["source"]))
"""
PATCH_JUDGE_AND_KILL = """
import os
import signal

import numpy

numpy.allclose = lambda *args, **kwargs: True
numpy.isclose = lambda a, b, **kwargs: numpy.ones(numpy.shape(a), dtype=bool)
torch.allclose = lambda *args, **kwargs: True
try:
    os.kill(os.getppid(), signal.SIGKILL)
except OSError:
    pass

def kernel_regression(query_points, train_points, train_values, bandwidth):
    weights = torch.zeros(len(query_points), len(train_points), dtype=train_points.dtype)
    return weights @ train_values, weights
"""


def setup_cell(notebook: dict) -> dict:
    """The released notebook's setup cell: its first code cell after the Colab install cell."""
    return next(
        cell
        for cell in notebook["cells"]
        if cell["cell_type"] == "code" and cell.get("id") != INSTALL_CELL_ID
    )


def solution_notebook() -> dict:
    return json.loads(SOLUTION.read_text(encoding="utf-8"))


def released_stub(grade_id: str) -> str:
    for cell in json.loads(RELEASED.read_text(encoding="utf-8"))["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
            return "".join(cell["source"])
    raise KeyError(grade_id)


def write_submission(folder: Path, replace=None, drop=(), strip_metadata=(), duplicate=()) -> Path:
    """The solution notebook with some exercise cells replaced, removed, stripped or copied."""
    notebook = solution_notebook()
    cells = []
    for cell in notebook["cells"]:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id in drop:
            continue
        if grade_id in (replace or {}):
            cell["source"] = (replace or {})[grade_id]
        if grade_id in strip_metadata:
            cell["metadata"] = {}
        cells.append(cell)
        if grade_id in duplicate:
            cells.append(copy.deepcopy(cell))
    notebook["cells"] = cells
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "01_soft_weights.ipynb"
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


# The spawn-mode run (a fresh interpreter per notebook, ~3 s each) uses the students whose
# handling depends on how the child process is started and killed.
SPAWN_STUDENTS = ("correct", "infinite_loop", "exit", "memory_bomb", "huge_output", "hostile")


def build_battery(submissions: Path, escape_target: Path, only=None) -> None:
    s1, s2, s3 = EXERCISES
    write_submission(submissions / "correct")
    write_submission(
        submissions / "partial", {s1: NAIVE_SOFTMAX, s2: TIMES_TEMPERATURE, s3: TWO_H_KERNEL}
    )
    write_submission(
        submissions / "wrong_shape", {s1: SUMMED_SOFTMAX, s2: WEIGHTS_ONLY, s3: FLAT_WEIGHTS}
    )
    write_submission(submissions / "nan", {s1: NAN_SOFTMAX, s2: NAN_OUTPUT})
    write_submission(
        submissions / "exception",
        {s1: RAISES_VALUE_ERROR, s2: released_stub(s2), s3: BROKEN_IMPORT},
    )
    write_submission(submissions / "syntax_error", {s1: SYNTAX_ERROR})
    (submissions / "invalid_json").mkdir()
    (submissions / "invalid_json" / "01_soft_weights.ipynb").write_text('{"cells": [', "utf-8")
    (submissions / "not_a_notebook").mkdir()
    (submissions / "not_a_notebook" / "01_soft_weights.ipynb").write_text("[1, 2]", "utf-8")
    (submissions / "unreadable" / "01_soft_weights.ipynb").mkdir(parents=True)
    write_submission(
        submissions / "missing_cell", drop=(s2,), strip_metadata=(s3,), duplicate=(s1,)
    )
    (submissions / "no_file").mkdir()
    (submissions / "symlink").mkdir()
    (submissions / "symlink" / "01_soft_weights.ipynb").symlink_to(SOLUTION)
    write_submission(submissions / "infinite_loop", {s1: INFINITE_LOOP})
    write_submission(submissions / "memory_bomb", {s1: HUGE_TENSOR, s2: GROWING_LIST})
    write_submission(submissions / "fork", {s1: FORK_BOMB, s2: SUBPROCESS})
    write_submission(submissions / "exit", {s1: SYS_EXIT, s2: OS_EXIT})
    write_submission(
        submissions / "huge_output", {s1: HUGE_PRINT, s2: HUGE_RETURN, s3: GARBAGE_CHANNEL}
    )
    write_submission(
        submissions / "hostile",
        {
            s1: WRITE_OUTSIDE.format(target=str(escape_target)),
            s2: READ_ANSWERS.format(
                other=str(submissions / "correct" / "01_soft_weights.ipynb"),
                solutions=str(SOLUTION),
            ),
            s3: PATCH_JUDGE_AND_KILL,
        },
    )
    if only is not None:
        for folder in submissions.iterdir():
            if folder.name not in only:
                shutil.rmtree(folder)


GRADING_SEED = 20261202  # fixed, so the battery's points are reproducible


def run_grader(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    if "--seed" not in arguments:
        arguments = (*arguments, "--seed", str(GRADING_SEED))
    return subprocess.run(
        [sys.executable, "-m", "course_utils.grade", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def read_rows(path: Path) -> dict[tuple[str, str], dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COLUMNS
        return {(row["student"], row["exercise"]): row for row in reader}


NEEDS_BWRAP = pytest.mark.skipif(not HAS_BWRAP, reason="bubblewrap is not installed")
# (sandbox, interpreter): "zygote" forks a preloaded interpreter per notebook (the default),
# "spawn" starts a fresh one (--spawn); each runs the whole battery.
BATTERY_MODES = [
    pytest.param("bwrap", "zygote", marks=NEEDS_BWRAP),
    pytest.param("none", "zygote"),
    pytest.param("bwrap" if HAS_BWRAP else "none", "spawn"),
]


@pytest.mark.parametrize(("mode", "interpreter"), BATTERY_MODES)
def test_battery(mode, interpreter, tmp_path):
    submissions = tmp_path / "submissions"
    escape_target = tmp_path / "escaped.txt"
    build_battery(submissions, escape_target, SPAWN_STUDENTS if interpreter == "spawn" else None)
    started = time.monotonic()
    result = run_grader(
        str(submissions),
        "--out", str(tmp_path / "grades.csv"),
        "--feedback", str(tmp_path / "feedback"),
        "--jobs", "2",
        "--timeout", str(TIMEOUT_S),
        "--sandbox", mode,
        *(["--spawn"] if interpreter == "spawn" else []),
        cwd=tmp_path,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    print(
        f"battery in sandbox {mode} ({interpreter}): {elapsed:.1f} s\n{result.stdout}\n{result.stderr[-3000:]}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(tmp_path / "grades.csv")
    students = sorted(path.name for path in submissions.iterdir())
    assert set(rows) == {(student, exercise) for student in students for exercise in EXERCISES}
    mismatches = []

    def expect(student, exercise, status, points=None, contains=()):
        if student not in students:
            return  # not in this run's battery
        row = rows[(student, EXERCISES[exercise - 1])]
        wrong = row["status"] != status
        wrong |= points is not None and float(row["points"]) != points
        wrong |= any(text not in row["message"] for text in contains)
        if wrong:
            mismatches.append(
                f"{student} ex{exercise}: expected {status} {points} {contains}, "
                f"got {row['status']} {row['points']} {row['message']!r}"
            )

    for exercise in (1, 2, 3):
        expect("correct", exercise, "passed", 2)
    expect("partial", 1, "partial", 1.2, ("large logits", "weights: NaN", "without the shift"))
    expect("partial", 2, "partial", 1.2, ("T=0.5: output: 3 of 3 values differ",))
    # 2h instead of 2h² fails 2 or 3 of the 5 cases: far from the data both kernels can pick the
    # same nearest point, depending on the drawn points (GRADING_SEED fixes them).
    expect("partial", 3, "partial", 1.2, ("h=0.5 (float64): predictions:", "differ", "2h²"))
    expect("wrong_shape", 1, "failed", 0, ("weights: shape (3,), expected (3, 5)",))
    expect("wrong_shape", 2, "failed", 0, ("should return a tuple (output, weights)",))
    expect("wrong_shape", 3, "failed", 0, ("weights: shape (28,), expected (4, 7)",))
    expect("nan", 1, "failed", 0, ("weights: NaN",))
    expect("nan", 2, "failed", 0, ("output: NaN",))
    expect("nan", 3, "passed", 2)
    expect("exception", 1, "error", 0, ("ValueError: my bug", "line 3"))
    expect("exception", 2, "not_implemented", 0)
    expect("exception", 3, "error", 0, ("ModuleNotFoundError",))
    expect("syntax_error", 1, "syntax_error", 0, ("does not compile",))
    expect("syntax_error", 2, "passed", 2)
    expect("syntax_error", 3, "passed", 2)
    for exercise in (1, 2, 3):
        expect("invalid_json", exercise, "invalid_notebook", 0, ("not valid JSON",))
        expect("not_a_notebook", exercise, "invalid_notebook", 0, ("not a Jupyter notebook",))
        expect("unreadable", exercise, "invalid_notebook", 0, ("is a folder",))
        expect("no_file", exercise, "missing", 0, ("no 01_soft_weights.ipynb was submitted",))
        expect("symlink", exercise, "invalid_notebook", 0, ("symbolic link",))
    expect("missing_cell", 1, "duplicate", 0, ("2 cells carry grade_id",))
    expect("missing_cell", 2, "missing", 0, ("no cell with nbgrader grade_id",))
    expect("missing_cell", 3, "missing", 0, ("no cell with nbgrader grade_id",))
    expect("infinite_loop", 1, "timeout", 0, (f"within {TIMEOUT_S} s",))
    expect("infinite_loop", 2, "passed", 2)
    expect("infinite_loop", 3, "passed", 2)
    expect("memory_bomb", 1, "memory", 0, ("out of memory",))
    expect("memory_bomb", 2, "memory", 0, ("MemoryError",))  # numpy's _ArrayMemoryError
    expect("memory_bomb", 3, "passed", 2)
    expect("fork", 1, "error", 0, ("PermissionError",))
    expect("fork", 2, "error", 0, ("PermissionError",))
    expect("fork", 3, "passed", 2)
    expect("exit", 1, "error", 0, ("sys.exit(3)",))
    expect("exit", 2, "crashed", 0, ("code 7",))
    expect("exit", 3, "passed", 2)
    expect("huge_output", 1, "error", 0, ("File too large",))
    expect("huge_output", 2, "failed", 0, ("far too large",))
    expect("huge_output", 3, "error", 0, ("result channel",))
    if mode == "bwrap":  # only bubblewrap hides files; 'none' warns that it cannot
        expect("hostile", 1, "passed", 2)
        expect("hostile", 2, "error", 0, ("FileNotFoundError",))
    expect("hostile", 3, "failed", 0, ("values differ from the correct ones",))
    assert not mismatches, "\n".join(mismatches)

    if mode == "bwrap":
        assert not escape_target.exists(), "a submission wrote outside its sandbox"
    else:
        assert "warning: grading without bubblewrap" in result.stderr
    # the grader survived everything and reported every student
    document = json.loads((tmp_path / "grades.json").read_text())
    assert document["students"]["correct"]["points"] == 6
    assert document["grader"]["sandbox"] == mode
    assert document["grader"]["preloaded_interpreter"] == (interpreter == "zygote")
    assert len(document["rows"]) == len(rows)
    summary_lines = [line for line in result.stdout.splitlines() if line.startswith("correct ")]
    assert summary_lines and summary_lines[0].split()[-1] == "6/6"

    # feedback: one file per student, and no hidden expected value in any of them
    feedback = {path.stem: path.read_text() for path in (tmp_path / "feedback").glob("*.md")}
    assert set(feedback) == set(students)
    secrets = hidden_expected_numbers()
    for student, text in feedback.items():
        leaked = [number for number in secrets if number in text]
        assert not leaked, f"{student}.md reveals hidden expected values {leaked[:5]}"
    assert "Total: 6 / 6" in feedback["correct"]
    assert "| ex1_1_stable_softmax | 0 / 2 | timeout |" in feedback["infinite_loop"]


LEAVE_TRACES = """
import os

with open("/tmp/leftover-tmp.txt", "w") as handle:
    handle.write("from the previous submission")
with open("leftover-cwd.txt", "w") as handle:
    handle.write("from the previous submission")
try:
    open(f"/proc/{os.getppid()}/mem", "r+b")  # the zygote's memory
    ZYGOTE_MEMORY = "open"
except OSError:
    ZYGOTE_MEMORY = "closed"

def stable_softmax(scores, dim=-1):
    if ZYGOTE_MEMORY == "open":
        raise RuntimeError("the zygote's memory could be opened")
    shifted = (scores - scores.amax(dim, keepdim=True)).exp()
    return shifted / shifted.sum(dim, keepdim=True)
"""
FIND_TRACES = """
import os

TRACES = [name for root, _, files in os.walk("/tmp") for name in files if name.startswith("leftover")]

def stable_softmax(scores, dim=-1):
    if TRACES:
        raise RuntimeError(f"found {TRACES}")
    shifted = (scores - scores.amax(dim, keepdim=True)).exp()
    return shifted / shifted.sum(dim, keepdim=True)
"""


@NEEDS_BWRAP
def test_zygote_leaves_nothing_for_the_next_submission(tmp_path):
    """Two submissions in a row through one zygote: the second sees no file of the first."""
    submissions = tmp_path / "submissions"
    write_submission(submissions / "a_leaves_traces", {EXERCISES[0]: LEAVE_TRACES})
    write_submission(submissions / "b_looks_for_them", {EXERCISES[0]: FIND_TRACES})
    result = run_grader(
        str(submissions), "--out", str(tmp_path / "grades.csv"), "--jobs", "1",
        "--sandbox", "bwrap", "--quiet", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp_path / "grades.json").read_text())
    assert document["grader"]["preloaded_interpreter"] is True
    rows = read_rows(tmp_path / "grades.csv")
    for student in ("a_leaves_traces", "b_looks_for_them"):
        row = rows[(student, EXERCISES[0])]
        assert row["status"] == "passed", row


def hidden_expected_numbers() -> set[str]:
    """Every expected value of the 01 hidden cases, written to 4 decimals (non-trivial ones)."""
    numbers = set()
    for cases in draw_cases("01_soft_weights", GRADING_SEED).values():
        for case in cases.prepared:
            expected = case.expected if isinstance(case.expected, tuple) else (case.expected,)
            for tensor in expected:
                for value in tensor.reshape(-1).tolist():
                    if 1e-3 < abs(value) < 1e6 and abs(value - round(value)) > 1e-3:
                        numbers.add(f"{value:.4f}")
    return numbers


def test_every_solution_notebook_gets_full_marks(tmp_path):
    """The instructor's notebook of every gradable notebook scores full marks; the released
    (unsolved) one scores 0 with 'not_implemented' on every exercise."""
    modules = gradable_notebooks()
    names = [
        path.stem
        for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
        if path.stem in modules and (ROOT / "notebooks" / path.name).is_file()
    ]
    assert "01_soft_weights" in names
    for student, source in (("instructor", "solutions"), ("unsolved", "notebooks")):
        (tmp_path / "submissions" / student).mkdir(parents=True)
        for name in names:
            shutil.copy(ROOT / source / f"{name}.ipynb", tmp_path / "submissions" / student)
    result = run_grader(
        str(tmp_path / "submissions"), "--out", str(tmp_path / "grades.csv"), "--quiet",
        "--notebooks", ",".join(names), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(tmp_path / "grades.csv")
    assert {row["notebook"] for row in rows.values()} == set(names)
    by_student = {"instructor": [], "unsolved": []}
    for (student, _), row in rows.items():
        by_student[student].append(row)
    not_full = [row for row in by_student["instructor"] if row["status"] != "passed"]
    assert not not_full, not_full
    not_zero = [
        row
        for row in by_student["unsolved"]
        if row["status"] != "not_implemented" or float(row["points"]) != 0
    ]
    assert not not_zero, not_zero


def test_broken_setup_is_a_grader_error_with_exit_1(tmp_path):
    """A released setup cell that fails is the grader's problem: rows say so, exit status 1."""
    released = json.loads(RELEASED.read_text(encoding="utf-8"))
    setup_cell(released)["source"] = "raise RuntimeError('broken setup')\n"
    (tmp_path / "released").mkdir()
    (tmp_path / "released" / RELEASED.name).write_text(json.dumps(released), encoding="utf-8")
    write_submission(tmp_path / "submissions" / "alice")
    result = run_grader(
        str(tmp_path / "submissions"), "--out", str(tmp_path / "grades.csv"), "--quiet",
        "--released", str(tmp_path / "released"), cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "grader error: alice/01_soft_weights" in result.stderr
    assert "RuntimeError: broken setup" in result.stderr
    rows = read_rows(tmp_path / "grades.csv")
    assert {row["status"] for row in rows.values()} == {"grader_error"}


# --- grader misuse: a clear message and exit status 2, no children started --------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{tmp}/nowhere"], "does not exist"),
        (["{tmp}/empty"], "no student folders"),
        (["{tmp}/subs", "--notebooks", "99"], "unknown notebook '99'"),
        (["{tmp}/subs", "--notebooks", "soft"], "unknown notebook 'soft'"),
        (["{tmp}/subs", "--out", "{tmp}/no/such/dir/grades.csv"], "does not exist"),
        (["{tmp}/only_strays"], "no submitted notebook has a gradable name"),
        (["{tmp}/subs", "--out", "{tmp}/grades.json"], "would both be"),
    ],
)
def test_misuse_exits_2_with_a_message(arguments, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    write_submission(tmp_path / "subs" / "alice")
    (tmp_path / "only_strays" / "bob").mkdir(parents=True)
    (tmp_path / "only_strays" / "bob" / "homework.ipynb").write_text("{}")
    argv = [argument.format(tmp=tmp_path) for argument in arguments]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "grades.csv")]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("course-grade: error:") and message in error, error
    assert not (tmp_path / "grades.csv").exists()


def test_bad_flag_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([str(tmp_path), "--jobs", "0"])
    assert info.value.code == 2
    assert "--jobs" in capsys.readouterr().err


# --- units: submission reading, codec, judge, protocol, seccomp, reports -----------------------


def test_released_notebook_gives_setup_exercises_and_points():
    released = load_released(RELEASED)
    assert [exercise.grade_id for exercise in released.exercises] == list(EXERCISES)
    assert [exercise.function for exercise in released.exercises] == [
        "stable_softmax",
        "soft_lookup_answer",
        "kernel_regression",
    ]
    assert released.max_points == 6
    assert "%matplotlib" not in released.setup_source
    assert "seed_everything(0)" in released.setup_source


def test_hidden_tests_cover_every_released_exercise():
    for name in gradable_notebooks():
        released_path = ROOT / "notebooks" / f"{name}.ipynb"
        if not released_path.is_file():
            continue
        cases = draw_cases(name, GRADING_SEED)
        ids = [exercise.grade_id for exercise in load_released(released_path).exercises]
        assert sorted(cases) == sorted(ids), name
        assert all(len(cases[grade_id]) >= 3 for grade_id in ids), name


def test_submission_with_bom_and_list_sources_is_read(tmp_path):
    path = write_submission(tmp_path / "s")
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if isinstance(cell["source"], str):
            cell["source"] = cell["source"].splitlines(keepends=True)
        cell["metadata"].setdefault("nbgrader", {})
        if not cell["metadata"]["nbgrader"]:
            cell["metadata"]["nbgrader"] = "garbage"  # messy metadata must not break reading
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(notebook).encode())
    submission = read_submission(path, load_released(RELEASED))
    assert submission.problem is None and not submission.cell_problems
    assert "def stable_softmax" in submission.sources["ex1_1_stable_softmax"]


def test_codec_round_trip_and_non_finite_values():
    value = (
        torch.tensor([[1.0, float("nan")], [float("inf"), -float("inf")]]),
        torch.tensor([True, False]),
        torch.arange(3),
        2.5,
        None,
    )
    decoded = codec.decode_output(json.loads(json.dumps(codec.encode(value), allow_nan=False)))
    matrix, mask, integers, number, nothing = decoded
    assert matrix.shape == (2, 2) and matrix.dtype == "float32"
    assert str(matrix.values.tolist()) == "[[1.0, nan], [inf, -inf]]"
    assert mask.values.tolist() == [True, False] and integers.values.tolist() == [0, 1, 2]
    assert number == 2.5 and nothing is None
    assert codec.encode(object()) == {"kind": "object", "type": "object"}
    assert codec.decode_output(codec.encode("partial")) == "partial"
    assert codec.encode("x" * (codec.MAX_STRING + 1))["kind"] == "object"
    assert codec.encode(torch.zeros(codec.MAX_ELEMENTS + 1))["kind"] == "too_large"
    back = codec.decode_input(codec.encode(torch.tensor([float("nan"), 1.0], dtype=torch.float64)))
    assert back.dtype == torch.float64 and torch.isnan(back[0]) and back[1] == 1


@pytest.mark.parametrize(
    "garbage",
    [
        [1, 2],
        {"kind": "array", "dtype": "float32", "shape": [2], "data": [1.0]},
        {"kind": "array", "dtype": "float32", "shape": [1], "data": ["boom"]},
        {"kind": "array", "dtype": "complex64", "shape": [1], "data": [1.0]},
        {"kind": "array", "dtype": "int64", "shape": [1], "data": [2**80]},
        {"kind": "array", "dtype": "bool", "shape": [1], "data": [1]},
        {"kind": "array", "dtype": "float32", "shape": [-1], "data": []},
        {"kind": "array", "dtype": "float32", "shape": [10**9], "data": []},
        {"kind": "number", "value": "1e5"},
        {"kind": "sequence", "items": [{"kind": "sequence", "items": []}] * 100},
        {"kind": "pickle", "data": "gASV"},
        {"kind": "string", "value": 3},
        {"kind": "string", "value": "x" * 10_000},
        {"kind": "module", "constructor": "torch.nn.GRUCell", "arguments": [], "state": {}},
    ],
)
def test_codec_rejects_malformed_messages(garbage):
    with pytest.raises(codec.ProtocolError):
        codec.decode_output(garbage)


def test_judge_messages_name_the_problem_without_the_answer():
    expected = (torch.tensor([0.123456, 0.876544]), torch.tensor([0.25, 0.75]))
    judge = close("output", "weights")

    def decoded(*tensors):
        return codec.decode_output(codec.encode(tensors if len(tensors) > 1 else tensors[0]))

    assert judge(decoded(*expected), expected) is None
    wrong = judge(decoded(torch.tensor([0.5, 0.5]), expected[1]), expected)
    assert "output: 2 of 2 values differ from the correct ones" in wrong
    assert "0.123" not in wrong and "0.876" not in wrong
    assert "should return a tuple" in judge(decoded(expected[0]), expected)
    assert "output: NaN in 1 of 2" in judge(
        decoded(torch.tensor([float("nan"), 1.0]), expected[1]), expected
    )
    assert "output: shape (3,), expected (2,)" in judge(
        decoded(torch.zeros(3), expected[1]), expected
    )
    assert "None (did you forget" in close()(codec.decode_output(codec.encode(None)), expected[0])


class FakeChild:
    """Replays scripted events as if they came from a child process."""

    exact_status = True

    def __init__(self, events, returncode=0):
        self.events = list(events)
        self.returncode = returncode
        self.sent = []

    def read_event(self, deadline):
        return self.events.pop(0) if self.events else None

    def send_line(self, message, deadline):
        self.sent.append(message)

    def wait(self, timeout=5.0):
        return self.returncode


def _items():
    return [
        {"exercise": "a", "source": "", "function": "f", "define_only": False, "cases": [{}, {}]},
        {"exercise": "b", "source": "", "function": "g", "define_only": False, "cases": [{}]},
    ]


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([{"event": "start", "exercise": "b"}], "wrong exercise"),
        (
            [{"event": "start", "exercise": "a"}, {"event": "done", "exercise": "a"}],
            "before every case",
        ),
        (
            [
                {"event": "start", "exercise": "a"},
                {"event": "cases_wanted", "exercise": "a"},
                {"event": "result", "exercise": "a", "case": 1},
            ],
            "out of order",
        ),
        (
            [{"event": "start", "exercise": "a"}, {"event": "result", "exercise": "a", "case": 0}],
            "before the cases were sent",
        ),
        (
            [
                {"event": "start", "exercise": "a"},
                {"event": "cases_wanted", "exercise": "a"},
                {"event": "cases_wanted", "exercise": "a"},
            ],
            "where no cases are due",
        ),
        (
            [
                {"event": "start", "exercise": "a"},
                {"event": "cases_wanted", "exercise": "a"},
                {"event": "result", "exercise": "a", "case": 0, "output": {"kind": "eval"}},
            ],
            "unknown value kind",
        ),
        ([{"event": "finished"}], "before every exercise ran"),
        (
            [{"event": "start", "exercise": "a"}, {"event": "eval", "exercise": "a"}],
            "unknown event",
        ),
        ([{"event": "start", "exercise": "a"}, {"event": "ready"}], "outside the exercise"),
    ],
)
def test_forged_or_out_of_order_events_are_violations(events, reason):
    settings = Settings(sandbox=Sandbox("none"), limits=Limits())
    run = ChildRun(FakeChild([{"event": "ready", "seccomp": True}, *events]), _items(), settings)
    outcomes: dict[str, ExerciseRun] = {}
    with pytest.raises(Exception) as info:
        run.run(outcomes)
    assert info.value.status == "error" and reason in info.value.reason, info.value.reason


def test_an_exercise_gets_its_cases_only_when_its_cell_asks():
    """The job holds no hidden input; each item's cases go out answering its own request."""
    settings = Settings(sandbox=Sandbox("none"), limits=Limits())
    events = [
        {"event": "ready", "seccomp": True},
        {"event": "start", "exercise": "a"},
        {"event": "cases_wanted", "exercise": "a"},
        {"event": "result", "exercise": "a", "case": 0, "output": {"kind": "none"}},
        {"event": "result", "exercise": "a", "case": 1, "output": {"kind": "none"}},
        {"event": "done", "exercise": "a"},
        {"event": "start", "exercise": "b"},
    ]
    child = FakeChild(events)
    job = {
        "items": [
            {key: value for key, value in item.items() if key != "cases"} for item in _items()
        ]
    }
    run = ChildRun(child, _items(), settings, job)
    with pytest.raises(ChildFailure):  # the scripted child stops after b's start
        run.run({})
    assert child.sent == [job, _items()[0]["cases"]]  # b's cases were never sent


def test_child_death_is_classified():
    settings = Settings(sandbox=Sandbox("none"), limits=Limits())
    run = ChildRun(
        FakeChild([{"event": "ready", "seccomp": True}], returncode=-11), _items(), settings
    )
    with pytest.raises(Exception) as info:
        run.run({})
    assert info.value.status == "crashed" and "SIGSEGV" in info.value.reason


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_seccomp_filter_assembles(machine):
    program = seccomp.build_filter(machine)
    assert len(program) % 8 == 0 and 20 < len(program) // 8 < 255


def test_seccomp_unknown_architecture_is_reported():
    with pytest.raises(seccomp.SeccompUnavailable):
        seccomp.build_filter("sparc64")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux-only")
def test_seccomp_blocks_fork_and_kill_but_not_threads(tmp_path):
    probe = """
import os, threading
from course_utils.grade import seccomp
seccomp.install()
results = []
for name, attempt in [("fork", os.fork), ("kill", lambda: os.kill(os.getppid(), 0))]:
    try:
        attempt()
        results.append(name + " allowed")
    except PermissionError:
        results.append(name + " blocked")
thread = threading.Thread(target=lambda: results.append("thread ran"))
thread.start()
thread.join()
print(",".join(results))
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    if "SeccompUnavailable" in result.stderr:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.stdout.strip() == "fork blocked,kill blocked,thread ran", result.stderr


def test_feedback_markdown_escapes_tables():
    rows = [Row("a|b", "01_soft_weights", "ex1_1_stable_softmax", 1.0, 2.0, "partial", "x | y\nz")]
    text = feedback_markdown("a|b", rows)
    assert "| ex1_1_stable_softmax | 1 / 2 | partial | x \\| y z |" in text


def test_default_judge_compares_a_single_tensor():
    judge = close()
    output = codec.decode_output(codec.encode(torch.ones(2)))
    assert judge(output, torch.ones(2)) is None
    assert "values differ" in judge(
        codec.decode_output(codec.encode(torch.zeros(2))), torch.ones(2)
    )
