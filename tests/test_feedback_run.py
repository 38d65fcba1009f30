"""feedback.run.run_case, the one step check() and the grader's child share, and the declared module inputs."""

from __future__ import annotations

import json

import pytest
import torch

from course_utils.alignment import AdditiveAttention
from course_utils.feedback import codec, messages
from course_utils.feedback.prepared import case_call
from course_utils.feedback.run import (
    CaseCall,
    ChangedInput,
    EncodedReturn,
    Raised,
    UsedShortcut,
    run_case,
)
from course_utils.feedback.spec import Case, Exercise


def _call(*args, forbidden=(), input_modules=()) -> CaseCall:
    encoded = tuple(json.loads(json.dumps(codec.encode(argument))) for argument in args)
    return CaseCall(encoded, {}, tuple(input_modules), tuple(forbidden))


def test_a_returned_value_comes_back_encoded_as_the_grader_sends_it():
    outcome = run_case(lambda x: 2 * x, _call(torch.ones(2)))
    assert isinstance(outcome, EncodedReturn)
    assert outcome.output == codec.encode(2 * torch.ones(2))


def test_each_call_receives_fresh_arguments():
    seen = []
    call = _call(torch.zeros(2))
    for _ in range(2):
        run_case(lambda x: seen.append(x.add_(1)), call)
    assert [x.tolist() for x in seen] == [[1.0, 1.0], [1.0, 1.0]]


def test_an_exception_is_kept_with_its_type_and_message():
    def broken(x):
        raise NotImplementedError("start from the scores")

    outcome = run_case(broken, _call(1.0))
    assert isinstance(outcome, Raised) and outcome.type == "NotImplementedError"
    assert outcome.message == "start from the scores" and isinstance(
        outcome.error, NotImplementedError
    )


def test_a_forbidden_call_is_named_even_when_the_value_is_right():
    outcome = run_case(
        lambda x: torch.softmax(x, -1), _call(torch.ones(3), forbidden=["torch.softmax"])
    )
    assert outcome == UsedShortcut("torch.softmax")


def test_the_grader_and_check_word_a_shortcut_alike():
    assert messages.forbidden_shortcut("torch.softmax", "stable_softmax").startswith(
        "calls torch.softmax, which does this exercise for you: write stable_softmax"
    )


def test_a_module_input_is_rebuilt_only_from_a_declared_class():
    attention = AdditiveAttention(3, 4, 5)
    sent = codec.ModuleInput(AdditiveAttention, (3, 4, 5), attention.state_dict())
    outcome = run_case(
        lambda module: module.query_proj.weight, _call(sent, input_modules=[AdditiveAttention])
    )
    assert isinstance(outcome, EncodedReturn)
    with pytest.raises(ValueError, match="not one of the exercise's input_modules"):
        run_case(lambda module: None, _call(sent))
    named = CaseCall.from_names(
        [codec.encode(sent)], {}, [codec.dotted_name(AdditiveAttention)], []
    )
    assert named.input_modules == (AdditiveAttention,)


def test_an_exercise_must_declare_the_modules_its_cases_send():
    attention = AdditiveAttention(3, 4, 5)
    undeclared = Case(
        "a module", (codec.ModuleInput(AdditiveAttention, (3, 4, 5), attention.state_dict()),)
    )
    exercise = Exercise(
        grade_id="exZ_1_f", notebook="Z", signature="f(module)", docstring="", hint="", code_hint="",
        reference=lambda module: 0, cases=lambda generator: [undeclared],
    )  # fmt: skip
    with pytest.raises(
        ValueError, match="exZ_1_f: case 'a module' sends a module of class AdditiveAttention"
    ):
        case_call(exercise, undeclared)
    with pytest.raises(TypeError, match="input_modules holds"):
        Exercise(
            grade_id="exZ_2_g", notebook="Z", signature="g()", docstring="", hint="", code_hint="",
            reference=lambda: 0, cases=lambda generator: [], input_modules=("torch.nn.Linear",),
        )  # fmt: skip


def test_an_input_changed_in_place_is_named_by_the_learners_own_parameter_name():
    def scaled_in_place(scores, factor):
        scores *= factor  # overwrites the caller's tensor
        return scores

    outcome = run_case(scaled_in_place, _call(torch.ones(3), 2.0))
    assert outcome == ChangedInput("scores")
    assert "changes its input `scores` in place" in messages.changed_input(outcome.argument)


def test_an_in_place_change_that_leaves_the_values_is_still_seen_by_the_version_counter():
    def touched(x):
        x.mul_(1.0)
        return x.clone()

    assert run_case(touched, _call(torch.ones(3))) == ChangedInput("x")


def test_a_module_input_whose_weights_change_in_place_is_named():
    def retrained(x, attention):
        with torch.no_grad():
            attention.query_proj.weight.zero_()
        return x

    sent = codec.ModuleInput(AdditiveAttention, (3, 2, 4), AdditiveAttention(3, 2, 4).state_dict())
    outcome = run_case(retrained, _call(torch.ones(2), sent, input_modules=[AdditiveAttention]))
    assert outcome == ChangedInput("attention.query_proj.weight")


def test_a_function_that_leaves_its_inputs_alone_returns_as_before():
    outcome = run_case(lambda x: x * 2, _call(torch.tensor([1.0, float("nan")])))
    assert isinstance(outcome, EncodedReturn)
