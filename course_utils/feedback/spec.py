"""One declarative spec per exercise: the single source for the notebook, ``check()`` and the grader.

An :class:`Exercise` holds everything about one exercise:

* ``signature`` and ``docstring`` — exactly what the solution cell's function shows (a test compares
  them), so the shapes the notebook states are the shapes the cases use;
* ``reference`` — the course function whose return value is the right answer;
* ``cases`` — the case families: a function of a ``torch.Generator`` returning :class:`Case` objects.
  ``check()`` draws the visible cases with a fixed seed (:func:`visible_seed`); ``course-grade``
  draws the hidden cases from the same families with a seed the instructor's run chooses, so every
  kind of input the grade uses is one the learner's check already exercised;
* ``judge`` — compares the returned value with the expected one (``course_utils.feedback.judge``);
* ``mistakes`` — named classic mistakes, each a small function with the exercise's signature that
  returns what the mistaken code returns (or raises what it raises), written under its message
  with ``@mistake("…")``; when a wrong answer matches one, ``check()`` and the grader's feedback
  both name it;
* ``hint`` (conceptual, in the released stub) and ``code_hint`` (shown only after a failed check);
* ``forbidden`` — calls that trivialise the exercise (``"torch.softmax"``...); the reference itself
  is always forbidden. ``check()`` refuses them in one line and the grader gives 0 with the reason;
* ``input_modules`` — the ``nn.Module`` classes the cases pass as arguments (``codec.ModuleInput``):
  the only classes the codec rebuilds for this exercise.

Inputs and outputs always travel through the sandbox codec, in the notebook too: the learner's
function receives exactly what it would receive in the grader, and its return value is judged in the
form the grader judges it. A check that passes predicts the grade.

Adding an exercise = the solution cell in ``solutions/`` + one ``Exercise`` in the notebook's module
of ``course_utils.exercises`` (its ``EXERCISES`` tuple).
"""

from __future__ import annotations

import hashlib
import inspect
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from course_utils.feedback.judge import Judge, close
from course_utils.feedback.shortcuts import SPEC_PACKAGE

NOT_APPLICABLE = object()  # what a Mistake returns for a case it says nothing about


@dataclass(frozen=True)
class Case:
    """One input to the learner's function. ``name`` describes the input, never the answer.

    Its inputs are drawn from the family's generator, and ``name`` says what KIND of input it is,
    never a drawn value: every seed gives the same names, so the grader's feedback names no input a
    learner could special-case.
    """

    name: str
    args: tuple
    kwargs: dict = field(default_factory=dict)
    # True: the same input for every seed (the paper's own numbers, an input whose exact values are
    # the point). A lookup table answers it without code, so keep such cases few: at most one per
    # exercise, each listed with why in the README ("Hidden cases"; tests/test_hidden_cases_vary.py).
    fixed: bool = False


def randn(
    generator: torch.Generator, *shape: int, dtype: torch.dtype = torch.float64, scale: float = 1.0
) -> torch.Tensor:
    """``scale`` × standard normal values of ``shape`` from a case family's ``generator``, drawn in
    float64 and cast to ``dtype``: a float32 case holds the same numbers as its float64 twin."""
    return (scale * torch.randn(*shape, generator=generator, dtype=torch.float64)).to(dtype)


def randint(generator: torch.Generator, low: int, high: int) -> int:
    """An int in [low, high) from a case family's ``generator``: a size or a parameter of a case."""
    return int(torch.randint(low, high, (1,), generator=generator))


@dataclass(frozen=True)
class Mistake:
    """A classic mistake: ``returns(*args, **kwargs)`` is what the mistaken code returns (or raises)."""

    message: str  # names the mistake and the fix, e.g. "you divide by T²: divide the scores by T"
    returns: Callable[..., Any]


def mistake(message: str) -> Callable[[Callable[..., Any]], Mistake]:
    """Decorator: the function below is the mistaken code, ``message`` names the mistake and the fix.

    ``@mistake("it matches …: do … instead")`` on a function with the exercise's signature turns it
    into a :class:`Mistake`, so that the message stands beside the code it describes.
    """

    def named(returns: Callable[..., Any]) -> Mistake:
        return Mistake(message, returns)

    return named


@dataclass(frozen=True, kw_only=True)
class Exercise:
    grade_id: str
    notebook: str  # "01_soft_weights"
    # What the learner sees: the stub's def line, docstring and hint, and the hint after a failure.
    signature: str  # "stable_softmax(scores, dim=-1)": the def line of the solution cell
    docstring: str  # the function's docstring in the solution cell (cleaned as Python cleans one)
    hint: str  # conceptual: the released stub's `raise NotImplementedError(hint)`
    code_hint: str  # code-level: shown after a failed check
    # The right answer, and the calls that would only copy it.
    reference: Callable[..., Any]
    forbidden: tuple[str, ...] = ()  # dotted names of callables; the reference is added
    # What is checked: the inputs, how a returned value is judged, the named mistakes.
    cases: Callable[[torch.Generator], list[Case]]
    judge: Judge = field(default_factory=close)
    mistakes: tuple[Mistake, ...] = ()
    # The nn.Module classes the cases send as arguments: the only ones rebuilt for this exercise.
    input_modules: tuple[type[torch.nn.Module], ...] = ()

    def __post_init__(self) -> None:
        # The docstring may be written as the indented block the cell shows: keep what
        # ast.get_docstring reads from the cell (inspect.cleandoc: dedented, outer blank lines cut).
        object.__setattr__(self, "docstring", inspect.cleandoc(self.docstring))
        for module_class in self.input_modules:
            if not (isinstance(module_class, type) and issubclass(module_class, torch.nn.Module)):
                raise TypeError(
                    f"{self.grade_id}: input_modules holds {module_class!r}, not an nn.Module class"
                )

    @property
    def function_name(self) -> str:
        return self.signature.split("(", 1)[0]

    @property
    def forbidden_calls(self) -> tuple[str, ...]:
        """The declared shortcuts, the reference, and every helper of the exercise specs (their
        named mistakes and case builders are never the learner's to call)."""
        reference = f"{self.reference.__module__}.{self.reference.__qualname__}"
        return (*self.forbidden, reference, SPEC_PACKAGE)

    def draw_cases(self, seed: int) -> list[Case]:
        cases = self.cases(torch.Generator().manual_seed(seed))
        if not cases:
            raise ValueError(f"{self.grade_id}: its case families produced no case")
        return cases


def visible_seed(grade_id: str) -> int:
    """The seed of ``check()``'s cases: fixed per exercise, so a check is reproducible."""
    return zlib.crc32(grade_id.encode())


def hidden_seed(grade_id: str, run_seed: int) -> int:
    """The seed of the grader's cases for one exercise, from the seed of the grading run.

    Hashed apart from ``visible_seed``, so no run seed draws the check cell's own cases.
    """
    digest = hashlib.sha256(f"hidden cases of {grade_id}, run {run_seed}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**63
