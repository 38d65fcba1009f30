"""Instant feedback for learners: ``check(name, fn)``.

A check cell in a notebook calls ``check("ex1_1_stable_softmax", stable_softmax)``. The check runs a
few fast, visible tests on the learner's function and

* prints one line on success, or
* raises :class:`CheckFailed` whose one-line message says what was wrong and the likely cause,
  e.g. ``weights do not sum to 1 over keys: did you softmax over the query axis?``.

In Jupyter a ``CheckFailed`` is shown as that single line, not as a traceback through this module.

The tests behind each name live in ``course_utils.exercises`` (one module per notebook) and are
written with the helpers here: ``LearnerFunction`` calls the learner's code and turns every way it can
break (wrong signature, not implemented, an exception) into a readable ``CheckFailed``;
``expect_tensor`` and ``expect_close`` compare results with the reference implementation.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import traceback
from collections.abc import Callable, Sequence

import torch

from course_utils.exercises import all_exercises, find_exercise
from course_utils.exercises.shortcuts import ShortcutWatch
from course_utils.exercises.spec import (
    Exercise,
    PreparedCase,
    Raised,
    as_received,
    judge_returned,
    matching_mistake,
    prepare_cases,
    visible_seed,
)
from course_utils.grade import codec

CheckSpec = Callable[["LearnerFunction"], None]
_REGISTRY: dict[str, tuple[CheckSpec, str]] = {}


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


def register(name: str, calls: str) -> Callable[[CheckSpec], CheckSpec]:
    """Register the visible tests for exercise ``name``.

    ``calls`` shows how the learner's function is called, e.g. ``"stable_softmax(scores, dim)"``;
    it appears in the message when the learner's signature does not fit.
    """

    def decorator(spec: CheckSpec) -> CheckSpec:
        if name in _REGISTRY:
            raise ValueError(f"check {name!r} is registered twice")
        _REGISTRY[name] = (spec, calls)
        return spec

    return decorator


def _load_exercise_modules() -> None:
    import course_utils.exercises as exercises

    for module in pkgutil.iter_modules(exercises.__path__):
        importlib.import_module(f"{exercises.__name__}.{module.name}")


def available_checks() -> list[str]:
    _load_exercise_modules()
    return sorted(set(all_exercises()) | set(_REGISTRY))


class LearnerFunction:
    """Calls the learner's function and turns each way it can fail into a one-line CheckFailed."""

    def __init__(self, fn: Callable, calls: str):
        self.fn = fn
        self.calls = calls
        self.name = getattr(fn, "__name__", type(fn).__name__)
        self.expectations_met = 0

    def __call__(self, *args, **kwargs):
        try:
            signature = inspect.signature(self.fn)
        except (TypeError, ValueError):
            signature = None
        if signature is not None:
            try:
                signature.bind(*args, **kwargs)
            except TypeError:
                raise CheckFailed(
                    f"{self.name}{signature} cannot be called as {self.calls}: "
                    "keep the signature given in the exercise"
                ) from None
        try:
            return self.fn(*args, **kwargs)
        except CheckFailed:
            raise
        except NotImplementedError as error:
            hint = f" (hint: {error})" if str(error) else ""
            raise CheckFailed(
                f"not implemented yet: replace `raise NotImplementedError` with your code{hint}"
            ) from None
        except Exception as error:  # the learner's bug, reported where it happened
            raise CheckFailed(
                f"{self.name} raised {type(error).__name__}: {error}{_where(error)}"
            ) from None

    def expect(self, condition: bool, message: str) -> None:
        """Fail with ``message`` unless ``condition`` holds; count it otherwise."""
        if not condition:
            raise CheckFailed(message)
        self.expectations_met += 1

    def expect_tensor(
        self,
        value,
        shape: Sequence[int] | None = None,
        what: str = "the result",
        dtype: torch.dtype | None = None,
        allow_nan: bool = False,
    ) -> torch.Tensor:
        """The value must be a tensor of the given shape and dtype, free of NaN unless allowed."""
        if not isinstance(value, torch.Tensor):
            raise CheckFailed(
                f"{what} should be a torch.Tensor, got {type(value).__name__}"
                + (": did you forget to `return` it?" if value is None else "")
            )
        if shape is not None and tuple(value.shape) != tuple(shape):
            raise CheckFailed(f"{what} should have shape {tuple(shape)}, got {tuple(value.shape)}")
        if dtype is not None and value.dtype != dtype:
            raise CheckFailed(f"{what} should have dtype {dtype}, got {value.dtype}")
        if not allow_nan and value.is_floating_point() and torch.isnan(value).any():
            raise CheckFailed(
                f"{what} contains NaN: look for exp() of a large number, 0/0 or log(0)"
            )
        self.expectations_met += 1
        return value

    def expect_close(
        self,
        actual: torch.Tensor,
        expected: torch.Tensor,
        message: str,
        atol: float = 1e-5,
        rtol: float = 1e-5,
    ) -> None:
        """``actual`` must equal ``expected`` within tolerance; ``message`` names the likely mistake."""
        self.expect_tensor(actual, shape=expected.shape, what="the result", allow_nan=True)
        actual = actual.detach().to(expected.dtype)
        if not torch.allclose(actual, expected, atol=atol, rtol=rtol, equal_nan=True):
            worst = (actual - expected).abs().nan_to_num(float("inf")).max().item()
            raise CheckFailed(f"{message} (largest difference {worst:.3g})")
        self.expectations_met += 1


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


