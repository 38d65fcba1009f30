"""Exercises of notebook 03 (Luong attention): the dot, general and concat scores, local-p weights."""

from __future__ import annotations

import math

import torch

from course_utils.alignment import (
    concat_scores,
    dot_scores,
    gaussian_window_weights,
    general_scores,
)
from course_utils.feedback.judge import close
from course_utils.feedback.shared_mistakes import raw_score_mistakes
from course_utils.feedback.spec import Case, Exercise, Mistake, mistake
from course_utils.masks import padding_mask
from course_utils.softmax import masked_softmax

NOTEBOOK = "03_luong_attention"
LUONG_MODULE_SCORES = ("course_utils.alignment.LuongAttention.scores",)


def _randn(generator: torch.Generator, dtype: torch.dtype):
    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    return randn


def _score_mistakes(reference) -> tuple[Mistake, ...]:
    """The two mistakes every score exercise can make: a softmax too early, a .squeeze() too many."""
    return raw_score_mistakes(reference, softmax_comes="afterwards", single_position="a single key")


def _score_exercise(*, reference, mistakes: tuple[Mistake, ...], **described) -> Exercise:
    """One of the three Luong scores: they share the notebook, the refused ``LuongAttention.scores``,
    the judge and the score mistakes of every score exercise (after their own)."""
    return Exercise(
        notebook=NOTEBOOK,
        reference=reference,
        forbidden=LUONG_MODULE_SCORES,
        judge=close("scores"),
        mistakes=(*mistakes, *_score_mistakes(reference)),
        **described,
    )


# --------------------------------------------------------------------------------------------------
# 3.1 dot


def _dot_score_cases(generator: torch.Generator) -> list[Case]:
    def scores_case(name, batch, positions, dim, dtype=torch.float32):
        randn = _randn(generator, dtype)
        return Case(name, (randn(batch, dim), randn(batch, positions, dim)))

    return [
        scores_case("B=3, m=5 keys, d=8", 3, 5, 8),
        scores_case("B=2, m=7 keys, d=5 (float64)", 2, 7, 5, torch.float64),
        # B == m == d: a query multiplied against the wrong axis no longer fails loudly
        scores_case("batch == keys == d = 4", 4, 4, 4),
        scores_case("a single key, B=3, d=6 (float64)", 3, 1, 6, torch.float64),
        scores_case("a batch of one, m=5, d=3", 1, 5, 3),
        scores_case("larger batch B=16, m=9, d=32", 16, 9, 32),
    ]


@mistake(
    "it matches the query without a source axis: (B, d) * (B, m, d) pairs sentence b's "
    "query with key b of every sentence (an error, or silently wrong when B == m); "
    "compare query b only with the keys of sentence b, e.g. "
    "(keys @ query[:, :, None]).squeeze(-1)"
)
def _query_without_source_axis(query, keys):
    # (B, d) * (B, m, d) lines up sentence b's query with key position b of every sentence
    return (query * keys).sum(dim=-1)


@mistake(
    "it matches keys @ query: a (B, d) query is then one matrix for the whole batch, not "
    "a column per sentence; make it a column, query[:, :, None], and drop that axis "
    "afterwards with .squeeze(-1)"
)
def _query_not_a_column(query, keys):
    return keys @ query


@mistake(
    "it matches dividing by √d: Luong's dot score is the plain h_tᵀ h̄_j (the scaled "
    "score is the Transformer's, measured at the end of the notebook)"
)
def _divided_by_sqrt_d(query, keys):
    return dot_scores(query, keys) / math.sqrt(query.shape[-1])


DOT_SCORE = _score_exercise(
    grade_id="ex3_1_dot_score",
    signature="dot_score(query, keys)",
    docstring="""
        Luong's dot score: the dot product of each sentence's query with each of its own keys.

        query (B, d) and keys (B, m, d); returns the scores (B, m).
        Forbidden (scores 0): dot_scores of course_utils.alignment (the setup cell imports it) and
        LuongAttention.scores.
    """,
    hint="each sentence's query meets each of its own keys in a dot product: one number per key",
    code_hint="return (keys @ query[:, :, None]).squeeze(-1)  # (B, m, d) @ (B, d, 1) → (B, m)",
    reference=dot_scores,
    cases=_dot_score_cases,
    mistakes=(
        _query_without_source_axis,
        _query_not_a_column,
        _divided_by_sqrt_d,
    ),
)

