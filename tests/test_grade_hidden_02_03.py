"""Hidden tests of notebooks 02 and 03: the reference passes every case, and each classic mistake
fails with a message that names it and quotes no expected value.

The learner functions run in-process here, but their inputs and outputs go through the same codec
round trip as in the sandboxed child (encode → JSON → decode), so the judges see what they see
when grading. Grading the instructor notebooks end to end is tests/test_grade.py's
test_every_solution_notebook_gets_full_marks.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from course_utils.alignment import (
    additive_scores,
    concat_scores,
    dot_scores,
    gaussian_window_weights,
    general_scores,
)
from course_utils.grade import codec
from course_utils.grade.hidden import bahdanau, luong
from course_utils.masks import padding_mask
from course_utils.softmax import masked_softmax


def grade(function, cases) -> list[str | None]:
    """Each case's judge verdict (None = passed) for ``function``, through the codec round trip."""
    verdicts = []
    for case in cases:
        args = [codec.decode_input(json.loads(json.dumps(codec.encode(a)))) for a in case.args]
        try:
            returned = function(*args)
        except Exception as error:  # the grader reports these as errors, not judged
            verdicts.append(f"raised {type(error).__name__}")
            continue
        output = codec.decode_output(json.loads(json.dumps(codec.encode(returned))))
        verdicts.append(case.judge(output, case.expected))
    return verdicts


def assert_named(function, cases, phrase: str) -> None:
    verdicts = grade(function, cases)
    assert any(verdict is not None for verdict in verdicts), "the mistake passed every case"
    named = [verdict for verdict in verdicts if verdict and phrase in verdict]
    assert named, verdicts
    for verdict in named:
        assert "it matches a classic mistake" in verdict
        for case in cases:  # no expected value (4 decimals) is quoted
            expected = case.expected if isinstance(case.expected, tuple) else (case.expected,)
            for tensor in expected:
                for value in tensor.reshape(-1).tolist()[:50]:
                    if abs(value) > 1e-3 and abs(value - round(value)) > 1e-3:
                        assert f"{value:.4f}" not in verdict


# --- notebook 03 ----------------------------------------------------------------------------------

LUONG = luong.build_cases()


def repeat(query, keys):
    """The query next to every key: (B, m, d_q)."""
    return query[:, None, :].expand(-1, keys.shape[1], -1)


def local_p(sigma_of, window_test=lambda distance, window: distance.abs() <= window, pad=True):
    def weights(scores, centers, window, lengths):
        positions = torch.arange(scores.shape[-1], dtype=scores.dtype)
        distance = positions[None, :] - centers[:, None]
        allowed = window_test(distance, window)
        if pad:
            allowed = allowed & (positions[None, :] < lengths[:, None])
        gaussian = torch.exp(-(distance**2) / (2 * sigma_of(window) ** 2))
        return masked_softmax(scores, allowed, dim=-1) * gaussian

    return weights


def test_luong_reference_passes_every_case():
    references = {
        "ex3_1_dot_score": dot_scores,
        "ex3_2_general_score": general_scores,
        "ex3_3_concat_score": concat_scores,
        "ex3_4_local_p_weights": gaussian_window_weights,
    }
    assert sorted(LUONG) == sorted(references)
    for grade_id, reference in references.items():
        assert len(LUONG[grade_id]) >= 3
        assert grade(reference, LUONG[grade_id]) == [None] * len(LUONG[grade_id]), grade_id


@pytest.mark.parametrize(
    ("grade_id", "function", "phrase"),
    [
        (
            "ex3_1_dot_score",
            lambda q, k: dot_scores(q, k) / math.sqrt(q.shape[-1]),
            "divided by √d",
        ),
        ("ex3_1_dot_score", lambda q, k: (k @ q[:, :, None]).squeeze(), ".squeeze(-1)"),
        ("ex3_1_dot_score", lambda q, k: (q[None] * k).sum(-1), "keys of other sentences"),
        ("ex3_1_dot_score", lambda q, k: torch.softmax(dot_scores(q, k), -1), "raw scores"),
        ("ex3_2_general_score", lambda q, k, W: general_scores(q, k, W.T), "you used Wᵀ"),
        (
            "ex3_3_concat_score",
            lambda q, k, W, v: (torch.cat([repeat(q, k), k], -1) @ W.T) @ v,
            "forgot the tanh",
        ),
        (
            "ex3_3_concat_score",
            lambda q, k, W, v: torch.tanh(torch.cat([k, repeat(q, k)], -1) @ W.T) @ v,
            "concatenation is reversed",
        ),
        ("ex3_4_local_p_weights", local_p(lambda D: D), "σ = D / 2, not σ = D"),
        ("ex3_4_local_p_weights", local_p(lambda D: D / 2, pad=False), "attending to padding"),
        (
            "ex3_4_local_p_weights",
            local_p(lambda D: D / 2, lambda distance, window: distance.abs() < window),
            "window edge is missing",
        ),
        (
            "ex3_4_local_p_weights",
            local_p(lambda D: D / 2, lambda distance, window: distance.abs() < math.inf),
            "outside the window",
        ),
        (
            "ex3_4_local_p_weights",
            lambda s, c, D, n: (lambda w: w / w.sum(-1, keepdim=True))(
                gaussian_window_weights(s, c, D, n)
            ),
            "renormalised",
        ),
    ],
)
def test_luong_mistakes_are_named(grade_id, function, phrase):
    assert_named(function, LUONG[grade_id], phrase)


