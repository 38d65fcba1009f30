"""Judging one exercise: from what the child reported to a report row with a reason."""

from __future__ import annotations

from course_utils.feedback import messages
from course_utils.feedback.run import CHANGED_INPUT_ERROR, FORBIDDEN_ERROR
from course_utils.grade.cases import HiddenCases
from course_utils.grade.results import ExerciseRun, Row
from course_utils.grade.submission import GradedCell, ReleasedNotebook

MEMORY_ERROR_MARKERS = (
    "can't allocate memory",  # torch's CPU allocator
    "unable to allocate",  # numpy
    "out of memory",
    "not enough memory",
)


def describe_error(error: dict) -> str:
    where = ""
    if error["line"] is not None:
        where = (
            f" (line {error['line']} of your cell"
            + (f": `{error['code']}`" if error["code"] else "")
            + ")"
        )
    message = f": {error['message']}" if error["message"] else ""
    return f"{error['type']}{message}{where}"


def is_memory_error(error: dict) -> bool:
    return error["type"].endswith("MemoryError") or any(
        marker in error["message"].lower() for marker in MEMORY_ERROR_MARKERS
    )


def _case_problem(
    index: int, outcome: ExerciseRun, cases: HiddenCases, memory_mb: int
) -> tuple[str | None, str | None]:
    """(problem, error kind) for case ``index``; (None, None) when it passed."""
    if index in outcome.case_errors:
        error = outcome.case_errors[index]
        if error["type"] == "NotImplementedError":
            return messages.not_implemented(), "not_implemented"
        if is_memory_error(error):
            return messages.out_of_memory(memory_mb, describe_error(error)), "memory"
        explanation = cases.explain_error(index, error["type"], error["message"])
        return messages.raised(describe_error(error), mistake=explanation), "error"
    if index not in outcome.outputs:
        return messages.NO_RESULT, "error"
    try:
        return cases.judge(index, outcome.outputs[index]), None
    except Exception as error:  # noqa: BLE001 - a judge bug must not crash the grader
        return messages.could_not_be_judged(error), None


def judge_exercise(
    student: str,
    notebook: ReleasedNotebook,
    exercise: GradedCell,
    outcome: ExerciseRun,
    cases: HiddenCases,
    memory_mb: int,
) -> Row:
    def row(points: float, status: str, message: str) -> Row:
        return Row(
            student, notebook.name, exercise.grade_id, points, exercise.points, status, message
        )

    if outcome.terminated is not None:
        return row(0.0, *outcome.terminated)
    if outcome.cell_error is not None:
        error = outcome.cell_error
        if error["type"] in ("SyntaxError", "IndentationError", "TabError"):
            return row(0.0, "syntax_error", f"the cell does not compile: {describe_error(error)}")
        if error["type"] == "MissingFunction":
            return row(0.0, "error", error["message"] + messages.MISSING_FUNCTION_ADVICE)
        if is_memory_error(error):
            message = messages.out_of_memory(
                memory_mb, describe_error(error), while_running_cell=True
            )
            return row(0.0, "memory", message)
        return row(0.0, "error", f"running the cell raised {describe_error(error)}")
    forbidden = [
        error["message"]
        for error in outcome.case_errors.values()
        if error["type"] == FORBIDDEN_ERROR
    ]
    if forbidden:
        return row(0.0, "forbidden", messages.forbidden_shortcut(forbidden[0], exercise.function))
    changed = [
        error["message"]
        for error in outcome.case_errors.values()
        if error["type"] == CHANGED_INPUT_ERROR
    ]
    if changed:  # a named mistake: the caller's tensor would be overwritten
        return row(0.0, "failed", messages.changed_input(changed[0]))
    failures: list[tuple[str, str]] = []  # (case name, problem)
    error_kinds: set[str] = set()
    passed = 0
    for index, name in enumerate(cases.names()):
        problem, kind = _case_problem(index, outcome, cases, memory_mb)
        if problem is None:
            passed += 1
            continue
        failures.append((name, problem))
        if kind:
            error_kinds.add(kind)
    total = len(cases)
    points = round(exercise.points * passed / total, 2)
    if passed == total:
        return row(points, "passed", f"all {total} hidden cases passed")
    problems = {problem for _, problem in failures}
    if len(problems) == 1:
        listed = messages.cases_listed([name for name, _ in failures])
        summary = f"{passed}/{total} hidden cases passed. Failing ({listed}): {problems.pop()}"
    else:
        summary = f"{passed}/{total} hidden cases passed. " + "; ".join(
            f"{name}: {problem}" for name, problem in failures[:2]
        )
        if len(failures) > 2:
            summary += f"; and {len(failures) - 2} more failing"
    # the conceptual hint, as check() gives it; the code-level one stays in the learner's notebook
    summary += f" — hint: {cases.exercise.hint}"
    if passed:
        return row(points, "partial", summary)
    if len(outcome.case_errors) == total and len(error_kinds) == 1:
        return row(0.0, error_kinds.pop(), summary)  # every case raised the same kind of error
    return row(0.0, "failed", summary)
