"""The course's reference attention functions against torch's own, on random shapes, masks, dtypes.

Convention under test: boolean masks, True = may attend (as in F.scaled_dot_product_attention);
a query with no key left gets zero weights and a zero output.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from course_utils.attention import (
    causal_mask,
    masked_softmax,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positional_encoding,
    softmax,
)
from course_utils.positional import positional_frequencies

TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
# Tolerances per dtype: the targets say 1e-6 for float32.
TOLERANCE = {torch.float32: 1e-6, torch.float64: 1e-12}

# (batch dims, n queries, m keys, d, d_v)
SHAPES = [
    ((), 1, 1, 1, 1),
    ((), 5, 7, 8, 8),
    ((3,), 4, 6, 16, 5),
    ((2, 3), 5, 9, 4, 7),
    ((2, 4), 33, 33, 32, 32),
]
SHAPE_IDS = ["1x1", "5x7", "batch", "batch-heads", "square-33"]


def _random_qkv(batch, n, m, d, d_v, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(*batch, n, d, generator=generator, dtype=dtype)
    keys = torch.randn(*batch, m, d, generator=generator, dtype=dtype)
    values = torch.randn(*batch, m, d_v, generator=generator, dtype=dtype)
    return queries, keys, values


def _random_mask(shape, seed, keep_probability=0.6):
    """A random bool mask with at least one True per row (no fully masked rows)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(*shape, generator=generator) < keep_probability
    first_key = torch.zeros(shape, dtype=torch.bool)
    first_key[..., torch.randint(shape[-1], (1,), generator=generator)] = True
    return mask | first_key


def _masks_for(batch, n, m, seed):
    masks = {"none": None, "random": _random_mask((*batch, n, m), seed)}
    if n == m:
        masks["causal"] = causal_mask(n)
    if batch:
        lengths = torch.randint(
            1, m + 1, (batch[0],), generator=torch.Generator().manual_seed(seed)
        )
        key_padding = padding_mask(lengths, m)  # (B, m), True = real token
        masks["padding"] = key_padding.view(batch[0], *([1] * len(batch[1:])), 1, m)
    return masks


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention == torch.nn.functional.scaled_dot_product_attention


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize(("batch", "n", "m", "d", "d_v"), SHAPES, ids=SHAPE_IDS)
def test_sdpa_equals_torch_on_every_shape_and_mask(batch, n, m, d, d_v, dtype):
    queries, keys, values = _random_qkv(batch, n, m, d, d_v, dtype, seed=n * 100 + m)
    for name, mask in _masks_for(batch, n, m, seed=d).items():
        output, weights = scaled_dot_product_attention(queries, keys, values, mask)
        expected = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)
        assert output.dtype == dtype and output.shape == expected.shape
        assert torch.allclose(output, expected, atol=TOLERANCE[dtype], rtol=0), name
        scores = queries @ keys.transpose(-2, -1) / math.sqrt(d)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        expected_weights = torch.softmax(scores, dim=-1)
        assert torch.allclose(weights, expected_weights, atol=TOLERANCE[dtype], rtol=0), name


def test_sdpa_is_causal_equals_causal_mask():
    queries, keys, values = _random_qkv((2, 3), 6, 6, 8, 8, torch.float32, seed=1)
    output, weights = scaled_dot_product_attention(queries, keys, values, causal_mask(6))
    expected = F.scaled_dot_product_attention(queries, keys, values, is_causal=True)
    assert torch.allclose(output, expected, atol=1e-6, rtol=0)
    assert (weights.triu(1) == 0).all()


def test_fully_masked_rows_give_zeros_not_nan():
    queries, keys, values = _random_qkv((2,), 3, 4, 8, 5, torch.float32, seed=2)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of sequence 0 may attend nothing
    mask[1] = False  # sequence 1 has no key at all
    output, weights = scaled_dot_product_attention(queries, keys, values, mask)
    assert torch.isfinite(output).all() and torch.isfinite(weights).all()
    assert (weights[0, 1] == 0).all() and (output[0, 1] == 0).all()
    assert (weights[1] == 0).all() and (output[1] == 0).all()
    # Rows with keys left are untouched by the empty ones.
    partial = F.scaled_dot_product_attention(queries[:1], keys[:1], values[:1], mask[:1])
    assert torch.allclose(output[0, [0, 2]], partial[0, [0, 2]], atol=1e-6, rtol=0)

    # torch's behaviour, which the course documents in notebook 05:
    scores = (queries @ keys.transpose(-2, -1)).masked_fill(~mask, float("-inf"))
    assert torch.isnan(torch.softmax(scores, dim=-1)[1]).all(), "plain softmax of -inf rows is NaN"
    torch_output = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask)
    if TORCH_VERSION >= (2, 5):  # SDPA uses a "safe softmax" since torch 2.5 (pytorch#133882)
        assert (torch_output[1] == 0).all() and (torch_output[0, 1] == 0).all()
    else:
        assert torch.isnan(torch_output[1]).all()


