"""Exercises 12.1 to 12.3 of notebook 12 (memory and pointers): NTM content addressing, shift, sharpening."""

from __future__ import annotations

import torch

from course_utils.feedback.judge import close
from course_utils.feedback.spec import (
    NOT_APPLICABLE,
    Case,
    Exercise,
    Mistake,
    mistake,
    randint,
    randn,
)
from course_utils.ntm_addressing import ntm_content_weights, ntm_sharpen, ntm_shift, slot_cosine

NOTEBOOK = "12_memory_and_pointers"
_COSINE_CALLS = ("torch.nn.functional.cosine_similarity", "course_utils.ntm_addressing.slot_cosine")


def _random_weights(generator, *shape, dtype=torch.float64):
    """Weightings over the last axis: positive, each row summing to 1."""
    return (2 * randn(generator, *shape)).softmax(dim=-1).to(dtype)


def _product_as_written(per_head, per_slot, per_head_first: bool):
    """``per_head * per_slot`` in the order the learner wrote it: a broadcasting error names the
    operands a and b in that order, and a raised mistake matches only the exact same message."""
    return per_head * per_slot if per_head_first else per_slot * per_head


# --------------------------------------------------------------------------------------------------
# 12.1 content addressing


def _content_cases(generator: torch.Generator) -> list[Case]:
    def strength(*shape):  # β in [0.5, 10.5)
        return 0.5 + 10 * torch.rand(shape, generator=generator, dtype=torch.float64)

    memory = randn(generator, 6, 4)
    with_empty_slots = randn(generator, 2, 7, 3)
    with_empty_slots[:, 2] = 0  # a fresh memory: some slots still all zero
    matching = randn(generator, 8, 5).float()
    return [
        Case("memory (N=6, M=4), key (4,), beta 0-d", (memory, randn(generator, 4), strength())),
        Case(
            "memory (B=3, N=8, M=5), key (3, 5), beta (3,)",
            (randn(generator, 3, 8, 5), randn(generator, 3, 5), strength(3)),
        ),
        Case(
            "memory (N=6, M=4), key = 10 × slot 1, beta 2.0",
            (memory, 10 * memory[1], torch.tensor(2.0, dtype=torch.float64)),
        ),
        Case(
            "memory (B=2, N=7, M=3) whose slot 2 is all zeros, key (2, 3), beta (2,)",
            (with_empty_slots, randn(generator, 2, 3), strength(2)),
        ),
        Case(
            "memory (N=8, M=5) float32, key = slot 5, beta 100 (very sharp)",
            (matching, matching[5].clone(), torch.tensor(100.0)),
        ),
        Case(
            "memory (B=2, H=3, N=5, M=4), key (2, 3, 4), beta (2, 3)",
            (randn(generator, 2, 3, 5, 4), randn(generator, 2, 3, 4), strength(2, 3)),
        ),
    ]


@mistake(
    "it matches the dot product k · M_i: divide by the norms, cos(k, M_i) = k · M_i / (‖k‖ ‖M_i‖), "
    "so that a slot's length does not decide the match"
)
def _dot_product(memory, key, beta):
    scores = (memory @ key[..., None])[..., 0]
    return (torch.as_tensor(beta, dtype=scores.dtype)[..., None] * scores).softmax(dim=-1)


@mistake("it matches leaving out β: multiply the cosines by the key strength beta before softmax")
def _beta_ignored(memory, key, beta):
    return slot_cosine(memory, key).softmax(dim=-1)


@mistake("it matches dividing by β: β is a strength (multiply), not a temperature")
def _beta_divides(memory, key, beta):
    return ntm_content_weights(memory, key, 1 / torch.as_tensor(beta, dtype=memory.dtype))


@mistake(
    "it matches dividing by ‖M_i‖ only: the key's norm ‖k‖ belongs in the cosine too (a longer "
    "key would otherwise act as a larger β)"
)
def _key_not_normalised(memory, key, beta):
    key_norm = key.norm(dim=-1, keepdim=True)
    return ntm_content_weights(
        memory, key, torch.as_tensor(beta, dtype=memory.dtype) * key_norm[..., 0]
    )


@mistake(
    "it matches dividing by ‖k‖ ‖M_i‖ with no floor: an all-zero slot gives 0 / 0 = NaN; divide by "
    "max(‖k‖, ε) · max(‖M_i‖, ε) with ε = 1e-8"
)
def _no_epsilon(memory, key, beta):
    if bool((memory.norm(dim=-1) > 0).all()):
        return NOT_APPLICABLE
    cosine = (memory @ key[..., None])[..., 0] / (
        key.norm(dim=-1, keepdim=True) * memory.norm(dim=-1)
    )
    return (torch.as_tensor(beta, dtype=cosine.dtype)[..., None] * cosine).softmax(dim=-1)


