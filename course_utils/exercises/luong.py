"""Visible checks for notebook 03 (Luong attention)."""

from __future__ import annotations

import math

import torch

from course_utils.alignment import (
    concat_scores,
    dot_scores,
    gaussian_window_weights,
    general_scores,
)
from course_utils.checks import LearnerFunction, register
from course_utils.masks import padding_mask
from course_utils.softmax import masked_softmax, softmax


def _same(actual, expected, atol: float = 1e-5) -> bool:
    """True when ``actual`` is a tensor equal to ``expected`` (used to name a specific mistake)."""
    return (
        isinstance(actual, torch.Tensor)
        and actual.shape == expected.shape
        and bool(torch.allclose(actual.detach().to(expected.dtype), expected, atol=atol, rtol=1e-4))
    )


def _not_softmaxed(learner: LearnerFunction, scores, expected) -> None:
    if _same(scores, softmax(expected, dim=-1)):
        learner.expect(False, "return the raw scores e_j; the softmax is applied afterwards")


@register("ex3_1_dot_score", calls="dot_score(query, keys)")
def _check_dot_score(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(31)
    query = torch.randn(3, 8, generator=generator)
    keys = torch.randn(3, 5, 8, generator=generator)

    scores = learner(query, keys)
    learner.expect_tensor(scores, shape=(3, 5), what="scores (batch, source positions)")
    expected = dot_scores(query, keys)
    if _same(scores, expected / math.sqrt(8)):
        learner.expect(
            False,
            "you divided by √d: Luong's dot score is the plain h_tᵀ h̄_j (the scaled version is "
            "the Transformer's, measured at the end of the notebook)",
        )
    _not_softmaxed(learner, scores, expected)
    learner.expect_close(scores, expected, "scores differ from e_j = h_tᵀ h̄_j")

    square_query = torch.randn(4, 4, generator=generator)
    square_keys = torch.randn(4, 4, 4, generator=generator)
    scores = learner(square_query, square_keys)
    learner.expect_tensor(scores, shape=(4, 4), what="scores for 4 sentences of 4 words")
    crossed = (square_query[None, :, :] * square_keys).sum(
        dim=-1
    )  # query j met key j of sentence b
    if _same(scores, crossed):
        learner.expect(
            False,
            "sentence b's query met the keys of other sentences: compare query b only with the "
            "keys of sentence b, e.g. (keys @ query[:, :, None]).squeeze(-1)",
        )
    learner.expect_close(
        scores, dot_scores(square_query, square_keys), "scores differ when batch == d"
    )


@register("ex3_2_general_score", calls="general_score(query, keys, W)")
def _check_general_score(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(32)
    query = torch.randn(3, 6, generator=generator)
    keys = torch.randn(3, 5, 4, generator=generator)
    W = torch.randn(6, 4, generator=generator)

    scores = learner(query, keys, W)
    learner.expect_tensor(scores, shape=(3, 5), what="scores (batch, source positions)")
    expected = general_scores(query, keys, W)
    _not_softmaxed(learner, scores, expected)
    learner.expect_close(scores, expected, "scores differ from e_j = h_tᵀ W h̄_j")

    square_W = torch.randn(4, 4, generator=generator)
    square_query = torch.randn(3, 4, generator=generator)
    scores = learner(square_query, keys, square_W)
    learner.expect_tensor(scores, shape=(3, 5), what="scores with a square W")
    if _same(scores, general_scores(square_query, keys, square_W.T)):
        learner.expect(
            False,
            "you used Wᵀ: the score is h_tᵀ W h̄_j, i.e. (query @ W) · key, W of shape (query_dim, key_dim)",
        )
    learner.expect_close(
        scores, general_scores(square_query, keys, square_W), "scores differ with a square W"
    )


@register("ex3_3_concat_score", calls="concat_score(query, keys, W, v)")
def _check_concat_score(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(33)
    query = torch.randn(3, 4, generator=generator)
    keys = torch.randn(3, 5, 4, generator=generator)
    W = torch.randn(6, 8, generator=generator)
    v = torch.randn(6, generator=generator)

    scores = learner(query, keys, W, v)
    learner.expect_tensor(scores, shape=(3, 5), what="scores (batch, source positions)")
    expected = concat_scores(query, keys, W, v)
    pairs = torch.cat([query[:, None, :].expand(-1, 5, -1), keys], dim=-1)
    if _same(scores, (pairs @ W.T) @ v):
        learner.expect(False, "you forgot the tanh: e_j = v_aᵀ tanh(W_a [h_t; h̄_j])")
    swapped = torch.cat([keys, query[:, None, :].expand(-1, 5, -1)], dim=-1)
    if _same(scores, torch.tanh(swapped @ W.T) @ v):
        learner.expect(
            False, "the concatenation is reversed: it is [h_t; h̄_j], the query first, then the key"
        )
    _not_softmaxed(learner, scores, expected)
    learner.expect_close(scores, expected, "scores differ from e_j = v_aᵀ tanh(W_a [h_t; h̄_j])")


@register("ex3_4_local_p_weights", calls="local_p_weights(scores, centers, window, lengths)")
def _check_local_p_weights(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(34)
    scores = torch.randn(3, 10, generator=generator)
    centers = torch.tensor([2.3, 6.0, 3.5])
    lengths = torch.tensor([10, 10, 5])
    window = 2

    weights = learner(scores, centers, window, lengths)
    learner.expect_tensor(weights, shape=(3, 10), what="weights (batch, source positions)")
    expected = gaussian_window_weights(scores, centers, window, lengths)
    positions = torch.arange(10.0)
    distance = positions - centers[:, None]
    inside = (distance.abs() <= window) & padding_mask(lengths, 10)
    gaussian = torch.exp(-(distance**2) / (2 * (window / 2) ** 2))
    if _same(
        weights,
        masked_softmax(scores, inside, dim=-1) * torch.exp(-(distance**2) / (2 * window**2)),
    ):
        learner.expect(False, "the Gaussian is too wide: Luong uses σ = D / 2, not σ = D")
    if _same(weights, masked_softmax(scores, padding_mask(lengths, 10), dim=-1) * gaussian):
        learner.expect(
            False,
            "weights outside the window |j − p_t| ≤ D are not zero: restrict the softmax to the "
            "window before multiplying by the Gaussian",
        )
    renormalised = expected / expected.sum(dim=-1, keepdim=True)
    if _same(weights, renormalised):
        # softmax(e + log g) = softmax(e)·g / Σ softmax(e)·g: the same mistake in two spellings
        learner.expect(
            False,
            "the weights were renormalised after the Gaussian (or its log was added inside the "
            "softmax): Luong multiplies softmax_window(e)_j by exp(−(j − p_t)² / (2σ²)) and does "
            "not renormalise, so the weights sum to less than 1",
        )
    learner.expect(
        bool((weights.detach()[~inside].abs() < 1e-6).all()),
        "weights must be 0 outside the window |j − p_t| ≤ D and on padding (j >= length)",
    )
    learner.expect_close(
        weights,
        expected,
        "weights differ from softmax over the window (|j − p_t| ≤ D, j < length) times "
        "exp(−(j − p_t)² / (2σ²)), σ = D / 2",
    )