# --------------------------------------------------------------------------------------------------
# 3.2 general


def _general_score_cases(generator: torch.Generator) -> list[Case]:
    def scores_case(name, batch, positions, query_dim, key_dim, dtype=torch.float32):
        randn = _randn(generator, dtype)
        query, keys = randn(batch, query_dim), randn(batch, positions, key_dim)
        return Case(name, (query, keys, randn(query_dim, key_dim)))

    return [
        scores_case("B=3, m=5, d_q=6, d_k=4", 3, 5, 6, 4),
        scores_case("B=2, m=6, d_q=5, d_k=3 (float64)", 2, 6, 5, 3, torch.float64),
        # a square W: using Wᵀ no longer fails loudly
        scores_case("square W (d_q = d_k = 4), B=3, m=5", 3, 5, 4, 4),
        scores_case("a single key, B=4, d_q=3, d_k=6 (float64)", 4, 1, 3, 6, torch.float64),
        scores_case("a batch of one, square W (d=6), m=4 (float64)", 1, 4, 6, 6, torch.float64),
        scores_case("larger batch B=12, m=8, d_q=7, d_k=9", 12, 8, 7, 9),
    ]


TRANSPOSED = (
    "it matches Wᵀ where W belongs: W is (d_q, d_k), so h_tᵀ W is query @ W, a (B, d_k) row "
    "that meets each key (and W h̄_j is keys @ W.T)"
)


@mistake(TRANSPOSED)
def _transposed_query_map(query, keys, W):
    return (keys @ (query @ W.T)[:, :, None]).squeeze(-1)


@mistake(TRANSPOSED)
def _untransposed_key_map(query, keys, W):
    return ((keys @ W) * query[:, None, :]).sum(dim=-1)


@mistake("it matches dividing by √d_k: Luong's general score is the plain h_tᵀ W h̄_j")
def _divided_by_sqrt_d_k(query, keys, W):
    return general_scores(query, keys, W) / math.sqrt(keys.shape[-1])


GENERAL_SCORE = _score_exercise(
    grade_id="ex3_2_general_score",
    signature="general_score(query, keys, W)",
    docstring="""
        Luong's general score: the query, mapped through W to the keys' size, dotted with each key of
        its sentence.

        query (B, d_q), keys (B, m, d_k), W (d_q, d_k); returns the scores (B, m).
        Forbidden (scores 0): general_scores of course_utils.alignment (the setup cell imports it) and
        LuongAttention.scores.
    """,
    hint="map the query through W so that it has the keys' size; then it is a dot score",
    code_hint="projected = query @ W  # (B, d_k); return (keys @ projected[:, :, None]).squeeze(-1)",
    reference=general_scores,
    cases=_general_score_cases,
    mistakes=(
        _transposed_query_map,
        _untransposed_key_map,
        _divided_by_sqrt_d_k,
    ),
)

# --------------------------------------------------------------------------------------------------
# 3.3 concat


def _concat_score_cases(generator: torch.Generator) -> list[Case]:
    def scores_case(name, batch, positions, query_dim, key_dim, hidden, dtype=torch.float32):
        randn = _randn(generator, dtype)
        query, keys = randn(batch, query_dim), randn(batch, positions, key_dim)
        return Case(name, (query, keys, randn(hidden, query_dim + key_dim), randn(hidden)))

    return [
        scores_case("B=3, m=5, d_q=d_k=4, A=6", 3, 5, 4, 4, 6),
        scores_case("B=2, m=6, d_q=3, d_k=5, A=4 (float64)", 2, 6, 3, 5, 4, torch.float64),
        scores_case("a single key, B=3, d_q=2, d_k=4, A=5 (float64)", 3, 1, 2, 4, 5, torch.float64),
        scores_case("a batch of one, m=4, d_q=5, d_k=2, A=3", 1, 4, 5, 2, 3),
        scores_case("larger batch B=10, m=12, d_q=d_k=8, A=16", 10, 12, 8, 8, 16),
    ]


def _query_next_to_keys(query, keys):
    return query[:, None, :].expand(-1, keys.shape[1], -1)  # h_t next to every h̄_j


