"""The grader's hidden cases, drawn from the exercise specs (parent side only).

For each exercise the grader draws cases from the spec's case families with a seed derived from the
grading run's seed (``--seed``; random unless given, recorded in grades.json), so the hidden inputs are
not predictable from the installed package, and every kind of input is one the learner's check already
exercised. Expected values and what each named mistake gives are computed here, in the parent, and never
reach the sandboxed child: only ``encoded()`` arguments do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from course_utils.exercises import notebook_exercises
from course_utils.feedback.codec import dotted_name
from course_utils.feedback.prepared import (
    PreparedCase,
    judge_returned,
    matching_mistake,
    prepare_cases,
)
from course_utils.feedback.run import Raised
from course_utils.feedback.spec import Exercise, hidden_seed


@dataclass(frozen=True)
class HiddenCases:
    """One exercise's hidden cases: what the child receives, and how to judge what comes back."""

    exercise: Exercise
    prepared: tuple[PreparedCase, ...]

    @classmethod
    def draw(cls, exercise: Exercise, run_seed: int) -> HiddenCases:
        seed = hidden_seed(exercise.grade_id, run_seed)
        return cls(exercise, tuple(prepare_cases(exercise, seed)))

    def __len__(self) -> int:
        return len(self.prepared)

    def names(self) -> list[str]:
        return [case.name for case in self.prepared]

    def encoded(self) -> list[dict]:
        """The arguments sent to the child, one ``{"args", "kwargs"}`` per case."""
        return [
            {"args": list(case.sent.args), "kwargs": case.sent.kwargs} for case in self.prepared
        ]

    @property
    def forbidden(self) -> list[str]:
        return list(self.exercise.forbidden_calls)

    @property
    def input_modules(self) -> list[str]:
        """The dotted names of the module classes the child may rebuild for this exercise."""
        return [dotted_name(module_class) for module_class in self.exercise.input_modules]

    def judge(self, index: int, value: Any) -> str | None:
        """None when case ``index`` returned the right value, else the problem."""
        return judge_returned(self.exercise, self.prepared[index], value)

    def explain_error(self, index: int, error_type: str, message: str) -> str | None:
        """The named mistake that raises exactly this error on case ``index``, if any."""
        mistake = matching_mistake(self.exercise, self.prepared[index], Raised(error_type, message))
        return mistake.message if mistake else None


def draw_cases(notebook: str, run_seed: int) -> dict[str, HiddenCases]:
    """grade_id -> hidden cases, for every exercise of notebook ``NN_name``."""
    return {
        exercise.grade_id: HiddenCases.draw(exercise, run_seed)
        for exercise in notebook_exercises(notebook)
    }


def gradable_notebooks() -> list[str]:
    """Notebooks whose exercises have specs, sorted."""
    from course_utils.exercises import all_exercises

    return sorted({exercise.notebook for exercise in all_exercises().values()})
