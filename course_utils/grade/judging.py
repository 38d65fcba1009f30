"""Judging one exercise: from what the child reported to a report row with a reason."""

from __future__ import annotations

from course_utils.exercises.shortcuts import FORBIDDEN_ERROR
from course_utils.grade.cases import HiddenCases
from course_utils.grade.results import Outcome, Row
from course_utils.grade.submission import ReleasedNotebook

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
    index: int, outcome: Outcome, cases: HiddenCases, memory_mb: int
) -> tuple[str | None, str | None]:
    """(problem, error kind) for case ``index``; (None, None) when it passed."""
    if index in outcome.case_errors:
        error = outcome.case_errors[index]
        if error["type"] == "NotImplementedError":
            return "not implemented (replace `raise NotImplementedError` with your code)", (
                "not_implemented"
            )
        if is_memory_error(error):
            return (
                f"ran out of memory (limit {memory_mb} MB above what the setup mapped; instructors: --memory-mb): {describe_error(error)}",
                "memory",
            )
        explanation = cases.explain_error(index, error["type"], error["message"])
        problem = f"raised {describe_error(error)}"
        return (f"{problem}; {explanation}" if explanation else problem), "error"
    if index not in outcome.outputs:
        return "no result came back", "error"
    try:
        return cases.judge(index, outcome.outputs[index]), None
    except Exception as error:  # noqa: BLE001 - a judge bug must not crash the grader
        return f"could not be judged ({type(error).__name__})", None


def judge_exercise(
    student: str,
    notebook: ReleasedNotebook,
    exercise,
    outcome: Outcome,
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
            return row(0.0, "error", error["message"] + " (keep the name given in the exercise)")
        if is_memory_error(error):
            return row(
                0.0,
                "memory",
                f"running the cell ran out of memory (limit {memory_mb} MB above what the setup mapped; instructors: --memory-mb): {describe_error(error)}",
            )
        return row(0.0, "error", f"running the cell raised {describe_error(error)}")
    forbidden = [
        error["message"]
        for error in outcome.case_errors.values()
        if error["type"] == FORBIDDEN_ERROR
    ]
    if forbidden:
        return row(
            0.0,
            "forbidden",
            f"{forbidden[0]}, which does this exercise for you: write {exercise.function} from "
            "basic tensor operations (a forbidden shortcut scores 0)",
        )
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
        names = [name for name, _ in failures]
        listed = "; ".join(names[:3]) + ("; …" if len(names) > 3 else "")
        summary = f"{passed}/{total} hidden cases passed. Failing ({listed}): {problems.pop()}"
    else:
        summary = f"{passed}/{total} hidden cases passed. " + "; ".join(
            f"{name}: {problem}" for name, problem in failures[:2]
        )
        if len(failures) > 2:
            summary += f"; and {len(failures) - 2} more failing"
    if passed:
        return row(points, "partial", summary)
    if len(outcome.case_errors) == total and len(error_kinds) == 1:
        return row(0.0, error_kinds.pop(), summary)  # every case raised the same kind of error
    return row(0.0, "failed", summary)
