"""Exercises of notebook 04 (self-attention): scaled dot-product, self-attention, positional encoding."""

from __future__ import annotations

import math

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.feedback.judge import close
from course_utils.feedback.shared_mistakes import swapped_pair
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randint
from course_utils.positional import sinusoidal_positional_encoding

NOTEBOOK = "04_self_attention"


def _attention(queries, keys, values, scale, dim=-1):
    """softmax(Q Kᵀ · scale) V with the softmax along ``dim``: the mistakes vary scale and dim."""
    weights = torch.softmax(queries @ keys.transpose(-2, -1) * scale, dim=dim)
    return weights @ values, weights


# --------------------------------------------------------------------------------------------------
# 4.1 scaled dot-product attention


def _scaled_dot_product_cases(generator: torch.Generator) -> list[Case]:
    def attention_inputs(name, leading, n, m, d, d_v, dtype=torch.float32, scale=1.0):
        def randn(*shape):
            return torch.randn(*leading, *shape, generator=generator, dtype=dtype)

        return Case(name, (randn(n, d) * scale, randn(m, d) * scale, randn(m, d_v)))

    return [
        attention_inputs("4 queries, 6 keys, d=8, d_v=3 (float64)", (), 4, 6, 8, 3, torch.float64),
        attention_inputs(
            "5 queries, 7 keys, d=16, d_v=2 (float64)", (), 5, 7, 16, 2, torch.float64
        ),
        attention_inputs("batch (3, n=4, m=4, d=8, d_v=8)", (3,), 4, 4, 8, 8),
        attention_inputs(
            "batch × heads (2, 2, n=4, m=6, d=8, d_v=3), float64", (2, 2), 4, 6, 8, 3, torch.float64
        ),
        attention_inputs("batch × heads (2, 3, n=6, m=9, d=4, d_v=5)", (2, 3), 6, 9, 4, 5),
        attention_inputs(
            "large scores (entries ×30), 4 queries, 6 keys, d=8", (), 4, 6, 8, 3, scale=30.0
        ),
        attention_inputs("a single query and key, d=3 (float64)", (), 1, 1, 3, 2, torch.float64),
    ]


@mistake(
    "it matches keys @ queriesᵀ, whose weights are (keys × queries): compute "
    "queries @ keys.transpose(-2, -1) so that row i holds query i's weights over the keys"
)
def _keys_times_queries(queries, keys, values):
    weights = torch.softmax(keys @ queries.transpose(-2, -1) / math.sqrt(queries.shape[-1]), -1)
    return weights @ values, weights  # raises when n ≠ m: (m, n) @ (m, d_v)


@mistake(
    "it matches a softmax over the query axis: use dim=-1, so that each query's weights "
    "sum to 1 over the keys"
)
def _softmax_over_queries(queries, keys, values):
    return _attention(queries, keys, values, 1 / math.sqrt(queries.shape[-1]), dim=-2)


@mistake("it matches unscaled scores: divide Q Kᵀ by √d, d the query/key size")
def _unscaled(queries, keys, values):
    return _attention(queries, keys, values, 1.0)


@mistake("it matches dividing the scores by d instead of √d")
def _divided_by_d(queries, keys, values):
    return _attention(queries, keys, values, 1 / queries.shape[-1])


@mistake("it matches multiplying the scores by √d: divide them by √d instead")
def _multiplied_by_root_d(queries, keys, values):
    return _attention(queries, keys, values, math.sqrt(queries.shape[-1]))


@mistake("it matches scaling by √d_v (the value size): the scale is √d, d the query/key size")
def _scaled_by_value_size(queries, keys, values):
    if values.shape[-1] == queries.shape[-1]:
        return NOT_APPLICABLE
    return _attention(queries, keys, values, 1 / math.sqrt(values.shape[-1]))


@mistake(
    "it matches keys.T, which reverses EVERY dimension of a batched tensor: use "
    "keys.transpose(-2, -1)"
)
def _keys_dot_t(queries, keys, values):
    if keys.dim() == 2:
        return NOT_APPLICABLE
    reversed_keys = keys.permute(*range(keys.dim() - 1, -1, -1))  # what keys.T gives
    weights = torch.softmax(queries @ reversed_keys / math.sqrt(queries.shape[-1]), dim=-1)
    return weights @ values, weights


