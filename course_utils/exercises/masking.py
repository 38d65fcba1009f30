"""Visible checks for notebook 05 (masking). Masks are boolean, True = may attend."""

from __future__ import annotations

import math

import torch

from course_utils.checks import LearnerFunction, register
from course_utils.dot_product import scaled_dot_product_attention
from course_utils.masks import causal_mask, padding_mask


def _same_mask(actual, expected: torch.Tensor) -> bool:
    return (
        isinstance(actual, torch.Tensor)
        and actual.shape == expected.shape
        and bool((actual.bool() == expected).all())
    )


def _expect_bool_mask(learner: LearnerFunction, mask, shape: tuple, what: str) -> torch.Tensor:
    learner.expect_tensor(mask, shape=shape, what=what)
    learner.expect(
        mask.dtype == torch.bool,
        f"{what} should be a bool tensor (True = may attend), got dtype {mask.dtype}: "
        "compare with `<` / `>=` or call .bool(), a 0/1 float mask is a different convention",
    )
    return mask


@register("ex5_1_causal_mask", calls="make_causal_mask(n)")
def _check_causal_mask(learner: LearnerFunction) -> None:
    for n in (5, 1):
        expected = causal_mask(n)
        mask = learner(n)
        if isinstance(mask, torch.Tensor) and mask.shape == expected.shape:
            if n > 1 and _same_mask(mask, ~expected):
                learner.expect(
                    False,
                    "mask meaning inverted: True must mean 'may attend' (the diagonal and below); "
                    "you built the 'ignore' mask that torch.nn.MultiheadAttention's attn_mask uses",
                )
            if n > 1 and _same_mask(mask, expected.T):
                learner.expect(
                    False,
                    "this is the upper triangle: row i is query i, column j key j, and query i may "
                    "attend keys j <= i — use torch.tril",
                )
            if n > 1 and _same_mask(mask, expected.tril(-1)):
                learner.expect(
                    False,
                    "the diagonal is missing: each token may attend to itself (tril, not tril(-1))",
                )
        _expect_bool_mask(learner, mask, (n, n), f"make_causal_mask({n})")
        learner.expect(
            _same_mask(mask, expected),
            f"make_causal_mask({n}) should be True exactly where key j <= query i",
        )


@register("ex5_2_padding_mask", calls="make_padding_mask(lengths, max_len)")
def _check_padding_mask(learner: LearnerFunction) -> None:
    lengths = torch.tensor([3, 5, 1])
    expected = padding_mask(lengths, 6)
    mask = learner(lengths, 6)
    if isinstance(mask, torch.Tensor):
        if _same_mask(mask, expected.T):
            learner.expect(False, "mask is (max_len, batch): return (batch, max_len)")
        if _same_mask(mask, ~expected):
            learner.expect(
                False,
                "mask meaning inverted: True must mark the real tokens (may attend); you built "
                "key_padding_mask's convention, where True marks padding to ignore",
            )
        if _same_mask(mask, padding_mask(lengths + 1, 6)):
            learner.expect(
                False,
                "off by one: positions 0 … length-1 are real, so use position < length, not <=",
            )
    _expect_bool_mask(learner, mask, (3, 6), "make_padding_mask([3, 5, 1], 6)")
    learner.expect(
        _same_mask(mask, expected),
        "make_padding_mask([3, 5, 1], 6) should be True at positions 0 … length-1 of each row",
    )
    full = learner(torch.tensor([2, 2]), 2)
    _expect_bool_mask(learner, full, (2, 2), "make_padding_mask([2, 2], 2)")
    learner.expect(_same_mask(full, torch.ones(2, 2, dtype=torch.bool)), "no padding: all True")