# --- notebook 02 ----------------------------------------------------------------------------------

ADDITIVE = bahdanau._additive_score_cases(torch.Generator().manual_seed(1002))
MASKED = bahdanau._masked_weights_cases(torch.Generator().manual_seed(1002))


def masked_weights(scores, lengths):
    return masked_softmax(scores, padding_mask(lengths, scores.shape[-1]), dim=-1)


def test_bahdanau_score_and_mask_references_pass_every_case():
    assert grade(additive_scores, ADDITIVE) == [None] * len(ADDITIVE)
    assert grade(masked_weights, MASKED) == [None] * len(MASKED)


@pytest.mark.parametrize(
    ("cases", "function", "phrase"),
    [
        (ADDITIVE, lambda q, k, W, U, v: ((q @ W.T)[:, None] + k @ U.T) @ v, "forgot the tanh"),
        (
            ADDITIVE,
            lambda q, k, W, U, v: torch.tanh(((q @ W.T)[:, None] + k @ U.T) @ v),
            "the tanh goes inside",
        ),
        (
            ADDITIVE,
            lambda q, k, W, U, v: torch.tanh((q @ W.T)[None] + k @ U.T) @ v,
            "keys of other sentences",
        ),
        (ADDITIVE, lambda *a: additive_scores(*a).squeeze(), ".squeeze(-1)"),
        (MASKED, lambda s, n: torch.softmax(s, -1), "attending to padding"),
        (
            MASKED,
            lambda s, n: torch.softmax(s, -1) * padding_mask(n, s.shape[-1]),
            "zeroed after the softmax",
        ),
        (
            MASKED,
            lambda s, n: torch.softmax(s.masked_fill(~padding_mask(n, s.shape[-1]), 0.0), -1),
            "exp(0)",
        ),
        (
            MASKED,
            lambda s, n: masked_weights(s, torch.clamp(n + 1, max=s.shape[-1])),
            "j < length (not j <= length)",
        ),
        (MASKED, lambda s, n: torch.softmax(s, 0), "over the batch"),
    ],
)
def test_bahdanau_score_and_mask_mistakes_are_named(cases, function, phrase):
    assert_named(function, cases, phrase)


def test_naive_exponential_gives_nan_on_large_scores():
    def naive(scores, lengths):
        exponentials = torch.exp(scores) * padding_mask(lengths, scores.shape[-1])
        return exponentials / exponentials.sum(-1, keepdim=True)

    verdicts = grade(naive, MASKED)
    assert any(verdict and "NaN" in verdict for verdict in verdicts), verdicts


def step_reference(state, embedding, encoder_states, mask, attention, cell, variant="correct"):
    """bahdanau_step, right or with one classic mistake."""
    if variant == "new_state":  # runs the cell first (with no context), then scores with s_i
        no_context = encoder_states.new_zeros(encoder_states.shape[0], encoder_states.shape[-1])
        new_state = cell(torch.cat([embedding, no_context], -1), state)
        context, weights = attention(new_state, encoder_states, encoder_states, mask)
        return new_state, context, weights
    query_mask = None if variant == "unmasked" else mask
    context, weights = attention(state, encoder_states, encoder_states, query_mask)
    parts = [context, embedding] if variant == "swapped" else [embedding, context]
    new_state = cell(torch.cat(parts, -1), state)
    return (context, new_state, weights) if variant == "order" else (new_state, context, weights)


def test_bahdanau_step_reference_passes_and_mistakes_are_named():
    cases = bahdanau._step_cases()
    with torch.no_grad():
        assert grade(step_reference, cases) == [None] * len(cases)
        for variant, phrase in [
            ("unmasked", "Pass source_mask"),
            ("swapped", "concatenate the embedding first"),
            ("new_state", "scored with the new state s_i"),
            ("order", "wrong order"),
        ]:
            assert_named(
                lambda *args, variant=variant: step_reference(*args, variant=variant),
                cases,
                phrase,
            )


def test_module_input_round_trip_rebuilds_the_same_module():
    from course_utils.alignment import AdditiveAttention

    torch.manual_seed(5)
    attention = AdditiveAttention(3, 4, 5)
    sent = codec.ModuleInput(
        "course_utils.alignment.AdditiveAttention", (3, 4, 5), attention.state_dict()
    )
    state_before = torch.random.get_rng_state()
    rebuilt = codec.decode_input(json.loads(json.dumps(codec.encode(sent))))
    assert torch.equal(torch.random.get_rng_state(), state_before)  # learner's RNG untouched
    query, keys = torch.randn(2, 3), torch.randn(2, 6, 4)
    for mine, theirs in zip(attention(query, keys, keys), rebuilt(query, keys, keys), strict=True):
        assert torch.equal(mine, theirs)
    with pytest.raises(ValueError, match="must be one of"):
        codec.ModuleInput("os.system", (), {})
    forged = {"kind": "module", "constructor": "os.system", "arguments": [], "state": {}}
    with pytest.raises(ValueError, match="INPUT_MODULES"):
        codec.decode_input(forged)