SCALED_DOT_PRODUCT = Exercise(
    grade_id="ex4_1_scaled_dot_product",
    notebook=NOTEBOOK,
    signature="scaled_dot_product(queries, keys, values)",
    docstring="""
        Scaled dot-product attention (the formula above) over the last two axes. Returns (output, weights).

        queries (..., n, d), keys (..., m, d), values (..., m, d_v), where ... are any leading batch
        or head dimensions. output is (..., n, d_v) and weights (..., n, m).
        Forbidden (scores 0): torch's F.scaled_dot_product_attention; the course's
        scaled_dot_product_attention (course_utils.dot_product; the setup cell imports it).
    """,
    hint=(
        "score every query against every key, scale the scores by √d, turn each query's scores "
        "into weights over the keys, then average the values with them"
    ),
    code_hint=(
        "scores = queries @ keys.transpose(-2, -1) / math.sqrt(d); "
        "weights = torch.softmax(scores, dim=-1); return weights @ values, weights"
    ),
    reference=scaled_dot_product_attention,
    forbidden=("torch.nn.functional.scaled_dot_product_attention",),
    cases=_scaled_dot_product_cases,
    judge=close("output", "weights"),
    mistakes=(
        _keys_times_queries,
        _softmax_over_queries,
        _unscaled,
        _divided_by_d,
        _multiplied_by_root_d,
        _scaled_by_value_size,
        _keys_dot_t,
        swapped_pair(scaled_dot_product_attention),
    ),
)

# --------------------------------------------------------------------------------------------------
# 4.2 self-attention from one sequence


def self_attention_reference(x, W_q, W_k, W_v):
    """Q = x W_q, K = x W_k, V = x W_v; softmax(Q Kᵀ / √d_k) V and the weights."""
    return scaled_dot_product_attention(x @ W_q, x @ W_k, x @ W_v)


def _self_attention_cases(generator: torch.Generator) -> list[Case]:
    def projections(name, leading, n, d_model, d_k, d_v, dtype=torch.float32):
        def randn(*shape):
            return torch.randn(*shape, generator=generator, dtype=dtype)

        x = randn(*leading, n, d_model)
        return Case(name, (x, randn(d_model, d_k), randn(d_model, d_k), randn(d_model, d_v)))

    return [
        projections("x (2, 5, 6), d_k=4, d_v=5 (float64)", (2,), 5, 6, 4, 5, torch.float64),
        projections("x (6, 8), d_k=4, d_v=3 (float64)", (), 6, 8, 4, 3, torch.float64),
        projections("x (2, 7, 5), d_k=6, d_v=2", (2,), 7, 5, 6, 2),
        projections("x (3, 4, 10), d_k=10, d_v=10", (3,), 4, 10, 10, 10),
        projections(
            "one position, x (1, 1, 4), d_k=2, d_v=3 (float64)", (1,), 1, 4, 2, 3, torch.float64
        ),
    ]


@mistake(
    "it matches x @ W_k for the queries and x @ W_q for the keys (the weights come out "
    "transposed): Q = x W_q, K = x W_k"
)
def _queries_and_keys_swapped(x, W_q, W_k, W_v):
    return self_attention_reference(x, W_k, W_q, W_v)


@mistake("it matches attending over x itself: the values are V = x W_v")
def _x_as_values(x, W_q, W_k, W_v):
    return scaled_dot_product_attention(x @ W_q, x @ W_k, x)


@mistake("it matches scaling by √d_model: the scale is √d_k, the size of q and k")
def _scaled_by_model_size(x, W_q, W_k, W_v):
    if x.shape[-1] == W_q.shape[-1]:
        return NOT_APPLICABLE
    return _attention(x @ W_q, x @ W_k, x @ W_v, 1 / math.sqrt(x.shape[-1]))


@mistake("it matches x @ W.T: the weights here are (d_model, d_k) matrices, so Q = x @ W_q")
def _transposed_weights(x, W_q, W_k, W_v):
    return self_attention_reference(x, W_q.T, W_k.T, W_v.T)


SELF_ATTENTION = Exercise(
    grade_id="ex4_2_self_attention",
    notebook=NOTEBOOK,
    signature="self_attention(x, W_q, W_k, W_v)",
    docstring="""
        Self-attention (the formulas above): project x to queries, keys and values with W_q, W_k and
        W_v, then apply scaled dot-product attention. Returns the output and the weights.

        x (..., n, d_model); W_q and W_k (d_model, d_k); W_v (d_model, d_v).
        Returns (output, weights): output (..., n, d_v) and weights (..., n, n).
        Forbidden (scores 0): only the functions of course_utils.exercises; the course's
        scaled_dot_product_attention (imported in the setup cell) is allowed.
    """,
    hint="give every token its three roles with the three projections, then attend",
    code_hint=(
        "three matrix products x @ W_q, x @ W_k, x @ W_v, then "
        "scaled_dot_product_attention(Q, K, V)"
    ),
    reference=self_attention_reference,
    cases=_self_attention_cases,
    judge=close("output", "weights", atol=1e-4, rtol=1e-4),
    mistakes=(_queries_and_keys_swapped, _x_as_values, _scaled_by_model_size, _transposed_weights),
)

# --------------------------------------------------------------------------------------------------
# 4.3 sinusoidal positional encoding


