"""Every hidden case is drawn from the grading run's seed, and no case name gives the drawn inputs away.

A case whose inputs are the same for every seed can be answered from a lookup table, without code; a
name that quotes drawn values tells a learner who regrades with the same seed which inputs to special-
case. The few cases kept fixed on purpose carry ``Case.fixed`` and are listed, with why, in the README's
"Hidden cases" paragraph: this file reads that list, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

from course_utils.exercises import all_exercises
from course_utils.feedback.spec import hidden_seed
from course_utils.grade.cases import HiddenCases

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted(all_exercises().values(), key=lambda exercise: exercise.grade_id)
IDS = [exercise.grade_id for exercise in EXERCISES]
RUN_SEEDS = (1, 2, 3, 4)
# One README line per fixed case:  * `exN_k_name`, *the case's name*: why it stays fixed.
README_FIXED = re.compile(r"^[*-] `(ex\d+_\d+_\w+)`, \*(.+?)\*:", re.MULTILINE)


@cache
def hidden(grade_id: str, run_seed: int) -> tuple[list[str], list[str]]:
    """The names and the encoded inputs (as JSON) of the hidden cases of one grading run."""
    drawn = HiddenCases.draw(all_exercises()[grade_id], run_seed)
    return drawn.names(), [json.dumps(case, sort_keys=True) for case in drawn.encoded()]


def fixed_names(grade_id: str) -> list[str]:
    """The names of the cases the spec marks ``fixed`` (drawn with one grading seed)."""
    exercise = all_exercises()[grade_id]
    return [case.name for case in exercise.draw_cases(hidden_seed(grade_id, 1)) if case.fixed]


def readme_fixed_cases() -> set[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Hidden cases", 1)
    assert len(section) == 2, "the README has no '### Hidden cases' paragraph"
    return set(README_FIXED.findall(section[1].split("\n#", 1)[0]))


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_case_names_do_not_depend_on_the_seed(exercise):
    names = [hidden(exercise.grade_id, seed)[0] for seed in RUN_SEEDS]
    varying = [
        [drawn[index] for drawn in names]
        for index in range(len(names[0]))
        if len({drawn[index] for drawn in names}) > 1
    ]
    assert not varying, f"case names quote drawn values: {varying}"
    assert len(set(names[0])) == len(names[0]), f"two cases share a name: {names[0]}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_every_case_not_marked_fixed_varies_with_the_seed(exercise):
    names = hidden(exercise.grade_id, RUN_SEEDS[0])[0]
    fixed = set(fixed_names(exercise.grade_id))
    encoded = [hidden(exercise.grade_id, seed)[1] for seed in RUN_SEEDS]
    same_for_every_seed = [
        names[index]
        for index in range(len(names))
        if len({drawn[index] for drawn in encoded}) == 1 and names[index] not in fixed
    ]
    assert not same_for_every_seed, f"the same inputs for seeds {RUN_SEEDS}: {same_for_every_seed}"


@pytest.mark.parametrize("exercise", EXERCISES, ids=IDS)
def test_at_most_one_fixed_case_and_a_small_share(exercise):
    cases = exercise.draw_cases(hidden_seed(exercise.grade_id, 1))
    fixed = [case.name for case in cases if case.fixed]
    assert len(fixed) <= 1, fixed
    assert 4 * len(fixed) <= len(cases), (fixed, len(cases))


def test_the_fixed_cases_are_the_ones_the_readme_lists():
    in_specs = {(grade_id, name) for grade_id in IDS for name in fixed_names(grade_id)}
    listed = readme_fixed_cases()
    assert listed, "the README's 'Hidden cases' paragraph lists no fixed case"
    assert in_specs == listed, {
        "only in the specs": in_specs - listed,
        "only in README": listed - in_specs,
    }
