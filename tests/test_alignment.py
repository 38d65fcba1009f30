"""Additive and Luong attention: formulas, masks, local-p windows, bad input, and the check cells."""

from __future__ import annotations

import math

import pytest
import torch

from course_utils import attention as reference
from course_utils.alignment import (
    AdditiveAttention,
    LuongAttention,
    additive_scores,
    concat_scores,
    dot_scores,
    gaussian_window_weights,
    general_scores,
)
from course_utils.checks import CheckFailed, check
from course_utils.masks import padding_mask
from course_utils.softmax import masked_softmax


@pytest.fixture
def inputs():
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(3, 6, 8, generator=generator)
    query = torch.randn(3, 8, generator=generator)
    mask = padding_mask(torch.tensor([6, 2, 4]), 6)
    return query, keys, mask


def test_public_facade_exports_both_modules():
    assert reference.AdditiveAttention is AdditiveAttention
    assert reference.LuongAttention is LuongAttention


def test_additive_module_matches_formula_and_masks_padding(inputs):
    query, keys, mask = inputs
    torch.manual_seed(1)
    attention = AdditiveAttention(8, 8, 5)
    with torch.no_grad():
        attention.key_proj.bias.zero_()
        context, weights = attention(query, keys, keys, mask)
    scores = additive_scores(
        query,
        keys,
        attention.query_proj.weight,
        attention.key_proj.weight,
        attention.score_vector.weight[0],
    )
    expected_weights = masked_softmax(scores, mask)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(context, (expected_weights[:, :, None] * keys).sum(1))
    assert weights.shape == (3, 6) and context.shape == (3, 8)
    assert (weights[~mask] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3))


@pytest.mark.parametrize(
    "module",
    [
        lambda: AdditiveAttention(8, 8, 5),
        lambda: LuongAttention(8, 8, "dot"),
        lambda: LuongAttention(8, 8, "general"),
        lambda: LuongAttention(8, 8, "concat", hidden_dim=5),
        lambda: LuongAttention(8, 8, "general", window=2),
    ],
)
def test_several_steps_at_once_equal_one_step_at_a_time(inputs, module):
    _, keys, mask = inputs
    torch.manual_seed(2)
    attention = module()
    steps = torch.randn(3, 4, 8)
    context, weights = attention(steps, keys, keys, mask)
    assert context.shape == (3, 4, 8) and weights.shape == (3, 4, 6)
    for t in range(4):
        one_context, one_weights = attention(steps[:, t], keys, keys, mask)
        torch.testing.assert_close(weights[:, t], one_weights)
        torch.testing.assert_close(context[:, t], one_context)
    prepared = attention.prepare(keys)
    torch.testing.assert_close(attention(steps, keys, keys, mask, prepared=prepared)[1], weights)


def test_luong_scores_match_their_formulas(inputs):
    query, keys, _ = inputs
    torch.manual_seed(3)
    dot = LuongAttention(8, 8, "dot")
    torch.testing.assert_close(dot.scores(query[:, None], keys)[:, 0], dot_scores(query, keys))
    general = LuongAttention(8, 8, "general")
    W = general.bilinear.weight  # maps keys to query space: W_a of shape (query_dim, key_dim)
    torch.testing.assert_close(
        general.scores(query[:, None], keys)[:, 0], general_scores(query, keys, W)
    )
    # h_tᵀ W h̄_j written out for one pair
    assert math.isclose(
        float(general.scores(query[:, None], keys)[1, 0, 2].detach()),
        float((query[1] @ W @ keys[1, 2]).detach()),
        rel_tol=1e-5,
    )
    concat = LuongAttention(8, 8, "concat", hidden_dim=5)
    with torch.no_grad():
        concat.key_proj.bias.zero_()
    W_a = torch.cat([concat.query_proj.weight, concat.key_proj.weight], dim=1)
    torch.testing.assert_close(
        concat.scores(query[:, None], keys)[:, 0],
        concat_scores(query, keys, W_a, concat.score_vector.weight[0]),
    )
    scaled = LuongAttention(8, 8, "dot", scaled=True)
    torch.testing.assert_close(
        scaled.scores(query[:, None], keys), dot.scores(query[:, None], keys) / math.sqrt(8)
    )


