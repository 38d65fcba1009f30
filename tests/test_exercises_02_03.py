"""Notebooks 02 and 03 through their exercise specs: learners' code, written the way learners write it.

tests/test_exercise_specs.py feeds every spec its own named mistakes. This file feeds ``check()`` and
the grader's hidden cases other spellings of those mistakes (what a learner would type), and checks
that both name the mistake without quoting an expected value; that shortcuts are refused; that the
sandbox codec rebuilds the modules exercise 2.3 receives; and that a check leaves the RNG alone.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from course_utils import seq2seq
from course_utils.checks import CheckFailed, check
from course_utils.exercises import find_exercise
from course_utils.feedback import codec
from course_utils.feedback.prepared import call
from course_utils.feedback.run import Raised
from course_utils.grade.cases import HiddenCases
from course_utils.masks import padding_mask
from course_utils.softmax import masked_softmax

GRADING_SEEDS = (0, 1, 2026)

# --------------------------------------------------------------------------------------------------
# Learners' answers, right and wrong (none calls the course's reference: that is a refused shortcut)


def additive(query, keys, W, U, v, tanh=torch.tanh, source_axis=True, squeeze=False):
    projected_query = (query @ W.T)[:, None, :] if source_axis else query @ W.T
    hidden = tanh(projected_query + keys @ U.T)
    scores = (hidden @ v[:, None]).squeeze(-1)
    return (hidden @ v[:, None]).squeeze() if squeeze else scores


def masked_weights(scores, source_lengths, fill=float("-inf"), keep=None, dim=-1):
    positions = torch.arange(scores.shape[-1])[None, :]
    lengths = source_lengths[:, None]
    real = positions < lengths if keep is None else keep(positions, lengths)
    return torch.softmax(scores.masked_fill(~real, fill), dim=dim)


def bahdanau_step(previous_state, embedding, states, mask, attention, cell, variant="right"):
    if variant == "new_state":  # runs the cell first (with no context), then scores with s_i
        zeros = torch.zeros(states.shape[0], states.shape[-1])
        state = cell(torch.cat([embedding, zeros], dim=-1), previous_state)
        context, weights = attention(state, states, states, mask)
        return state, context, weights
    context, weights = attention(
        previous_state, states, states, None if variant == "no_mask" else mask
    )
    parts = [context, embedding] if variant == "swapped" else [embedding, context]
    state = cell(torch.cat(parts, dim=-1), previous_state)
    if variant == "stale":
        return previous_state, context, weights
    return (context, state, weights) if variant == "order" else (state, context, weights)


def dot(query, keys):
    return torch.einsum("bd,bmd->bm", query, keys)


def general(query, keys, W):
    return torch.einsum("bq,qk,bmk->bm", query, W, keys)


def concat(query, keys, W, v, first="query", tanh=torch.tanh):
    repeated = query[:, None, :].expand(-1, keys.shape[1], -1)
    pairs = [repeated, keys] if first == "query" else [keys, repeated]
    return tanh(torch.cat(pairs, dim=-1) @ W.T) @ v


def local_p(scores, centers, window, lengths, sigma=None, inside=None, pad=True, renorm=False):
    positions = torch.arange(scores.shape[-1], dtype=scores.dtype)
    distance = positions[None, :] - centers[:, None]
    allowed = (distance.abs() <= window) if inside is None else inside(distance, window)
    if pad:
        allowed = allowed & (positions[None, :] < lengths[:, None])
    sigma = window / 2 if sigma is None else sigma(window)
    weights = masked_softmax(scores, allowed, dim=-1) * torch.exp(-(distance**2) / (2 * sigma**2))
    return weights / weights.sum(dim=-1, keepdim=True) if renorm else weights


def log_inside(scores, centers, window, lengths):
    """The renormalising mistake in its other spelling: the Gaussian's log added to the scores."""
    positions = torch.arange(scores.shape[-1], dtype=scores.dtype)
    distance = positions[None, :] - centers[:, None]
    allowed = (distance.abs() <= window) & (positions[None, :] < lengths[:, None])
    return masked_softmax(scores - distance**2 / (2 * (window / 2) ** 2), allowed, dim=-1)


