"""Running one case of the learner's function: the step ``check()`` and the grader's child share.

``run_case(function, case)`` decodes the case's arguments (fresh objects, exactly as the codec sends
them), calls the learner's function while watching for forbidden shortcuts, and encodes what came
back, exactly as the grader's child sends it to the parent. It answers with one of

* :class:`EncodedReturn` — the function returned; ``output`` is the codec's encoding of the value;
* :class:`Raised` — the function raised an ``Exception`` (kept, for the line where it happened);
* :class:`UsedShortcut` — the function returned, but its own code called a forbidden callable;
* :class:`ChangedInput` — the function returned, but changed one of its inputs in place (``x *= e``):
  the caller's tensor is overwritten, so an exercise never may. Every tensor reachable from the
  arguments (a module's parameters and buffers too) is compared before and after the call, its
  values and its version counter (which an in-place operation bumps even when the values end up the
  same).

What a case is expected to give never reaches this module: it runs untrusted code, and in the
grader it runs inside the sandbox.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from course_utils.feedback import codec
from course_utils.feedback.shortcuts import ShortcutWatch, resolve

# The error types the grader's child reports for a forbidden call and for a changed input.
FORBIDDEN_ERROR = "ForbiddenShortcut"
CHANGED_INPUT_ERROR = "ChangedInput"


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


@dataclass(frozen=True)
class ChangedInput:
    argument: str  # the learner's name for the first argument changed in place


CaseOutcome = EncodedReturn | Raised | UsedShortcut | ChangedInput


def _tensors_in(value, label: str):
    """(label, tensor) for every tensor in an argument: itself, in a tuple/list/dict, in a module."""
    if isinstance(value, torch.Tensor):
        yield label, value
    elif isinstance(value, nn.Module):
        for name, tensor in (*value.named_parameters(), *value.named_buffers()):
            yield f"{label}.{name}", tensor
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _tensors_in(item, f"{label}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors_in(item, f"{label}[{key!r}]")


def _argument_names(function: Callable, args: list, kwargs: dict) -> dict[str, Any]:
    """The arguments by the learner's own parameter names (by position where they cannot bind)."""
    try:
        bound = inspect.signature(function).bind(*args, **kwargs)
        return dict(bound.arguments)
    except (TypeError, ValueError):
        return {**{f"argument {index + 1}": value for index, value in enumerate(args)}, **kwargs}


class InputSnapshot:
    """Every input tensor's values and version counter, to tell afterwards whether one changed."""

    def __init__(self, function: Callable, args: list, kwargs: dict):
        self._taken = [
            (label, tensor, tensor._version, tensor.detach().clone())
            for name, value in _argument_names(function, args, kwargs).items()
            for label, tensor in _tensors_in(value, name)
        ]

    def first_changed(self) -> str | None:
        for label, tensor, version, values in self._taken:
            if tensor._version != version or not _same(tensor.detach(), values):
                return label
        return None


def _same(now: torch.Tensor, before: torch.Tensor) -> bool:
    """Same shape, dtype and values, a NaN counting as equal to a NaN where one was."""
    if now.shape != before.shape or now.dtype != before.dtype:
        return False
    if torch.equal(now, before):
        return True
    if not now.is_floating_point():
        return False
    same_nans = torch.equal(now.isnan(), before.isnan())
    return same_nans and torch.equal(now.nan_to_num(0.0), before.nan_to_num(0.0))


def run_case(function: Callable, case: CaseCall) -> CaseOutcome:
    """Call ``function`` on the case's arguments; what happened, in the form both sides judge.

    Only ``Exception`` is caught: an interrupt or ``sys.exit`` goes on to the caller.
    """
    args, kwargs = case.arguments()
    inputs = InputSnapshot(function, args, kwargs)
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
    changed = inputs.first_changed()
    if changed is not None:
        return ChangedInput(changed)
    return EncodedReturn(output)
