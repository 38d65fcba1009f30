"""Visible checks for notebook 02 (Bahdanau attention)."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.alignment import AdditiveAttention, additive_scores
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


@register("ex2_1_additive_score", calls="additive_score(query, keys, W, U, v)")
def _check_additive_score(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(21)
    batch, positions, query_dim, key_dim, hidden = 3, 6, 5, 4, 7
    query = torch.randn(batch, query_dim, generator=generator)
    keys = torch.randn(batch, positions, key_dim, generator=generator)
    W = torch.randn(hidden, query_dim, generator=generator)
    U = torch.randn(hidden, key_dim, generator=generator)
    v = torch.randn(hidden, generator=generator)

    scores = learner(query, keys, W, U, v)
    learner.expect_tensor(scores, shape=(batch, positions), what="scores (batch, source positions)")
    expected = additive_scores(query, keys, W, U, v)
    projected = (query @ W.T)[:, None, :] + keys @ U.T  # W s + U h_j
    if _same(scores, projected @ v):
        learner.expect(False, "you forgot the tanh: e_j = vᵀ tanh(W s + U h_j)")
    if _same(scores, torch.tanh(projected @ v)):
        learner.expect(
            False, "the tanh goes inside: vᵀ tanh(W s + U h_j), not tanh(vᵀ (W s + U h_j))"
        )
    if _same(scores, softmax(expected, dim=-1)):
        learner.expect(False, "return the raw scores e_j: the softmax comes in the next exercise")
    learner.expect_close(scores, expected, "scores differ from e_j = vᵀ tanh(W s + U h_j)")

    # batch == positions: broadcasting the query against the wrong axis no longer fails loudly
    square = 4
    query = torch.randn(square, query_dim, generator=generator)
    keys = torch.randn(square, square, key_dim, generator=generator)
    scores = learner(query, keys, W, U, v)
    learner.expect_tensor(scores, shape=(square, square), what="scores for 4 sentences of 4 words")
    crossed = torch.tanh((query @ W.T)[None, :, :] + keys @ U.T) @ v
    if _same(scores, crossed):
        learner.expect(
            False,
            "sentence b's query was added to the keys of other sentences: give W s a source axis, "
            "(query @ W.T)[:, None, :], so it broadcasts over the positions of its own sentence",
        )
    learner.expect_close(
        scores, additive_scores(query, keys, W, U, v), "scores differ when batch == positions"
    )


@register(
    "ex2_2_masked_attention_weights", calls="masked_attention_weights(scores, source_lengths)"
)
def _check_masked_attention_weights(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(22)
    lengths = torch.tensor([6, 3, 1, 4])
    scores = torch.randn(4, 6, generator=generator)
    mask = padding_mask(lengths, 6)
    scores = scores.masked_fill(~mask, 5.0)  # padding gets high scores: attending to it shows
    original = scores.clone()

    weights = learner(scores, lengths)
    learner.expect(
        torch.equal(scores, original),
        "do not modify `scores` in place: use masked_fill, not masked_fill_",
    )
    learner.expect_tensor(weights, shape=(4, 6), what="weights (batch, source positions)")
    expected = masked_softmax(scores, mask, dim=-1)
    if _same(weights, softmax(scores, dim=0)) or _same(
        weights, masked_softmax(scores, mask, dim=0)
    ):
        learner.expect(
            False,
            "weights sum to 1 over the batch: did you softmax over the wrong axis? "
            "Normalise over the source positions (dim=-1)",
        )
    if _same(weights, softmax(scores, dim=-1)):
        learner.expect(
            False,
            "padding positions get weight: you are attending to padding. Mask positions "
            "j >= length with -inf before the softmax",
        )
    if _same(weights, masked_softmax(scores, ~mask, dim=-1)):
        learner.expect(
            False,
            "only padding gets weight: the mask is inverted. True = may attend = a real token "
            "(j < length)",
        )
    if _same(weights, softmax(scores.masked_fill(~mask, 0.0), dim=-1)):
        learner.expect(
            False,
            "padded scores set to 0 still get weight exp(0): fill them with -inf (or a huge "
            "negative number) instead",
        )
    off_by_one = padding_mask(torch.clamp(lengths + 1, max=6), 6)
    if _same(weights, masked_softmax(scores, off_by_one, dim=-1)):
        learner.expect(
            False,
            "one padding position too many is attended: positions 0 … length-1 are real, "
            "so keep j < length (not j <= length)",
        )
    learner.expect(
        bool((weights.detach()[~mask].abs() < 1e-6).all()),
        "padding positions (j >= length) must get weight 0: you are attending to padding",
    )
    learner.expect_close(
        weights.sum(dim=-1), torch.ones(4), "each row must sum to 1 over the real source words"
    )
    learner.expect_close(weights, expected, "weights differ from softmax over the real positions")


@register(
    "ex2_3_bahdanau_step",
    calls="bahdanau_step(previous_state, previous_embedding, encoder_states, source_mask, attention, cell)",
)
def _check_bahdanau_step(learner: LearnerFunction) -> None:
    with torch.random.fork_rng():  # seeded module initialisation; the notebook's RNG is untouched
        torch.manual_seed(23)
        embed_dim, encoder_dim, hidden_dim = 6, 8, 5
        attention = AdditiveAttention(hidden_dim, encoder_dim, 7)
        cell = nn.GRUCell(embed_dim + encoder_dim, hidden_dim)
    generator = torch.Generator().manual_seed(23)
    lengths = torch.tensor([5, 2, 4])
    encoder_states = torch.randn(3, 5, encoder_dim, generator=generator)
    source_mask = padding_mask(lengths, 5)
    previous_state = torch.randn(3, hidden_dim, generator=generator)
    previous_embedding = torch.randn(3, embed_dim, generator=generator)

    with torch.no_grad():
        result = learner(
            previous_state, previous_embedding, encoder_states, source_mask, attention, cell
        )
        learner.expect(
            isinstance(result, tuple) and len(result) == 3,
            "return three things: (state, context, weights)",
        )
        state, context, weights = result
        learner.expect_tensor(weights, shape=(3, 5), what="weights (batch, source positions)")
        learner.expect_tensor(context, shape=(3, encoder_dim), what="context (batch, encoder_dim)")
        learner.expect_tensor(state, shape=(3, hidden_dim), what="state (batch, hidden_dim)")

        expected_context, expected_weights = attention(
            previous_state, encoder_states, encoder_states, source_mask
        )
        expected_state = cell(
            torch.cat([previous_embedding, expected_context], dim=-1), previous_state
        )
        if not _same(weights, expected_weights):
            _, weights_from_new_state = attention(
                state, encoder_states, encoder_states, source_mask
            )
            learner.expect(
                not _same(weights, weights_from_new_state),
                "the weights were scored with the new state s_i: Bahdanau scores with s_{i-1}, "
                "the state *before* this step, then feeds the context into the GRU",
            )
            _, unmasked = attention(previous_state, encoder_states, encoder_states)
            learner.expect(
                not _same(weights, unmasked),
                "padding positions get weight: you are attending to padding. Pass source_mask "
                "to attention(...)",
            )
        learner.expect(
            bool((weights[~source_mask].abs() < 1e-6).all()),
            "padding positions must get weight 0: pass source_mask to attention(...)",
        )
        learner.expect_close(
            weights, expected_weights, "weights differ from attention(previous_state, ...)"
        )
        learner.expect_close(
            context,
            expected_context,
            "context differs: c_i = Σ_j α_ij h_j (what attention returns)",
        )
        if _same(state, previous_state):
            learner.expect(
                False, "the state did not change: return the new state s_i from the cell"
            )
        swapped = cell(torch.cat([expected_context, previous_embedding], dim=-1), previous_state)
        if _same(state, swapped):
            learner.expect(
                False,
                "the GRU input is [c_i; y_{i-1}]: concatenate the embedding first, then the "
                "context, [y_{i-1}; c_i], the order the cell was trained with",
            )
        learner.expect_close(
            state,
            expected_state,
            "state differs from s_i = cell([y_{i-1}; c_i], s_{i-1}): concatenate the embedding "
            "first, then the context, and pass s_{i-1} as the hidden state",
        )
