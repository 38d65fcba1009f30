"""Exercise 12.4 of notebook 12 (memory and pointers): a pointer network's output distribution."""

from __future__ import annotations

import torch

from course_utils.alignment import additive_scores
from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, Mistake, mistake, randn
from course_utils.pointer_network import pointer_distribution

NOTEBOOK = "12_memory_and_pointers"


# --------------------------------------------------------------------------------------------------
# 12.4 a pointer network's output distribution


def _pointer_cases(generator: torch.Generator) -> list[Case]:
    settings = [  # name, batch, positions n, d, d_e, A
        ("B=2, n=5, d=4, d_e=3, A=6", 2, 5, 4, 3, 6),
        ("B=3, n=6, d=3, d_e=5, A=4", 3, 6, 3, 5, 4),
        ("B=4, n=7, d=5, d_e=5, A=5", 4, 7, 5, 5, 5),
        ("B=1, n=4, d=2, d_e=3, A=3", 1, 4, 2, 3, 3),
    ]
    cases = []
    for name, batch, n, d, d_e, attention in settings:
        lengths = torch.randint(2, n + 1, (batch,), generator=generator)
        lengths[0] = n  # one row without padding
        real = torch.arange(n)[None, :] < lengths[:, None]
        pointed = torch.rand(batch, n, generator=generator) < 0.4
        pointed[:, 0] = False  # at least position 0 stays available
        if batch > 1:  # a row with a single choice left
            pointed[1] = True
            pointed[1, 0] = False
        arguments = (
            randn(generator, batch, d),
            randn(generator, batch, n, d_e),
            randn(generator, attention, d),
            randn(generator, attention, d_e),
            randn(generator, attention),
            real & ~pointed,
        )
        cases.append(Case(f"{name}, some positions padding or already pointed", arguments))
    return cases


_OVER_BATCH = (
    "it matches a softmax over the batch axis (dim=0): each sequence's distribution runs over its "
    "own input positions, dim=-1"
)


def _softmax_over_batch(fill: float):
    """The mistake with the masked scores filled with ``fill`` (-inf, or a large negative number)."""

    def mistaken(decoder_state, encoder_states, W, U, v, available):
        scores = additive_scores(decoder_state, encoder_states, W, U, v)
        if scores.shape[0] == 1:
            return NOT_APPLICABLE
        return scores.masked_fill(~available, fill).softmax(dim=0)  # NaN where a column is all -inf

    return Mistake(_OVER_BATCH, mistaken)


@mistake(
    "it matches ignoring `available`: padding and positions already pointed at must get weight 0 "
    "(fill their scores with -inf before the softmax)"
)
def _mask_ignored(decoder_state, encoder_states, W, U, v, available):
    return additive_scores(decoder_state, encoder_states, W, U, v).softmax(dim=-1)


@mistake(
    "it matches multiplying the softmax by the mask afterwards: the remaining weights no longer "
    "sum to 1; mask the scores before the softmax"
)
def _masked_after_softmax(decoder_state, encoder_states, W, U, v, available):
    return additive_scores(decoder_state, encoder_states, W, U, v).softmax(dim=-1) * available


@mistake(
    "it matches the raw scores u_j: the pointer's output is their softmax over the available "
    "positions, a distribution"
)
def _raw_scores(decoder_state, encoder_states, W, U, v, available):
    return additive_scores(decoder_state, encoder_states, W, U, v)


@mistake("it matches the inverted mask: True in `available` marks the positions you MAY point at")
def _mask_inverted(decoder_state, encoder_states, W, U, v, available):
    if bool(available.all()):
        return NOT_APPLICABLE
    weights = additive_scores(decoder_state, encoder_states, W, U, v)
    return weights.masked_fill(available, float("-inf")).softmax(dim=-1)  # NaN: a row all masked


@mistake(
    "it matches filling the masked scores with 0: exp(0) = 1 still gives those positions weight; "
    "fill them with -inf, whose exp is 0"
)
def _filled_with_zero(decoder_state, encoder_states, W, U, v, available):
    scores = additive_scores(decoder_state, encoder_states, W, U, v)
    return scores.masked_fill(~available, 0.0).softmax(dim=-1)


@mistake(
    "it matches filling the weights with -inf after the softmax: fill the scores before the "
    "softmax, so that the unavailable positions get weight 0 and the rest sum to 1"
)
def _filled_after_softmax(decoder_state, encoder_states, W, U, v, available):
    weights = additive_scores(decoder_state, encoder_states, W, U, v).softmax(dim=-1)
    return weights.masked_fill(~available, float("-inf"))


POINTER_DISTRIBUTION = Exercise(
    grade_id="ex12_4_pointer_distribution",
    notebook=NOTEBOOK,
    signature="pointer_distribution(decoder_state, encoder_states, W, U, v, available)",
    docstring="""
        A pointer network's output: a distribution over the available input positions, from
        Bahdanau-style additive scores of each encoder state against the decoder state.

        decoder_state d (B, d), encoder_states e (B, n, d_e), W (A, d), U (A, d_e), v (A,):
        the score of position j is the formula above. available (B, n) bool, True = a real input
        position not pointed at yet (every row has at least one). Returns (B, n): 0 where not
        available, each row summing to 1.
        Forbidden (scores 0): masked_softmax of course_utils.softmax (reference.masked_softmax),
        pointer_distribution of course_utils.pointer_network.
    """,
    hint=(
        "score every input position against the decoder state as Bahdanau's attention does, "
        "rule out the positions that are not available, and normalise over the positions"
    ),
    code_hint=(
        "scores = torch.tanh((decoder_state @ W.T)[:, None, :] + encoder_states @ U.T) @ v; "
        "scores.masked_fill(~available, float('-inf')).softmax(dim=-1)"
    ),
    reference=pointer_distribution,
    forbidden=("course_utils.softmax.masked_softmax",),
    cases=_pointer_cases,
    judge=close("distribution", atol=1e-6, rtol=1e-5),
    mistakes=(
        _softmax_over_batch(float("-inf")),
        _softmax_over_batch(-1e9),  # any large finite fill gives the same weights
        _mask_ignored,
        _masked_after_softmax,
        _raw_scores,
        _mask_inverted,
        _filled_with_zero,
        _filled_after_softmax,
    ),
)


EXERCISES = (POINTER_DISTRIBUTION,)
