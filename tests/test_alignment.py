"""Additive and Luong attention: formulas, masks, local-p windows, bad input."""

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
            ValueError,
            match=r"mask of shape \(2, 6\) does not broadcast to the weights of shape \(3, 6\); "
            r"a padding mask is \(batch, key positions\) = \(3, 6\)",
        ):
            attention(query, keys, keys, bad_mask)
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        AdditiveAttention(8, 8, 4)(query, keys, keys, torch.ones(3, 6))


def test_mismatched_batch_and_dimensions_are_named(inputs):
    query, keys, _ = inputs
    attention = AdditiveAttention(8, 8, 4)
    with pytest.raises(
        ValueError,
        match=r"query has batch=2 but keys have batch=3 \(keys \(3, 6, 8\), query \(2, 8\)\)",
    ):
        attention(query[:2], keys, keys)
    with pytest.raises(
        ValueError,
        match=r"keys must have shape \(batch, positions, key_dim=5\), got \(3, 6, 8\)",
    ):
        AdditiveAttention(8, 5, 4)(query, keys, keys)
    with pytest.raises(
        ValueError,
        match=r"values have positions=4 but keys have positions=6 \(keys \(3, 6, 8\), values",
    ):
        attention(query, keys, keys[:, :4])
    with pytest.raises(ValueError, match="the dot score needs query_dim == key_dim"):
        LuongAttention(8, 4, "dot")
    with pytest.raises(ValueError, match="score must be one of"):
        LuongAttention(8, 8, "cosine")