@mistake(
    "it matches exp(β cos) / Σ exp(β cos) without subtracting the maximum: exp overflows for a "
    "large β (notebook 01's stable softmax)"
)
def _unstable_softmax(memory, key, beta):
    scores = torch.as_tensor(beta, dtype=memory.dtype)[..., None] * slot_cosine(memory, key)
    exponentials = scores.exp()
    result = exponentials / exponentials.sum(dim=-1, keepdim=True)
    return result if bool(result.isnan().any()) else NOT_APPLICABLE


def _beta_without_slot_axis(per_head_first: bool) -> Mistake:
    """``beta * cos`` (or ``cos * beta``) with beta (...) and the cosines (..., N): a bare
    broadcasting error as soon as there is more than one head."""

    def mistaken(memory, key, beta):
        if beta.dim() == 0:
            return NOT_APPLICABLE  # a single head: beta * cos broadcasts correctly
        return _product_as_written(beta, slot_cosine(memory, key), per_head_first).softmax(dim=-1)

    return Mistake(
        "it matches `beta * cos` with beta (...) and the cosines (..., N): beta has one value per "
        "head, so use beta[..., None] to scale that head's N scores",
        mistaken,
    )


def _softmax_over_axis(axis: int) -> Mistake:
    """The softmax over a leading axis (the batch, or the heads) instead of the N slots."""

    def mistaken(memory, key, beta):
        scores = torch.as_tensor(beta, dtype=memory.dtype)[..., None] * slot_cosine(memory, key)
        if scores.dim() == 1:
            return NOT_APPLICABLE  # the slots are the only axis
        return scores.softmax(dim=axis)

    return Mistake(
        "it matches a softmax over a leading axis (the batch or the heads): each head's weights "
        "are a distribution over its N slots, so normalise over the last axis",
        mistaken,
    )


CONTENT_WEIGHTS = Exercise(
    grade_id="ex12_1_content_weights",
    notebook=NOTEBOOK,
    signature="ntm_content_weights(memory, key, beta)",
    docstring="""
        Content addressing: a weighting over the N memory slots, from the cosine similarity of
        the key with each slot, sharpened by the key strength β (the formula above).

        memory (..., N, M), key (..., M), beta (...) the key strength (> 0), one per head.
        Each norm in the cosine is floored at ε = 1e-8, so an all-zero slot has cosine 0.
        Returns (..., N): non-negative, summing to 1 over the slots.
        Forbidden (scores 0): torch.nn.functional.cosine_similarity (also torch.cosine_similarity),
        slot_cosine and ntm_content_weights of course_utils.ntm_addressing.
    """,
    hint=(
        "compare the key with every slot by the cosine of their angle, make the comparison "
        "sharper by the key strength, then turn the N scores into a distribution over slots"
    ),
    code_hint=(
        "dots = (memory @ key[..., None])[..., 0]; norms = key.norm(dim=-1, keepdim=True)"
        ".clamp_min(1e-8) * memory.norm(dim=-1).clamp_min(1e-8); "
        "torch.softmax(beta[..., None] * dots / norms, dim=-1)"
    ),
    reference=ntm_content_weights,
    forbidden=_COSINE_CALLS,
    cases=_content_cases,
    judge=close("weights", atol=1e-5, rtol=1e-4),
    mistakes=(
        _dot_product,
        _beta_ignored,
        _beta_divides,
        _key_not_normalised,
        _no_epsilon,
        _unstable_softmax,
        _beta_without_slot_axis(per_head_first=True),
        _beta_without_slot_axis(per_head_first=False),
        _softmax_over_axis(0),
        _softmax_over_axis(-2),
    ),
)

# --------------------------------------------------------------------------------------------------
# 12.2 circular shift


def _one_hot(size: int, index: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(index), size).double()


