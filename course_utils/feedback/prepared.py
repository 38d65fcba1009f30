"""Cases made ready on the trusted side: expected values, what each named mistake gives, and judging.

``check()`` prepares the visible cases in the learner's kernel; the grader prepares the hidden ones in
its parent process, so the expected values never reach the sandboxed child. Both then judge what the
learner's function gave (:func:`judge_returned`, :func:`matching_mistake`) the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from course_utils.feedback import codec, messages
from course_utils.feedback.run import CaseCall, Raised
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, Mistake


@dataclass(frozen=True)
class Returned:
    """A call returned ``value``, as ``codec.decode_output`` gives it (the form every judge reads)."""

    value: Any


CallResult = Returned | Raised


def _undeclared_module(exercise: Exercise, value: Any) -> type | None:
    """A ModuleInput class (in ``value``, or nested in it) that the exercise does not declare."""
    if isinstance(value, codec.ModuleInput):
        if value.module_class not in exercise.input_modules:
            return value.module_class
        return next(filter(None, (_undeclared_module(exercise, a) for a in value.arguments)), None)
    if isinstance(value, (tuple, list)):
        return next(filter(None, (_undeclared_module(exercise, item) for item in value)), None)
    return None


def case_call(exercise: Exercise, case: Case) -> CaseCall:
    """The case's arguments as the codec sends them, with the exercise's rules of the call."""
    undeclared = _undeclared_module(exercise, (*case.args, *case.kwargs.values()))
    if undeclared is not None:
        raise ValueError(
            f"{exercise.grade_id}: case {case.name!r} sends a module of class {undeclared.__qualname__}, "
            "a class the exercise does not list in input_modules"
        )
    return CaseCall(
        args=tuple(codec.encode(argument) for argument in case.args),
        kwargs={name: codec.encode(value) for name, value in case.kwargs.items()},
        input_modules=exercise.input_modules,
        forbidden=exercise.forbidden_calls,
    )


def call(function: Callable, sent: CaseCall) -> CallResult:
    """Call a trusted ``function`` (a mistake) on fresh arguments; what it gave, as judged."""
    args, kwargs = sent.arguments()
    try:
        returned = function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - a mistake may be "raises this error"
        return Raised.of(error)
    if returned is NOT_APPLICABLE:  # a mistake with nothing to say about this case
        return Returned(NOT_APPLICABLE)
    return Returned(codec.decode_output(codec.encode(returned)))


@dataclass(frozen=True)
class PreparedCase:
    """A case with its expected value and what each mistake gives, computed on the trusted side."""

    name: str
    sent: CaseCall
    expected: Any
    mistaken: tuple[tuple[Mistake, CallResult], ...]


def _arrays_in(value: Any):
    if isinstance(value, codec.Array):
        yield value.values
    elif hasattr(value, "shape") and hasattr(value, "dtype"):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays_in(item)


def is_degenerate(value: Any) -> bool:
    """True when every array in ``value`` holds one finite value throughout: all zeros, or any
    constant (a single entry included). Such an output matches many mistakes by chance.

    An output that is NaN throughout is not counted: the mistakes that give it (exp() without the
    max shift, 0/0 with no floor) are the classic diagnoses of NaN, and the judge's own message
    about NaN is shown whether or not one of them is named."""
    arrays = [np.asarray(array) for array in _arrays_in(value) if np.size(array) > 0]
    if not arrays:
        return False
    for array in arrays:
        flat = array.reshape(-1)
        if not (flat == flat[0]).all():  # a NaN never equals itself: NaN throughout is not constant
            return False
    return True


def _tells_apart(exercise: Exercise, expected: Any, result: CallResult) -> bool:
    """Whether a mistake's result on a case is worth naming: not the right answer itself (the case
    cannot tell that mistake from the answer), and not a degenerate output."""
    if not isinstance(result, Returned):
        return True
    if result.value is NOT_APPLICABLE or is_degenerate(result.value):
        return False
    try:
        return exercise.judge(result.value, expected) is not None
    except Exception:  # noqa: BLE001 - a value the judge cannot compare is not the answer
        return True


def prepare(exercise: Exercise, case: Case) -> PreparedCase:
    sent = case_call(exercise, case)
    args, kwargs = sent.arguments()
    expected = exercise.reference(*args, **kwargs)
    mistaken = []
    for mistake in exercise.mistakes:
        result = call(mistake.returns, sent)
        if _tells_apart(exercise, expected, result):
            mistaken.append((mistake, result))
    return PreparedCase(case.name, sent, expected, tuple(mistaken))


def prepare_cases(exercise: Exercise, seed: int) -> list[PreparedCase]:
    return [prepare(exercise, case) for case in exercise.draw_cases(seed)]


def matching_mistake(exercise: Exercise, case: PreparedCase, result: CallResult) -> Mistake | None:
    """The first named mistake that gives exactly what the learner's function gave on this case;
    none for a degenerate answer (all zeros, constant, NaN), which would match a mistake by chance."""
    if isinstance(result, Returned) and is_degenerate(result.value):
        return None
    for mistake, mistaken in case.mistaken:
        if isinstance(result, Raised) and isinstance(mistaken, Raised):
            if (result.type, result.message[:500]) == (mistaken.type, mistaken.message[:500]):
                return mistake
        elif isinstance(result, Returned) and isinstance(mistaken, Returned):
            try:
                if exercise.judge(result.value, mistaken.value) is None:
                    return mistake
            except Exception:  # noqa: BLE001, S112 - a value the judge cannot compare is no match
                continue
    return None


def judge_returned(exercise: Exercise, case: PreparedCase, value: Any) -> str | None:
    """None when a returned value is right; otherwise the problem, naming the mistake if known."""
    try:
        problem = exercise.judge(value, case.expected)
    except Exception as error:  # noqa: BLE001 - a judge bug must not crash check() or the grader
        problem = messages.could_not_be_judged(error)
    if problem is None:
        return None
    mistake = matching_mistake(exercise, case, Returned(value))
    return messages.judged(problem, mistake.message if mistake else None)