def test_local_p_weights_vanish_outside_the_window_and_on_padding(inputs):
    _, keys, mask = inputs
    torch.manual_seed(4)
    attention = LuongAttention(8, 8, "general", window=1)
    steps = torch.randn(3, 5, 8)
    _, weights = attention(steps, keys, keys, mask)
    lengths = mask.sum(-1)
    centers = attention.predicted_positions(steps, lengths)
    assert ((centers >= 0) & (centers <= (lengths - 1)[:, None])).all()
    distance = torch.arange(6.0) - centers[..., None]
    outside = (distance.abs() > 1) | ~mask[:, None, :]
    assert (weights[outside] == 0).all()
    assert (weights[~outside] > 0).all()
    # inside the window: softmax over the window times the Gaussian with σ = D / 2
    direct = gaussian_window_weights(attention.scores(steps, keys), centers, 1, lengths)
    torch.testing.assert_close(weights, direct)
    assert (weights.sum(-1) <= 1 + 1e-6).all()


def test_gaussian_window_peak_and_width():
    scores = torch.zeros(1, 9)
    weights = gaussian_window_weights(scores, torch.tensor([4.0]), window=4)
    uniform = 1 / 9
    assert math.isclose(float(weights[0, 4]), uniform, rel_tol=1e-6)  # exp(0) at the centre
    # at distance σ = D/2 = 2 the Gaussian factor is exp(-1/2)
    assert math.isclose(float(weights[0, 6]), uniform * math.exp(-0.5), rel_tol=1e-6)
    with pytest.raises(ValueError, match="window must be a positive int"):
        gaussian_window_weights(scores, torch.tensor([4.0]), window=0)


def test_fully_masked_row_gives_zero_context(inputs):
    query, keys, _ = inputs
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[0] = True
    for attention in (AdditiveAttention(8, 8, 4), LuongAttention(8, 8, "dot")):
        context, weights = attention(query, keys, keys, mask)
        assert torch.isfinite(weights).all()
        assert (weights[1:] == 0).all() and (context[1:] == 0).all()


def test_gradients_reach_every_parameter(inputs):
    query, keys, mask = inputs
    for attention in (
        AdditiveAttention(8, 8, 4),
        LuongAttention(8, 8, "general"),
        LuongAttention(8, 8, "concat"),
        LuongAttention(8, 8, "general", window=2),
    ):
        context, _ = attention(torch.randn(3, 5, 8), keys, keys, mask)
        context.sum().backward()
        for name, parameter in attention.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_mismatched_mask_shape_names_both_shapes(inputs):
    query, keys, _ = inputs
    bad_mask = torch.ones(2, 6, dtype=torch.bool)
    for attention in (AdditiveAttention(8, 8, 4), LuongAttention(8, 8, "dot")):
        with pytest.raises(
            ValueError, match=r"mask of shape \(2, 6\) does not match keys of shape \(3, 6, 8\)"
        ):
            attention(query, keys, keys, bad_mask)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        AdditiveAttention(8, 8, 4)(query, keys, keys, torch.ones(3, 6))


def test_mismatched_batch_and_dimensions_are_named(inputs):
    query, keys, _ = inputs
    attention = AdditiveAttention(8, 8, 4)
    with pytest.raises(
        ValueError,
        match=r"query has batch size 2 but keys have batch size 3 .*\(2, 8\).*\(3, 6, 8\)",
    ):
        attention(query[:2], keys, keys)
    with pytest.raises(ValueError, match=r"keys have dimension 8 but the module expects key_dim=5"):
        AdditiveAttention(8, 5, 4)(query, keys, keys)
    with pytest.raises(ValueError, match=r"values must have shape .* matching keys \(3, 6, 8\)"):
        attention(query, keys, keys[:, :4])
    with pytest.raises(ValueError, match="the dot score needs query_dim == key_dim"):
        LuongAttention(8, 4, "dot")
    with pytest.raises(ValueError, match="score must be one of"):
        LuongAttention(8, 8, "cosine")


