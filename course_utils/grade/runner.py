"""Grade one (student, notebook): run the submitted cells in sandboxed children, judge the outputs.

Normally one child does everything: setup, then every submitted exercise cell in notebook order,
each followed by its hidden cases. When a child dies or stalls (timeout, memory, ``os._exit``,
a signal, a garbled channel) the exercise it was running gets 0 with the reason, the exercises
already reported keep their results, and a NEW child carries on with the remaining exercises,
re-running the earlier cells only to define their names and skipping the culprit. Each restart
settles at least one cell, so a submission costs at most ``len(exercises) + 1`` children plus one
retry of a failed start-up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from course_utils.grade import codec
from course_utils.grade.cases import FORBIDDEN_ERROR, HiddenCases
from course_utils.grade.sandbox import (
    ChannelReader,
    ChannelTimeout,
    Launcher,
    Limits,
    Sandbox,
    describe_exit,
)
from course_utils.grade.submission import ReleasedNotebook, read_submission

MEMORY_ERROR_MARKERS = (
    "can't allocate memory",  # torch's CPU allocator
    "unable to allocate",  # numpy
    "out of memory",
    "not enough memory",
)


@dataclass(frozen=True)
class Row:
    """One line of the grade report."""

    student: str
    notebook: str
    exercise: str
    points: float
    max_points: float
    status: str
    message: str


@dataclass(frozen=True)
class Settings:
    sandbox: Sandbox
    limits: Limits
    timeout: float = 20.0  # wall-clock seconds per exercise (cell + all its cases)
    startup_timeout: float = 60.0  # wall-clock seconds for interpreter start + setup cell
    launcher: Launcher | None = None  # starts the children (None: only for protocol unit tests)


@dataclass
class NotebookResult:
    rows: list[Row]
    grader_errors: list[str] = field(default_factory=list)
    seccomp_problem: str | None = None
    children: int = 0
    seconds: float = 0.0


@dataclass
class _Outcome:
    """What happened to one exercise in the child (before judging)."""

    cell_error: dict | None = None
    outputs: dict[int, object] = field(default_factory=dict)  # case -> decoded output
    case_errors: dict[int, dict] = field(default_factory=dict)  # case -> error description
    terminated: tuple[str, str] | None = None  # (status, reason) when the child died on it


class _ChildFailure(Exception):
    """The child stopped before finishing: ``status`` and ``reason`` for the blamed exercise."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _ChildRun:
    """Drives one child through its items, validating every message against the protocol."""

    def __init__(self, child: ChannelReader, items: list[dict], settings: Settings):
        self.child = child
        self.items = items
        self.settings = settings
        self.position = 0  # index of the next item to start
        self.current: dict | None = None  # the item running now
        self.next_case = 0
        self.ready = False
        self.seccomp_problem: str | None = None

    def _event(self, deadline: float) -> dict:
        try:
            event = self.child.read_event(deadline)
        except ChannelTimeout:
            raise _ChildFailure("timeout", "") from None
        except codec.ProtocolError as error:
            raise _ChildFailure(
                "error",
                f"the submission garbled the grader's result channel ({error})",
            ) from None
        if event is None:
            returncode = self.child.wait()
            status, reason = describe_exit(returncode, self.child.exact_status)
            raise _ChildFailure(status, reason)
        return event

    def _violation(self, what: str) -> _ChildFailure:
        return _ChildFailure(
            "error", f"the submission interfered with the grader's result channel ({what})"
        )

    def run(self, outcomes: dict[str, _Outcome]) -> None:
        """Process events until ``finished``; raises _ChildFailure when the child fails."""
        now = time.monotonic()
        budget_end = now + self.settings.startup_timeout + self.settings.timeout * len(self.items)
        deadline = now + self.settings.startup_timeout
        while True:
            event = self._event(min(deadline, budget_end))
            kind = event["event"]
            if not self.ready:
                if kind == "setup_error":
                    raise _ChildFailure(
                        "grader_error",
                        f"the released setup cell failed in the child: {event.get('type')}: {str(event.get('message'))[:300]}",
                    )
                if kind != "ready":
                    raise self._violation(f"expected 'ready', got {kind!r:.40}")
                self.ready = True
                if event.get("seccomp") is not True:
                    self.seccomp_problem = str(event.get("seccomp_error"))[:300]
                continue
            if kind == "start":
                if self.current is not None or self.position >= len(self.items):
                    raise self._violation("unexpected 'start'")
                item = self.items[self.position]
                if event.get("exercise") != item["exercise"]:
                    raise self._violation("'start' of the wrong exercise")
                self.current, self.next_case = item, 0
                self.position += 1
                deadline = time.monotonic() + self.settings.timeout
                continue
            if kind == "finished":
                if self.current is not None or self.position != len(self.items):
                    raise self._violation("'finished' before every exercise ran")
                return
            item = self.current
            if item is None or event.get("exercise") != item["exercise"]:
                raise self._violation(f"{kind!r:.40} outside the exercise that is running")
            outcome = outcomes.setdefault(item["exercise"], _Outcome())
            if kind == "done":
                finished_cases = self.next_case == len(item["cases"])
                if not item["define_only"] and outcome.cell_error is None and not finished_cases:
                    raise self._violation("'done' before every case ran")
                self.current = None
                continue
            if item["define_only"]:
                raise self._violation(f"{kind!r:.40} for a cell that only defines names")
            if kind == "cell_error":
                if outcome.cell_error is not None or self.next_case:
                    raise self._violation("unexpected 'cell_error'")
                outcome.cell_error = _error_fields(event)
                continue
            if kind in ("result", "case_error"):
                if outcome.cell_error is not None or event.get("case") != self.next_case:
                    raise self._violation("case results out of order")
                if self.next_case >= len(item["cases"]):
                    raise self._violation("more case results than cases")
                if kind == "result":
                    try:
                        outcome.outputs[self.next_case] = codec.decode_output(event.get("output"))
                    except codec.ProtocolError as error:
                        raise self._violation(str(error)) from None
                else:
                    outcome.case_errors[self.next_case] = _error_fields(event)
                self.next_case += 1
                continue
            raise self._violation(f"unknown event {kind!r:.40}")


