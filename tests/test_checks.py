"""check(): one line on success, one specific line on every kind of failure (notebook 01's exercises).

Every named mistake of every spec is also fed to check() by tests/test_exercise_specs.py; this file covers
what a learner's code does beyond the named mistakes: wrong signature, wrong type, a bug that raises,
a forbidden shortcut, misuse of check() itself.
"""

import pytest
import torch

from course_utils import checks
from course_utils.attention import softmax
from course_utils.checks import CheckFailed, available_checks, check
from course_utils.exercises import find_exercise


def manual_softmax(scores, dim=-1):
    exponentials = torch.exp(scores - scores.amax(dim=dim, keepdim=True))
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


def soft_lookup_answer(query, keys, values, temperature):
    weights = softmax(keys @ query / temperature, dim=0)
    return weights @ values, weights


def kernel_regression(query_points, train_points, train_values, bandwidth):
    differences = query_points[:, None] - train_points[None, :]
    weights = softmax(-(differences**2) / (2 * bandwidth**2), dim=1)
    return weights @ train_values, weights


def failure(name, fn) -> str:
    with pytest.raises(CheckFailed) as info:
        check(name, fn)
    message = str(info.value)
    assert "\n" not in message, "a check failure must be one line"
    assert message.startswith(f"{name}: ")
    return message


def test_success_prints_one_line(capsys):
    check("ex1_1_stable_softmax", manual_softmax)
    check("ex1_2_soft_lookup", soft_lookup_answer)
    check("ex1_3_kernel_regression", kernel_regression)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("✔ ex1_") for line in lines)
    assert all("passed all 5 cases" in line for line in lines)


def test_render_traceback_is_one_line():
    error = CheckFailed("weights do not sum to 1", name="ex9")
    assert error._render_traceback_() == ["\x1b[31mCheckFailed\x1b[0m ex9: weights do not sum to 1"]


@pytest.mark.parametrize(
    ("wrong_answer", "expected_fragment"),
    [
        (lambda scores: scores, "cannot be called as stable_softmax(scores, dim=-1)"),
        (
            lambda scores, dim: None,
            "should be a torch.Tensor, got None (did you forget to `return` it?)",
        ),
        (
            lambda scores, dim: manual_softmax(scores, dim).tolist(),
            "should be a torch.Tensor, got a tuple/list",
        ),
        (lambda scores, dim: scores[:, :2], "weights: shape (3, 2), expected (3, 5)"),
        (lambda scores, dim: scores * float("nan"), "weights: NaN in"),
        (
            lambda scores, dim: manual_softmax(scores, 0),
            "a softmax over the first axis whatever `dim` says",
        ),
        (
            lambda scores, dim: manual_softmax(scores, -1),
            "a softmax over the last axis whatever `dim` says",
        ),
        (
            lambda scores, dim: torch.exp(scores) / torch.exp(scores).sum(dim, keepdim=True),
            "without the shift: exp(1000) overflows",
        ),
        (
            lambda scores, dim: scores / 0 if dim == 5 else 1 / 0,
            "raised ZeroDivisionError: division by zero",
        ),
        (
            lambda scores, dim: torch.softmax(scores, dim),
            "calls torch.softmax, which does this exercise for you",
        ),
        (lambda scores, dim: scores.softmax(dim), "calls torch.Tensor.softmax"),
        (lambda scores, dim: softmax(scores, dim), "calls course_utils.softmax.softmax"),
    ],
)
def test_stable_softmax_mistakes_are_named(wrong_answer, expected_fragment):
    assert expected_fragment in failure("ex1_1_stable_softmax", wrong_answer)


def test_hints_come_in_tiers_the_code_only_from_the_third_failed_check(monkeypatch):
    monkeypatch.setattr(checks, "_failed_checks", {})
    exercise = find_exercise("ex1_1_stable_softmax")

    def wrong(scores, dim=-1):
        return manual_softmax(scores, -1)

    first, second, third = (failure("ex1_1_stable_softmax", wrong) for _ in range(3))
    for early in (first, second):
        assert "cases pass." in early and f"hint: {exercise.hint}" in early
        assert exercise.code_hint not in early
        assert 'hint("ex1_1_stable_softmax")' in early  # where the code hint is, right now
    assert f"code hint: {exercise.code_hint}" in third
    other = failure("ex1_2_soft_lookup", lambda query, keys, values, temperature: None)
    assert find_exercise("ex1_2_soft_lookup").code_hint not in other  # counted per exercise


def test_hint_shows_the_code_hint_on_request(capsys):
    checks.hint("ex1_1_stable_softmax")
    assert find_exercise("ex1_1_stable_softmax").code_hint in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown exercise"):
        checks.hint("ex99_nothing")