@mistake("it matches a score without the tanh: e_j = v_aᵀ tanh(W_a [h_t; h̄_j])")
def _concat_without_tanh(query, keys, W, v):
    return (torch.cat([_query_next_to_keys(query, keys), keys], dim=-1) @ W.T) @ v


@mistake(
    "it matches tanh applied after v: v_aᵀ tanh(W_a [h_t; h̄_j]), not tanh(v_aᵀ W_a [h_t; h̄_j])"
)
def _concat_tanh_outside(query, keys, W, v):
    return torch.tanh((torch.cat([_query_next_to_keys(query, keys), keys], dim=-1) @ W.T) @ v)


@mistake(
    "it matches the concatenation reversed, [h̄_j; h_t]: it is [h_t; h̄_j], the query "
    "first, then the key"
)
def _concat_reversed(query, keys, W, v):
    return torch.tanh(torch.cat([keys, _query_next_to_keys(query, keys)], dim=-1) @ W.T) @ v


@mistake(
    "it matches the query concatenated without repeating it along the keys: torch.cat "
    "needs the same number of positions; expand it first, "
    "query[:, None, :].expand(-1, keys.shape[1], -1)"
)
def _concat_query_not_repeated(query, keys, W, v):
    return torch.tanh(torch.cat([query[:, None, :], keys], dim=-1) @ W.T) @ v


CONCAT_SCORE = _score_exercise(
    grade_id="ex3_3_concat_score",
    signature="concat_score(query, keys, W, v)",
    docstring="""
        Luong's concat score: W applied to the query concatenated with each key of its sentence (query
        first), squashed by tanh and read out by v.

        query (B, d_q), keys (B, m, d_k), W (A, d_q + d_k), v (A,); returns the scores (B, m).
        Forbidden (scores 0): concat_scores of course_utils.alignment (the setup cell imports it) and
        LuongAttention.scores.
    """,
    hint=(
        "put the query next to every key of its sentence, concatenate query first, then it is "
        "Bahdanau's small network: W, tanh, v"
    ),
    code_hint=(
        "repeated = query[:, None, :].expand(-1, keys.shape[1], -1); "
        "pairs = torch.cat([repeated, keys], dim=-1); return torch.tanh(pairs @ W.T) @ v"
    ),
    reference=concat_scores,
    cases=_concat_score_cases,
    mistakes=(
        _concat_query_not_repeated,
        _concat_without_tanh,
        _concat_tanh_outside,
        _concat_reversed,
    ),
)

# --------------------------------------------------------------------------------------------------
# 3.4 local-p weights


def _local_p_cases(generator: torch.Generator) -> list[Case]:
    def local_case(name, lengths, positions, centers, window, dtype=torch.float32, pad_high=True):
        lengths = torch.as_tensor(lengths)
        scores = torch.randn(len(lengths), positions, generator=generator, dtype=dtype)
        if pad_high:  # padding gets high scores, so attending to it changes the answer visibly
            scores = scores.masked_fill(~padding_mask(lengths, positions), 4.0)
        return Case(name, (scores, torch.as_tensor(centers, dtype=dtype), window, lengths))

    batch, positions = 16, 20
    random_lengths = torch.randint(1, positions + 1, (batch,), generator=generator)
    # p_t = (S − 1)·sigmoid(...) lies in [0, S − 1]; integer centres land exactly D from an edge.
    random_centers = (random_lengths - 1).float() * torch.rand(batch, generator=generator)
    random_centers[::3] = random_centers[::3].round()
    return [
        local_case(
            "D=2, centres [2.3, 6, 3.5], lengths [10, 10, 5], m=10",
            [10, 10, 5],
            10,
            [2.3, 6.0, 3.5],
            2,
            pad_high=False,
        ),
        local_case(
            "D=3, fractional centres, lengths [12, 9, 6, 12] (float64)",
            [12, 9, 6, 12],
            12,
            [5.3, 7.8, 4.5, 0.6],
            3,
            dtype=torch.float64,
        ),
        local_case(
            "D=1, integer centres on the sentence edges (first and last word)",
            [8, 5, 8],
            8,
            [0.0, 4.0, 7.0],
            1,
        ),
        local_case(
            "window wider than the sentence (D=8, m=6), lengths [6, 3, 1] (float64)",
            [6, 3, 1],
            6,
            [2.5, 1.0, 0.0],
            8,
            dtype=torch.float64,
        ),
        local_case(
            "one real word per sentence (lengths [1, 1], m=5), D=2", [1, 1], 5, [0.0, 0.0], 2
        ),
        local_case(
            "larger batch B=16, m=20, D=4, random lengths and centres",
            random_lengths,
            positions,
            random_centers,
            4,
        ),
    ]


