"""The exercises of the course: one spec per exercise, one module per notebook.

Each notebook's module (``soft_weights.py`` for notebook 01, ...) defines ``EXERCISES``, a tuple of
:class:`course_utils.feedback.spec.Exercise`. ``check()`` in the notebooks and ``course-grade`` both
read them from here; adding a notebook's module needs no edit in this file.

Who may import it: ``course_utils.checks`` and ``course_utils.grade`` (and tests). Its modules import
``course_utils.feedback`` (the framework) and the lessons (the references); never ``grade``,
``checks``, display or tooling.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import cache

from course_utils.feedback.spec import Exercise


@cache
def all_exercises() -> dict[str, Exercise]:
    """grade_id -> Exercise, for every exercise of every notebook module in this package."""
    found: dict[str, Exercise] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for exercise in getattr(module, "EXERCISES", ()):
            if exercise.grade_id in found:
                raise ValueError(f"exercise {exercise.grade_id!r} is defined twice")
            found[exercise.grade_id] = exercise
    return found


def find_exercise(grade_id: str) -> Exercise | None:
    return all_exercises().get(grade_id)


def _number(exercise: Exercise) -> int:
    """k of ``exN_k_name``: the exercise's place in its notebook."""
    match = re.fullmatch(r"ex\d+_(\d+)_\w+", exercise.grade_id)
    if match is None:
        raise ValueError(f"grade_id {exercise.grade_id!r} is not of the form exN_k_name")
    return int(match.group(1))


def notebook_exercises(notebook: str) -> list[Exercise]:
    """The exercises of notebook ``NN_name``, in their order (k of ``exN_k_name``), whichever
    of its spec modules holds each."""
    chosen = [exercise for exercise in all_exercises().values() if exercise.notebook == notebook]
    return sorted(chosen, key=_number)