# --------------------------------------------------------------------------------------------------
# Check cells: the reference passes; each classic mistake is named
# --------------------------------------------------------------------------------------------------


def _additive(query, keys, W, U, v):
    return additive_scores(query, keys, W, U, v)


def _masked_weights(scores, source_lengths):
    return masked_softmax(scores, padding_mask(source_lengths, scores.shape[-1]), dim=-1)


def _bahdanau_step(
    previous_state, previous_embedding, encoder_states, source_mask, attention, cell
):
    context, weights = attention(previous_state, encoder_states, encoder_states, source_mask)
    state = cell(torch.cat([previous_embedding, context], dim=-1), previous_state)
    return state, context, weights


def _local_p(scores, centers, window, lengths):
    return gaussian_window_weights(scores, centers, window, lengths)


@pytest.mark.parametrize(
    "name, solution",
    [
        ("ex2_1_additive_score", _additive),
        ("ex2_2_masked_attention_weights", _masked_weights),
        ("ex2_3_bahdanau_step", _bahdanau_step),
        ("ex3_1_dot_score", dot_scores),
        ("ex3_2_general_score", general_scores),
        ("ex3_3_concat_score", concat_scores),
        ("ex3_4_local_p_weights", _local_p),
    ],
)
def test_reference_solutions_pass(name, solution, capsys):
    check(name, solution)
    out = capsys.readouterr().out
    assert f"{name}: passed" in out, out


def _fails(name, fn, *fragments):
    with pytest.raises(CheckFailed) as failure:
        check(name, fn)
    message = str(failure.value)
    for fragment in fragments:
        assert fragment in message, message


def test_additive_score_mistakes_are_named():
    _fails(
        "ex2_1_additive_score",
        lambda q, k, W, U, v: ((q @ W.T)[:, None] + k @ U.T) @ v,
        "forgot the tanh",
    )
    _fails(
        "ex2_1_additive_score",
        lambda q, k, W, U, v: torch.tanh(((q @ W.T)[:, None] + k @ U.T) @ v),
        "tanh goes inside",
    )
    _fails(
        "ex2_1_additive_score",
        lambda q, k, W, U, v: torch.softmax(additive_scores(q, k, W, U, v), -1),
        "raw scores",
    )
    _fails(
        "ex2_1_additive_score",
        lambda q, k, W, U, v: torch.tanh(q @ W.T + k @ U.T) @ v,
        "raised RuntimeError",
    )

    def crossed(q, k, W, U, v):
        if q.shape[0] != k.shape[1]:
            return additive_scores(q, k, W, U, v)
        return torch.tanh((q @ W.T)[None] + k @ U.T) @ v

    _fails("ex2_1_additive_score", crossed, "(query @ W.T)[:, None, :]")
    _fails("ex2_1_additive_score", lambda q, k, W, U, v: None, "did you forget to `return` it?")


def test_masked_weights_mistakes_are_named():
    name = "ex2_2_masked_attention_weights"
    _fails(name, lambda s, n: torch.softmax(s, dim=-1), "attending to padding")
    _fails(name, lambda s, n: torch.softmax(s, dim=0), "wrong axis")
    _fails(name, lambda s, n: masked_softmax(s, padding_mask(n, s.shape[-1]), dim=0), "wrong axis")
    _fails(name, lambda s, n: masked_softmax(s, ~padding_mask(n, s.shape[-1])), "inverted")
    _fails(
        name,
        lambda s, n: torch.softmax(s.masked_fill(~padding_mask(n, s.shape[-1]), 0), -1),
        "-inf",
    )
    _fails(
        name,
        lambda s, n: masked_softmax(s, torch.arange(s.shape[-1])[None] <= n[:, None]),
        "j < length",
    )

    def in_place(s, n):
        return torch.softmax(s.masked_fill_(~padding_mask(n, s.shape[-1]), float("-inf")), -1)

    _fails(name, in_place, "in place")


