"""Visible checks for notebook 06 (multi-head attention)."""

from __future__ import annotations

import math

import torch

from course_utils.checks import LearnerFunction, register
from course_utils.dot_product import scaled_dot_product_attention
from course_utils.multihead import merge_heads, split_heads


def _equal(actual, expected: torch.Tensor, atol: float = 1e-6) -> bool:
    return (
        isinstance(actual, torch.Tensor)
        and actual.shape == expected.shape
        and torch.allclose(actual.detach().to(expected.dtype), expected, atol=atol, rtol=1e-5)
    )


def _split_without_transpose(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The classic mistake: the right shape, but heads cut across positions."""
    batch, length, embed_dim = x.shape
    return x.reshape(batch, num_heads, length, embed_dim // num_heads)


@register("ex6_1_split_heads", calls="split_heads(x, num_heads)")
def _check_split_heads(learner: LearnerFunction) -> None:
    # batch 2, n = 3 positions, embed_dim 8, 2 heads of 4: n ≠ H so shape mistakes show.
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).reshape(2, 3, 8)
    expected = split_heads(x, 2)
    heads = learner(x, 2)
    if isinstance(heads, torch.Tensor) and tuple(heads.shape) == (2, 3, 2, 4):
        learner.expect(
            False,
            "shape (batch, n, heads, d_h): after the view, transpose the position and head axes "
            "to get (batch, heads, n, d_h)",
        )
    learner.expect_tensor(heads, shape=(2, 2, 3, 4), what="split_heads(x, 2) of a (2, 3, 8) x")
    if _equal(heads, _split_without_transpose(x, 2)):
        learner.expect(
            False,
            "heads split in the wrong order: x.view(B, H, n, d_h) cuts the flat (n · E) memory "
            "into H blocks, mixing positions into heads. Use x.view(B, n, H, d_h).transpose(1, 2)",
        )
    strided = x.reshape(2, 3, 4, 2).permute(0, 3, 1, 2)  # head h gets features h, h+H, h+2H, …
    if _equal(heads, strided):
        learner.expect(
            False,
            "head h should get the consecutive features h·d_h … (h+1)·d_h - 1, not every H-th "
            "feature: view the last axis as (H, d_h), not (d_h, H)",
        )
    learner.expect_close(
        heads,
        expected,
        "head h should hold features h·d_h … (h+1)·d_h - 1 of every position",
        atol=0.0,
        rtol=0.0,
    )
    four_heads = learner(x, 4)
    if isinstance(four_heads, torch.Tensor) and tuple(four_heads.shape) == (2, 2, 3, 4):
        learner.expect(False, "split_heads(x, 4) gave 2 heads: use the num_heads argument")
    learner.expect_tensor(four_heads, shape=(2, 4, 3, 2), what="split_heads(x, 4)")
    learner.expect_close(
        four_heads, split_heads(x, 4), "wrong with num_heads=4: use the num_heads argument"
    )


@register("ex6_2_merge_heads", calls="merge_heads(x)")
def _check_merge_heads(learner: LearnerFunction) -> None:
    heads = torch.arange(2 * 2 * 3 * 4, dtype=torch.float32).reshape(2, 2, 3, 4)  # B, H, n, d_h
    expected = merge_heads(heads)
    merged = learner(heads)
    learner.expect_tensor(merged, shape=(2, 3, 8), what="merge_heads of a (2, 2, 3, 4) tensor")
    if _equal(merged, heads.reshape(2, 3, 8)):
        learner.expect(
            False,
            "you reshaped (B, H, n, d_h) straight to (B, n, E): transpose heads and positions "
            "first, x.transpose(1, 2).reshape(B, n, H · d_h)",
        )
    learner.expect_close(
        merged,
        expected,
        "position i should be the concatenation [head_0[i], head_1[i], …]",
        atol=0.0,
        rtol=0.0,
    )
    x = torch.randn(3, 5, 12, generator=torch.Generator().manual_seed(62))
    learner.expect_close(
        learner(split_heads(x, 3)), x, "merge_heads(split_heads(x, 3)) should give x back"
    )


def _reference_multi_head(query, key, value, weights, num_heads, mask=None, scale_dim=None):
    query_weight, key_weight, value_weight, output_weight = weights
    queries = split_heads(query @ query_weight.T, num_heads)
    keys = split_heads(key @ key_weight.T, num_heads)
    values = split_heads(value @ value_weight.T, num_heads)
    if scale_dim is not None:  # rescale so that the 1/√d_h inside becomes 1/√scale_dim
        queries = queries * math.sqrt(queries.shape[-1] / scale_dim)
    heads, head_weights = scaled_dot_product_attention(queries, keys, values, mask)
    return merge_heads(heads) @ output_weight.T, head_weights


@register(
    "ex6_3_multi_head_attention",
    calls="multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask)",
)
def _check_multi_head_attention(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(63)
    batch, n, m, embed_dim, num_heads = 2, 4, 5, 12, 3
    query = torch.randn(batch, n, embed_dim, generator=generator, dtype=torch.float64)
    key = torch.randn(batch, m, embed_dim, generator=generator, dtype=torch.float64)
    value = torch.randn(batch, m, embed_dim, generator=generator, dtype=torch.float64)
    projection_weights = [
        torch.randn(embed_dim, embed_dim, generator=generator, dtype=torch.float64)
        / math.sqrt(embed_dim)
        for _ in range(4)
    ]
    expected_output, expected_weights = _reference_multi_head(
        query, key, value, projection_weights, num_heads
    )

    result = learner(query, key, value, *projection_weights, num_heads, None)
    learner.expect(
        isinstance(result, tuple) and len(result) == 2, "return the pair (output, weights)"
    )
    output, weights = result
    if isinstance(weights, torch.Tensor) and tuple(weights.shape) == (batch, n, m):
        learner.expect(
            False,
            "weights have shape (batch, n, m): return the per-head weights (batch, heads, n, m), "
            "do not average them over heads",
        )
    learner.expect_tensor(weights, shape=(batch, num_heads, n, m), what="weights (B, H, n, m)")
    learner.expect_tensor(output, shape=(batch, n, embed_dim), what="output (B, n, E)")

    transposed = [weight.T for weight in projection_weights]
    known_mistakes = [
        (
            _reference_multi_head(query, key, value, transposed, num_heads)[1],
            "projections use x @ W: nn.Linear's convention (used here) is y = x @ W.T",
        ),
        (
            _reference_multi_head(
                query, key, value, projection_weights, num_heads, scale_dim=embed_dim
            )[1],
            "you scaled by √embed_dim (√12): each head's scores are scaled by √d_h, d_h = E / H = 4",
        ),
    ]
    for wrong_weights, message in known_mistakes:
        if _equal(weights, wrong_weights):
            learner.expect(False, message)
    wrong_order = scaled_dot_product_attention(
        _split_without_transpose(query @ projection_weights[0].T, num_heads),
        _split_without_transpose(key @ projection_weights[1].T, num_heads),
        _split_without_transpose(value @ projection_weights[2].T, num_heads),
    )[1]
    if _equal(weights, wrong_order):
        learner.expect(
            False,
            "heads split in the wrong order: view (B, n, H, d_h) then transpose(1, 2), "
            "not view(B, H, n, d_h)",
        )
    learner.expect_close(
        weights,
        expected_weights,
        "per-head weights differ: Q = split_heads(query @ W_q.T, H), same for K; "
        "weights = softmax(Q Kᵀ / √d_h)",
    )
    without_output_projection = merge_heads(
        scaled_dot_product_attention(
            split_heads(query @ projection_weights[0].T, num_heads),
            split_heads(key @ projection_weights[1].T, num_heads),
            split_heads(value @ projection_weights[2].T, num_heads),
        )[0]
    )
    if _equal(output, without_output_projection):
        learner.expect(False, "the output projection is missing: return merge_heads(heads) @ W_o.T")
    learner.expect_close(
        output,
        expected_output,
        "weights are right but the output is not: merge_heads(weights @ V) @ W_o.T",
    )

    mask = torch.ones(n, m, dtype=torch.bool).tril()  # query i may attend keys 0 … i
    masked_output, masked_weights = learner(query, key, value, *projection_weights, num_heads, mask)
    expected_masked_output, expected_masked_weights = _reference_multi_head(
        query, key, value, projection_weights, num_heads, mask
    )
    learner.expect_tensor(masked_weights, shape=(batch, num_heads, n, m), what="masked weights")
    if _equal(masked_weights, expected_weights):
        learner.expect(False, "the mask is ignored: pass it to the attention of every head")
    learner.expect(
        bool((masked_weights.detach() * ~mask).abs().max() < 1e-12),
        "weights on masked keys are not zero: True = may attend; did you invert the mask?",
    )
    learner.expect_close(
        masked_weights, expected_masked_weights, "masked weights differ from the reference"
    )
    learner.expect_close(masked_output, expected_masked_output, "masked output differs")
