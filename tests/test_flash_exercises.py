"""Notebook 07's exercises (course_utils/exercises/flash.py): learner-style answers, as check() and the
grader see them. A right answer written from the notebook's stated shapes passes every hidden case
(4-D batch × heads included); each classic mistake is named, by check() and by the grader's judging.

tests/test_exercise_specs.py runs the generic properties (reference, solution cell, every Mistake);
here the answers are written as a learner would write them, not taken from the spec.
"""

from __future__ import annotations

import math

import pytest
import torch
from test_exercise_specs import GRADING_SEEDS, hidden_problems, written_like

from course_utils import flash_fast
from course_utils.checks import CheckFailed, check
from course_utils.exercises import find_exercise
from course_utils.exercises import flash as flash_spec
from course_utils.flash import flash_attention, online_softmax_stats, score_gradient, tile_kind

# the spec's helper, as a learner's own code (the spec's function object is a forbidden call)
tiled_with_mistakes = written_like(flash_spec.tiled_with_mistakes)


def failure(grade_id: str, answer) -> str:
    with pytest.raises(CheckFailed) as failed:
        check(grade_id, answer)
    return str(failed.value)


def graded(grade_id: str, answer) -> list[str | None]:
    """The grader's verdict on every hidden case, for each grading seed (None = passed)."""
    exercise = find_exercise(grade_id)
    return [
        problem for seed in GRADING_SEEDS for problem in hidden_problems(exercise, answer, seed)
    ]


def named_by_both(grade_id: str, answer, phrase: str) -> None:
    assert phrase in failure(grade_id, answer)
    verdicts = graded(grade_id, answer)
    assert any(verdict and phrase in verdict for verdict in verdicts), verdicts


def softmax_rows(scores, dim=-1):
    exponentials = torch.exp(scores - scores.amax(dim, keepdim=True))
    return exponentials / exponentials.sum(dim, keepdim=True)


# --------------------------------------------------------------------------------------------------
# 7.1 online softmax


def stats_without_rescale(scores, block_size):
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
    row_sum = torch.zeros_like(row_max)
    for start in range(0, scores.shape[-1], block_size):
        block = scores[..., start : start + block_size]
        row_max = torch.maximum(row_max, block.amax(-1))
        row_sum = row_sum + torch.exp(block - row_max[..., None]).sum(-1)
    return row_max, row_sum


def stats_own_block_max(scores, block_size):
    total = sum(
        torch.exp(
            scores[..., i : i + block_size] - scores[..., i : i + block_size].amax(-1, keepdim=True)
        ).sum(-1)
        for i in range(0, scores.shape[-1], block_size)
    )
    return scores.amax(-1), total


def stats_written_out(scores, block_size, drop_short_last_block=False):
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
    row_sum = torch.zeros_like(row_max)
    stop = scores.shape[-1]
    if drop_short_last_block:  # range(0, n - n % block_size, ...): the shorter last block is lost
        stop = stop // block_size * block_size or stop
    for start in range(0, stop, block_size):
        block = scores[..., start : start + block_size]
        new_max = torch.maximum(row_max, block.amax(-1))
        row_sum = row_sum * torch.exp(row_max - new_max) + torch.exp(
            block - new_max[..., None]
        ).sum(-1)
        row_max = new_max
    return row_max, row_sum


def test_online_softmax_mistakes_are_named():
    named_by_both("ex7_1_online_softmax", stats_without_rescale, "without rescaling")
    named_by_both("ex7_1_online_softmax", stats_own_block_max, "own max")
    named_by_both(
        "ex7_1_online_softmax",
        lambda scores, block_size: stats_written_out(
            scores, block_size, drop_short_last_block=True
        ),
        "last, shorter block is missing",
    )


def test_online_softmax_via_logsumexp_is_refused():
    def two_passes(scores, block_size):
        row_max = scores.amax(-1)
        return row_max, torch.exp(torch.logsumexp(scores, -1) - row_max)

    assert "calls torch.logsumexp, which does this exercise for you" in failure(
        "ex7_1_online_softmax", two_passes
    )


