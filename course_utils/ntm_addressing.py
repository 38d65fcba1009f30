"""Neural Turing Machine addressing: where a head reads and writes in an external memory (notebook 12).

A Neural Turing Machine (Graves, Wayne and Danihelka, 2014) keeps a memory M of N slots, each a
vector of M numbers, and reads it through a *weighting* w over the slots (w_i >= 0, Σ_i w_i = 1):
the read vector is r = Σ_i w_i M_i, attention over memory slots. At every step the controller
emits, per head, a key k, a key strength β > 0, a gate g in [0, 1], a shift distribution s over
the offsets (-1, 0, +1) and a sharpening exponent γ >= 1, and the new weighting is built in four
stages from the previous one, w_{t-1}:

    content      w^c_i = softmax_i(β · cos(k, M_i))         find the slot whose content matches k
    interpolate  w^g   = g · w^c + (1 - g) · w_{t-1}         g = 0 keeps the previous location
    shift        w̃_i   = Σ_o s_o · w^g_{(i - o) mod N}        move by -1, 0 or +1 slot, circularly
    sharpen      w_i   = w̃_i^γ / Σ_j w̃_j^γ                  undo the blur a soft shift causes

with cos(k, M_i) = k · M_i / (max(‖k‖, ε) · max(‖M_i‖, ε)), so an all-zero slot (a fresh memory)
scores 0 instead of 0/0. Content addressing jumps to what matches; the last three stages step
through memory from where the head was (location addressing), e.g. along a stored list.

Reading and writing (Graves et al. 2014, eqs. 2–4) use the weighting a head has just computed:

    read         r   = Σ_i w_i M_i                            a blend of the slots it attends to
    erase        M̃_i = M_i ∘ (1 − w_i e)                      e in [0, 1]^M: what to wipe, per feature
    add          M_i = M̃_i + w_i a                            a in R^M: what to write

A slot with w_i = 1 and e = 1 is overwritten by a; a slot with w_i = 0 is left as it was.

Shapes: memory (..., N, M), key (..., M), weights (..., N), shift (..., 3); beta, gate and gamma
are tensors of the leading shape (...) (or plain numbers), one per head; erase and add (..., M).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from course_utils.helpers.validation import require_dtype, require_shapes
from course_utils.softmax import softmax

SHIFT_OFFSETS = (-1, 0, 1)  # the offsets o of the shift distribution s_o, in this order
EPSILON = 1e-8  # the smallest norm cos() divides by

__all__ = [
    "EPSILON",
    "SHIFT_OFFSETS",
    "AddressingStages",
    "HeadParameters",
    "address_sequence",
    "ntm_address",
    "ntm_content_weights",
    "ntm_interpolate",
    "ntm_read",
    "ntm_sharpen",
    "ntm_shift",
    "ntm_write",
    "slot_cosine",
]


def _per_head(name: str, value, like: torch.Tensor, leading: torch.Size) -> torch.Tensor:
    """A number or a tensor of the leading shape (...), as a tensor of ``like``'s dtype and device."""
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if tensor.shape != leading and tensor.dim() != 0:
        raise ValueError(
            f"{name} must be a number or a tensor of the leading shape {tuple(leading)} "
            f"(one per head), got shape {tuple(tensor.shape)}"
        )
    return tensor


def _check_weights(name: str, weights: torch.Tensor) -> None:
    require_shapes((name, weights, "(..., N)"))
    require_dtype("floating-point", **{name: weights})