def test_bahdanau_step_mistakes_are_named():
    name = "ex2_3_bahdanau_step"

    def uses_new_state(previous_state, embedding, states, mask, attention, cell):
        # s_i from the previous context guess (zeros), then attention with s_i
        zeros = torch.zeros(states.shape[0], states.shape[-1])
        state = cell(torch.cat([embedding, zeros], dim=-1), previous_state)
        context, weights = attention(state, states, states, mask)
        return state, context, weights

    _fails(name, uses_new_state, "s_{i-1}")

    def ignores_mask(previous_state, embedding, states, mask, attention, cell):
        context, weights = attention(previous_state, states, states)
        return cell(torch.cat([embedding, context], dim=-1), previous_state), context, weights

    _fails(name, ignores_mask, "attending to padding")

    def stale_state(previous_state, embedding, states, mask, attention, cell):
        context, weights = attention(previous_state, states, states, mask)
        return previous_state, context, weights

    _fails(name, stale_state, "did not change")

    def swapped(previous_state, embedding, states, mask, attention, cell):
        context, weights = attention(previous_state, states, states, mask)
        return cell(torch.cat([context, embedding], dim=-1), previous_state), context, weights

    _fails(name, swapped, "[y_{i-1}; c_i]")
    _fails(name, lambda *args: (1, 2), "(state, context, weights)")


def test_luong_score_mistakes_are_named():
    _fails(
        "ex3_1_dot_score", lambda q, k: dot_scores(q, k) / math.sqrt(q.shape[-1]), "divided by √d"
    )
    _fails("ex3_1_dot_score", lambda q, k: torch.softmax(dot_scores(q, k), -1), "raw scores")
    _fails("ex3_1_dot_score", lambda q, k: (q[None] * k).sum(-1), "sentence b's query")
    _fails("ex3_2_general_score", lambda q, k, W: general_scores(q, k, W.T), "Wᵀ")
    _fails("ex3_2_general_score", lambda q, k, W: None, "return")
    _fails(
        "ex3_3_concat_score",
        lambda q, k, W, v: torch.cat([q[:, None].expand(-1, k.shape[1], -1), k], -1) @ W.T @ v,
        "forgot the tanh",
    )
    _fails(
        "ex3_3_concat_score",
        lambda q, k, W, v: (
            torch.tanh(torch.cat([k, q[:, None].expand(-1, k.shape[1], -1)], -1) @ W.T) @ v
        ),
        "reversed",
    )


def test_local_p_mistakes_are_named():
    name = "ex3_4_local_p_weights"

    def gaussian(centers, size, sigma):
        return torch.exp(-((torch.arange(float(size)) - centers[:, None]) ** 2) / (2 * sigma**2))

    def wide(s, p, D, n):
        inside = ((torch.arange(10.0) - p[:, None]).abs() <= D) & padding_mask(n, 10)
        return masked_softmax(s, inside) * gaussian(p, 10, D)

    def no_window(s, p, D, n):
        return masked_softmax(s, padding_mask(n, 10)) * gaussian(p, 10, D / 2)

    def renormalised(s, p, D, n):
        weights = gaussian_window_weights(s, p, D, n)
        return weights / weights.sum(-1, keepdim=True)

    _fails(name, wide, "σ = D / 2")
    _fails(name, no_window, "outside the window")
    _fails(name, renormalised, "renormalise")

    def log_inside(s, p, D, n):
        inside = ((torch.arange(10.0) - p[:, None]).abs() <= D) & padding_mask(n, 10)
        return masked_softmax(
            s - (torch.arange(10.0) - p[:, None]) ** 2 / (2 * (D / 2) ** 2), inside
        )

    _fails(name, log_inside, "renormalise")
    _fails(name, lambda s, p, D, n: gaussian_window_weights(s, p, D, None), "outside the window")


def test_checks_do_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check("ex2_3_bahdanau_step", _bahdanau_step)
    torch.testing.assert_close(torch.rand(3), expected)
