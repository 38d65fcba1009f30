"""Exercises of notebook 02 (Bahdanau attention): the additive score, masked weights, a decoder step."""

from __future__ import annotations

import torch
from torch import nn

from course_utils.alignment import AdditiveAttention, additive_scores
from course_utils.feedback.codec import ModuleInput
from course_utils.feedback.judge import close
from course_utils.feedback.shared_mistakes import raw_score_mistakes
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, Mistake, mistake
from course_utils.helpers.seeding import seeded
from course_utils.masks import padding_mask
from course_utils.seq2seq.decoders import bahdanau_step
from course_utils.softmax import masked_softmax

NOTEBOOK = "02_bahdanau_attention"

# --------------------------------------------------------------------------------------------------
# 2.1 the additive score


def _additive_score_cases(generator: torch.Generator) -> list[Case]:
    def scores_case(name, batch, positions, query_dim, key_dim, hidden, dtype=torch.float32):
        def randn(*shape):
            return torch.randn(*shape, generator=generator, dtype=dtype)

        arguments = (
            randn(batch, query_dim),  # query s (B, d_q)
            randn(batch, positions, key_dim),  # keys h (B, m, d_k)
            randn(hidden, query_dim),  # W (A, d_q)
            randn(hidden, key_dim),  # U (A, d_k)
            randn(hidden),  # v (A,)
        )
        return Case(name, arguments)

    return [
        scores_case("B=3, m=6, d_q=5, d_k=4, A=7", 3, 6, 5, 4, 7),
        scores_case("B=2, m=7, d_q=3, d_k=5, A=4 (float64)", 2, 7, 3, 5, 4, torch.float64),
        # B == m: a query broadcast against the wrong axis no longer fails loudly
        scores_case("batch == positions = 5, d_q=d_k=4, A=6", 5, 5, 4, 4, 6),
        scores_case("a single source word (m=1), B=3, d_q=6, d_k=2, A=5", 3, 1, 6, 2, 5),
        scores_case("a batch of one, m=6, d_q=4, d_k=3, A=8", 1, 6, 4, 3, 8),
        scores_case("larger batch B=16, m=10, d_q=8, d_k=12, A=16", 16, 10, 8, 12, 16),
    ]


SOURCE_AXIS = (
    "it matches W s without a source axis: (B, A) + (B, m, A) adds sentence b's query to source "
    "position b of every sentence (an error, or silently wrong when B == m); give W s a source "
    "axis, (query @ W.T)[:, None, :], so it meets the keys of its own sentence"
)


@mistake(SOURCE_AXIS)
def _without_source_axis(query, keys, W, U, v):
    # (B, A) + (B, m, A) lines up sentence b's query with source position b
    return torch.tanh(query @ W.T + keys @ U.T) @ v


@mistake(SOURCE_AXIS)
def _without_source_axis_keys_first(query, keys, W, U, v):
    return torch.tanh(keys @ U.T + query @ W.T) @ v


@mistake("it matches a score without the tanh: e_j = vᵀ tanh(W s + U h_j)")
def _without_tanh(query, keys, W, U, v):
    return ((query @ W.T)[:, None, :] + keys @ U.T) @ v


@mistake(
    "it matches tanh applied after v: the tanh goes inside, vᵀ tanh(W s + U h_j), not "
    "tanh(vᵀ (W s + U h_j))"
)
def _tanh_outside(query, keys, W, U, v):
    return torch.tanh(((query @ W.T)[:, None, :] + keys @ U.T) @ v)


