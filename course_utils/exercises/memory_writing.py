"""Exercise 12.5 of notebook 12 (memory and pointers): the NTM's write, erase then add."""

from __future__ import annotations

import torch

from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randint, randn
from course_utils.ntm_addressing import ntm_write

NOTEBOOK = "12_memory_and_pointers"


def _write_case(generator: torch.Generator, batch: int, slots: int, width: int, **options):
    """(memory, weights, erase, add) for ``batch`` heads over ``slots`` slots of ``width`` numbers.

    ``one_hot``: each head writes to one slot (a random one) with weight 1; ``full_erase``: e = 1;
    ``dtype``: the tensors' dtype.
    """
    dtype = options.get("dtype", torch.float64)
    memory = randn(generator, batch, slots, width, dtype=dtype)
    weights = (2 * randn(generator, batch, slots)).softmax(dim=-1)
    if options.get("one_hot", False):
        weights = torch.zeros(batch, slots, dtype=torch.float64)
        for head in range(batch):
            weights[head, randint(generator, 0, slots)] = 1.0
    erase = torch.rand(batch, width, generator=generator, dtype=torch.float64)
    if options.get("full_erase", False):
        erase = torch.ones(batch, width, dtype=torch.float64)
    add = randn(generator, batch, width)
    return tuple(t.to(dtype) for t in (memory, weights, erase, add))


def _write_cases(generator: torch.Generator) -> list[Case]:
    slots, width = randint(generator, 5, 9), randint(generator, 3, 6)
    return [
        Case(
            "memory (B=2, N, M), weights (B, N), erase and add (B, M)",
            _write_case(generator, 2, slots, width),
        ),
        Case(
            "memory (B=1, N, M), one slot with weight 1, erase all ones (an overwrite)",
            _write_case(generator, 1, slots, width, one_hot=True, full_erase=True),
        ),
        Case(
            "memory (B=3, N, M), each head writing one slot, erase in (0, 1)",
            _write_case(generator, 3, slots, width, one_hot=True),
        ),
        Case(
            "memory (B=4, N=M): as many slots as numbers per slot",
            _write_case(generator, 4, width, width),
        ),
        Case(
            "memory (B=2, N, M) float32",
            _write_case(generator, 2, slots, width, dtype=torch.float32),
        ),
    ]


@mistake(
    "it matches adding first, then erasing: the erase (eq. 3) wipes the old content, then the add "
    "(eq. 4) writes the new, so what was just added survives"
)
def _add_then_erase(memory, weights, erase, add):
    w = weights[..., :, None]
    return (memory + w * add[..., None, :]) * (1 - w * erase[..., None, :])


@mistake(
    "it matches erasing every slot by e, whatever its weight: the erase of slot i is scaled by its "
    "weight, M_i ∘ (1 − w_i e), so a slot the head does not attend to is left alone"
)
def _erase_unweighted(memory, weights, erase, add):
    return memory * (1 - erase[..., None, :]) + weights[..., :, None] * add[..., None, :]


@mistake(
    "it matches multiplying the memory by w_i e: that keeps the part the head meant to erase; "
    "multiply by (1 − w_i e)"
)
def _erase_kept(memory, weights, erase, add):
    w = weights[..., :, None]
    return memory * (w * erase[..., None, :]) + w * add[..., None, :]


@mistake(
    "it matches adding a to every slot: the add of slot i is scaled by its weight, w_i a, as the "
    "erase is"
)
def _add_unweighted(memory, weights, erase, add):
    return memory * (1 - weights[..., :, None] * erase[..., None, :]) + add[..., None, :]


@mistake("it matches the memory with nothing erased: apply M_i ∘ (1 − w_i e) before adding w_i a")
def _no_erase(memory, weights, erase, add):
    return memory + weights[..., :, None] * add[..., None, :]


@mistake("it matches the erased memory with nothing added: finish with + w_i a")
def _no_add(memory, weights, erase, add):
    return memory * (1 - weights[..., :, None] * erase[..., None, :])


@mistake(
    "it matches the weights as a row, w[..., None, :], against erase and add as columns: w_i "
    "belongs to slot i (the rows of the memory), so use weights[..., :, None] and erase[..., None, :]"
)
def _outer_product_transposed(memory, weights, erase, add):
    if memory.shape[-2] != memory.shape[-1]:
        return NOT_APPLICABLE  # the shapes do not broadcast: an error, not this mistake's numbers
    w = weights[..., None, :]
    return memory * (1 - w * erase[..., :, None]) + w * add[..., :, None]


WRITE = Exercise(
    grade_id="ex12_5_ntm_write",
    notebook=NOTEBOOK,
    signature="ntm_write(memory, weights, erase, add)",
    docstring="""
        The NTM's write: every slot is first erased, then added to, each in proportion to the
        head's weight on that slot (the two equations above).

        memory (B, N, M); weights (B, N), each row summing to 1; erase (B, M) in [0, 1];
        add (B, M). Returns the new memory (B, N, M); leave the memory passed in unchanged.
        Forbidden (scores 0): ntm_write of course_utils.ntm_addressing (reference.ntm_write).
    """,
    hint=(
        "each slot keeps (1 − its weight × e) of every number, then gains its weight × a; "
        "both are outer products of the weights (one per slot) with a vector (one per number)"
    ),
    code_hint=(
        "w = weights[..., :, None]; erased = memory * (1 - w * erase[..., None, :]); "
        "return erased + w * add[..., None, :]"
    ),
    reference=ntm_write,
    cases=_write_cases,
    judge=close("memory", atol=1e-6, rtol=1e-5),
    mistakes=(
        _add_then_erase,
        _erase_unweighted,
        _erase_kept,
        _add_unweighted,
        _no_erase,
        _no_add,
        _outer_product_transposed,
    ),
)


EXERCISES = (WRITE,)
