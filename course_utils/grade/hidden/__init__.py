"""Hidden tests: one module per notebook, found automatically.

A module here declares which notebook it grades and builds its cases in the PARENT process::

    NOTEBOOK = "01_soft_weights"

    def build_cases() -> dict[str, list[Case]]:
        return {"ex1_1_stable_softmax": [Case("random (4, 7), dim=-1", (scores, -1), softmax(scores, -1)), ...]}

Only ``Case.args`` / ``Case.kwargs`` (tensors, numbers, bools, None, tuples) are sent to the
sandboxed child; ``Case.expected`` is computed here with the course_utils reference and never
leaves the parent. ``Case.judge(actual, expected)`` runs in the parent on the decoded output and
returns ``None`` (pass) or a message for the learner that names the problem (shape, NaN, values
differ, wrong type) without quoting expected values. Each case is worth ``points / len(cases)``.

Adding notebook NN's hidden tests = adding one module here with ``NOTEBOOK`` and ``build_cases``;
every graded exercise of the released notebook must have at least one case.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from course_utils.exercises.judge import Judge, close, compare_array, describe  # noqa: F401


@dataclass(frozen=True)
class Case:
    """One hidden test: inputs sent to the child, expected value kept in the parent."""

    name: str  # shown to the learner: describes the inputs, never the answer
    args: tuple
    expected: Any
    judge: Judge = field(default_factory=close)
    kwargs: dict = field(default_factory=dict)


def discover() -> dict[str, ModuleType]:
    """Every hidden-test module in this package, keyed by the notebook it grades (``NN_name``)."""
    modules: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        notebook = getattr(module, "NOTEBOOK", None)
        if not isinstance(notebook, str) or not callable(getattr(module, "build_cases", None)):
            raise TypeError(
                f"hidden-test module {module.__name__} needs NOTEBOOK = 'NN_name' and build_cases()"
            )
        if notebook in modules:
            raise ValueError(
                f"two hidden-test modules grade {notebook}: {modules[notebook].__name__}, {module.__name__}"
            )
        modules[notebook] = module
    return modules


def naming_mistakes(judge: Judge, mistakes: list[tuple[Any, str]]) -> Judge:
    """``judge``, and when it fails, the explanation of the first mistake whose result it matches.

    ``mistakes`` pairs what a classic mistake returns for the case's inputs with its explanation;
    they stay in the parent like the expected value.
    """

    def judged(actual: Any, expected: Any) -> str | None:
        problem = judge(actual, expected)
        if problem is None:
            return None
        for mistaken, explanation in mistakes:
            if judge(actual, mistaken) is None:
                return f"{problem}; it matches a classic mistake: {explanation}"
        return problem

    return judged