def _error_fields(event: dict) -> dict:
    """Keep only well-typed, short fields of an error event."""
    fields = {}
    for name, limit in (("type", 80), ("message", 500), ("code", 200)):
        value = event.get(name)
        fields[name] = value[:limit] if isinstance(value, str) else ""
    line = event.get("line")
    fields["line"] = line if isinstance(line, int) and not isinstance(line, bool) else None
    return fields


def _describe_error(error: dict) -> str:
    where = ""
    if error["line"] is not None:
        where = (
            f" (line {error['line']} of your cell"
            + (f": `{error['code']}`" if error["code"] else "")
            + ")"
        )
    message = f": {error['message']}" if error["message"] else ""
    return f"{error['type']}{message}{where}"


def _is_memory_error(error: dict) -> bool:
    return error["type"].endswith("MemoryError") or any(
        marker in error["message"].lower() for marker in MEMORY_ERROR_MARKERS
    )


def _case_problem(
    index: int, outcome: _Outcome, cases: HiddenCases, memory_mb: int
) -> tuple[str | None, str | None]:
    """(problem, error kind) for case ``index``; (None, None) when it passed."""
    if index in outcome.case_errors:
        error = outcome.case_errors[index]
        if error["type"] == "NotImplementedError":
            return "not implemented (replace `raise NotImplementedError` with your code)", (
                "not_implemented"
            )
        if _is_memory_error(error):
            return f"ran out of memory (limit {memory_mb} MB): {_describe_error(error)}", "memory"
        explanation = cases.explain_error(index, error["type"], error["message"])
        problem = f"raised {_describe_error(error)}"
        return (f"{problem}; {explanation}" if explanation else problem), "error"
    if index not in outcome.outputs:
        return "no result came back", "error"
    try:
        return cases.judge(index, outcome.outputs[index]), None
    except Exception as error:  # noqa: BLE001 - a judge bug must not crash the grader
        return f"could not be judged ({type(error).__name__})", None