@register("ex5_3_masked_attention", calls="masked_attention(queries, keys, values, mask)")
def _check_masked_attention(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(53)
    queries = torch.randn(2, 4, 8, generator=generator, dtype=torch.float64)
    keys = torch.randn(2, 5, 8, generator=generator, dtype=torch.float64)
    values = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    # Sequence 0: keys 0-2 real; sequence 1: all real, but query 3 may attend nothing.
    mask = padding_mask(torch.tensor([3, 5]), 5)[:, None, :].repeat(1, 4, 1)
    mask[1, 3] = False
    expected_output, expected_weights = scaled_dot_product_attention(queries, keys, values, mask)

    result = learner(queries, keys, values, mask)
    learner.expect(
        isinstance(result, tuple) and len(result) == 2, "return the pair (output, weights)"
    )
    output, weights = result
    learner.expect_tensor(weights, shape=(2, 4, 5), what="weights", allow_nan=True)
    learner.expect_tensor(output, shape=(2, 4, 3), what="output", allow_nan=True)
    weights, output = weights.detach().to(torch.float64), output.detach().to(torch.float64)
    partial_rows = mask.any(dim=-1)  # rows with at least one key to attend

    if torch.isnan(weights[~partial_rows]).any() or torch.isnan(output[~partial_rows]).any():
        learner.expect(
            False,
            "a query whose keys are all masked gives NaN: softmax of a row of -inf is 0/0. "
            "Set such rows to zero weights (e.g. torch.where(mask.any(-1, keepdim=True), w, 0))",
        )
    inverted = scaled_dot_product_attention(queries, keys, values, ~mask)[1]
    if torch.allclose(weights[partial_rows].nan_to_num(0.0), inverted[partial_rows], atol=1e-6):
        learner.expect(
            False,
            "mask meaning inverted: True = may attend, so fill the scores where mask is False "
            "(scores.masked_fill(~mask, -inf))",
        )
    learner.expect(
        bool((weights[partial_rows] * ~mask[partial_rows]).abs().max() < 1e-12),
        "masked keys got non-zero weight: attending to padding. Fill masked scores with -inf "
        "before the softmax",
    )
    row_sums = weights[partial_rows].sum(dim=-1)
    if (row_sums < 1 - 1e-6).any():
        learner.expect(
            False,
            "rows sum to less than 1: you zeroed the masked weights after the softmax without "
            "renormalising; mask the scores before the softmax instead",
        )
    if torch.allclose(weights[~partial_rows], torch.full_like(weights[~partial_rows], 0.2)):
        learner.expect(
            False,
            "a fully masked row got uniform weights 1/m: a finite fill value (-1e9, finfo.min) "
            "makes all masked keys equally likely; such rows must be all zeros",
        )
    unscaled = torch.softmax(
        (queries @ keys.transpose(-2, -1)).masked_fill(~mask, float("-inf")), dim=-1
    )
    if torch.allclose(weights[partial_rows], unscaled[partial_rows], atol=1e-6):
        learner.expect(False, "you forgot the 1/√d scaling of the scores (d = 8)")
    learner.expect_close(
        weights,
        expected_weights,
        "weights differ from softmax(Q Kᵀ / √d) over the allowed keys, zero rows where none is",
    )
    learner.expect_close(output, expected_output, "output differs: it is weights @ values")
    learner.expect(math.isfinite(float(output.abs().sum())), "output contains inf or NaN")


@register("ex5_4_combined_mask", calls="combined_mask(lengths, n)")
def _check_combined_mask(learner: LearnerFunction) -> None:
    lengths = torch.tensor([2, 4, 3])
    n = 4
    causal = causal_mask(n)
    keys_real = padding_mask(lengths, n)
    expected = causal[None, :, :] & keys_real[:, None, :]
    mask = learner(lengths, n)
    if isinstance(mask, torch.Tensor) and mask.shape == expected.shape:
        if _same_mask(mask, causal[None, :, :] | keys_real[:, None, :]):
            learner.expect(
                False,
                "you combined the masks with OR: a key may be attended only if it is in the past "
                "AND real, so use &",
            )
        if _same_mask(mask, causal[None, :, :] & keys_real[:, :, None]):
            learner.expect(
                False,
                "the padding mask is applied to the queries (rows): padding marks keys we may not "
                "attend, so broadcast it over the key axis, padding[:, None, :]",
            )
        if _same_mask(mask, causal.expand_as(expected)):
            learner.expect(
                False, "padding is missing: combine the causal mask with the key padding"
            )
        if _same_mask(mask, keys_real[:, None, :].expand_as(expected)):
            learner.expect(False, "the causal part is missing: query i may not attend keys j > i")
        if _same_mask(mask, ~expected):
            learner.expect(False, "mask meaning inverted: True must mean 'may attend'")
    _expect_bool_mask(learner, mask, (3, n, n), "combined_mask([2, 4, 3], 4)")
    learner.expect(
        _same_mask(mask, expected),
        "mask should be causal[None] & padding[:, None, :] — True where key j <= query i and key "
        "j is a real token",
    )
