"""Every exercise spec, checked the same way: one parametrised test per property.

* the instructor's solution cell passes ``check()`` and every hidden case (several grading seeds);
* the reference passes the visible and the hidden cases;
* every named mistake is caught and named, by ``check()`` and by the grader's judging;
* a forbidden shortcut (the reference called from the learner's code) is refused by ``check()``;
* the spec's signature, docstring and hint are exactly what the solution cell shows;
* each grade_id is written in exactly one file of course_utils.
"""

from __future__ import annotations

import ast
import json
import types
from pathlib import Path

import pytest
import torch

from course_utils.checks import CheckFailed, check
from course_utils.exercises import all_exercises
from course_utils.feedback.prepared import Returned, call, prepare_cases
from course_utils.feedback.run import Raised
from course_utils.feedback.spec import NOT_APPLICABLE, Exercise, hidden_seed, visible_seed
from course_utils.grade.cases import HiddenCases
from course_utils.grade.submission import load_released

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted(all_exercises().values(), key=lambda exercise: exercise.grade_id)
IDS = [exercise.grade_id for exercise in EXERCISES]
GRADING_SEEDS = (0, 1, 2026)


def solution_cell(exercise: Exercise) -> str:
    notebook = json.loads((ROOT / "solutions" / f"{exercise.notebook}.ipynb").read_text())
    for cell in notebook["cells"]:
        nbgrader = cell.get("metadata", {}).get("nbgrader", {})
        if nbgrader.get("grade_id") == exercise.grade_id and nbgrader.get("solution"):
            return "".join(cell["source"])
    raise AssertionError(f"no solution cell {exercise.grade_id} in {exercise.notebook}")


def learner_solution(exercise: Exercise):
    """The instructor's answer, defined the way the grader defines it: released setup, then the cell."""
    released = load_released(ROOT / "notebooks" / f"{exercise.notebook}.ipynb")
    namespace: dict = {"__name__": "__main__"}
    exec(compile(released.setup_source, "<setup cell>", "exec"), namespace)
    exec(compile(solution_cell(exercise), f"<cell {exercise.grade_id}>", "exec"), namespace)
    return namespace[exercise.function_name]


def hidden_problems(exercise: Exercise, function, seed: int) -> list[str | None]:
    """What the grader's judging says about ``function`` on each hidden case (None = passed)."""
    hidden = HiddenCases.draw(exercise, seed)
    problems = []
    for index, case in enumerate(hidden.prepared):
        outcome = call(function, case.sent)
        if isinstance(outcome, Raised):
            explanation = hidden.explain_error(index, outcome.type, outcome.message)
            problems.append(f"raised {outcome.type}: {outcome.message}; {explanation}")
        else:
            problems.append(hidden.judge(index, outcome.value))
    return problems


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_solution_cell_passes_check_and_every_hidden_case(exercise, capsys):
    solution = learner_solution(exercise)
    check(exercise.grade_id, solution)
    assert "passed all" in capsys.readouterr().out
    for seed in GRADING_SEEDS:
        problems = hidden_problems(exercise, solution, seed)
        assert problems and all(problem is None for problem in problems), (seed, problems)


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_reference_passes_visible_and_hidden_cases(exercise):
    for seed in (visible_seed(exercise.grade_id), *GRADING_SEEDS):
        for case in prepare_cases(exercise, seed):
            outcome = call(exercise.reference, case.sent)
            assert isinstance(outcome, Returned), (case.name, outcome)
            assert exercise.judge(outcome.value, case.expected) is None, case.name


def written_like(spec_function):
    """A function running ``spec_function``'s code, as a learner who wrote that code would have it.

    Calling the spec's own function object is refused like any forbidden shortcut (its helpers and
    named mistakes are marked, ``feedback/shortcuts.py``): a test that stands for a learner's mistaken
    code calls this copy, which shares the code but not the marked function object.
    """
    copy = types.FunctionType(
        spec_function.__code__, spec_function.__globals__, spec_function.__name__,
        spec_function.__defaults__, spec_function.__closure__,
    )  # fmt: skip
    copy.__kwdefaults__ = spec_function.__kwdefaults__
    return copy


MISTAKES = [(exercise, mistake) for exercise in EXERCISES for mistake in exercise.mistakes]