def _judge(
    student: str,
    notebook: ReleasedNotebook,
    exercise,
    outcome: _Outcome,
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
            return row(0.0, "syntax_error", f"the cell does not compile: {_describe_error(error)}")
        if error["type"] == "MissingFunction":
            return row(0.0, "error", error["message"] + " (keep the name given in the exercise)")
        if _is_memory_error(error):
            return row(
                0.0,
                "memory",
                f"running the cell ran out of memory (limit {memory_mb} MB): {_describe_error(error)}",
            )
        return row(0.0, "error", f"running the cell raised {_describe_error(error)}")
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
    result = NotebookResult(rows=[])
    if submission.problem is not None:
        status, message = submission.problem
        result.rows = [
            Row(student, notebook.name, exercise.grade_id, 0.0, exercise.points, status, message)
            for exercise in notebook.exercises
        ]
        return result
    outcomes: dict[str, _Outcome] = {}
    pending = [e.grade_id for e in notebook.exercises if e.grade_id in submission.sources]
    skipped: set[str] = set()  # cells never to run again (they killed a child)
    startup_failures = 0
    limits = Limits(
        memory_mb=settings.limits.memory_mb,
        cpu_seconds=int(settings.startup_timeout + settings.timeout * max(1, len(pending))) + 1,
        file_size_mb=settings.limits.file_size_mb,
        open_files=settings.limits.open_files,
        processes=settings.limits.processes,
    )
    while pending:
        items = []
        for exercise in notebook.exercises:
            grade_id = exercise.grade_id
            if grade_id not in submission.sources or grade_id in skipped:
                continue
            items.append(
                {
                    "exercise": grade_id,
                    "source": submission.sources[grade_id],
                    "function": exercise.function,
                    "define_only": grade_id not in pending,
                    "cases": cases[grade_id].encoded() if grade_id in pending else [],
                    "forbidden": cases[grade_id].forbidden,
                }
            )
        while items and items[-1]["define_only"]:
            items.pop()  # definitions after the last exercise to run are not needed
        job = {
            "protocol": 1,
            "limits": limits.as_job(),
            "matplotlib_fontlist": settings.launcher.fontlist,
            "setup": notebook.setup_source,
            "items": items,
        }
        child = settings.launcher.start(job)
        result.children += 1
        run = _ChildRun(child, items, settings)
        try:
            run.run(outcomes)
            child.wait()
            failure = None
        except _ChildFailure as error:
            child.kill()
            failure = error
        finally:
            stderr_tail = child.stderr_tail()
            child.close()
        if run.seccomp_problem and result.seccomp_problem is None:
            result.seccomp_problem = run.seccomp_problem
            # Without the filter a child could leave a process behind for the next submission
            # of the same zygote: from now on every child gets a fresh interpreter.
            settings.launcher.stop_forking(f"the seccomp filter failed: {run.seccomp_problem}")
        for item in items[: run.position]:
            if not item["define_only"] and item is not run.current and item["exercise"] in pending:
                pending.remove(item["exercise"])
        if failure is None:
            for grade_id in pending:  # cannot happen with a well-behaved child; never loop on it
                outcomes[grade_id] = _Outcome(
                    terminated=("error", "the grader lost this exercise's result")
                )
            pending = []
            break
        if not run.ready:
            startup_failures += 1
            reason = (
                failure.reason or f"the child did not start within {settings.startup_timeout:g} s"
            )
            if failure.status == "grader_error" or startup_failures >= 2:
                message = f"the grader could not run this notebook: {reason}"
                if stderr_tail.strip():
                    message += f" [stderr: {' '.join(stderr_tail.split())[-200:]}]"
                result.grader_errors.append(f"{student}/{notebook.name}: {message}")
                for grade_id in pending:
                    outcomes[grade_id] = _Outcome(terminated=("grader_error", message))
                pending = []
            continue
        culprit = run.current or (items[run.position] if run.position < len(items) else None)
        if culprit is None:  # died after its last item: nothing left to blame or run
            for grade_id in pending:
                outcomes[grade_id] = _Outcome(terminated=("crashed", failure.reason))
            break
        grade_id = culprit["exercise"]
        skipped.add(grade_id)
        if culprit["define_only"]:
            continue  # an earlier cell's code killed it: run the rest without that cell
        status, reason = failure.status, failure.reason
        if status == "timeout" and not reason:
            reason = f"did not finish within {settings.timeout:g} s (an infinite loop, or very slow code?)"
        if run.current is None:
            reason += (
                " (before this exercise's cell started: code left running by an earlier cell?)"
            )
        if status == "crashed" and stderr_tail.strip():
            reason += f"; the end of its error output: {' '.join(stderr_tail.split())[-160:]}"
        outcomes[grade_id] = _Outcome(terminated=(status, reason))
        pending.remove(grade_id)
    for exercise in notebook.exercises:
        grade_id = exercise.grade_id
        if grade_id in submission.cell_problems:
            status, message = submission.cell_problems[grade_id]
            result.rows.append(
                Row(student, notebook.name, grade_id, 0.0, exercise.points, status, message)
            )
            continue
        outcome = outcomes.get(
            grade_id, _Outcome(terminated=("error", "the grader lost this exercise's result"))
        )
        result.rows.append(
            _judge(student, notebook, exercise, outcome, cases[grade_id], settings.limits.memory_mb)
        )
    result.seconds = time.monotonic() - started
    return result