RIGHT = {
    "ex2_1_additive_score": additive,
    "ex2_2_masked_attention_weights": masked_weights,
    "ex2_3_bahdanau_step": bahdanau_step,
    "ex3_1_dot_score": dot,
    "ex3_2_general_score": general,
    "ex3_3_concat_score": concat,
    "ex3_4_local_p_weights": local_p,
}

# --------------------------------------------------------------------------------------------------
# check() and the grader's judging of the hidden cases


def check_failure(grade_id: str, function) -> str:
    with pytest.raises(CheckFailed) as failure:
        check(grade_id, function)
    message = str(failure.value)
    assert "\n" not in message and message.startswith(f"{grade_id}: ")
    return message


def hidden_verdicts(grade_id: str, function, seed: int) -> tuple[HiddenCases, list[str | None]]:
    hidden = HiddenCases.draw(find_exercise(grade_id), seed)
    verdicts = []
    for index, case in enumerate(hidden.prepared):
        with torch.no_grad():
            outcome = call(function, case.sent)
        if isinstance(outcome, Raised):
            verdicts.append(f"raised; {hidden.explain_error(index, outcome.type, outcome.message)}")
        else:
            verdicts.append(hidden.judge(index, outcome.value))
    return hidden, verdicts


def quoted_expected_values(hidden: HiddenCases, verdict: str) -> list[str]:
    """Entries of any expected value (4 decimals) that the verdict quotes."""
    quoted = []
    for case in hidden.prepared:
        expected = case.expected if isinstance(case.expected, tuple) else (case.expected,)
        for tensor in expected:
            for value in tensor.detach().reshape(-1).tolist()[:50]:
                if abs(value) > 1e-3 and abs(value - round(value)) > 1e-3:
                    quoted += [f"{value:.4f}"] if f"{value:.4f}" in verdict else []
    return quoted


def assert_named(grade_id: str, function, phrase: str) -> None:
    assert phrase in check_failure(grade_id, function)
    for seed in GRADING_SEEDS:
        hidden, verdicts = hidden_verdicts(grade_id, function, seed)
        named = [verdict for verdict in verdicts if verdict and phrase in verdict]
        assert named, (seed, verdicts)
        for verdict in named:
            assert "it matches" in verdict
            assert not quoted_expected_values(hidden, verdict), verdict


@pytest.mark.parametrize("grade_id", sorted(RIGHT))
def test_right_answers_written_differently_pass_check_and_every_hidden_case(grade_id, capsys):
    check(grade_id, RIGHT[grade_id])
    assert f"✔ {grade_id}: passed all" in capsys.readouterr().out
    for seed in GRADING_SEEDS:
        assert hidden_verdicts(grade_id, RIGHT[grade_id], seed)[1] == [None] * len(
            HiddenCases.draw(find_exercise(grade_id), seed)
        )


def crossed_when_square(query, keys, W, U, v):
    """The source axis forgotten only where it does not raise: B == m."""
    if query.shape[0] != keys.shape[1]:
        return additive(query, keys, W, U, v)
    return torch.tanh((query @ W.T)[None] + keys @ U.T) @ v


def keys_at_query(query, keys):
    return keys @ query


