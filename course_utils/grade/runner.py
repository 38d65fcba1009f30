"""Grade one (student, notebook): run the submitted cells in sandboxed children, judge the outputs.

Normally one child does everything: setup, then the submitted cells in notebook order (the cells the
student added, and each exercise cell followed by its hidden cases). When a child dies or stalls
(timeout, memory, ``os._exit``, a signal, a garbled channel) the exercise it was running gets 0 with
the reason, the exercises already reported keep their results, and a NEW child carries on with the
remaining exercises, re-running the earlier cells only to define their names and skipping the
culprit. Each restart settles at least one cell, so a submission costs at most one child per cell
plus one retry of a failed start-up, and all of them together get one wall-clock budget
(``notebook_timeout``): whatever is still pending when it runs out scores 0 with that reason, so
no notebook holds a grading slot longer, however many cells it adds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from course_utils.grade.cases import HiddenCases
from course_utils.grade.judging import describe_error, judge_exercise
from course_utils.grade.protocol import ChildFailure, ChildRun
from course_utils.grade.results import ExerciseRun, NotebookResult, Row
from course_utils.grade.sandbox import Launcher, Limits, Sandbox
from course_utils.grade.submission import AddedCell, ReleasedNotebook, Submission, read_submission

LOST = ("error", "the grader lost this exercise's result")


@dataclass(frozen=True)
class Settings:
    sandbox: Sandbox
    limits: Limits
    timeout: float = 20.0  # wall-clock seconds per exercise (cell + all its cases)
    notebook_timeout: float = 120.0  # wall-clock seconds for the whole notebook, restarts included
    startup_timeout: float = 60.0  # wall-clock seconds for interpreter start + setup cell
    launcher: Launcher | None = None  # starts the children (None: only for protocol unit tests)


class NotebookGrading:
    """One submission through as many children as it takes; ``run()`` returns its rows."""

    def __init__(self, student: str, notebook: ReleasedNotebook, cases, settings: Settings):
        self.student = student
        self.notebook = notebook
        self.cases: dict[str, HiddenCases] = cases
        self.settings = settings
        self.result = NotebookResult(rows=[])
        self.outcomes: dict[str, ExerciseRun] = {}
        self.skipped: set[str] = set()  # cells never to run again (they killed a child)
        self.startup_failures = 0
        self.budget_end = float("inf")  # set when run() starts

    # -- the cells a child runs ---------------------------------------------------------------

    def _cells(self, submission: Submission) -> list[dict]:
        """Every submitted cell in notebook order, as child items (cases filled in later)."""
        added = submission.added_cells
        cells = []
        for exercise in self.notebook.exercises:
            cells += [self._added_item(cell) for cell in added if cell.before == exercise.grade_id]
            if exercise.grade_id in submission.sources:
                cells.append(
                    {
                        "exercise": exercise.grade_id,
                        "source": submission.sources[exercise.grade_id],
                        "function": exercise.function,
                    }
                )
        return cells + [self._added_item(cell) for cell in added if cell.before is None]

    @staticmethod
    def _added_item(cell: AddedCell) -> dict:
        return {"exercise": f"your cell {cell.index + 1}", "source": cell.source, "added": True}

    def _items(self, cells: list[dict], pending: list[str]) -> list[dict]:
        items = []
        for cell in cells:
            if cell["exercise"] in self.skipped:
                continue
            runs_cases = cell["exercise"] in pending
            hidden = self.cases.get(cell["exercise"])
            items.append(
                {
                    **cell,
                    "function": cell.get("function", ""),
                    "define_only": not runs_cases,
                    "cases": hidden.encoded() if runs_cases else [],
                    "forbidden": hidden.forbidden if hidden else [],
                    "input_modules": hidden.input_modules if hidden else [],
                }
            )
        while items and items[-1]["define_only"] and not items[-1].get("added"):
            items.pop()  # definitions after the last exercise to run are not needed
        return items

    # -- one child ----------------------------------------------------------------------------

    def _run_child(
        self, items: list[dict], limits: Limits
    ) -> tuple[ChildRun, ChildFailure | None, str]:
        job = {
            "protocol": 2,
            "limits": limits.as_job(),
            "matplotlib_fontlist": self.settings.launcher.fontlist,
            "setup": self.notebook.setup_source,
            # no hidden inputs: each item's cases are sent when its cell asks (protocol.py)
            "items": [{key: item[key] for key in item if key != "cases"} for item in items],
        }
        child = self.settings.launcher.start()
        self.result.children += 1
        run = ChildRun(child, items, self.settings, job, self.budget_end)
        failure = None
        try:
            run.run(self.outcomes)
            child.wait()
        except ChildFailure as error:
            child.kill()
            failure = error
        finally:
            stderr_tail = child.stderr_tail()
            child.close()
        if run.seccomp_problem and self.result.seccomp_problem is None:
            self.result.seccomp_problem = run.seccomp_problem
            # Without the filter a child could leave a process behind for the next submission
            # of the same zygote: from now on every child gets a fresh interpreter.
            self.settings.launcher.stop_forking(f"the seccomp filter failed: {run.seccomp_problem}")
        return run, failure, stderr_tail

    def _startup_failed(self, failure: ChildFailure, stderr_tail: str, pending: list[str]) -> bool:
        """After a child that never got ready: True when this notebook cannot be run at all."""
        self.startup_failures += 1
        if failure.status != "grader_error" and self.startup_failures < 2:
            return False  # one more try: a start-up can fail for reasons of the moment
        reason = (
            failure.reason or f"the child did not start within {self.settings.startup_timeout:g} s"
        )
        message = f"the grader could not run this notebook: {reason}"
        if stderr_tail.strip():
            message += f" [stderr: {' '.join(stderr_tail.split())[-200:]}]"
        self.result.grader_errors.append(f"{self.student}/{self.notebook.name}: {message}")
        for grade_id in pending:
            self.outcomes[grade_id] = ExerciseRun(terminated=("grader_error", message))
        return True

    def _blame(
        self, run: ChildRun, items: list[dict], failure: ChildFailure, stderr_tail: str
    ) -> str | None:
        """The exercise that killed the child gets 0 with the reason; returns its id (None: a cell
        that only defines names, now skipped, or nothing left to blame)."""
        culprit = run.current or (items[run.position] if run.position < len(items) else None)
        if culprit is None:
            return None
        self.skipped.add(culprit["exercise"])
        if culprit["define_only"]:
            return None  # an earlier cell's code killed it: run the rest without that cell
        status, reason = failure.status, failure.reason
        if status == "timeout" and not reason and time.monotonic() >= self.budget_end:
            reason = self._budget_spent()
        elif status == "timeout" and not reason:
            reason = f"did not finish within {self.settings.timeout:g} s (an infinite loop, or very slow code?)"
        if run.current is None:
            reason += (
                " (before this exercise's cell started: code left running by an earlier cell?)"
            )
        if status == "crashed" and stderr_tail.strip():
            reason += f"; the end of its error output: {' '.join(stderr_tail.split())[-160:]}"
        self.outcomes[culprit["exercise"]] = ExerciseRun(terminated=(status, reason))
        return culprit["exercise"]

    # -- the whole submission -----------------------------------------------------------------

    def _budget_spent(self) -> str:
        return (
            f"the notebook used up its {self.settings.notebook_timeout:g} s time budget "
            "(every cell, case and restart together) before this exercise finished"
        )

    def run(self, submission: Submission) -> NotebookResult:
        cells = self._cells(submission)
        pending = [cell["exercise"] for cell in cells if not cell.get("added")]
        self.budget_end = time.monotonic() + self.settings.notebook_timeout
        # CPU time can only run out after wall-clock time would have: the budget bounds both
        limits = replace(self.settings.limits, cpu_seconds=int(self.settings.notebook_timeout) + 1)
        while pending:
            if time.monotonic() >= self.budget_end:
                for grade_id in pending:
                    self.outcomes[grade_id] = ExerciseRun(
                        terminated=("timeout", self._budget_spent())
                    )
                break
            items = self._items(cells, pending)
            run, failure, stderr_tail = self._run_child(items, limits)
            finished = [
                item["exercise"] for item in items[: run.position] if item is not run.current
            ]
            pending = [grade_id for grade_id in pending if grade_id not in finished]
            if failure is None:
                for (
                    grade_id
                ) in pending:  # cannot happen with a well-behaved child; never loop on it
                    self.outcomes[grade_id] = ExerciseRun(terminated=LOST)
                break
            if not run.ready:
                if self._startup_failed(failure, stderr_tail, pending):
                    break
                continue
            if run.current is None and run.position >= len(items):
                for grade_id in pending:  # died after its last item: nothing left to blame or run
                    self.outcomes[grade_id] = ExerciseRun(terminated=("crashed", failure.reason))
                break
            blamed = self._blame(run, items, failure, stderr_tail)
            pending = [grade_id for grade_id in pending if grade_id != blamed]
        return self._rows(submission, cells)

    def _added_cell_notes(self, cells: list[dict]) -> dict[str, str]:
        """grade_id -> a note about errors in the student's added cells before it."""
        notes: dict[str, str] = {}
        problems: list[str] = []
        for cell in cells:
            outcome = self.outcomes.get(cell["exercise"])
            if cell.get("added"):
                if outcome is not None and outcome.cell_error is not None:
                    problems.append(
                        f"{cell['exercise']} raised {describe_error(outcome.cell_error)}"
                    )
                elif cell["exercise"] in self.skipped:
                    problems.append(
                        f"{cell['exercise']} stopped the grader's process and was skipped"
                    )
            elif problems:
                notes[cell["exercise"]] = "; ".join(problems)
                problems = []
        return notes

    def _rows(self, submission: Submission, cells: list[dict]) -> NotebookResult:
        notes = self._added_cell_notes(cells)
        for exercise in self.notebook.exercises:
            grade_id = exercise.grade_id
            if grade_id in submission.cell_problems:
                status, message = submission.cell_problems[grade_id]
                row = Row(
                    self.student,
                    self.notebook.name,
                    grade_id,
                    0.0,
                    exercise.points,
                    status,
                    message,
                )
            else:
                outcome = self.outcomes.get(grade_id, ExerciseRun(terminated=LOST))
                row = judge_exercise(
                    self.student, self.notebook, exercise, outcome, self.cases[grade_id],
                    self.settings.limits.memory_mb,
                )  # fmt: skip
            if grade_id in notes and row.status != "passed":
                row = replace(
                    row, message=f"{row.message} (your own cells before it: {notes[grade_id]})"
                )
            self.result.rows.append(row)
        return self.result


def grade_notebook(
    student: str,
    notebook: ReleasedNotebook,
    submission_path: Path | None,
    cases: dict[str, HiddenCases],
    settings: Settings,
) -> NotebookResult:
    """All rows of one student's notebook. Never raises for anything the submission does."""
    started = time.monotonic()
    submission = read_submission(submission_path, notebook)
    if submission.problem is not None:
        status, message = submission.problem
        rows = [
            Row(student, notebook.name, exercise.grade_id, 0.0, exercise.points, status, message)
            for exercise in notebook.exercises
        ]
        return NotebookResult(rows=rows)
    result = NotebookGrading(student, notebook, cases, settings).run(submission)
    result.seconds = time.monotonic() - started
    return result
