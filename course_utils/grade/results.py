"""What grading one (student, notebook) produces: report rows and per-exercise outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field


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


@dataclass
class NotebookResult:
    rows: list[Row]
    grader_errors: list[str] = field(default_factory=list)
    seccomp_problem: str | None = None
    children: int = 0
    seconds: float = 0.0


@dataclass
class ExerciseRun:
    """What happened to one exercise in the child (before judging)."""

    cell_error: dict | None = None
    outputs: dict[int, object] = field(default_factory=dict)  # case -> decoded output
    case_errors: dict[int, dict] = field(default_factory=dict)  # case -> error description
    terminated: tuple[str, str] | None = None  # (status, reason) when the child died on it