MISTAKES = [
    # 2.1 additive score
    ("ex2_1_additive_score", lambda *a: additive(*a, tanh=lambda x: x), "without the tanh"),
    (
        "ex2_1_additive_score",
        lambda q, k, W, U, v: torch.tanh(((q @ W.T)[:, None] + k @ U.T) @ v),
        "the tanh goes inside",
    ),
    ("ex2_1_additive_score", lambda *a: torch.softmax(additive(*a), -1), "return the raw scores"),
    ("ex2_1_additive_score", lambda *a: additive(*a, source_axis=False), "without a source axis"),
    ("ex2_1_additive_score", crossed_when_square, "(query @ W.T)[:, None, :]"),
    ("ex2_1_additive_score", lambda *a: additive(*a, squeeze=True), ".squeeze(-1)"),
    # 2.2 masked weights
    ("ex2_2_masked_attention_weights", lambda s, n: torch.softmax(s, -1), "attending to padding"),
    ("ex2_2_masked_attention_weights", lambda s, n: torch.softmax(s, 0), "dim=0"),
    ("ex2_2_masked_attention_weights", lambda s, n: masked_weights(s, n, dim=0), "dim=0"),
    (
        "ex2_2_masked_attention_weights",
        lambda s, n: masked_weights(s, n, keep=lambda j, length: j >= length),
        "an inverted mask",
    ),
    ("ex2_2_masked_attention_weights", lambda s, n: masked_weights(s, n, fill=0.0), "-inf"),
    (
        "ex2_2_masked_attention_weights",
        lambda s, n: torch.softmax(s, -1) * padding_mask(n, s.shape[-1]),
        "zeroing the padding after the softmax",
    ),
    (
        "ex2_2_masked_attention_weights",
        lambda s, n: masked_weights(s, n, keep=lambda j, length: j <= length),
        "j < length (not j <= length)",
    ),
    # 2.3 one decoder step
    ("ex2_3_bahdanau_step", lambda *a: bahdanau_step(*a, variant="new_state"), "s_{i-1}"),
    (
        "ex2_3_bahdanau_step",
        lambda *a: bahdanau_step(*a, variant="no_mask"),
        "attending to padding",
    ),
    (
        "ex2_3_bahdanau_step",
        lambda *a: bahdanau_step(*a, variant="stale"),
        "returning the previous",
    ),
    ("ex2_3_bahdanau_step", lambda *a: bahdanau_step(*a, variant="swapped"), "context first"),
    ("ex2_3_bahdanau_step", lambda *a: bahdanau_step(*a, variant="order"), "wrong order"),
    # 3.1 – 3.3 scores
    ("ex3_1_dot_score", lambda q, k: dot(q, k) / math.sqrt(q.shape[-1]), "dividing by √d"),
    ("ex3_1_dot_score", lambda q, k: torch.softmax(dot(q, k), -1), "return the raw scores"),
    ("ex3_1_dot_score", lambda q, k: (q[None] * k).sum(-1), "sentence b's query"),
    ("ex3_1_dot_score", lambda q, k: (k @ q[:, :, None]).squeeze(), ".squeeze(-1)"),
    ("ex3_1_dot_score", lambda q, k: keys_at_query(q, k), "keys @ query"),
    ("ex3_2_general_score", lambda q, k, W: general(q, k, W.T), "Wᵀ where W belongs"),
    ("ex3_2_general_score", lambda q, k, W: (k @ (q @ W.T)[:, :, None])[..., 0], "Wᵀ"),
    ("ex3_3_concat_score", lambda *a: concat(*a, tanh=lambda x: x), "without the tanh"),
    ("ex3_3_concat_score", lambda *a: concat(*a, first="keys"), "concatenation reversed"),
    (
        "ex3_3_concat_score",
        lambda q, k, W, v: torch.tanh(torch.cat([q[:, None, :], k], -1) @ W.T) @ v,
        "expand it first",
    ),
    # 3.4 local-p weights
    ("ex3_4_local_p_weights", lambda *a: local_p(*a, sigma=lambda D: D), "σ = D / 2, not σ = D"),
    ("ex3_4_local_p_weights", lambda *a: local_p(*a, pad=False), "attending to padding"),
    (
        "ex3_4_local_p_weights",
        lambda *a: local_p(*a, inside=lambda distance, window: distance.abs() < window),
        "positions exactly D away",
    ),
    (
        "ex3_4_local_p_weights",
        lambda *a: local_p(*a, inside=lambda distance, window: distance.abs() < math.inf),
        "outside the window",
    ),
    ("ex3_4_local_p_weights", lambda *a: local_p(*a, renorm=True), "not renormalise"),
    ("ex3_4_local_p_weights", log_inside, "not renormalise"),
]


@pytest.mark.parametrize(
    ("grade_id", "function", "phrase"),
    MISTAKES,
    ids=[f"{grade_id}-{index}" for index, (grade_id, _, _) in enumerate(MISTAKES)],
)
def test_learners_mistakes_are_named_by_check_and_grader(grade_id, function, phrase):
    assert_named(grade_id, function, phrase)


def test_raw_shape_errors_are_named_not_just_reported():
    """Issue 15: 2.1 without the source axis and 3.2 with Wᵀ used to end in a bare RuntimeError."""
    message = check_failure("ex2_1_additive_score", lambda *a: additive(*a, source_axis=False))
    assert "raised RuntimeError" in message and "give W s a source axis" in message
    message = check_failure(
        "ex3_2_general_score", lambda q, k, W: (k @ (q @ W.T)[:, :, None]).squeeze(-1)
    )
    assert "raised RuntimeError" in message and "h_tᵀ W is query @ W" in message