# --------------------------------------------------------------------------------------------------
# 7.2 tiled forward: the stated shapes are the graded shapes


def tiled_for_any_leading_dims(q, k, v, block_q, block_k):
    """Written from the docstring: (..., n, d), slices with `...` (the spec's loop, no mistake on)."""
    return tiled_with_mistakes(q, k, v, block_q, block_k)


def tiled_for_three_dims_only(q, k, v, block_q, block_k):
    """Written from the OLD notebook text, "q (B, n_q, d)": unpacks three dimensions."""
    batch, n_q, dim = q.shape
    return tiled_for_any_leading_dims(q, k, v, block_q, block_k)


def test_an_answer_following_the_stated_shapes_gets_every_hidden_case(capsys):
    check("ex7_2_tiled_attention", tiled_for_any_leading_dims)
    assert "passed all" in capsys.readouterr().out
    assert graded("ex7_2_tiled_attention", tiled_for_any_leading_dims) == [None] * len(
        graded("ex7_2_tiled_attention", tiled_for_any_leading_dims)
    )
    exercise = find_exercise("ex7_2_tiled_attention")
    shapes = {case.args[0].dim() for seed in GRADING_SEEDS for case in exercise.draw_cases(seed)}
    assert shapes == {3, 4}  # (B, n, d) and (B, H, n, d), as the docstring says
    assert "(..., n_q, d)" in exercise.docstring and "(B, H, n, d)" in exercise.docstring


def test_unpacking_three_dimensions_is_caught_by_check_before_the_grade():
    message = failure("ex7_2_tiled_attention", tiled_for_three_dims_only)
    assert "raised ValueError" in message and "unpacking q.shape into three names" in message
    assert any(
        verdict and "unpacking q.shape into three names" in verdict
        for verdict in graded("ex7_2_tiled_attention", tiled_for_three_dims_only)
    )


def test_tiled_attention_mistakes_are_named():
    def unscaled(q, k, v, block_q, block_k):
        return softmax_rows(q @ k.transpose(-2, -1)) @ v

    def over_queries(q, k, v, block_q, block_k):
        return softmax_rows(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-2) @ v

    def acc_not_rescaled(q, k, v, block_q, block_k):
        return tiled_with_mistakes(q, k, v, block_q, block_k, rescale_acc=False)

    named_by_both("ex7_2_tiled_attention", unscaled, "not divided by √d")
    named_by_both("ex7_2_tiled_attention", over_queries, "query axis")
    named_by_both("ex7_2_tiled_attention", acc_not_rescaled, "output is not rescaled")
    assert "did you forget to `return` it?" in failure(
        "ex7_2_tiled_attention", lambda q, k, v, a, b: None
    )


@pytest.mark.parametrize(
    "shortcut, name",
    [
        (
            lambda q, k, v, a, b: (
                torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1) @ v
            ),
            "torch.softmax",
        ),
        (
            lambda q, k, v, a, b: torch.nn.functional.scaled_dot_product_attention(q, k, v),
            "scaled_dot_product_attention",
        ),
    ],
)
def test_tiled_attention_shortcuts_are_refused(shortcut, name):
    message = failure("ex7_2_tiled_attention", shortcut)
    assert name in message and "which does this exercise for you" in message


# --------------------------------------------------------------------------------------------------
# 7.3 causal tile kinds


def mirrored_tile_kind(q_start, q_stop, k_start, k_stop):
    if q_start > k_stop - 1:  # the queries' and the keys' roles swapped
        return "skip"
    if q_stop - 1 <= k_start:
        return "full"
    return "partial"


def inclusive_stops_tile_kind(q_start, q_stop, k_start, k_stop):
    if k_start > q_stop:  # q_stop read as the last query
        return "skip"
    if k_stop <= q_start:  # k_stop read as the last key
        return "full"
    return "partial"


