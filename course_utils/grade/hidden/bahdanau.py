"""Hidden tests for notebook 02 (Bahdanau attention): other seeds and shapes than the visible checks
in ``course_utils.exercises.bahdanau`` (a batch of one, a single source word, batch == positions,
no padding, large scores, larger batches); expected values from the reference.

Besides the expected value, a case keeps (in the parent) what each classic mistake would return for
its inputs; a wrong answer that matches one of them is told which mistake it is.

``bahdanau_step`` takes the attention module and the GRU cell as arguments: they cross to the child
as ``codec.ModuleInput`` (constructor, arguments and weights, never pickle).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from course_utils.alignment import AdditiveAttention, additive_scores
from course_utils.grade.codec import ModuleInput
from course_utils.grade.hidden import Case, close, naming_mistakes
from course_utils.masks import padding_mask
from course_utils.softmax import masked_softmax, softmax

NOTEBOOK = "02_bahdanau_attention"

SQUEEZED = (
    "an axis of size 1 was dropped: .squeeze() removes every axis of size 1 (a batch of one, a "
    "single source word); drop only the last one with .squeeze(-1)"
)


# --------------------------------------------------------------------------------------------------
# ex2_1: additive score


def _additive_score_cases(generator: torch.Generator) -> list[Case]:
    settings = [
        ("B=2, m=7, d_q=3, d_k=5, A=4 (float64)", 2, 7, 3, 5, 4, torch.float64),
        (
            "batch == positions = 5 (a broadcasting trap), d_q=d_k=4, A=6",
            5,
            5,
            4,
            4,
            6,
            torch.float32,
        ),
        ("a single source word (m=1), B=3, d_q=6, d_k=2, A=5", 3, 1, 6, 2, 5, torch.float64),
        ("a batch of one, m=6, d_q=4, d_k=3, A=8", 1, 6, 4, 3, 8, torch.float32),
        ("larger batch B=16, m=10, d_q=8, d_k=12, A=16", 16, 10, 8, 12, 16, torch.float32),
    ]
    cases = []
    for name, batch, positions, query_dim, key_dim, hidden, dtype in settings:
        query = torch.randn(batch, query_dim, generator=generator, dtype=dtype)
        keys = torch.randn(batch, positions, key_dim, generator=generator, dtype=dtype)
        W = torch.randn(hidden, query_dim, generator=generator, dtype=dtype)
        U = torch.randn(hidden, key_dim, generator=generator, dtype=dtype)
        v = torch.randn(hidden, generator=generator, dtype=dtype)
        expected = additive_scores(query, keys, W, U, v)
        projected = (query @ W.T)[:, None, :] + keys @ U.T  # W s + U h_j
        mistakes = [
            (projected @ v, "you forgot the tanh: e_j = vᵀ tanh(W s + U h_j)"),
            (
                torch.tanh(projected @ v),
                "the tanh goes inside: vᵀ tanh(W s + U h_j), not tanh(vᵀ (W s + U h_j))",
            ),
            (
                softmax(expected, dim=-1),
                "these are softmax weights: return the raw scores e_j, the softmax comes in the "
                "next exercise",
            ),
        ]
        if batch == positions:  # (query @ W.T)[None] adds query j to the keys of sentence b
            mistakes.append(
                (
                    torch.tanh((query @ W.T)[None, :, :] + keys @ U.T) @ v,
                    "sentence b's query was added to the keys of other sentences: give W s a "
                    "source axis, (query @ W.T)[:, None, :], so it broadcasts over the positions "
                    "of its own sentence",
                )
            )
        if 1 in expected.shape:
            mistakes.append((expected.squeeze(), SQUEEZED))
        judge = naming_mistakes(close("scores", atol=1e-5, rtol=1e-5), mistakes)
        cases.append(Case(name, (query, keys, W, U, v), expected, judge))
    return cases


# --------------------------------------------------------------------------------------------------
# ex2_2: masked attention weights


def _masked_weights_mistakes(scores: torch.Tensor, lengths: torch.Tensor) -> list[tuple[Any, str]]:
    """What the classic masking mistakes return for these inputs."""
    positions = scores.shape[-1]
    real = padding_mask(lengths, positions)  # True = a real word: may be attended
    one_too_many = padding_mask(torch.clamp(lengths + 1, max=positions), positions)
    wrong_axis = (
        "the weights sum to 1 over the batch: softmax over the source positions (dim=-1), "
        "not over the sentences"
    )
    return [
        (
            softmax(scores, dim=-1),
            "padding positions get weight: you are attending to padding. Fill the scores at "
            "j >= length with -inf before the softmax",
        ),
        (
            masked_softmax(scores, ~real, dim=-1),
            "only padding gets weight: the mask is inverted. True = may attend = a real word "
            "(j < length)",
        ),
        (
            softmax(scores.masked_fill(~real, 0.0), dim=-1),
            "padded scores set to 0 still get weight exp(0): fill them with -inf (or a huge "
            "negative number) instead",
        ),
        (
            softmax(scores, dim=-1) * real,
            "the padding was zeroed after the softmax, so the real words no longer sum to 1: "
            "mask the scores before the softmax",
        ),
        (
            masked_softmax(scores, one_too_many, dim=-1),
            "one padding position too many is attended: positions 0 … length-1 are real, so "
            "keep j < length (not j <= length)",
        ),
        (masked_softmax(scores, real, dim=0), wrong_axis),
        (softmax(scores, dim=0), wrong_axis),
    ]


def _masked_weights_cases(generator: torch.Generator) -> list[Case]:
    cases = []

    def add(name, scores, lengths):
        expected = masked_softmax(scores, padding_mask(lengths, scores.shape[-1]), dim=-1)
        judge = naming_mistakes(
            close("weights", atol=1e-6, rtol=1e-5), _masked_weights_mistakes(scores, lengths)
        )
        cases.append(Case(name, (scores, lengths), expected, judge))

    def padded_scores(batch, positions, lengths, dtype, scale=1.0, padding_score=5.0):
        # Padding gets high scores, so attending to it changes the answer visibly.
        scores = torch.randn(batch, positions, generator=generator, dtype=dtype) * scale
        return scores.masked_fill(~padding_mask(lengths, positions), padding_score)

    lengths = torch.tensor([7, 2, 5])
    add("lengths [7, 2, 5], m=7 (float64)", padded_scores(3, 7, lengths, torch.float64), lengths)
    lengths = torch.tensor([4, 4, 4])
    add("no padding: lengths [4, 4, 4], m=4", padded_scores(3, 4, lengths, torch.float32), lengths)
    lengths = torch.tensor([1, 1])
    add(
        "a single source word (m=1), lengths [1, 1]",
        padded_scores(2, 1, lengths, torch.float32),
        lengths,
    )
    lengths = torch.tensor([6, 3, 1, 5])
    add(
        "large scores (±300) with padding, lengths [6, 3, 1, 5], m=6",
        padded_scores(4, 6, lengths, torch.float32, scale=300.0, padding_score=400.0),
        lengths,
    )
    batch, positions = 32, 15
    lengths = torch.randint(1, positions + 1, (batch,), generator=generator)
    add(
        "larger batch B=32, m=15, random lengths",
        padded_scores(batch, positions, lengths, torch.float32),
        lengths,
    )
    return cases


# --------------------------------------------------------------------------------------------------
# ex2_3: one decoder step


def _as_tensor(item: Any, shape: tuple[int, ...]) -> torch.Tensor | None:
    """A decoded returned array as a float32 tensor, when it has ``shape``; else None."""
    values = getattr(item, "values", None)
    if not isinstance(values, np.ndarray) or tuple(values.shape) != shape:
        return None
    if not np.issubdtype(values.dtype, np.floating) or not np.isfinite(values).all():
        return None
    return torch.from_numpy(values.astype(np.float32))


def _step_case(name: str, inputs: dict, attention: nn.Module, cell: nn.Module) -> Case:
    """One case of bahdanau_step: expected (state, context, weights) and the classic mistakes."""
    previous_state, embedding = inputs["previous_state"], inputs["previous_embedding"]
    encoder_states, mask = inputs["encoder_states"], inputs["source_mask"]

    def step(query_mask, embedding_first=True):
        """The decoder step when attention gets ``query_mask`` (and the GRU input order)."""
        context, weights = attention(previous_state, encoder_states, encoder_states, query_mask)
        # s_i = GRU([y_{i-1}; c_i], s_{i-1})
        parts = [embedding, context] if embedding_first else [context, embedding]
        return cell(torch.cat(parts, dim=-1), previous_state), context, weights

    with torch.no_grad():
        expected = step(mask)
        state, context, weights = expected
        mistakes = [
            (
                step(None),
                "padding positions get weight: you are attending to padding. Pass source_mask "
                "to attention(...)",
            ),
            (
                step(~mask),
                "only padding gets weight: the mask is inverted. source_mask is True for real "
                "words (True = may attend); pass it as it is",
            ),
            (
                step(mask, embedding_first=False),
                "the GRU input is [c_i; y_{i-1}]: concatenate the embedding first, then the "
                "context, [y_{i-1}; c_i], the order the cell was built for",
            ),
            (
                (previous_state, context, weights),
                "the state did not change: return the new state s_i from the cell",
            ),
            (
                (context, state, weights),
                "the results are in the wrong order: return (state, context, weights)",
            ),
            (
                (state, weights, context),
                "the results are in the wrong order: return (state, context, weights)",
            ),
        ]
    compare = close("state", "context", "weights", atol=1e-5, rtol=1e-4)
    compare_weights = close("weights", atol=1e-5, rtol=1e-4)
    named = naming_mistakes(compare, mistakes)

    def judge(actual: Any, expected: Any) -> str | None:
        problem = compare(actual, expected)
        if problem is None:
            return None
        named_problem = named(actual, expected)
        if named_problem != problem or not (isinstance(actual, tuple) and len(actual) == 3):
            return named_problem
        # Scored with the NEW state s_i: the weights equal attention(returned state, ...).
        returned_state = _as_tensor(actual[0], tuple(previous_state.shape))
        if returned_state is None or compare_weights(actual[2], weights) is None:
            return problem
        with torch.no_grad():
            _, from_new_state = attention(returned_state, encoder_states, encoder_states, mask)
        if compare_weights(actual[2], from_new_state) is None:
            return (
                f"{problem}; it matches a classic mistake: the weights were scored with the new "
                "state s_i. Bahdanau scores with s_{i-1}, the state before this step, then feeds "
                "the context into the GRU"
            )
        return problem

    module_inputs = (
        ModuleInput(
            "course_utils.alignment.AdditiveAttention",
            (attention.query_dim, attention.key_dim, attention.hidden_dim),
            attention.state_dict(),
        ),
        ModuleInput("torch.nn.GRUCell", (cell.input_size, cell.hidden_size), cell.state_dict()),
    )
    return Case(name, (*inputs.values(), *module_inputs), expected, judge)


def _step_cases() -> list[Case]:
    settings = [
        # name, lengths (None = 16 random ones), positions, E, K, H, A
        ("B=3, m=6, lengths [6, 2, 4], E=5, K=8, H=7, A=6", [6, 2, 4], 6, 5, 8, 7, 6),
        ("a single source word (m=1), B=2, E=3, K=4, H=5, A=3", [1, 1], 1, 3, 4, 5, 3),
        ("no padding, B=4, m=5, E=4, K=H=6, A=5", [5, 5, 5, 5], 5, 4, 6, 6, 5),
        ("a batch of one, length 3 of m=7, E=6, K=5, H=4, A=8", [3], 7, 6, 5, 4, 8),
        ("larger batch B=16, m=9, random lengths, E=8, K=10, H=12, A=9", None, 9, 8, 10, 12, 9),
    ]
    cases = []
    for index, setting in enumerate(settings):
        name, lengths, positions, embed_dim, key_dim, hidden_dim, attention_dim = setting
        seed = 1020 + index
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):  # seeded initialisation; global RNG untouched
            torch.manual_seed(seed)
            attention = AdditiveAttention(hidden_dim, key_dim, attention_dim)
            cell = nn.GRUCell(embed_dim + key_dim, hidden_dim)
        if lengths is None:
            lengths = torch.randint(1, positions + 1, (16,), generator=generator)
        lengths = torch.as_tensor(lengths)
        batch = len(lengths)
        inputs = {  # in the order of bahdanau_step's parameters
            "previous_state": torch.randn(batch, hidden_dim, generator=generator),
            "previous_embedding": torch.randn(batch, embed_dim, generator=generator),
            "encoder_states": torch.randn(batch, positions, key_dim, generator=generator),
            "source_mask": padding_mask(lengths, positions),
        }
        cases.append(_step_case(name, inputs, attention, cell))
    return cases


def build_cases() -> dict[str, list[Case]]:
    generator = torch.Generator().manual_seed(1002)
    return {
        "ex2_1_additive_score": _additive_score_cases(generator),
        "ex2_2_masked_attention_weights": _masked_weights_cases(generator),
        "ex2_3_bahdanau_step": _step_cases(),
    }