def test_fully_masked_rows_have_zero_gradient_not_nan():
    queries, keys, values = _random_qkv((), 3, 4, 8, 5, torch.float64, seed=3)
    queries.requires_grad_(True)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1] = False
    output, _ = scaled_dot_product_attention(queries, keys, values, mask)
    output.sum().backward()
    assert torch.isfinite(queries.grad).all()
    assert (queries.grad[1] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
def test_large_logits_stay_finite_and_match_torch(dtype):
    scores = torch.tensor(
        [[1e4, -1e4, 0.0, 1e4 - 1.0], [-1e4, -1e4, -1e4, -1e4], [1e4, 1e4, 1e4, 1e4]], dtype=dtype
    )
    weights = softmax(scores)
    assert torch.isfinite(weights).all()
    assert torch.allclose(weights, torch.softmax(scores, dim=-1), atol=TOLERANCE[dtype], rtol=0)
    assert torch.allclose(weights[0], torch.tensor([0.7311, 0, 0, 0.2689], dtype=dtype), atol=1e-4)
    assert torch.allclose(weights[1], torch.full((4,), 0.25, dtype=dtype))

    mask = torch.tensor([[True, False, True, False]]).expand(3, 4)
    masked = masked_softmax(scores, mask)
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    assert torch.allclose(masked, expected, atol=TOLERANCE[dtype], rtol=0)
    assert masked[0, 0] == 1 and masked[0, 2] == 0  # e^(1e4 - 0) dominates completely

    # Through attention: ±1e4 logits from large queries.
    queries, keys, values = _random_qkv((2,), 4, 6, 8, 3, dtype, seed=4)
    queries = queries * 1e4 / (queries @ keys.transpose(-2, -1)).abs().amax()
    output, weights = scaled_dot_product_attention(queries * math.sqrt(8), keys, values)
    expected = F.scaled_dot_product_attention(queries * math.sqrt(8), keys, values)
    assert torch.isfinite(output).all()
    assert torch.allclose(output, expected, atol=TOLERANCE[dtype] * 10, rtol=0)


def test_fp16_inputs_are_computed_in_fp32_and_returned_in_fp16():
    generator = torch.Generator().manual_seed(5)
    scores = (torch.randn(4, 7, generator=generator) * 20).half()
    mask = _random_mask((4, 7), seed=5)
    mask[2] = False
    weights = masked_softmax(scores, mask)
    assert weights.dtype == torch.float16
    expected = torch.softmax(scores.float().masked_fill(~mask, float("-inf")), dim=-1)
    assert torch.allclose(weights[[0, 1, 3]].float(), expected[[0, 1, 3]], atol=1e-3, rtol=0)
    assert (weights[2] == 0).all()
    # ±1e4 is representable in fp16 (max 65504); exp() of it is not, so the upcast matters.
    large = torch.tensor([[1e4, 0.0, -1e4]], dtype=torch.float16)
    assert torch.equal(softmax(large), torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float16))

    queries, keys, values = (t.half() for t in _random_qkv((2,), 5, 6, 16, 4, torch.float32, 6))
    output, attention = scaled_dot_product_attention(queries, keys, values, causal_mask(6)[:5])
    assert output.dtype == torch.float16 and attention.dtype == torch.float16
    expected = F.scaled_dot_product_attention(
        queries.float(), keys.float(), values.float(), attn_mask=causal_mask(6)[:5]
    )
    assert torch.allclose(output.float(), expected, atol=5e-3, rtol=0)


def test_fp16_large_dot_products_do_not_overflow():
    queries = torch.full((1, 2, 64), 40.0, dtype=torch.float16)  # q·k = 64·1600 = 102400 > 65504
    keys = torch.full((1, 3, 64), 40.0, dtype=torch.float16)
    values = torch.randn(1, 3, 8, generator=torch.Generator().manual_seed(7)).half()
    output, _ = scaled_dot_product_attention(queries, keys, values)
    assert torch.isfinite(F.scaled_dot_product_attention(queries, keys, values)).all()
    assert torch.isfinite(output).all()