def slot_cosine(memory: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """cos(k, M_i) for every slot i: memory (..., N, M), key (..., M) -> (..., N)."""
    require_shapes(("memory", memory, "(*batch, N, M)"), ("key", key, "(*batch, M)"))
    require_dtype("floating-point", memory=memory, key=key)
    key_norm = key.norm(dim=-1, keepdim=True).clamp_min(EPSILON)  # max(‖k‖, ε): (..., 1)
    slot_norms = memory.norm(dim=-1).clamp_min(EPSILON)  # max(‖M_i‖, ε): (..., N)
    dots = (memory @ key[..., None])[..., 0]  # k · M_i: (..., N)
    return dots / (key_norm * slot_norms)


def ntm_content_weights(memory: torch.Tensor, key: torch.Tensor, beta) -> torch.Tensor:
    """w^c_i = softmax_i(β · cos(k, M_i)): memory (..., N, M), key (..., M), beta (...) -> (..., N)."""
    similarity = slot_cosine(memory, key)  # cos(k, M_i): (..., N)
    strength = _per_head("beta", beta, similarity, similarity.shape[:-1])
    return softmax(strength[..., None] * similarity, dim=-1)  # softmax_i(β · cos)


def ntm_interpolate(content_weights: torch.Tensor, previous_weights: torch.Tensor, gate):
    """w^g = g · w^c + (1 - g) · w_{t-1}: weights (..., N), gate (...) in [0, 1] -> (..., N)."""
    require_shapes(
        ("content_weights", content_weights, "(*batch, N)"),
        ("previous_weights", previous_weights, "(*batch, N)"),
    )
    g = _per_head("gate", gate, content_weights, content_weights.shape[:-1])[..., None]
    return g * content_weights + (1 - g) * previous_weights


def ntm_shift(weights: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """w̃_i = Σ_o s_o · w_{(i - o) mod N}, o in (-1, 0, +1): weights (..., N), shift (..., 3)."""
    require_shapes(("weights", weights, "(*batch, N)"), ("shift", shift, "(*batch, offsets)"))
    require_dtype("floating-point", weights=weights, shift=shift)
    if shift.shape[-1] != len(SHIFT_OFFSETS):
        raise ValueError(
            f"shift must have shape (..., 3): one probability per offset {SHIFT_OFFSETS}, "
            f"got {tuple(shift.shape)}"
        )
    shifted = torch.zeros_like(weights)
    for index, offset in enumerate(SHIFT_OFFSETS):
        # torch.roll(w, o)[i] = w[(i - o) mod N]: offset +1 moves the weight one slot forward
        shifted = shifted + shift[..., index, None] * torch.roll(weights, offset, dims=-1)
    return shifted


def ntm_sharpen(weights: torch.Tensor, gamma) -> torch.Tensor:
    """w_i = w̃_i^γ / Σ_j w̃_j^γ: weights (..., N), gamma (...) >= 1 -> (..., N)."""
    _check_weights("weights", weights)
    exponent = _per_head("gamma", gamma, weights, weights.shape[:-1])[..., None]
    # dividing by the largest weight first changes nothing but keeps w^γ from underflowing to 0
    scaled = weights / weights.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
    powered = scaled**exponent  # w̃_i^γ (up to a common factor)
    return powered / powered.sum(dim=-1, keepdim=True)  # / Σ_j w̃_j^γ


# --------------------------------------------------------------------------------------------------
# Reading and writing with a weighting


def ntm_read(memory: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """r = Σ_i w_i M_i: memory (..., N, M), weights (..., N) -> read vector (..., M)."""
    require_shapes(("memory", memory, "(*batch, N, M)"), ("weights", weights, "(*batch, N)"))
    return (weights[..., None, :] @ memory)[..., 0, :]  # (..., 1, N) @ (..., N, M) -> (..., M)


def ntm_write(
    memory: torch.Tensor, weights: torch.Tensor, erase: torch.Tensor, add: torch.Tensor
) -> torch.Tensor:
    """Erase, then add: memory (..., N, M), weights (..., N), erase and add (..., M) -> new memory.

    Returns a new tensor; ``memory`` itself is not changed.
    """
    require_shapes(
        ("memory", memory, "(*batch, N, M)"),
        ("weights", weights, "(*batch, N)"),
        ("erase", erase, "(*batch, M)"),
        ("add", add, "(*batch, M)"),
        meanings={"N": "number of slots", "M": "slot width"},
    )
    require_dtype("floating-point", memory=memory, weights=weights, erase=erase, add=add)
    w = weights[..., :, None]  # w_i as a column: (..., N, 1)
    erased = memory * (1 - w * erase[..., None, :])  # M̃_i = M_i ∘ (1 − w_i e): (..., N, M)
    return erased + w * add[..., None, :]  # M_i = M̃_i + w_i a


# --------------------------------------------------------------------------------------------------
# One whole addressing step, and a sequence of them (the notebook's figure and explorer)


class HeadParameters(NamedTuple):
    """What the controller emits for one head at one step: key (..., M), then β, g, s (..., 3), γ."""

    key: torch.Tensor
    beta: float | torch.Tensor
    gate: float | torch.Tensor
    shift: torch.Tensor
    gamma: float | torch.Tensor


class AddressingStages(NamedTuple):
    """The weighting after each of the four stages of one step, each (..., N)."""

    content: torch.Tensor
    gated: torch.Tensor
    shifted: torch.Tensor
    sharpened: torch.Tensor


def ntm_address(
    memory: torch.Tensor, previous_weights: torch.Tensor, head: HeadParameters
) -> AddressingStages:
    """One addressing step: content → interpolate → shift → sharpen; ``sharpened`` is the new w_t."""
    content = ntm_content_weights(memory, head.key, head.beta)  # w^c
    gated = ntm_interpolate(content, previous_weights, head.gate)  # w^g
    shifted = ntm_shift(gated, torch.as_tensor(head.shift, dtype=gated.dtype))  # w̃
    sharpened = ntm_sharpen(shifted, head.gamma)  # w_t
    return AddressingStages(content, gated, shifted, sharpened)


def address_sequence(
    memory: torch.Tensor, initial_weights: torch.Tensor, heads: list[HeadParameters]
) -> list[AddressingStages]:
    """Run one step per entry of ``heads`` from w_0 = ``initial_weights``; the stages of every step."""
    if not heads:
        raise ValueError("heads must hold at least one step's HeadParameters, got none")
    stages, weights = [], initial_weights
    for head in heads:
        stages.append(ntm_address(memory, weights, head))
        weights = stages[-1].sharpened  # w_t becomes the next step's w_{t-1}
    return stages