@pytest.mark.parametrize(
    ("exercise", "mistake"),
    MISTAKES,
    ids=[
        f"{exercise.grade_id}-{index}"
        for exercise in EXERCISES
        for index, _ in enumerate(exercise.mistakes)
    ],
)
def test_every_named_mistake_is_caught_and_named_by_check_and_grader(exercise, mistake):
    solution = learner_solution(exercise)
    mistaken_code = written_like(mistake.returns)

    def mistaken(*args, **kwargs):
        returned = mistaken_code(*args, **kwargs)
        if returned is NOT_APPLICABLE:  # on this case the mistaken code would be right
            return solution(*args, **kwargs)
        return returned

    with pytest.raises(CheckFailed) as failure:
        check(exercise.grade_id, mistaken)
    assert mistake.message in str(failure.value), str(failure.value)
    for seed in GRADING_SEEDS:
        problems = hidden_problems(exercise, mistaken, seed)
        assert any(problem and mistake.message in problem for problem in problems), (seed, problems)


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_changing_an_input_in_place_is_refused_by_check(exercise):
    """The solution, plus an in-place touch of its first tensor argument (``x.mul_(1)``: the
    values stay, the caller's tensor is written all the same)."""
    solution = learner_solution(exercise)

    def in_place(*args, **kwargs):
        returned = solution(*args, **kwargs)
        for value in (*args, *kwargs.values()):
            if isinstance(value, torch.Tensor) and not value.requires_grad:
                value.mul_(1)
                break
        return returned

    def touches_an_input(case) -> bool:
        arguments = (*case.sent.arguments()[0], *case.sent.arguments()[1].values())
        return any(isinstance(value, torch.Tensor) for value in arguments)

    if not any(touches_an_input(case) for case in prepare_cases(exercise, GRADING_SEEDS[0])):
        pytest.skip("no tensor argument")
    with pytest.raises(CheckFailed, match="changes its input `.*` in place"):
        check(exercise.grade_id, in_place)


def _zeros_like(value):
    if isinstance(value, torch.Tensor):
        return torch.zeros_like(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_zeros_like(item) for item in value)
    return value


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_an_answer_of_zeros_is_never_told_it_matches_a_named_mistake(exercise):
    """All zeros in the right shapes: a degenerate answer, which no named mistake explains."""
    reference = written_like(exercise.reference)
    case = prepare_cases(exercise, GRADING_SEEDS[0])[0]
    if not isinstance(case.expected, (torch.Tensor, tuple, list)):
        pytest.skip("the answer is not an array")  # a number, a word: nothing degenerate about it

    def zeros(*args, **kwargs):
        return _zeros_like(reference(*args, **kwargs))

    with pytest.raises(CheckFailed) as failure:
        check(exercise.grade_id, zeros)
    assert "it matches" not in str(failure.value), str(failure.value)


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_calling_the_reference_is_refused_as_a_shortcut(exercise):
    def shortcut(*args, **kwargs):
        return exercise.reference(*args, **kwargs)

    with pytest.raises(CheckFailed, match="which does this exercise for you"):
        check(exercise.grade_id, shortcut)


def _function_def(source: str) -> ast.FunctionDef:
    tree = ast.parse(source)
    return next(node for node in tree.body if isinstance(node, ast.FunctionDef))


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_spec_says_what_the_solution_cell_shows(exercise):
    source = solution_cell(exercise)
    function = _function_def(source)
    def_line = source.split("\n")[function.lineno - 1].strip()
    assert def_line == f"def {exercise.signature}:", "signature differs from the spec"
    assert ast.get_docstring(function) == exercise.docstring, "docstring differs from the spec"
    hints = [
        line.split("### HINT:", 1)[1].strip() for line in source.split("\n") if "### HINT:" in line
    ]
    assert hints == [exercise.hint], "the cell's ### HINT: line differs from the spec's hint"
    assert exercise.code_hint and exercise.code_hint != exercise.hint


def test_each_grade_id_is_written_in_exactly_one_course_utils_file():
    constants: dict[Path, set[str]] = {}
    for path in (ROOT / "course_utils").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants[path] = {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        }
    for grade_id in IDS:
        files = [path.relative_to(ROOT) for path, found in constants.items() if grade_id in found]
        assert len(files) == 1, (grade_id, files)


def test_every_released_exercise_has_a_spec():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        released = load_released(path)
        specs = {exercise.grade_id for exercise in EXERCISES if exercise.notebook == path.stem}
        assert {exercise.grade_id for exercise in released.exercises} <= specs
        for exercise in released.exercises:
            if exercise.grade_id in specs:
                assert exercise.function == all_exercises()[exercise.grade_id].function_name


def test_no_grading_seed_draws_the_check_cells_own_cases():
    for exercise in EXERCISES:
        visible = visible_seed(exercise.grade_id)
        assert all(hidden_seed(exercise.grade_id, seed) != visible for seed in range(1000))