def _local_p(sigma_of_window, allowed_of, gaussian=True, renormalise=False):
    """Local-p weights with one step done differently: σ(D), the allowed positions, the Gaussian."""

    def weights(scores, centers, window, lengths):
        positions = torch.arange(scores.shape[-1], dtype=scores.dtype)
        distance = positions[None, :] - centers[:, None]  # s − p_t
        real = padding_mask(lengths, scores.shape[-1])  # s < length
        result = masked_softmax(scores, allowed_of(distance, window, real), dim=-1)
        if gaussian:
            result = result * torch.exp(-(distance**2) / (2 * sigma_of_window(window) ** 2))
        if renormalise:
            result = result / result.sum(dim=-1, keepdim=True)
        return result

    return weights


def _half(window):
    return window / 2


def _window_and_real(distance, window, real):
    return (distance.abs() <= window) & real


LOCAL_P_WEIGHTS = Exercise(
    grade_id="ex3_4_local_p_weights",
    notebook=NOTEBOOK,
    signature="local_p_weights(scores, centers, window, lengths)",
    docstring="""
        Local-p weights (the formula above): a softmax of the scores over the real words within D of
        the centre p, times a Gaussian of width σ = D / 2 around p, not renormalised.

        centers p (B,) are real positions, window D is an int, lengths (B,) count the real words;
        returns the weights (B, m), exactly 0 outside the window and on padding.
        Forbidden (scores 0): gaussian_window_weights of course_utils.alignment (the setup cell
        imports it); masked_softmax is allowed.
    """,
    hint=(
        "allow only the real words within D of the centre, softmax the scores over those, then "
        "multiply by a Gaussian of width D/2 around the centre (no renormalising)"
    ),
    code_hint=(
        "distance = torch.arange(m)[None, :] - centers[:, None]; allowed = (distance.abs() <= "
        "window) & (torch.arange(m)[None, :] < lengths[:, None]); return masked_softmax(scores, "
        "allowed, dim=-1) * torch.exp(-distance**2 / (2 * (window / 2) ** 2))"
    ),
    reference=gaussian_window_weights,
    cases=_local_p_cases,
    judge=close("weights", atol=1e-6, rtol=1e-5),
    mistakes=(
        Mistake(
            "it matches a Gaussian that is too wide: Luong uses σ = D / 2, not σ = D",
            _local_p(lambda window: window, _window_and_real),
        ),
        Mistake(
            "it matches weights outside the window |s − p_t| ≤ D that are not zero: restrict the "
            "softmax to the window before multiplying by the Gaussian",
            _local_p(_half, lambda distance, window, real: real),
        ),
        Mistake(
            "it matches padding positions (s >= length) inside the window getting weight: you "
            "are attending to padding; keep only s < length",
            _local_p(_half, lambda distance, window, real: distance.abs() <= window),
        ),
        Mistake(
            "it matches a window without its edges: keep |s − p_t| ≤ D (positions exactly D away "
            "count)",
            _local_p(_half, lambda distance, window, real: (distance.abs() < window) & real),
        ),
        Mistake(
            "it matches a window without the Gaussian factor exp(−(s − p_t)² / (2σ²)), σ = D / 2",
            _local_p(_half, _window_and_real, gaussian=False),
        ),
        Mistake(
            "it matches weights renormalised after the Gaussian (or its log added inside the "
            "softmax): Luong multiplies softmax_window(e)_s by exp(−(s − p_t)² / (2σ²)) and does "
            "not renormalise, so the weights sum to less than 1",
            _local_p(_half, _window_and_real, renormalise=True),
        ),
    ),
)

EXERCISES = (DOT_SCORE, GENERAL_SCORE, CONCAT_SCORE, LOCAL_P_WEIGHTS)