def test_not_implemented_shows_the_hint():
    def stable_softmax(scores, dim=-1):
        raise NotImplementedError("subtract the max")

    message = failure("ex1_1_stable_softmax", stable_softmax)
    assert "not implemented yet" in message and "(hint: subtract the max)" in message


def test_exception_names_the_learners_line():
    def stable_softmax(scores, dim=-1):
        shifted = scores - scores.max(dim=dim).values  # forgot keepdim: broadcasting error
        return shifted.exp() / shifted.exp().sum(dim, keepdim=True) @ torch.ones(7)

    message = failure("ex1_1_stable_softmax", stable_softmax)
    assert "raised RuntimeError" in message and "line" in message


def test_soft_lookup_mistakes_are_named():
    def multiplies_temperature(query, keys, values, temperature):
        weights = softmax(keys @ query * temperature, dim=0)
        return weights @ values, weights

    def returns_only_output(query, keys, values, temperature):
        return soft_lookup_answer(query, keys, values, temperature)[0]

    assert "divide by it" in failure("ex1_2_soft_lookup", multiplies_temperature)
    assert "should return a tuple (output, weights)" in failure(
        "ex1_2_soft_lookup", returns_only_output
    )


def test_kernel_regression_mistakes_are_named():
    def softmax_over_queries(query_points, train_points, train_values, bandwidth):
        differences = query_points[:, None] - train_points[None, :]
        weights = softmax(-(differences**2) / (2 * bandwidth**2), dim=0)
        return weights @ train_values, weights

    def forgets_square(query_points, train_points, train_values, bandwidth):
        differences = query_points[:, None] - train_points[None, :]
        weights = softmax(-(differences**2) / (2 * bandwidth), dim=1)
        return weights @ train_values, weights

    assert "a softmax over the query axis" in failure(
        "ex1_3_kernel_regression", softmax_over_queries
    )
    assert "square the bandwidth" in failure("ex1_3_kernel_regression", forgets_square)


def test_a_helper_in_another_cell_using_a_forbidden_call_is_noticed():
    def helper(scores, dim):
        return torch.nn.functional.softmax(scores, dim=dim)

    def stable_softmax(scores, dim=-1):
        return helper(scores, dim)

    assert "calls torch.nn.functional.softmax" in failure("ex1_1_stable_softmax", stable_softmax)


def test_misuse_of_check_itself():
    with pytest.raises(ValueError, match="unknown check 'ex0_nope'; known checks: "):
        check("ex0_nope", manual_softmax)
    assert "expected a function to call as stable_softmax(scores, dim=-1), got int" in failure(
        "ex1_1_stable_softmax", 3
    )


def test_every_registered_check_follows_the_naming_convention():
    names = available_checks()
    assert {"ex1_1_stable_softmax", "ex1_2_soft_lookup", "ex1_3_kernel_regression"} <= set(names)
    for name in names:
        assert name.startswith("ex") and name.split("_")[0][2:].isdigit(), name


def test_passes_says_whether_a_check_would_pass_without_printing(capsys):
    from course_utils.checks import passes

    def right(step, d_model, warmup_steps):
        return d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)

    def wrong(step, d_model, warmup_steps):
        return d_model**-0.5 * max(step**-0.5, step * warmup_steps**-1.5)

    def unfinished(step, d_model, warmup_steps):
        raise NotImplementedError

    assert passes("ex8_3_warmup_schedule", right)
    assert not passes("ex8_3_warmup_schedule", wrong)
    assert not passes("ex8_3_warmup_schedule", unfinished)
    assert not passes("ex8_3_warmup_schedule", None)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="unknown check"):
        passes("ex99_nothing", right)


def test_calling_a_blocks_own_forward_through_the_module_is_a_forbidden_shortcut():
    """block(x, mask) reaches EncoderBlock.forward through nn.Module.__call__: still the learner's call."""

    def encoder_block(x, mask, block):
        return block(x, mask)

    with pytest.raises(CheckFailed, match="calls course_utils.transformer.EncoderBlock.forward"):
        check("ex8_1_encoder_block", encoder_block)


def test_a_number_judge_wants_a_number_close_to_the_answer():
    from course_utils.feedback.judge import number

    judge = number("lr", rtol=1e-9)
    assert judge(0.5, 0.5) is None and judge(1, 1.0) is None
    assert "not the right value" in judge(0.5000001, 0.5)
    assert "should be a number" in judge(True, 1.0)
    assert "should be a number" in judge("0.5", 0.5)