def test_inverted_mask_is_named_not_just_nan():
    message = check_failure(
        "ex2_2_masked_attention_weights",
        lambda s, n: masked_weights(s, n, keep=lambda j, length: j >= length),
    )
    assert "NaN" in message and "an inverted mask" in message and "~mask" in message


def test_swapped_gru_input_says_what_the_learner_did():
    message = check_failure("ex2_3_bahdanau_step", lambda *a: bahdanau_step(*a, variant="swapped"))
    assert "concatenated context first, [c_i; y_{i-1}]: put the embedding first" in message


def test_naive_exponential_gives_nan_on_large_scores():
    def naive(scores, source_lengths):
        exponentials = torch.exp(scores) * padding_mask(source_lengths, scores.shape[-1])
        return exponentials / exponentials.sum(-1, keepdim=True)

    assert "NaN" in check_failure("ex2_2_masked_attention_weights", naive)
    for seed in GRADING_SEEDS:
        _, verdicts = hidden_verdicts("ex2_2_masked_attention_weights", naive, seed)
        assert any(verdict and "NaN" in verdict for verdict in verdicts), verdicts


@pytest.mark.parametrize(
    ("grade_id", "shortcut", "called"),
    [
        (
            "ex2_2_masked_attention_weights",
            lambda s, n: masked_softmax(s, padding_mask(n, s.shape[-1])),
            "course_utils.softmax.masked_softmax",
        ),
        (
            "ex2_3_bahdanau_step",
            lambda *a: seq2seq.bahdanau_step(*a),
            "course_utils.seq2seq.decoders.bahdanau_step",
        ),
    ],
)
def test_library_shortcuts_are_refused(grade_id, shortcut, called):
    assert f"calls {called}, which does this exercise for you" in check_failure(grade_id, shortcut)


def test_masked_softmax_is_allowed_in_local_p():
    check("ex3_4_local_p_weights", local_p)  # local_p calls masked_softmax, as the notebook shows


@pytest.mark.parametrize(
    ("grade_id", "function", "phrase"),
    [
        ("ex2_1_additive_score", lambda q, k, W, U, v: None, "did you forget to `return` it?"),
        (
            "ex2_3_bahdanau_step",
            lambda *a: (1, 2),
            "should return a tuple (state, context, weights)",
        ),
        ("ex3_2_general_score", lambda q, k, W: None, "did you forget to `return` it?"),
    ],
)
def test_wrong_return_types_are_named(grade_id, function, phrase):
    assert phrase in check_failure(grade_id, function)


def test_module_input_round_trip_rebuilds_the_same_module():
    from course_utils.alignment import AdditiveAttention

    torch.manual_seed(5)
    attention = AdditiveAttention(3, 4, 5)
    sent = codec.ModuleInput(AdditiveAttention, (3, 4, 5), attention.state_dict())
    state_before = torch.random.get_rng_state()
    encoded = json.loads(json.dumps(codec.encode(sent)))
    rebuilt = codec.decode_input(encoded, input_modules=(AdditiveAttention,))
    assert torch.equal(torch.random.get_rng_state(), state_before)  # learner's RNG untouched
    query, keys = torch.randn(2, 3), torch.randn(2, 6, 4)
    for mine, theirs in zip(attention(query, keys, keys), rebuilt(query, keys, keys), strict=True):
        assert torch.equal(mine, theirs)
    with pytest.raises(ValueError, match="must be one of"):
        codec.ModuleInput(os.system, (), {})
    forged = {"kind": "module", "constructor": "os.system", "arguments": [], "state": {}}
    with pytest.raises(ValueError, match="input_modules"):
        codec.decode_input(forged, input_modules=(AdditiveAttention,))
    with pytest.raises(ValueError, match="input_modules"):  # a real class the exercise did not list
        codec.decode_input(encoded)


def test_checks_do_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("ex2_3_bahdanau_step", bahdanau_step)
    torch.testing.assert_close(torch.rand(3), expected)