def _shift_cases(generator: torch.Generator) -> list[Case]:
    forward, backward = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0])
    inner, last, first = (randint(generator, 4, 10) for _ in range(3))  # the numbers of slots N
    return [
        Case(
            "weights one-hot at an inner slot, shift +1",
            (_one_hot(inner, randint(generator, 1, inner - 1)), forward.double()),
        ),
        Case(
            "weights one-hot at the last slot, shift +1 (wraps round to slot 0)",
            (_one_hot(last, last - 1), forward.double()),
        ),
        Case(
            "weights one-hot at slot 0, shift -1 (wraps round to the last slot)",
            (_one_hot(first, 0), backward.double()),
        ),
        Case(
            "weights (N=7), soft shift (3,)",
            (_random_weights(generator, 7), _random_weights(generator, 3)),
        ),
        Case(
            "weights (B=2, N=6), shifts (2, 3)",
            (_random_weights(generator, 2, 6), _random_weights(generator, 2, 3)),
        ),
        Case(
            "weights (B=2, H=3, N=4) float32, shifts (2, 3, 3)",
            (
                _random_weights(generator, 2, 3, 4, dtype=torch.float32),
                _random_weights(generator, 2, 3, 3, dtype=torch.float32),
            ),
        ),
    ]


@mistake(
    "it matches shifting the wrong way: with s = (0, 0, 1) (offset +1) the weight on slot i must "
    "move to slot i + 1, i.e. w̃_i = Σ_o s_o w_{i-o}"
)
def _reversed_direction(weights, shift):
    return ntm_shift(weights, shift.flip(-1))


@mistake(
    "it matches a shift that is not circular: weight moved past the last slot must come back at "
    "slot 0 (and past slot 0 at slot N - 1), the indices are taken mod N"
)
def _not_circular(weights, shift):
    padded = torch.nn.functional.pad(weights, (1, 1))  # zeros beyond both ends
    size = weights.shape[-1]
    moved = [padded[..., 1 - offset : 1 - offset + size] for offset in (-1, 0, 1)]
    result = sum(shift[..., index, None] * part for index, part in enumerate(moved))
    return NOT_APPLICABLE if torch.allclose(result, ntm_shift(weights, shift)) else result


def _shift_without_slot_axis(per_head_first: bool) -> Mistake:
    """``shift[..., k] * torch.roll(weights, o)`` with shift[..., k] (...) and the weights (..., N)."""

    def mistaken(weights, shift):
        if shift.dim() == 1:
            return NOT_APPLICABLE  # a single head: shift[k] * weights broadcasts correctly
        rolled = [torch.roll(weights, offset, dims=-1) for offset in (-1, 0, 1)]
        return sum(
            _product_as_written(shift[..., index], part, per_head_first)
            for index, part in enumerate(rolled)
        )

    return Mistake(
        "it matches `shift[..., k] * torch.roll(weights, o, dims=-1)`: shift[..., k] has one value "
        "per head (shape (...)) and the weights are (..., N), so use shift[..., k, None] to scale "
        "that head's N weights",
        mistaken,
    )


@mistake(
    "it matches torch.roll without dims: it rolls the flattened tensor, so weight leaks from one "
    "row into the next; roll along the slot axis only"
)
def _rolled_flat(weights, shift):
    if weights.dim() == 1:
        return NOT_APPLICABLE  # one row: the flattened tensor is the row
    rolled = [torch.roll(weights, offset) for offset in (-1, 0, 1)]
    return sum(shift[..., index, None] * part for index, part in enumerate(rolled))


SHIFT = Exercise(
    grade_id="ex12_2_circular_shift",
    notebook=NOTEBOOK,
    signature="ntm_shift(weights, shift)",
    docstring="""
        Location addressing: move the weighting around the ring of N slots by -1, 0 or +1,
        mixing the three moves with the probabilities in shift (a circular convolution).

        weights (..., N); shift (..., 3) holds the probabilities of the offsets -1, 0, +1 in
        that order. Offset +1 moves weight from slot i to slot i + 1, and from slot N - 1 to
        slot 0. Returns (..., N).
        Forbidden (scores 0): ntm_shift of course_utils.ntm_addressing (reference.ntm_shift).
    """,
    hint=(
        "the new weight of slot i gathers the old weight of the slot one before, of itself and of "
        "the slot one after, each times the probability of the offset that brings it to i; "
        "slot indices wrap around"
    ),
    code_hint=(
        "torch.roll(weights, o, dims=-1)[..., i] is weights[..., (i - o) % N]: add up "
        "shift[..., k, None] * torch.roll(weights, o, dims=-1) for (k, o) in enumerate((-1, 0, 1))"
    ),
    reference=ntm_shift,
    cases=_shift_cases,
    judge=close("shifted weights", atol=1e-6, rtol=1e-5),
    mistakes=(
        _reversed_direction,
        _not_circular,
        _shift_without_slot_axis(per_head_first=True),
        _shift_without_slot_axis(per_head_first=False),
        _rolled_flat,
    ),
)

