"""Visible checks for notebook 04 (self-attention)."""

from __future__ import annotations

import math

import torch

from course_utils.checks import CheckFailed, LearnerFunction, register
from course_utils.dot_product import scaled_dot_product_attention
from course_utils.positional import positional_frequencies, sinusoidal_positional_encoding


def _expect_pair(learner: LearnerFunction, result, what: str = "(output, weights)") -> tuple:
    learner.expect(
        isinstance(result, tuple) and len(result) == 2,
        f"return the pair {what}, e.g. `return weights @ values, weights`",
    )
    return result


def _matches(actual, expected: torch.Tensor, atol: float = 1e-6) -> bool:
    """True when ``actual`` is a tensor equal to ``expected`` (used to recognise a known mistake)."""
    return (
        isinstance(actual, torch.Tensor)
        and actual.shape == expected.shape
        and torch.allclose(actual.detach().to(expected.dtype), expected, atol=atol, rtol=1e-5)
    )


@register("ex4_1_scaled_dot_product", calls="scaled_dot_product(queries, keys, values)")
def _check_scaled_dot_product(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(41)
    # n = 4 queries, m = 6 keys, d = 8, d_v = 3: every size differs, so each mistake shows.
    queries = torch.randn(4, 8, generator=generator, dtype=torch.float64)
    keys = torch.randn(6, 8, generator=generator, dtype=torch.float64)
    values = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    expected_output, expected_weights = scaled_dot_product_attention(queries, keys, values)

    output, weights = _expect_pair(learner, learner(queries, keys, values))
    if isinstance(weights, torch.Tensor) and tuple(weights.shape) == (6, 4):
        learner.expect(
            False,
            "weights have shape (keys, queries) = (6, 4): compute queries @ keys.transpose(-2, -1) "
            "so that row i holds query i's weights over the keys",
        )
    learner.expect_tensor(weights, shape=(4, 6), what="weights (queries × keys)")
    learner.expect_tensor(output, shape=(4, 3), what="output (queries × d_v)")

    raw_scores = queries @ keys.T
    if _matches(weights, torch.softmax(raw_scores / math.sqrt(8), dim=0)):
        learner.expect(
            False,
            "weights sum to 1 over the queries: you took the softmax over the query axis; "
            "use dim=-1 (each query's weights sum to 1 over the keys)",
        )
    learner.expect_close(
        weights.sum(dim=-1),
        torch.ones(4, dtype=torch.float64),
        "each row of the weights should sum to 1 over the keys: softmax along dim=-1",
    )
    known_scalings = {
        "you forgot to scale the scores: divide Q Kᵀ by √d (d = 8, the query/key size)": 1.0,
        "you divided by d instead of √d": 1.0 / 8,
        "you multiplied by √d: divide the scores by √d instead": math.sqrt(8),
        "you scaled by √d_v (the value size, 3): the scale is √d with d the query/key size": (
            1.0 / math.sqrt(3)
        ),
    }
    for message, factor in known_scalings.items():
        if _matches(weights, torch.softmax(raw_scores * factor, dim=-1)):
            learner.expect(False, message)
    learner.expect_close(
        weights, expected_weights, "weights differ from softmax(Q Kᵀ / √d) along the keys"
    )
    learner.expect_close(
        output, expected_output, "weights are right but the output is not: it is weights @ values"
    )

    # Batched inputs (2 sequences × 2 heads): `.T` and 2-D-only code break here.
    batched_queries = torch.randn(2, 2, 4, 8, generator=generator, dtype=torch.float64)
    batched_keys = torch.randn(2, 2, 6, 8, generator=generator, dtype=torch.float64)
    batched_values = torch.randn(2, 2, 6, 3, generator=generator, dtype=torch.float64)
    try:
        batched = learner(batched_queries, batched_keys, batched_values)
    except CheckFailed as failure:
        raise CheckFailed(
            f"works on 2-D inputs but fails on batched (2, 2, n, d) ones: {failure}. "
            "Use keys.transpose(-2, -1), not keys.T (which reverses every dimension)"
        ) from None
    batched_output, batched_weights = _expect_pair(learner, batched)
    expected_batched_output, expected_batched_weights = scaled_dot_product_attention(
        batched_queries, batched_keys, batched_values
    )
    learner.expect_tensor(batched_weights, shape=(2, 2, 4, 6), what="batched weights")
    learner.expect_close(
        batched_weights,
        expected_batched_weights,
        "batched weights are wrong: transpose only the last two axes of the keys and take the "
        "softmax along dim=-1",
    )
    learner.expect_close(batched_output, expected_batched_output, "batched output is wrong")


@register("ex4_2_self_attention", calls="self_attention(x, W_q, W_k, W_v)")
def _check_self_attention(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(42)
    # d_model = 6, d_k = 4, d_v = 5: x @ W.T or a swapped matrix fails on shapes or values.
    x = torch.randn(2, 5, 6, generator=generator, dtype=torch.float64)
    query_weight = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    key_weight = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    value_weight = torch.randn(6, 5, generator=generator, dtype=torch.float64)
    queries, keys, values = x @ query_weight, x @ key_weight, x @ value_weight
    expected_output, expected_weights = scaled_dot_product_attention(queries, keys, values)

    output, weights = _expect_pair(learner, learner(x, query_weight, key_weight, value_weight))
    learner.expect_tensor(weights, shape=(2, 5, 5), what="weights (batch × queries × keys)")
    swapped = torch.softmax(keys @ queries.transpose(-2, -1) / math.sqrt(4), dim=-1)
    if _matches(weights, swapped):
        learner.expect(
            False,
            "weights are transposed: you used x @ W_k for the queries and x @ W_q for the keys",
        )
    scaled_by_model_dim = torch.softmax(queries @ keys.transpose(-2, -1) / math.sqrt(6), dim=-1)
    if _matches(weights, scaled_by_model_dim):
        learner.expect(
            False, "you scaled by √d_model (6): the scale is √d_k (4), the size of q and k"
        )
    learner.expect_close(
        weights,
        expected_weights,
        "weights differ: Q = x W_q, K = x W_k, weights = softmax(Q Kᵀ / √d_k) along the keys",
    )
    if isinstance(output, torch.Tensor) and tuple(output.shape) == (2, 5, 6):
        learner.expect(
            False,
            "output has d_model = 6 features: you attended over x itself; the values are V = x W_v",
        )
    learner.expect_tensor(output, shape=(2, 5, 5), what="output (batch × positions × d_v)")
    learner.expect_close(output, expected_output, "output differs: it is weights @ (x @ W_v)")


@register("ex4_3_sinusoidal_encoding", calls="sinusoidal_encoding(n, d)")
def _check_sinusoidal_encoding(learner: LearnerFunction) -> None:
    n, d = 7, 10
    expected = sinusoidal_positional_encoding(n, d, dtype=torch.float64)
    encoding = learner(n, d)
    learner.expect_tensor(encoding, shape=(n, d), what="encoding (positions × dimensions)")
    learner.expect(
        encoding.is_floating_point(), f"encoding should be floating point, got {encoding.dtype}"
    )
    encoding = encoding.detach().to(torch.float64)

    positions = torch.arange(n, dtype=torch.float64)[:, None]

    def interleave(sines: torch.Tensor, cosines: torch.Tensor) -> torch.Tensor:
        return torch.stack([sines, cosines], dim=-1).reshape(n, d)

    angles = positions * positional_frequencies(d)  # pos · ω_i, ω_i = 10000^(-2i/d)
    pair_index = torch.arange(d // 2, dtype=torch.float64)
    angles_i_over_d = positions * 10000.0 ** (-pair_index / d)  # exponent i/d instead of 2i/d
    column_angles = positions * 10000.0 ** (-torch.arange(d, dtype=torch.float64) / d)
    mistakes = {
        "sines and cosines are in two halves [sin | cos]: interleave them, "
        "sin in even columns 0, 2, 4, … and cos in odd columns 1, 3, 5, …": torch.cat(
            [torch.sin(angles), torch.cos(angles)], dim=1
        ),
        "sin and cos are swapped: even columns hold sin, odd columns cos": interleave(
            torch.cos(angles), torch.sin(angles)
        ),
        "positions start at 1: the first position is 0, so row 0 is [0, 1, 0, 1, …]": interleave(
            torch.sin(angles + angles[1]), torch.cos(angles + angles[1])
        ),
        "the exponent is 2i/d with i the pair index, not i/d": interleave(
            torch.sin(angles_i_over_d), torch.cos(angles_i_over_d)
        ),
        "columns 2i and 2i+1 share the frequency 10000^(-2i/d); you gave every column its own "
        "frequency 10000^(-j/d)": torch.where(
            torch.arange(d) % 2 == 0, torch.sin(column_angles), torch.cos(column_angles)
        ),
    }
    for message, wrong in mistakes.items():
        if _matches(encoding, wrong, atol=1e-5):
            learner.expect(False, message)
    learner.expect_close(
        encoding,
        expected,
        "values differ from PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(…)",
        atol=1e-5,
    )