def _bind_problem(fn: Callable, exercise: Exercise, args: list, kwargs: dict) -> str | None:
    """Why ``fn`` cannot be called as the exercise calls it, or None."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError:
        name = getattr(fn, "__name__", type(fn).__name__)
        return (
            f"{name}{signature} cannot be called as {exercise.signature}: "
            "keep the signature given in the exercise"
        )
    return None


def _run_case(fn: Callable, exercise: Exercise, case: PreparedCase) -> str | None:
    """None when ``fn`` gets the case right, else the one-line problem."""
    args, kwargs = as_received(case.sent)
    problem = _bind_problem(fn, exercise, args, kwargs)
    if problem:
        raise CheckFailed(problem)
    with ShortcutWatch(exercise.forbidden_calls) as watch:
        try:
            returned = fn(*args, **kwargs)
        except NotImplementedError as error:
            hint = f" (hint: {error})" if str(error) else ""
            raise CheckFailed(
                f"not implemented yet: replace `raise NotImplementedError` with your code{hint}"
            ) from None
        except Exception as error:  # the learner's bug, reported where it happened
            mistake = matching_mistake(exercise, case, Raised(type(error).__name__, str(error)))
            if mistake:
                return f"raised {type(error).__name__}{_where(error)}; {mistake.message}"
            return f"raised {type(error).__name__}: {error}{_where(error)}"
    if watch.used:
        raise CheckFailed(forbidden_message(exercise, watch.used))
    return judge_returned(exercise, case, codec.decode_output(codec.encode(returned)))


def forbidden_message(exercise: Exercise, used: list[str]) -> str:
    return (
        f"calls {used[0]}, which does this exercise for you: write "
        f"{exercise.function_name} from basic tensor operations (a forbidden shortcut scores 0)"
    )


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
        f" — hint: {exercise.code_hint}"
    )


def check(name: str, fn: Callable) -> None:
    """Run the visible cases of exercise ``name`` on the learner's ``fn``.

    Prints one line naming how many cases passed; raises CheckFailed otherwise.
    """
    exercise = find_exercise(name)
    if exercise is None:
        _legacy_check(name, fn)
        return
    if not callable(fn):
        raise CheckFailed(
            f"expected a function to call as {exercise.signature}, got {type(fn).__name__}",
            name=name,
        )
    try:
        passed = _check_exercise(exercise, fn)
    except CheckFailed as failure:
        raise CheckFailed(str(failure), name=name) from None
    print(f"✔ {name}: passed all {passed} cases")


def _legacy_check(name: str, fn: Callable) -> None:

    _load_exercise_modules()
    if name not in _REGISTRY:
        raise ValueError(f"unknown check {name!r}; known checks: {', '.join(sorted(_REGISTRY))}")
    spec, calls = _REGISTRY[name]
    if not callable(fn):
        raise CheckFailed(
            f"expected a function to call as {calls}, got {type(fn).__name__}", name=name
        )
    learner = LearnerFunction(fn, calls)
    try:
        spec(learner)
    except CheckFailed as failure:
        raise CheckFailed(str(failure), name=name) from None
    print(f"✔ {name}: passed ({learner.expectations_met} checks)")