# --------------------------------------------------------------------------------------------------
# 12.3 sharpening


def _sharpen_cases(generator: torch.Generator) -> list[Case]:
    def exponent(*shape):  # γ in [1, 4)
        return 1 + 3 * torch.rand(shape, generator=generator, dtype=torch.float64)

    return [
        Case("weights (N=6), gamma 0-d", (_random_weights(generator, 6), exponent())),
        Case(
            "weights (N=5), gamma 1 (no change)",
            (_random_weights(generator, 5), torch.tensor(1.0, dtype=torch.float64)),
        ),
        Case(
            "weights (B=3, N=7), gamma (3,)",
            (_random_weights(generator, 3, 7), exponent(3)),
        ),
        Case(
            "weights (B=2, H=2, N=5) float32, gamma (2, 2)",
            (_random_weights(generator, 2, 2, 5, dtype=torch.float32), exponent(2, 2).float()),
        ),
        Case(
            "weights (N=4) with an exact zero, gamma 0-d", (_with_a_zero(generator, 4), exponent())
        ),
    ]


def _with_a_zero(generator: torch.Generator, size: int) -> torch.Tensor:
    """Weights over ``size`` slots summing to 1, one of them (at a random slot) exactly 0."""
    weights = _random_weights(generator, size)
    weights[randint(generator, 0, size)] = 0.0
    return weights / weights.sum()


@mistake("it matches w^γ without dividing by Σ_j w_j^γ: renormalise so that the weights sum to 1")
def _not_renormalised(weights, gamma):
    powered = weights ** torch.as_tensor(gamma, dtype=weights.dtype)[..., None]
    summed = powered.sum(-1)
    return NOT_APPLICABLE if torch.allclose(summed, torch.ones_like(summed)) else powered


@mistake(
    "it matches the weights unchanged (which γ · w, renormalised, also gives): raise each weight "
    "to the power γ, then renormalise"
)
def _unchanged(weights, gamma):
    return NOT_APPLICABLE if torch.allclose(ntm_sharpen(weights, gamma), weights) else weights


@mistake("it matches softmax(γ · w): the sharpened weights are w^γ / Σ_j w_j^γ, not a softmax")
def _softmax_of_weights(weights, gamma):
    return (torch.as_tensor(gamma, dtype=weights.dtype)[..., None] * weights).softmax(dim=-1)


@mistake(
    "it matches `weights ** gamma` with gamma (...) and the weights (..., N): gamma has one value "
    "per head, so use weights ** gamma[..., None] to raise that head's N weights to its power"
)
def _gamma_without_slot_axis(weights, gamma):
    if gamma.dim() == 0:
        return NOT_APPLICABLE  # a single head: weights ** gamma broadcasts correctly
    powered = weights**gamma
    return powered / powered.sum(dim=-1, keepdim=True)


@mistake(
    "it matches dividing by the sum over the whole tensor: renormalise each row over its own N "
    "slots (keepdim=True)"
)
def _renormalised_over_everything(weights, gamma):
    if weights.dim() == 1:
        return NOT_APPLICABLE
    powered = weights ** torch.as_tensor(gamma, dtype=weights.dtype)[..., None]
    return powered / powered.sum()


SHARPEN = Exercise(
    grade_id="ex12_3_sharpen",
    notebook=NOTEBOOK,
    signature="ntm_sharpen(weights, gamma)",
    docstring="""
        Sharpening: raise every weight to the power γ, then renormalise over the N slots.

        weights (..., N), non-negative, each row summing to 1; gamma (...) >= 1, one per head.
        Returns (..., N), each row summing to 1.
        Forbidden (scores 0): ntm_sharpen of course_utils.ntm_addressing (reference.ntm_sharpen).
    """,
    hint=(
        "raise every weight to the power gamma, which favours the large ones, then make each "
        "row a distribution again"
    ),
    code_hint="powered = weights ** gamma[..., None]; powered / powered.sum(dim=-1, keepdim=True)",
    reference=ntm_sharpen,
    cases=_sharpen_cases,
    judge=close("sharpened weights", atol=1e-6, rtol=1e-5),
    mistakes=(
        _not_renormalised,
        _unchanged,
        _softmax_of_weights,
        _gamma_without_slot_axis,
        _renormalised_over_everything,
    ),
)


EXERCISES = (CONTENT_WEIGHTS, SHIFT, SHARPEN)
