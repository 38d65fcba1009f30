"""Visible checks for notebook 01 (soft weights)."""

from __future__ import annotations

import torch

from course_utils.checks import LearnerFunction, register
from course_utils.pooling import nadaraya_watson, soft_lookup
from course_utils.softmax import softmax


@register("ex1_1_stable_softmax", calls="stable_softmax(scores, dim)")
def _check_stable_softmax(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(11)
    scores = torch.randn(3, 5, generator=generator, dtype=torch.float64)

    weights = learner(scores, -1)
    learner.expect_tensor(weights, shape=scores.shape, what="softmax of a (3, 5) tensor")
    learner.expect_close(
        weights.sum(dim=-1),
        torch.ones(3, dtype=torch.float64),
        "rows do not sum to 1 along dim=-1: did you normalise over the wrong dimension?",
    )
    learner.expect(
        bool((weights >= 0).all()), "some weights are negative: exponentiate before normalising"
    )
    learner.expect_close(
        weights, softmax(scores, dim=-1), "values differ from softmax: is it exp(x) / sum(exp(x))?"
    )

    column_weights = learner(scores, 0)
    learner.expect_tensor(column_weights, shape=scores.shape, what="softmax with dim=0")
    learner.expect_close(
        column_weights,
        softmax(scores, dim=0),
        "with dim=0 the columns should sum to 1: use the `dim` argument instead of a fixed axis",
    )

    huge = torch.tensor([[1000.0, 0.0], [-1000.0, -1001.0]])
    huge_weights = learner(huge, -1)
    learner.expect(
        isinstance(huge_weights, torch.Tensor) and bool(torch.isfinite(huge_weights).all()),
        "softmax([1000, 0]) is not finite: exp(1000) overflows; subtract the row max before exp()",
    )
    learner.expect_close(
        huge_weights,
        softmax(huge, dim=-1),
        "softmax([1000, 0]) should be [1, 0]: subtract the max along `dim` (keepdim=True) before exp()",
    )


@register("ex1_2_soft_lookup", calls="soft_lookup(query, keys, values, temperature)")
def _check_soft_lookup(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(12)
    keys = torch.randn(6, 4, generator=generator)
    values = torch.randn(6, 3, generator=generator)
    query = torch.randn(4, generator=generator)

    result = learner(query, keys, values, 1.0)
    learner.expect(
        isinstance(result, tuple) and len(result) == 2,
        "return a pair (output, weights), e.g. `return weights @ values, weights`",
    )
    output, weights = result
    learner.expect_tensor(weights, shape=(6,), what="weights (one per key)")
    learner.expect_tensor(output, shape=(3,), what="output (one value vector)")
    learner.expect_close(
        weights.sum(), torch.tensor(1.0), "weights do not sum to 1: softmax over the keys"
    )
    expected_output, expected_weights = soft_lookup(query, keys, values, 1.0)
    learner.expect_close(
        weights, expected_weights, "weights differ: the score of key i is k_i · q / temperature"
    )
    learner.expect_close(
        output, expected_output, "output differs: it is the weighted sum Σ_i α_i v_i"
    )

    hot_output, hot_weights = learner(query, keys, values, 0.5)
    expected_hot, _ = soft_lookup(query, keys, values, 0.5)
    _, times_weights = soft_lookup(query, keys, values, 2.0)
    if torch.allclose(hot_weights, times_weights, atol=1e-5):
        learner.expect(
            False, "you multiply by the temperature: divide the scores by it (α = softmax(s / T))"
        )
    learner.expect_close(
        hot_output, expected_hot, "with temperature 0.5 the result is wrong: divide scores by T"
    )


@register(
    "ex1_3_kernel_regression",
    calls="kernel_regression(query_points, train_points, train_values, bandwidth)",
)
def _check_kernel_regression(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(13)
    train_points = torch.rand(7, generator=generator, dtype=torch.float64) * 5
    train_values = torch.sin(train_points)
    query_points = torch.linspace(0, 5, 4, dtype=torch.float64)

    result = learner(query_points, train_points, train_values, 0.5)
    learner.expect(
        isinstance(result, tuple) and len(result) == 2,
        "return a pair (predictions, weights)",
    )
    predictions, weights = result
    learner.expect_tensor(weights, shape=(4, 7), what="weights (queries × training points)")
    learner.expect_tensor(predictions, shape=(4,), what="predictions (one per query point)")
    expected_predictions, expected_weights = nadaraya_watson(
        query_points, train_points, train_values, 0.5
    )
    column_sums = weights.sum(dim=0)
    if torch.allclose(column_sums, torch.ones_like(column_sums), atol=1e-6):
        learner.expect(
            False,
            "weights sum to 1 over the query points: did you softmax over the query axis? "
            "Each query's weights should sum to 1 over the training points (dim=1)",
        )
    learner.expect_close(
        weights.sum(dim=1),
        torch.ones(4, dtype=torch.float64),
        "each query's weights should sum to 1 over the training points",
    )
    unsquared_scale = softmax(
        -((query_points[:, None] - train_points[None, :]) ** 2) / (2 * 0.5), dim=1
    )
    if torch.allclose(weights.to(torch.float64), unsquared_scale, atol=1e-6):
        learner.expect(False, "the kernel divides by 2h, not 2h²: square the bandwidth")
    learner.expect_close(
        weights,
        expected_weights,
        "weights differ: α(x, x_i) = softmax_i(-(x - x_i)² / (2h²))",
    )
    learner.expect_close(
        predictions, expected_predictions, "predictions differ: f(x) = Σ_i α(x, x_i) y_i"
    )
