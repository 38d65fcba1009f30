"""Exercises of notebook 05 (masking). Masks are boolean, True = may attend."""

from __future__ import annotations

import math

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, Mistake, mistake, randint
from course_utils.masks import causal_mask, padding_mask

NOTEBOOK = "05_masking"
INVERTED = "it matches the inverted mask: True must mean 'may attend'"


# --------------------------------------------------------------------------------------------------
# 5.1 causal mask


def _causal_mask_cases(generator: torch.Generator) -> list[Case]:
    def sized(name: str, low: int, high: int) -> Case:  # n in [low, high]
        return Case(name, (randint(generator, low, high + 1),))

    return [
        sized("a few positions", 4, 7),
        # The input is the size alone: a single position is one value, the same for every seed.
        Case("a single position (n=1)", (1,), fixed=True),
        sized("two to four positions", 2, 4),
        sized("three to six positions", 3, 6),
        sized("about ten positions", 8, 12),
        sized("more than 16 positions", 17, 24),
        sized("random n", 4, 29),
    ]


CAUSAL_MASK = Exercise(
    grade_id="ex5_1_causal_mask",
    notebook=NOTEBOOK,
    signature="make_causal_mask(n)",
    docstring="""
        (n, n) bool, True on and below the diagonal: query i may attend keys 0 … i.
        Forbidden (scores 0): causal_mask of course_utils.masks (the setup cell imports it).
    """,
    hint=(
        "query i (row) may attend key j (column) exactly when j ≤ i: the lower triangle of an "
        "n × n grid, diagonal included, as booleans"
    ),
    code_hint=(
        "torch.ones(n, n, dtype=torch.bool).tril(), or "
        "torch.arange(n)[None, :] <= torch.arange(n)[:, None]"
    ),
    reference=causal_mask,
    cases=_causal_mask_cases,
    judge=close("mask"),
    mistakes=(
        Mistake(
            f"{INVERTED} (the diagonal and below); you built the 'ignore' mask that "
            "torch.nn.MultiheadAttention's attn_mask uses",
            lambda n: ~causal_mask(n),
        ),
        Mistake(
            "it matches the upper triangle: row i is query i, column j key j, and query i may "
            "attend keys j <= i (tril, not triu)",
            lambda n: causal_mask(n).T,
        ),
        Mistake(
            "it matches a mask without the diagonal: each token may attend to itself "
            "(tril(), not tril(-1))",
            lambda n: causal_mask(n).tril(-1),
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# 5.2 padding mask


def _lengths(generator: torch.Generator, count: int, low: int, high: int) -> list[int]:
    """``count`` lengths in [low, high], drawn from ``generator``."""
    return torch.randint(low, high + 1, (count,), generator=generator).tolist()


def _padding_mask_cases(generator: torch.Generator) -> list[Case]:
    # max_len >= 4 beside at most three sequences: a (max_len, batch) answer has the wrong shape
    padded, full, single, zero, longest = (randint(generator, 4, 10) for _ in range(5))
    every, random_max = randint(generator, 3, 10), randint(generator, 2, 12)
    settings = [
        ("three sequences, all padded", _lengths(generator, 3, 1, padded - 1), padded),
        ("two sequences, no padding (every length is max_len)", [full, full], full),
        (
            "three sequences, the longest fills max_len",
            [*_lengths(generator, 2, 1, longest - 1), longest],
            longest,
        ),
        ("one sequence, padding after it", _lengths(generator, 1, 1, single - 1), single),
        ("a zero length beside a full one", [0, zero, *_lengths(generator, 1, 1, zero)], zero),
        (
            "one sequence of each length 1 … max_len, shuffled",
            (torch.randperm(every, generator=generator) + 1).tolist(),
            every,
        ),
        ("four random lengths in 0 … max_len", _lengths(generator, 4, 0, random_max), random_max),
    ]
    return [Case(name, (torch.tensor(lengths), max_len)) for name, lengths, max_len in settings]


@mistake(
    "it matches position <= length, off by one: positions 0 … length-1 are real, so use "
    "position < length"
)
def _off_by_one(lengths, max_len):
    return torch.arange(max_len)[None, :] <= lengths[:, None]


PADDING_MASK = Exercise(
    grade_id="ex5_2_padding_mask",
    notebook=NOTEBOOK,
    signature="make_padding_mask(lengths, max_len)",
    docstring="""
        (batch, max_len) bool, True for real tokens (position < length).

        lengths: a 1-D integer tensor with one length per sequence, each at most max_len.
        Forbidden (scores 0): padding_mask of course_utils.masks (the setup cell imports it).
    """,
    hint=(
        "position j of sequence b is a real token exactly when j < length_b: make that one "
        "comparison for every (sequence, position) pair at once by broadcasting"
    ),
    code_hint="torch.arange(max_len)[None, :] < lengths[:, None]",
    reference=padding_mask,
    cases=_padding_mask_cases,
    judge=close("mask"),
    mistakes=(
        Mistake(
            "it matches a (max_len, batch) mask: return (batch, max_len), one row per sequence",
            lambda lengths, max_len: padding_mask(lengths, max_len).T,
        ),
        Mistake(
            f"{INVERTED}, so True marks the real tokens; you built key_padding_mask's convention, "
            "where True marks padding to ignore",
            lambda lengths, max_len: ~padding_mask(lengths, max_len),
        ),
        _off_by_one,
    ),
)

# --------------------------------------------------------------------------------------------------
# 5.3 masked attention


def _masked_attention_cases(generator: torch.Generator) -> list[Case]:
    def randn(*shape, dtype=torch.float32, scale=1.0):
        return torch.randn(*shape, generator=generator, dtype=dtype) * scale

    padded = padding_mask(torch.tensor([3, 5]), 5)[:, None, :].repeat(1, 4, 1)
    padded[1, 3] = False  # sequence 1, query 3 may attend nothing
    with_empty_row = causal_mask(4).clone()
    with_empty_row[2] = False  # query 2 may attend nothing
    f64 = torch.float64
    settings = [
        (
            "padding (2, 4, 5) with one fully masked query, d=8 (float64)",
            (randn(2, 4, 8, dtype=f64), randn(2, 5, 8, dtype=f64), randn(2, 5, 3, dtype=f64)),
            padded,
        ),
        ("causal mask, n=5, d=4", (randn(5, 4), randn(5, 4), randn(5, 4)), causal_mask(5)),
        (
            "padding mask (3, 1, 7) broadcast over 4 queries (float64)",
            (randn(3, 4, 6, dtype=f64), randn(3, 7, 6, dtype=f64), randn(3, 7, 2, dtype=f64)),
            padding_mask(torch.tensor([7, 3, 5]), 7)[:, None, :],
        ),
        ("a fully masked query row, n=4", (randn(4, 3), randn(4, 3), randn(4, 3)), with_empty_row),
        (
            "every key masked, n=4",
            (randn(4, 3), randn(4, 3), randn(4, 3)),
            torch.zeros(4, 4, dtype=torch.bool),
        ),
        (
            "large scores (entries ×20) with a causal mask",
            (randn(2, 6, 8, scale=20.0), randn(2, 6, 8, scale=20.0), randn(2, 6, 3)),
            causal_mask(6),
        ),
    ]
    return [Case(name, (*tensors, mask)) for name, tensors, mask in settings]


def _has_empty_row(mask) -> bool:
    return bool((~mask.any(dim=-1)).any())


def _scores(queries, keys):
    return queries @ keys.transpose(-2, -1) / math.sqrt(queries.shape[-1])  # s_ij = q_i·k_j / √d


@mistake(
    "it matches filling with -inf but leaving fully masked rows alone: the softmax of a "
    "row of -inf is 0/0 = NaN; give such rows zero weights "
    "(torch.where(mask.any(-1, keepdim=True), weights, 0))"
)
def _minus_inf_without_empty_rows(queries, keys, values, mask):
    if not _has_empty_row(mask):
        return NOT_APPLICABLE
    weights = torch.softmax(_scores(queries, keys).masked_fill(~mask, float("-inf")), dim=-1)
    return weights @ values, weights


@mistake(
    "it matches a finite fill value (-1e9, finfo.min): a fully masked row then gets "
    "uniform weights 1/m on masked keys; such rows must be all zeros"
)
def _finite_fill(queries, keys, values, mask):
    if not _has_empty_row(mask):
        return NOT_APPLICABLE
    weights = torch.softmax(_scores(queries, keys).masked_fill(~mask, -1e9), dim=-1)
    return weights @ values, weights


@mistake(
    "it matches zeroing the masked weights after the softmax without renormalising: "
    "mask the scores before the softmax instead"
)
def _zeroed_after_softmax(queries, keys, values, mask):
    weights = torch.softmax(_scores(queries, keys), dim=-1) * mask
    return weights @ values, weights


@mistake("it matches unscaled scores: divide Q Kᵀ by √d, d the query/key size")
def _unscaled(queries, keys, values, mask):
    return scaled_dot_product_attention(queries * math.sqrt(queries.shape[-1]), keys, values, mask)


MASKED_ATTENTION = Exercise(
    grade_id="ex5_3_masked_attention",
    notebook=NOTEBOOK,
    signature="masked_attention(queries, keys, values, mask)",
    docstring="""
        Scaled dot-product attention whose softmax runs over each query's allowed keys only; a query
        with no allowed key gets all-zero weights and a zero output. Returns (output, weights).

        queries (..., n, d), keys (..., m, d), values (..., m, d_v); mask bool (True = may
        attend), broadcastable to the (..., n, m) scores. output (..., n, d_v), weights (..., n, m).
        Forbidden (scores 0): torch's F.scaled_dot_product_attention; the course's
        scaled_dot_product_attention and masked_softmax (the setup cell imports both).
    """,
    hint=(
        "hide the forbidden keys from the softmax so they get exactly zero weight, and give a "
        "query with no allowed key all-zero weights instead of 0/0"
    ),
    code_hint=(
        'scores.masked_fill(~mask, float("-inf")), softmax, then '
        "torch.where(mask.any(-1, keepdim=True), weights, 0)"
    ),
    reference=scaled_dot_product_attention,
    forbidden=(
        "torch.nn.functional.scaled_dot_product_attention",
        "course_utils.softmax.masked_softmax",
    ),
    cases=_masked_attention_cases,
    judge=close("output", "weights"),
    mistakes=(
        _minus_inf_without_empty_rows,
        _finite_fill,
        _zeroed_after_softmax,
        Mistake(
            f"{INVERTED}, so fill the scores where mask is False (scores.masked_fill(~mask, -inf))",
            lambda queries, keys, values, mask: scaled_dot_product_attention(
                queries, keys, values, ~mask
            ),
        ),
        _unscaled,
        Mistake(
            "it matches ignoring the mask, attending to padding: fill the masked scores with "
            "-inf before the softmax",
            lambda queries, keys, values, mask: scaled_dot_product_attention(queries, keys, values),
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# 5.4 padding and causality together


def combined_mask_reference(lengths, n):
    """(batch, n, n): causal[None] & keys_real[:, None, :]."""
    return causal_mask(n)[None, :, :] & padding_mask(lengths, n)[:, None, :]


def _combined_mask_cases(generator: torch.Generator) -> list[Case]:
    padded, with_zero, full, random_n = (randint(generator, 3, 10) for _ in range(4))
    batch = randint(generator, 1, 5)
    settings = [
        (
            "three sequences, one full, two padded",
            [padded, *_lengths(generator, 2, 1, padded - 1)],
            padded,
        ),
        ("n=1: sequences of a single token", [1] * batch, 1),
        (
            "a zero length beside a full one",
            [with_zero, 0, *_lengths(generator, 1, 1, with_zero)],
            with_zero,
        ),
        ("two sequences, no padding (every length is n)", [full, full], full),
        ("three random lengths in 0 … n", _lengths(generator, 3, 0, random_n), random_n),
    ]
    return [Case(name, (torch.tensor(lengths), n)) for name, lengths, n in settings]


@mistake(
    "it matches combining the masks with OR: a key may be attended only if it is in the "
    "past AND real, so use &"
)
def _or_combined(lengths, n):
    return causal_mask(n)[None, :, :] | padding_mask(lengths, n)[:, None, :]


@mistake(
    "it matches applying the padding to the queries (rows): padding marks keys we may "
    "not attend, so broadcast it over the key axis, padding[:, None, :]"
)
def _padding_on_queries(lengths, n):
    return causal_mask(n)[None, :, :] & padding_mask(lengths, n)[:, :, None]


COMBINED_MASK = Exercise(
    grade_id="ex5_4_combined_mask",
    notebook=NOTEBOOK,
    signature="combined_mask(lengths, n)",
    docstring="""
        (batch, n, n) bool: causal AND key is real.

        lengths: a 1-D integer tensor with one length per sequence, each at most n. Query i of
        sequence b may attend key j when j <= i and j < lengths[b].
        Forbidden (scores 0): only the functions of course_utils.exercises; causal_mask and
        padding_mask (imported in the setup cell) are allowed.
    """,
    hint=(
        "a key may be attended when it is in the query's past AND a real token: combine an "
        "(n, n) causal mask and a (batch, n) key mask, broadcasting over the missing axes"
    ),
    code_hint="causal[None, :, :] & keys_real[:, None, :], with keys_real a (batch, n) padding mask",
    reference=combined_mask_reference,
    cases=_combined_mask_cases,
    judge=close("mask"),
    mistakes=(
        _or_combined,
        _padding_on_queries,
        Mistake(
            "it matches the causal mask alone: combine it with the key padding",
            lambda lengths, n: causal_mask(n).expand(len(lengths), n, n),
        ),
        Mistake(
            "it matches the padding mask alone: query i may not attend keys j > i",
            lambda lengths, n: padding_mask(lengths, n)[:, None, :].expand(len(lengths), n, n),
        ),
        Mistake(INVERTED, lambda lengths, n: ~combined_mask_reference(lengths, n)),
    ),
)

EXERCISES = (CAUSAL_MASK, PADDING_MASK, MASKED_ATTENTION, COMBINED_MASK)