def _sinusoidal_encoding_cases(generator: torch.Generator) -> list[Case]:
    def even(low: int, high: int) -> int:  # an even d in [low, high]
        return 2 * randint(generator, low // 2, high // 2 + 1)

    settings = [  # n != d in all but the random case: a transposed answer has the wrong shape
        ("a few positions, d not a power of two", randint(generator, 5, 10), 4 * randint(generator, 2, 5) + 2),
        ("a single position (n=1), d even", 1, even(2, 16)),
        ("a few positions, d=4", randint(generator, 5, 9), 4),
        ("about ten positions, d a power of two", randint(generator, 9, 16), 2 ** randint(generator, 4, 6)),
        ("many positions (up to 60), small d", randint(generator, 30, 61), even(6, 10)),
        ("a few positions, large d (48 to 80)", randint(generator, 2, 5), even(48, 80)),
        ("random n, even d", randint(generator, 2, 40), even(4, 32)),
    ]  # fmt: skip
    return [Case(name, (n, d)) for name, n, d in settings]


def _angles(n, d, exponent_scale=2.0, first_position=0):
    """pos · 10000^(-scale·i/d) for the d/2 pairs i: (n, d/2), float64."""
    positions = torch.arange(first_position, first_position + n, dtype=torch.float64)[:, None]
    pair_index = torch.arange(d // 2, dtype=torch.float64)
    return positions * 10000.0 ** (-exponent_scale * pair_index / d)


def _interleave(sines: torch.Tensor, cosines: torch.Tensor) -> torch.Tensor:
    return torch.stack([sines, cosines], dim=-1).flatten(-2)


@mistake(
    "it matches sines and cosines in two halves [sin | cos]: interleave them, sin in the "
    "even columns 0, 2, 4, … and cos in the odd columns 1, 3, 5, …"
)
def _two_halves(n, d):
    if d == 2:
        return NOT_APPLICABLE
    angles = _angles(n, d)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


@mistake("it matches sin and cos swapped: even columns hold sin, odd columns cos")
def _sin_cos_swapped(n, d):
    angles = _angles(n, d)
    return _interleave(torch.cos(angles), torch.sin(angles))


@mistake("it matches positions starting at 1: the first position is 0, so row 0 is [0, 1, 0, 1, …]")
def _positions_from_one(n, d):
    angles = _angles(n, d, first_position=1)
    return _interleave(torch.sin(angles), torch.cos(angles))


@mistake("it matches the exponent i/d: the exponent is 2i/d with i the pair index")
def _exponent_i_over_d(n, d):
    if d == 2:
        return NOT_APPLICABLE
    angles = _angles(n, d, exponent_scale=1.0)
    return _interleave(torch.sin(angles), torch.cos(angles))


@mistake(
    "it matches every column having its own frequency 10000^(-j/d): columns 2i and 2i+1 "
    "share the frequency 10000^(-2i/d)"
)
def _frequency_per_column(n, d):
    positions = torch.arange(n, dtype=torch.float64)[:, None]
    angles = positions * 10000.0 ** (-torch.arange(d, dtype=torch.float64) / d)
    return torch.where(torch.arange(d) % 2 == 0, torch.sin(angles), torch.cos(angles))


SINUSOIDAL_ENCODING = Exercise(
    grade_id="ex4_3_sinusoidal_encoding",
    notebook=NOTEBOOK,
    signature="sinusoidal_encoding(n, d)",
    docstring="""
        The (n, d) sinusoidal encoding table (the formula above): row pos, column 2i holds the sine and
        column 2i+1 the cosine of the position times the frequency of pair i.

        Positions 0 … n-1, an even d; returns a floating-point tensor.
        Forbidden (scores 0): sinusoidal_positional_encoding and positional_frequencies of
        course_utils.positional (the setup cell imports both).
    """,
    hint=(
        "columns 2i and 2i+1 share one frequency 10000^(-2i/d): the sine of position × frequency "
        "goes in the even column, its cosine in the odd one"
    ),
    code_hint=(
        "angles = positions[:, None] / 10000 ** (torch.arange(0, d, 2) / d); "
        "fill encoding[:, 0::2] with sin(angles) and encoding[:, 1::2] with cos(angles)"
    ),
    reference=sinusoidal_positional_encoding,
    forbidden=("course_utils.positional.positional_frequencies",),
    cases=_sinusoidal_encoding_cases,
    judge=close("encoding", atol=1e-4, rtol=1e-4),  # float32 sin/cos of angles up to ~50
    mistakes=(
        _two_halves,
        _sin_cos_swapped,
        _positions_from_one,
        _exponent_i_over_d,
        _frequency_per_column,
    ),
)

EXERCISES = (SCALED_DOT_PRODUCT, SELF_ATTENTION, SINUSOIDAL_ENCODING)