def test_tile_kind_mistakes_are_named():
    exercise = find_exercise("ex7_3_causal_tile_kind")
    assert graded(exercise.grade_id, lambda *tile: tile_kind(*tile, True)) == [None] * (
        len(exercise.draw_cases(0)) * len(GRADING_SEEDS)
    )
    named_by_both(exercise.grade_id, mirrored_tile_kind, "mirrored rule")
    named_by_both(exercise.grade_id, inclusive_stops_tile_kind, "stops are exclusive")
    verdicts = graded(exercise.grade_id, lambda *tile: 3)
    assert all(verdict and "got a Python number" in verdict for verdict in verdicts)
    assert "other than 'full', 'partial', 'skip'" in failure(
        exercise.grade_id, lambda *tile: "masked"
    )


# --------------------------------------------------------------------------------------------------
# 7.4 the gradient of the scores


def test_score_gradient_mistakes_are_named():
    named_by_both(
        "ex7_4_score_gradient", lambda p, v, o, do: p * (do @ v.transpose(-2, -1)), "subtract D"
    )
    named_by_both(
        "ex7_4_score_gradient",
        lambda p, v, o, do: p * (do @ v.transpose(-2, -1)),
        "forgot to subtract D_i",
    )


def test_score_gradient_without_keepdim_is_named_not_a_raw_error():
    def delta_without_keepdim(weights, values, out, grad_out):
        grad_weights = grad_out @ values.transpose(-2, -1)
        delta = (grad_out * out).sum(dim=-1)
        return weights * (grad_weights - delta)

    message = failure("ex7_4_score_gradient", delta_without_keepdim)
    assert (
        "without keepdim=True" in message and "keepdim=True), to broadcast over the keys" in message
    )
    verdicts = graded("ex7_4_score_gradient", delta_without_keepdim)
    assert any(
        verdict and "raised RuntimeError" in verdict and "without keepdim" in verdict
        for verdict in verdicts
    )


def test_score_gradient_through_autograd_is_refused():
    def through_autograd(weights, values, out, grad_out):
        scores = weights.log().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.softmax(scores, -1) @ values, scores, grad_out)
        return grad

    assert "calls torch.autograd.grad" in failure("ex7_4_score_gradient", through_autograd)


# --------------------------------------------------------------------------------------------------
# right answers, written out, pass check() and every hidden case; the library's own is refused


def tile_kind_right(q_start, q_stop, k_start, k_stop):
    if k_start > q_stop - 1:
        return "skip"
    return "full" if k_stop - 1 <= q_start else "partial"


def score_gradient_right(weights, values, out, grad_out):
    grad_weights = grad_out @ values.transpose(-2, -1)
    return weights * (grad_weights - (grad_out * out).sum(-1, keepdim=True))


@pytest.mark.parametrize(
    "grade_id, answer",
    [
        ("ex7_1_online_softmax", stats_written_out),
        ("ex7_2_tiled_attention", tiled_for_any_leading_dims),
        ("ex7_3_causal_tile_kind", tile_kind_right),
        ("ex7_4_score_gradient", score_gradient_right),
    ],
)
def test_right_answers_pass_check_and_every_hidden_case(grade_id, answer, capsys):
    check(grade_id, answer)
    assert capsys.readouterr().out.startswith(f"✔ {grade_id}: passed all")
    assert set(graded(grade_id, answer)) == {None}


@pytest.mark.parametrize(
    "grade_id, library_call",
    [
        ("ex7_1_online_softmax", lambda scores, block: online_softmax_stats(scores, block)),
        ("ex7_2_tiled_attention", lambda q, k, v, a, b: flash_attention(q, k, v, False, a, b)),
        ("ex7_2_tiled_attention", lambda q, k, v, a, b: flash_fast.flash_attention(q, k, v)),
        ("ex7_3_causal_tile_kind", lambda a, b, c, d: tile_kind(a, b, c, d, True)),
        ("ex7_4_score_gradient", lambda p, v, o, do: score_gradient(p, v, o, do)),
    ],
)
def test_the_library_functions_are_refused_as_shortcuts(grade_id, library_call):
    assert "which does this exercise for you" in failure(grade_id, library_call)
