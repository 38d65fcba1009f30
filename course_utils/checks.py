"""Instant feedback for learners: ``check(name, fn)``.

A check cell in a notebook calls ``check("ex1_1_stable_softmax", stable_softmax)``. The check runs
the exercise's visible cases (``course_utils.exercises``: the same case families, judge and named
mistakes the grader uses, with a fixed seed) on the learner's function, each case through
``course_utils.feedback.run.run_case``, the step the grader's sandboxed child runs, and

* prints one line on success, or
* raises :class:`CheckFailed` whose one-line message names the failing case, what was wrong, the
  classic mistake it matches if any, and the exercise's conceptual hint, e.g. ``large logits ...:
  weights: NaN in 3 of 6 entries (...); it matches exp(x) / sum(exp(x)) without the shift: ...
  — hint: subtract the largest score ...``.

Hints come in tiers, so that one wrong try does not turn the exercise into transcription: the
conceptual hint with every failure, the code-level hint only from the third failed check of that
exercise in this kernel (``CODE_HINT_AFTER``), or at once on request with ``hint(name)``. The
grader's feedback gives the conceptual tier only.

Every way the learner's code can break (wrong signature, not implemented, an exception, a forbidden
shortcut such as ``torch.softmax`` in the softmax exercise) becomes such a line. In Jupyter a
``CheckFailed`` is shown as that single line, not as a traceback through this module.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable

from course_utils.exercises import all_exercises, find_exercise
from course_utils.feedback import codec, messages
from course_utils.feedback.prepared import (
    PreparedCase,
    judge_returned,
    matching_mistake,
    prepare_cases,
)
from course_utils.feedback.run import ChangedInput, EncodedReturn, Raised, UsedShortcut, run_case
from course_utils.feedback.spec import Exercise, visible_seed

CODE_HINT_AFTER = 3  # failed checks of one exercise before its message shows the code-level hint
_failed_checks: dict[str, int] = {}  # grade_id -> failed checks in this kernel


class CheckFailed(AssertionError):
    """A learner's answer did not pass a check; the message says why and what to try."""

    def __init__(self, message: str, name: str | None = None):
        self.check_name = name
        super().__init__(message)

    def __str__(self) -> str:
        message = super().__str__()
        return f"{self.check_name}: {message}" if self.check_name else message

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing a traceback: the learner sees one line.
        return [f"\x1b[31mCheckFailed\x1b[0m {self}"]


def available_checks() -> list[str]:
    """Every exercise name ``check()`` knows."""
    return sorted(all_exercises())


def _where(error: BaseException) -> str:
    """' (line N of your cell: <code>)' for the innermost frame outside course_utils."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if "course_utils" not in frame.filename and "site-packages" not in frame.filename
    ]
    if not frames:
        return ""
    frame = frames[-1]
    return f" (line {frame.lineno}: `{(frame.line or '').strip()}`)"


def _bind_problem(fn: Callable, exercise: Exercise, case: PreparedCase) -> str | None:
    """Why ``fn`` cannot be called as the exercise calls it, or None."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    args, kwargs = case.sent.arguments()
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        name = getattr(fn, "__name__", type(fn).__name__)
        return messages.wrong_signature(name, str(signature), exercise.signature)
    return None


def _run_case(fn: Callable, exercise: Exercise, case: PreparedCase) -> str | None:
    """None when ``fn`` gets the case right, else the one-line problem."""
    problem = _bind_problem(fn, exercise, case)
    if problem:
        raise CheckFailed(problem)
    outcome = run_case(fn, case.sent)
    if isinstance(outcome, UsedShortcut):
        raise CheckFailed(messages.forbidden_shortcut(outcome.name, exercise.function_name))
    if isinstance(outcome, ChangedInput):
        raise CheckFailed(messages.changed_input(outcome.argument))
    if isinstance(outcome, Raised):
        if isinstance(outcome.error, NotImplementedError):
            raise CheckFailed(messages.not_implemented(outcome.message)) from None
        mistake = matching_mistake(exercise, case, outcome)
        where = _where(outcome.error)
        if mistake:
            return messages.raised(outcome.type, where, mistake.message)
        return messages.raised(f"{outcome.type}: {outcome.message}", where)
    assert isinstance(outcome, EncodedReturn)
    return judge_returned(exercise, case, codec.decode_output(outcome.output))


def _check_exercise(exercise: Exercise, fn: Callable) -> int:
    """Run the visible cases; raise CheckFailed naming the most telling failure."""
    cases = prepare_cases(exercise, visible_seed(exercise.grade_id))
    failures = [(case, problem) for case in cases if (problem := _run_case(fn, exercise, case))]
    if not failures:
        return len(cases)
    mistakes = [m.message for m in exercise.mistakes]
    named = [failure for failure in failures if any(m in failure[1] for m in mistakes)]
    case, problem = (named or failures)[0]
    raise CheckFailed(
        f"{len(cases) - len(failures)}/{len(cases)} cases pass. {case.name}: {problem}"
    )


def _with_hints(message: str, exercise: Exercise) -> str:
    """A failure's message with the hint of its tier (counts this failed check). An untouched stub
    is not a try: its message already carries the stub's own hint."""
    if message.startswith(messages.NOT_IMPLEMENTED):
        return message
    failed = _failed_checks[exercise.grade_id] = _failed_checks.get(exercise.grade_id, 0) + 1
    message += f" — hint: {exercise.hint}"
    if failed >= CODE_HINT_AFTER:
        return message + f" — code hint: {exercise.code_hint}"
    return message + (
        f" (a code-level hint comes with failed check {CODE_HINT_AFTER}, or now with "
        f'hint("{exercise.grade_id}"), from course_utils.checks)'
    )


def hint(name: str) -> None:
    """Print the code-level hint of exercise ``name``: what the check shows after three failures."""
    exercise = find_exercise(name)
    if exercise is None:
        raise ValueError(f"unknown exercise {name!r}; known: {', '.join(available_checks())}")
    print(f"{name}: {exercise.code_hint}")


def check(name: str, fn: Callable) -> None:
    """Run the visible cases of exercise ``name`` on the learner's ``fn``.

    Prints one line naming how many cases passed; raises CheckFailed otherwise.
    """
    exercise = find_exercise(name)
    if exercise is None:
        raise ValueError(f"unknown check {name!r}; known checks: {', '.join(available_checks())}")
    if not callable(fn):
        raise CheckFailed(messages.not_a_function(exercise.signature, type(fn).__name__), name=name)
    try:
        passed = _check_exercise(exercise, fn)
    except CheckFailed as failure:
        raise CheckFailed(_with_hints(str(failure), exercise), name=name) from None
    print(f"✔ {name}: passed all {passed} cases")


def passes(name: str, fn: Callable) -> bool:
    """Whether ``fn`` passes exercise ``name``'s check, silently: a notebook uses the learner's own
    function in what follows when it does, and the course's otherwise."""
    exercise = find_exercise(name)
    if exercise is None:
        raise ValueError(f"unknown check {name!r}; known checks: {', '.join(available_checks())}")
    if not callable(fn):
        return False
    try:
        _check_exercise(exercise, fn)
    except CheckFailed:
        return False
    return True
