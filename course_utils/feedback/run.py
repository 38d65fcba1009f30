"""Running one case of the learner's function: the step ``check()`` and the grader's child share.

``run_case(function, case)`` decodes the case's arguments (fresh objects, exactly as the codec sends
them), calls the learner's function while watching for forbidden shortcuts, and encodes what came
back, exactly as the grader's child sends it to the parent. It answers with one of

* :class:`EncodedReturn` — the function returned; ``output`` is the codec's encoding of the value;
* :class:`Raised` — the function raised an ``Exception`` (kept, for the line where it happened);
* :class:`UsedShortcut` — the function returned, but its own code called a forbidden callable.

What a case is expected to give never reaches this module: it runs untrusted code, and in the
grader it runs inside the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from course_utils.feedback import codec
from course_utils.feedback.shortcuts import ShortcutWatch, resolve

# The error type the grader's child reports for a forbidden call.
FORBIDDEN_ERROR = "ForbiddenShortcut"


@dataclass(frozen=True)
class CaseCall:
    """One call of the learner's function: the encoded arguments and the rules of the exercise."""

    args: tuple[dict, ...]
    kwargs: dict[str, dict]
    input_modules: tuple[type, ...] = ()  # the nn.Module classes an argument may be rebuilt as
    forbidden: tuple[str, ...] = ()  # dotted names the learner's code must not call

    @classmethod
    def from_names(
        cls,
        args: Iterable[dict],
        kwargs: dict,
        input_modules: Iterable[str],
        forbidden: Iterable[str],
    ) -> CaseCall:
        """The call as the grader's job describes it: module classes and shortcuts by dotted name."""
        modules = tuple(resolve(name) for name in input_modules)
        return cls(tuple(args), dict(kwargs), modules, tuple(forbidden))

    def arguments(self) -> tuple[list, dict[str, Any]]:
        """Fresh decoded arguments: what the function receives."""
        return (
            [codec.decode_input(argument, self.input_modules) for argument in self.args],
            {
                name: codec.decode_input(value, self.input_modules)
                for name, value in self.kwargs.items()
            },
        )


@dataclass(frozen=True)
class EncodedReturn:
    output: dict  # codec.encode of the returned value


@dataclass(frozen=True)
class Raised:
    """A call raised ``type`` with ``message``; ``error`` is the exception itself, where known."""

    type: str
    message: str
    error: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, error: BaseException) -> Raised:
        try:
            message = str(error)
        except Exception:  # noqa: BLE001 - a hostile __str__
            message = "<exception message could not be shown>"
        return cls(type(error).__name__, message, error)


@dataclass(frozen=True)
class UsedShortcut:
    name: str  # the first forbidden callable the learner's code called


CaseOutcome = EncodedReturn | Raised | UsedShortcut


def run_case(function: Callable, case: CaseCall) -> CaseOutcome:
    """Call ``function`` on the case's arguments; what happened, in the form both sides judge.

    Only ``Exception`` is caught: an interrupt or ``sys.exit`` goes on to the caller.
    """
    args, kwargs = case.arguments()
    with ShortcutWatch(case.forbidden) as watch:
        try:
            returned = function(*args, **kwargs)
            # inside the watch: encoding runs the returned value's own code (a list subclass's
            # __iter__, a tensor subclass's __torch_function__), which is the learner's too
            output = codec.encode(returned)
        except Exception as error:  # the learner's bug, reported where it happened
            return Raised.of(error)
    if watch.used:
        return UsedShortcut(watch.used[0])
    return EncodedReturn(output)