ADDITIVE_SCORE = Exercise(
    grade_id="ex2_1_additive_score",
    notebook=NOTEBOOK,
    signature="additive_score(query, keys, W, U, v)",
    docstring="""
        Bahdanau's additive score of each key (the formula above): the query projected by W and the
        key projected by U are added, squashed by tanh and read out by v.

        query (B, d_q), keys (B, m, d_k), W (A, d_q), U (A, d_k), v (A,); returns the scores (B, m).
        Forbidden (scores 0): additive_scores and AdditiveAttention.scores of course_utils.alignment.
    """,
    hint=(
        "project the query with W and every key with U, add them so that each sentence's query "
        "meets its own keys, squash with tanh, then read out with v"
    ),
    code_hint=(
        "hidden = torch.tanh((query @ W.T)[:, None, :] + keys @ U.T)  # (B, m, A); "
        "return hidden @ v"
    ),
    reference=additive_scores,
    forbidden=("course_utils.alignment.AdditiveAttention.scores",),
    cases=_additive_score_cases,
    judge=close("scores"),
    mistakes=(
        _without_source_axis,
        _without_source_axis_keys_first,
        _without_tanh,
        _tanh_outside,
        *raw_score_mistakes(
            additive_scores,
            softmax_comes="in the next exercise",
            single_position="a single source word",
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# 2.2 softmax over the real words only


def masked_attention_weights(scores: torch.Tensor, source_lengths: torch.Tensor) -> torch.Tensor:
    """The reference: softmax of scores (B, m) over j < source_lengths[b], 0 on padding."""
    return masked_softmax(scores, padding_mask(source_lengths, scores.shape[-1]), dim=-1)


def _masked_weights_cases(generator: torch.Generator) -> list[Case]:
    def padded(name, lengths, positions, dtype=torch.float32, scale=1.0, padding_score=5.0):
        lengths = torch.as_tensor(lengths)
        scores = torch.randn(len(lengths), positions, generator=generator, dtype=dtype) * scale
        # Padding gets high scores, so attending to it changes the answer visibly.
        scores = scores.masked_fill(~padding_mask(lengths, positions), padding_score)
        return Case(name, (scores, lengths))

    random_lengths = torch.randint(1, 16, (32,), generator=generator)
    random_lengths[0] = 15  # at least one sentence without padding
    return [
        padded("lengths [6, 3, 1, 4], m=6", [6, 3, 1, 4], 6),
        padded("lengths [7, 2, 5], m=7 (float64)", [7, 2, 5], 7, dtype=torch.float64),
        padded("no padding: lengths [4, 4, 4], m=4", [4, 4, 4], 4),
        padded("a single source word (m=1), lengths [1, 1]", [1, 1], 1),
        padded(
            "large scores (±300) with padding, lengths [6, 3, 1, 5], m=6",
            [6, 3, 1, 5],
            6,
            scale=300.0,
            padding_score=400.0,
        ),
        padded("larger batch B=32, m=15, random lengths", random_lengths, 15),
    ]


def _real_words(scores, source_lengths):
    return padding_mask(source_lengths, scores.shape[-1])  # True = a real word


@mistake(
    "it matches a softmax over every position: you are attending to padding; fill the "
    "scores at j >= length with -inf before the softmax"
)
def _padding_attended(scores, source_lengths):
    return torch.softmax(scores, dim=-1)


@mistake(
    "it matches an inverted mask: the real words were filled with -inf, so the weight "
    "went to the padding and a sentence without padding became 0/0 = NaN; True = may "
    "attend = a real word (j < length), so fill where the mask is False: "
    "masked_fill(~mask, -inf)"
)
def _mask_inverted(scores, source_lengths):
    # fills the real words with -inf: a sentence without padding is all -inf, and 0/0 is NaN
    real = _real_words(scores, source_lengths)
    return torch.softmax(scores.masked_fill(real, float("-inf")), dim=-1)


@mistake(
    "it matches padded scores set to 0: they still get weight exp(0); fill them with -inf "
    "(or a huge negative number) instead"
)
def _padding_filled_with_zero(scores, source_lengths):
    real = _real_words(scores, source_lengths)
    return torch.softmax(scores.masked_fill(~real, 0.0), dim=-1)


@mistake(
    "it matches zeroing the padding after the softmax, so the real words no longer sum "
    "to 1: mask the scores before the softmax"
)
def _padding_zeroed_after_softmax(scores, source_lengths):
    return torch.softmax(scores, dim=-1) * _real_words(scores, source_lengths)


@mistake(
    "it matches one padding position too many attended: positions 0 … length-1 are "
    "real, so keep j < length (not j <= length)"
)
def _one_position_too_many(scores, source_lengths):
    positions = torch.arange(scores.shape[-1])
    allowed = positions[None, :] <= source_lengths[:, None]  # j <= length
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


OVER_THE_BATCH = (
    "it matches a softmax over the sentences of the batch (dim=0): normalise over the source "
    "positions, dim=-1"
)


@mistake(OVER_THE_BATCH)
def _masked_over_batch(scores, source_lengths):
    real = _real_words(scores, source_lengths)
    return torch.softmax(scores.masked_fill(~real, float("-inf")), dim=0)


@mistake(OVER_THE_BATCH)
def _softmax_over_batch(scores, source_lengths):
    return torch.softmax(scores, dim=0)


MASKED_ATTENTION_WEIGHTS = Exercise(
    grade_id="ex2_2_masked_attention_weights",
    notebook=NOTEBOOK,
    signature="masked_attention_weights(scores, source_lengths)",
    docstring="""
        Softmax of scores (B, m) over the real words of each sentence only, the positions j below
        source_lengths[b]; pad positions get weight 0.

        source_lengths (B,) integers; returns the weights (B, m).
        Forbidden (scores 0): masked_softmax of course_utils.softmax.
    """,
    hint=(
        "mark which positions are real words (position < length), give the others a score whose "
        "exponential is 0, then softmax over the source positions"
    ),
    code_hint=(
        "mask = torch.arange(scores.shape[-1])[None, :] < source_lengths[:, None]; "
        'return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)'
    ),
    reference=masked_attention_weights,
    forbidden=("course_utils.softmax.masked_softmax",),
    cases=_masked_weights_cases,
    judge=close("weights", atol=1e-6, rtol=1e-5),
    mistakes=(
        _padding_attended,
        _mask_inverted,
        _padding_filled_with_zero,
        _padding_zeroed_after_softmax,
        _one_position_too_many,
        _masked_over_batch,
        _softmax_over_batch,
    ),
)

# --------------------------------------------------------------------------------------------------
# 2.3 one Bahdanau decoder step


def _step_cases(generator: torch.Generator) -> list[Case]:
    def step_case(name, lengths, positions, embed_dim, key_dim, hidden_dim, attention_dim):
        lengths = torch.as_tensor(lengths)
        batch = len(lengths)
        module_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        with seeded(module_seed):  # seeded initialisation; the global RNG is untouched
            attention = AdditiveAttention(hidden_dim, key_dim, attention_dim)
            cell = nn.GRUCell(embed_dim + key_dim, hidden_dim)
        arguments = (
            torch.randn(batch, hidden_dim, generator=generator),  # previous_state s_{i-1}
            torch.randn(batch, embed_dim, generator=generator),  # previous_embedding y_{i-1}
            torch.randn(batch, positions, key_dim, generator=generator),  # encoder_states h
            padding_mask(lengths, positions),  # source_mask, True = a real word
            ModuleInput(
                AdditiveAttention,
                (hidden_dim, key_dim, attention_dim),
                attention.state_dict(),
            ),
            ModuleInput(nn.GRUCell, (embed_dim + key_dim, hidden_dim), cell.state_dict()),
        )
        return Case(name, arguments)

    random_lengths = torch.randint(1, 10, (16,), generator=generator)
    random_lengths[0] = 9
    return [
        step_case("B=3, m=5, lengths [5, 2, 4], E=6, K=8, H=5, A=7", [5, 2, 4], 5, 6, 8, 5, 7),
        step_case("B=3, m=6, lengths [6, 2, 4], E=5, K=8, H=7, A=6", [6, 2, 4], 6, 5, 8, 7, 6),
        step_case("a single source word (m=1), B=2, E=3, K=4, H=5, A=3", [1, 1], 1, 3, 4, 5, 3),
        step_case("no padding, B=4, m=5, E=4, K=H=6, A=5", [5, 5, 5, 5], 5, 4, 6, 6, 5),
        step_case("a batch of one, length 3 of m=7, E=6, K=5, H=4, A=8", [3], 7, 6, 5, 4, 8),
        step_case(
            "larger batch B=16, m=9, random lengths, E=8, K=10, H=12, A=9",
            random_lengths,
            9,
            8,
            10,
            12,
            9,
        ),
    ]


NEW_STATE = (
    "it matches weights scored with the new state s_i: Bahdanau scores with s_{i-1}, the state "
    "before this step, and only then feeds the context into the GRU"
)


@mistake(NEW_STATE)
def _state_first_with_no_context(
    previous_state, previous_embedding, encoder_states, source_mask, attention, cell
):
    # runs the cell before attending (with a zero context), then scores with the new state s_i
    no_context = encoder_states.new_zeros(encoder_states.shape[0], encoder_states.shape[-1])
    state = cell(torch.cat([previous_embedding, no_context], dim=-1), previous_state)
    context, weights = attention(state, encoder_states, encoder_states, source_mask)
    return state, context, weights


@mistake(NEW_STATE)
def _rescored_with_new_state(
    previous_state, previous_embedding, encoder_states, source_mask, attention, cell
):
    state, _, _ = bahdanau_step(
        previous_state, previous_embedding, encoder_states, source_mask, attention, cell
    )
    context, weights = attention(state, encoder_states, encoder_states, source_mask)
    return state, context, weights


def _step_with_mask(mask_given_to_attention, embedding_first=True, keep_hidden=True):
    """A decoder step whose attention gets ``mask_given_to_attention(source_mask)``."""

    def step(previous_state, previous_embedding, encoder_states, source_mask, attention, cell):
        mask = mask_given_to_attention(source_mask)
        if mask is NOT_APPLICABLE:
            return NOT_APPLICABLE
        context, weights = attention(previous_state, encoder_states, encoder_states, mask)
        parts = [previous_embedding, context] if embedding_first else [context, previous_embedding]
        gru_input = torch.cat(parts, dim=-1)
        state = cell(gru_input, previous_state) if keep_hidden else cell(gru_input)
        return state, context, weights

    return step


def _no_mask(source_mask):
    # without padding, forgetting the mask changes nothing
    return NOT_APPLICABLE if bool(source_mask.all()) else None


def _inverted(source_mask):
    return ~source_mask


def _as_given(source_mask):
    return source_mask


def _step_results(reorder):
    def step(*arguments):
        state, context, weights = bahdanau_step(*arguments)
        previous_state = arguments[0]
        return reorder(previous_state, state, context, weights)

    return step


WRONG_ORDER = "it matches the results in the wrong order: return (state, context, weights)"

BAHDANAU_STEP = Exercise(
    grade_id="ex2_3_bahdanau_step",
    notebook=NOTEBOOK,
    signature=(
        "bahdanau_step(previous_state, previous_embedding, encoder_states, source_mask, "
        "attention, cell)"
    ),
    docstring="""
        One decoder step: returns (s_i, c_i, α_i) from s_{i-1} (B, H), y_{i-1} (B, E), encoder states (B, m, K).

        source_mask (B, m) is True for real words; attention(query, keys, values, mask) returns
        (context (B, K), weights (B, m)); cell is a GRUCell with input size E + K and hidden size H.
        Forbidden (scores 0): bahdanau_step of course_utils.seq2seq.decoders.
    """,
    hint=(
        "attend with the state from before this step; the GRU then reads the previous word's "
        "embedding followed by the context"
    ),
    code_hint=(
        "context, weights = attention(previous_state, encoder_states, encoder_states, "
        "source_mask); state = cell(torch.cat([previous_embedding, context], dim=-1), "
        "previous_state); return state, context, weights"
    ),
    reference=bahdanau_step,
    cases=_step_cases,
    input_modules=(AdditiveAttention, nn.GRUCell),
    judge=close("state", "context", "weights"),
    mistakes=(
        _state_first_with_no_context,
        _rescored_with_new_state,
        Mistake(
            "it matches attention without source_mask: you are attending to padding; pass "
            "source_mask to attention(...)",
            _step_with_mask(_no_mask),
        ),
        Mistake(
            "it matches an inverted mask: only padding gets weight; source_mask is True for real "
            "words (True = may attend), so pass it as it is",
            _step_with_mask(_inverted),
        ),
        Mistake(
            "it matches the GRU input concatenated context first, [c_i; y_{i-1}]: put the "
            "embedding first, torch.cat([previous_embedding, context], dim=-1), the order the "
            "cell was built for",
            _step_with_mask(_as_given, embedding_first=False),
        ),
        Mistake(
            "it matches a GRU cell called without s_{i-1} (it then starts from zeros): pass "
            "previous_state as the cell's hidden state, cell(input, previous_state)",
            _step_with_mask(_as_given, keep_hidden=False),
        ),
        Mistake(
            "it matches returning the previous state: return the new state s_i from the cell",
            _step_results(lambda previous, state, context, weights: (previous, context, weights)),
        ),
        Mistake(
            WRONG_ORDER,
            _step_results(lambda previous, state, context, weights: (context, state, weights)),
        ),
        Mistake(
            WRONG_ORDER,
            _step_results(lambda previous, state, context, weights: (state, weights, context)),
        ),
    ),
)

EXERCISES = (ADDITIVE_SCORE, MASKED_ATTENTION_WEIGHTS, BAHDANAU_STEP)
