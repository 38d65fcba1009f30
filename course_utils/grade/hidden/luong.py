"""Hidden tests for notebook 03 (Luong attention): other seeds and shapes than the visible checks in
``course_utils.exercises.luong`` (a batch of one, a single key, batch == d, larger batches, windows
at the sentence edges and wider than the sentence); expected values from the reference.

Besides the expected value, a case keeps (in the parent) what each classic mistake would return for
its inputs; a wrong answer that matches one of them is told which mistake it is.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from course_utils.alignment import (
    concat_scores,
    dot_scores,
    gaussian_window_weights,
    general_scores,
)
from course_utils.grade.hidden import Case, Judge, close, naming_mistakes
from course_utils.masks import padding_mask
from course_utils.softmax import masked_softmax, softmax

NOTEBOOK = "03_luong_attention"

SOFTMAXED = "these are softmax weights: return the raw scores e_j, the softmax comes afterwards"
SQUEEZED = (
    "an axis of size 1 was dropped: .squeeze() removes every axis of size 1 (a batch of one, a "
    "single key); drop only the last one with .squeeze(-1)"
)


def _score_judge(expected: torch.Tensor, mistakes: list[tuple[Any, str]], atol: float) -> Judge:
    """Scores (B, m): the named mistakes plus the two every score exercise can make."""
    common = [(softmax(expected, dim=-1), SOFTMAXED)]
    if 1 in expected.shape:
        common.append((expected.squeeze(), SQUEEZED))
    return naming_mistakes(close("scores", atol=atol, rtol=1e-5), mistakes + common)


def _dot_score_cases(generator: torch.Generator) -> list[Case]:
    settings = [
        ("B=2, m=7 keys, d=5 (float64)", 2, 7, 5, torch.float64),
        ("batch == keys == d = 4 (a broadcasting trap)", 4, 4, 4, torch.float32),
        ("a single key, B=3, d=6", 3, 1, 6, torch.float64),
        ("a batch of one, m=5, d=3", 1, 5, 3, torch.float32),
        ("larger batch B=16, m=9, d=32", 16, 9, 32, torch.float32),
    ]
    cases = []
    for name, batch, positions, dim, dtype in settings:
        query = torch.randn(batch, dim, generator=generator, dtype=dtype)
        keys = torch.randn(batch, positions, dim, generator=generator, dtype=dtype)
        expected = dot_scores(query, keys)
        mistakes = [
            (
                expected / math.sqrt(dim),
                "divided by √d: Luong's dot score is the plain h_tᵀ h̄_j (the scaled score is "
                "the Transformer's)",
            )
        ]
        if batch == positions:  # query[None] * keys pairs query j with key j of sentence b
            mistakes.append(
                (
                    (query[None, :, :] * keys).sum(dim=-1),
                    "sentence b's query met the keys of other sentences: compare query b only "
                    "with the keys of sentence b, e.g. (keys @ query[:, :, None]).squeeze(-1)",
                )
            )
        atol = 1e-4 if dim > 16 else 1e-5  # float32 sums of 32 products
        cases.append(Case(name, (query, keys), expected, _score_judge(expected, mistakes, atol)))
    return cases


def _general_score_cases(generator: torch.Generator) -> list[Case]:
    settings = [
        ("B=2, m=6, d_q=5, d_k=3 (float64)", 2, 6, 5, 3, torch.float64),
        ("square W (d=4), B=3, m=5", 3, 5, 4, 4, torch.float32),
        ("a single key, B=4, d_q=3, d_k=6", 4, 1, 3, 6, torch.float64),
        ("a batch of one, square W (d=6), m=4", 1, 4, 6, 6, torch.float64),
        ("larger batch B=12, m=8, d_q=7, d_k=9", 12, 8, 7, 9, torch.float32),
    ]
    cases = []
    for name, batch, positions, query_dim, key_dim, dtype in settings:
        query = torch.randn(batch, query_dim, generator=generator, dtype=dtype)
        keys = torch.randn(batch, positions, key_dim, generator=generator, dtype=dtype)
        W = torch.randn(query_dim, key_dim, generator=generator, dtype=dtype)
        expected = general_scores(query, keys, W)
        mistakes = [
            (
                expected / math.sqrt(key_dim),
                "divided by √d_k: Luong's general score is the plain h_tᵀ W h̄_j",
            )
        ]
        if query_dim == key_dim:
            mistakes.append(
                (
                    general_scores(query, keys, W.T),
                    "you used Wᵀ: the score is h_tᵀ W h̄_j, i.e. (query @ W) · key, W of shape "
                    "(query_dim, key_dim)",
                )
            )
        cases.append(Case(name, (query, keys, W), expected, _score_judge(expected, mistakes, 1e-5)))
    return cases


def _concat_score_cases(generator: torch.Generator) -> list[Case]:
    settings = [
        ("B=2, m=6, d_q=3, d_k=5, A=4 (float64)", 2, 6, 3, 5, 4, torch.float64),
        ("B=3, m=5, d_q=d_k=4, A=6", 3, 5, 4, 4, 6, torch.float32),
        ("a single key, B=3, d_q=2, d_k=4, A=5", 3, 1, 2, 4, 5, torch.float64),
        ("a batch of one, m=4, d_q=5, d_k=2, A=3", 1, 4, 5, 2, 3, torch.float32),
        ("larger batch B=10, m=12, d_q=d_k=8, A=16", 10, 12, 8, 8, 16, torch.float32),
    ]
    cases = []
    for name, batch, positions, query_dim, key_dim, hidden, dtype in settings:
        query = torch.randn(batch, query_dim, generator=generator, dtype=dtype)
        keys = torch.randn(batch, positions, key_dim, generator=generator, dtype=dtype)
        W = torch.randn(hidden, query_dim + key_dim, generator=generator, dtype=dtype)
        v = torch.randn(hidden, generator=generator, dtype=dtype)
        expected = concat_scores(query, keys, W, v)
        repeated = query[:, None, :].expand(-1, positions, -1)
        pairs = torch.cat([repeated, keys], dim=-1)  # [h_t; h̄_j]
        swapped = torch.cat([keys, repeated], dim=-1)  # [h̄_j; h_t]
        mistakes = [
            ((pairs @ W.T) @ v, "you forgot the tanh: e_j = v_aᵀ tanh(W_a [h_t; h̄_j])"),
            (
                torch.tanh((pairs @ W.T) @ v),
                "the tanh goes inside: v_aᵀ tanh(W_a [h_t; h̄_j]), not tanh(v_aᵀ W_a [h_t; h̄_j])",
            ),
            (
                torch.tanh(swapped @ W.T) @ v,
                "the concatenation is reversed: it is [h_t; h̄_j], the query first, then the key",
            ),
        ]
        cases.append(
            Case(name, (query, keys, W, v), expected, _score_judge(expected, mistakes, 1e-5))
        )
    return cases


def _local_p_mistakes(scores, centers, window, lengths) -> list[tuple[Any, str]]:
    """What the classic local-p mistakes return for these inputs."""
    positions = torch.arange(scores.shape[-1], dtype=scores.dtype)
    distance = positions[None, :] - centers[:, None]  # j − p_t
    real = padding_mask(lengths, scores.shape[-1])
    inside = distance.abs() <= window
    gaussian = torch.exp(-(distance**2) / (2 * (window / 2) ** 2))
    expected = masked_softmax(scores, inside & real, dim=-1) * gaussian
    return [
        (
            masked_softmax(scores, inside & real, dim=-1)
            * torch.exp(-(distance**2) / (2 * window**2)),
            "the Gaussian is too wide: Luong uses σ = D / 2, not σ = D",
        ),
        (
            masked_softmax(scores, real, dim=-1) * gaussian,
            "weights outside the window |j − p_t| ≤ D are not zero: restrict the softmax to the "
            "window before multiplying by the Gaussian",
        ),
        (
            masked_softmax(scores, inside, dim=-1) * gaussian,
            "padding positions (j >= length) inside the window get weight: you are attending to "
            "padding; keep only j < length",
        ),
        (
            masked_softmax(scores, (distance.abs() < window) & real, dim=-1) * gaussian,
            "the window edge is missing: keep |j − p_t| ≤ D (positions exactly D away count)",
        ),
        (
            masked_softmax(scores, inside & real, dim=-1),
            "you forgot the Gaussian factor exp(−(j − p_t)² / (2σ²)), σ = D / 2",
        ),
        (
            expected / expected.sum(dim=-1, keepdim=True),
            "the weights were renormalised after the Gaussian (or its log was added inside the "
            "softmax): multiply softmax_window(e)_j by the Gaussian and do not renormalise",
        ),
    ]


def _local_p_cases(generator: torch.Generator) -> list[Case]:
    cases = []

    def add(name, scores, centers, window, lengths, atol=1e-6):
        expected = gaussian_window_weights(scores, centers, window, lengths)
        judge = naming_mistakes(
            close("weights", atol=atol, rtol=1e-5),
            _local_p_mistakes(scores, centers, window, lengths),
        )
        cases.append(Case(name, (scores, centers, window, lengths), expected, judge))

    # Padding gets high scores, so attending to it changes the answer visibly.
    def padded_scores(batch, positions, lengths, dtype):
        scores = torch.randn(batch, positions, generator=generator, dtype=dtype)
        return scores.masked_fill(~padding_mask(lengths, positions), 4.0)

    lengths = torch.tensor([12, 9, 6, 12])
    add(
        "D=3, fractional centres, lengths [12, 9, 6, 12] (float64)",
        padded_scores(4, 12, lengths, torch.float64),
        torch.tensor([5.3, 7.8, 4.5, 0.6], dtype=torch.float64),
        3,
        lengths,
    )
    lengths = torch.tensor([8, 5, 8])
    add(
        "D=1, integer centres on the sentence edges (first and last word)",
        padded_scores(3, 8, lengths, torch.float32),
        torch.tensor([0.0, 4.0, 7.0]),
        1,
        lengths,
    )
    lengths = torch.tensor([6, 3, 1])
    add(
        "window wider than the sentence (D=8, m=6), lengths [6, 3, 1]",
        padded_scores(3, 6, lengths, torch.float64),
        torch.tensor([2.5, 1.0, 0.0], dtype=torch.float64),
        8,
        lengths,
    )
    lengths = torch.tensor([1, 1])
    add(
        "one real word per sentence (lengths [1, 1], m=5), D=2",
        padded_scores(2, 5, lengths, torch.float32),
        torch.tensor([0.0, 0.0]),
        2,
        lengths,
    )
    batch, positions = 16, 20
    lengths = torch.randint(1, positions + 1, (batch,), generator=generator)
    # p_t = (S − 1)·sigmoid(...) lies in [0, S − 1]; integer centres land exactly D from an edge.
    fractions = torch.rand(batch, generator=generator)
    centers = (lengths - 1).float() * fractions
    centers[::3] = centers[::3].round()
    add(
        "larger batch B=16, m=20, D=4, random lengths and centres",
        padded_scores(batch, positions, lengths, torch.float32),
        centers,
        4,
        lengths,
    )
    return cases


def build_cases() -> dict[str, list[Case]]:
    generator = torch.Generator().manual_seed(1003)
    return {
        "ex3_1_dot_score": _dot_score_cases(generator),
        "ex3_2_general_score": _general_score_cases(generator),
        "ex3_3_concat_score": _concat_score_cases(generator),
        "ex3_4_local_p_weights": _local_p_cases(generator),
    }