# --------------------------------------------------------------------------------------------
# masked_softmax, causal_mask, padding_mask against torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["fp32", "fp64"])
@pytest.mark.parametrize("shape", [(1,), (5,), (3, 4), (2, 3, 6), (2, 2, 3, 5)])
def test_masked_softmax_equals_torch_softmax(shape, dtype):
    generator = torch.Generator().manual_seed(len(shape))
    scores = torch.randn(*shape, generator=generator, dtype=dtype) * 5
    for dim in range(-len(shape), len(shape)):
        assert torch.allclose(
            softmax(scores, dim=dim), torch.softmax(scores, dim=dim), atol=TOLERANCE[dtype], rtol=0
        )
    mask = _random_mask(shape, seed=len(shape))
    expected = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    assert torch.allclose(masked_softmax(scores, mask), expected, atol=TOLERANCE[dtype], rtol=0)
    # A mask broadcast over leading dims gives the same as the expanded mask.
    row_mask = mask[(0,) * (len(shape) - 1)] if len(shape) > 1 else mask
    assert torch.equal(
        masked_softmax(scores, row_mask), masked_softmax(scores, row_mask.expand(shape))
    )


def test_masked_softmax_masked_entries_are_exactly_zero():
    scores = torch.tensor([[3.0, 1e4, -2.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    weights = masked_softmax(scores, mask)
    assert weights[0, 1] == 0 and weights.sum(dim=-1).tolist() == pytest.approx([1.0, 0.0])


@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_causal_mask_matches_torch(n):
    mask = causal_mask(n)
    assert mask.dtype == torch.bool and mask.shape == (n, n)
    assert torch.equal(mask, torch.ones(n, n, dtype=torch.bool).tril())
    # SDPA with our mask equals SDPA with is_causal=True.
    queries, keys, values = _random_qkv((1,), n, n, 4, 4, torch.float32, seed=n)
    assert torch.allclose(
        F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask),
        F.scaled_dot_product_attention(queries, keys, values, is_causal=True),
        atol=1e-6,
        rtol=0,
    )


def test_padding_mask_is_the_inverse_of_torch_key_padding_mask():
    lengths = torch.tensor([2, 5, 3])
    mask = padding_mask(lengths, 5)
    assert mask.tolist() == [
        [True, True, False, False, False],
        [True, True, True, True, True],
        [True, True, True, False, False],
    ]
    torch.manual_seed(8)
    module = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    x = torch.randn(3, 5, 8)
    with torch.no_grad():
        right, _ = module(x, x, x, key_padding_mask=~mask)  # torch: True = ignore
        wrong, wrong_weights = module(x, x, x, key_padding_mask=mask)
        via_attn_mask, _ = module(
            x, x, x, attn_mask=~mask[:, None, :].expand(3, 5, 5).repeat_interleave(2, 0)
        )
    assert torch.allclose(right, via_attn_mask, atol=1e-6)
    # Passing True = real to key_padding_mask attends to the padding only; the full-length
    # sequence has no key left at all, and torch gives NaN there.
    assert torch.isnan(wrong[1]).all()
    assert torch.allclose(wrong_weights[0][:, :2], torch.zeros(5, 2))


def test_padding_mask_edge_cases():
    assert padding_mask([0, 2], 3).tolist() == [[False] * 3, [True, True, False]]
    assert padding_mask([3]).shape == (1, 3)


# --------------------------------------------------------------------------------------------
# Bad input: errors name the argument and the shapes


def test_mismatched_d_between_queries_and_keys_is_named():
    queries, keys, values = torch.randn(2, 4, 3), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    with pytest.raises(
        ValueError, match=r"keys have d=4 but queries have d=3.*\(2, 4, 3\).*\(2, 5, 4\)"
    ):
        scaled_dot_product_attention(queries, keys, values)


def test_keys_and_values_with_different_lengths_are_named():
    with pytest.raises(
        ValueError,
        match=r"values have m=6 but keys have m=5 \(keys \(5, 4\), values \(6, 4\)\); "
        "keys and values must have the same number of positions",
    ):
        scaled_dot_product_attention(torch.randn(3, 4), torch.randn(5, 4), torch.randn(6, 4))


def test_mask_of_a_wrong_shape_is_named():
    queries, keys, values = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 4)
    with pytest.raises(
        ValueError,
        match=r"mask of shape \(3, 3\) does not broadcast to scores of shape \(2, 3, 5\)",
    ):
        scaled_dot_product_attention(queries, keys, values, causal_mask(3))
    with pytest.raises(TypeError, match=r"mask must be a bool tensor.*got dtype torch.float32"):
        scaled_dot_product_attention(queries, keys, values, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"mask of shape \(4,\) does not broadcast"):
        masked_softmax(torch.randn(2, 3), torch.ones(4, dtype=torch.bool))


def test_other_bad_inputs_are_named():
    with pytest.raises(
        TypeError, match="queries must be a floating-point tensor, got dtype torch.int64"
    ):
        scaled_dot_product_attention(
            torch.ones(2, 2, dtype=torch.long), torch.ones(2, 2), torch.ones(2, 2)
        )
    with pytest.raises(ValueError, match=r"n must be a positive int, got 0"):
        causal_mask(0)
    with pytest.raises(ValueError, match=r"max_len=2 is shorter than the longest length 3"):
        padding_mask([1, 3], 2)


# --------------------------------------------------------------------------------------------
# Self-attention properties asserted in notebooks 04 and 05


def _self_attention(x, weights, mask=None):
    query_weight, key_weight, value_weight = weights
    return scaled_dot_product_attention(x @ query_weight, x @ key_weight, x @ value_weight, mask)


def _projection_weights(d_model, d_k, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(d_model, d_k, generator=generator, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_self_attention_is_permutation_equivariant_without_positions(seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(9, 6, generator=generator, dtype=torch.float64)
    weights = _projection_weights(6, 4, seed)
    permutation = torch.randperm(9, generator=generator)
    output, attention = _self_attention(x, weights)
    permuted_output, permuted_attention = _self_attention(x[permutation], weights)
    # f(P x) = P f(x) for the outputs; the weights permute on both axes: P A Pᵀ.
    assert torch.allclose(permuted_output, output[permutation], atol=1e-12, rtol=0)
    assert torch.allclose(permuted_attention, attention[permutation][:, permutation], atol=1e-12)

    encoding = sinusoidal_positional_encoding(9, 6, dtype=torch.float64)
    with_positions, _ = _self_attention(x + encoding, weights)
    permuted_with_positions, _ = _self_attention(x[permutation] + encoding, weights)
    assert (permuted_with_positions - with_positions[permutation]).abs().max() > 1e-2


def test_causal_attention_future_tokens_cannot_change_past_outputs():
    generator = torch.Generator().manual_seed(9)
    x = torch.randn(2, 8, 6, generator=generator, dtype=torch.float64)
    weights = _projection_weights(6, 4, 9)
    output, _ = _self_attention(x, weights, causal_mask(8))
    for changed in range(8):
        perturbed = x.clone()
        perturbed[:, changed] += torch.randn(2, 6, generator=generator, dtype=torch.float64) * 10
        perturbed_output, _ = _self_attention(perturbed, weights, causal_mask(8))
        difference = (perturbed_output - output).abs().amax(dim=(0, 2))
        assert (difference[:changed] == 0).all(), f"token {changed} changed an earlier output"
        assert (difference[changed:] > 0).all()
        unmasked, _ = _self_attention(x, weights)
        unmasked_perturbed, _ = _self_attention(perturbed, weights)
        assert ((unmasked_perturbed - unmasked).abs().amax(dim=(0, 2)) > 0).all()


# --------------------------------------------------------------------------------------------
# Sinusoidal positional encoding


def test_sinusoidal_encoding_values():
    encoding = sinusoidal_positional_encoding(50, 16, dtype=torch.float64)
    assert encoding.shape == (50, 16) and encoding.dtype == torch.float64
    assert encoding[0].tolist() == [0.0, 1.0] * 8
    position, pair = 7, 3
    angle = position / 10000 ** (2 * pair / 16)
    assert encoding[position, 2 * pair] == pytest.approx(math.sin(angle), abs=1e-12)
    assert encoding[position, 2 * pair + 1] == pytest.approx(math.cos(angle), abs=1e-12)
    assert encoding.abs().max() <= 1.0
    odd = sinusoidal_positional_encoding(5, 7, dtype=torch.float64)  # the last cosine is dropped
    assert odd.shape == (5, 7)
    assert odd[4, 6] == pytest.approx(math.sin(4 / 10000 ** (6 / 7)), abs=1e-12)
    assert sinusoidal_positional_encoding(3, 4, dtype=torch.float16).dtype == torch.float16


def test_sinusoidal_encoding_shift_is_a_rotation():
    """PE[pos + k] = R_k PE[pos]: each (sin, cos) pair turns by the angle k·ω_i."""
    encoding = sinusoidal_positional_encoding(20, 8, dtype=torch.float64)
    shift = 3
    rotated = torch.empty_like(encoding)
    angle = shift * positional_frequencies(8)
    sines, cosines = encoding[:, 0::2], encoding[:, 1::2]
    rotated[:, 0::2] = sines * torch.cos(angle) + cosines * torch.sin(angle)  # sin(a + b)
    rotated[:, 1::2] = cosines * torch.cos(angle) - sines * torch.sin(angle)  # cos(a + b)
    assert torch.allclose(rotated[:-shift], encoding[shift:], atol=1e-12)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0, 4), "n must be a positive int, got 0"),
        ((4, 0), "d must be a positive int, got 0"),
        ((4, 2.5), "d must be a positive int, got 2.5"),
    ],
)
def test_sinusoidal_encoding_bad_input(arguments, message):
    with pytest.raises(ValueError, match=message):
        sinusoidal_positional_encoding(*arguments)
    with pytest.raises(ValueError, match="base must be a number > 1"):
        sinusoidal_positional_encoding(3, 4, base=1.0)
