"""Scaled dot-product attention in matrix form.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d) V

Shapes: queries (..., n, d), keys (..., m, d), values (..., m, d_v); leading batch and head
dimensions broadcast. Returns the output (..., n, d_v) and the weights (..., n, m).
Half-precision inputs are computed in float32 and the results cast back, like torch's CPU kernels.
"""

from __future__ import annotations

import math

import torch

from course_utils.helpers.validation import check_qkv
from course_utils.softmax import masked_softmax

__all__ = ["check_qkv", "scaled_dot_product_attention"]

_HALF = (torch.float16, torch.bfloat16)


def scaled_dot_product_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d) V with a boolean mask (True = may attend). Returns (output, weights)."""
    check_qkv(queries, keys, values)  # (..., n, d), (..., m, d), (..., m, d_v); the mask: below
    input_dtype = queries.dtype
    if input_dtype in _HALF:
        # A raw fp16 dot product of 64 entries of 40 is 102400 > 65504 = max fp16: compute in fp32.
        queries, keys, values = queries.float(), keys.float(), values.float()
    d = queries.shape[-1]
    # s_ij = q_i · k_j / √d  — the scaling keeps var(s_ij) ≈ 1 when q, k have unit variance.
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(d)
    weights = masked_softmax(scores, mask, dim=-1)  # α_ij = softmax_j(s_ij) over allowed keys
    output = weights @ values  # o_i = Σ_j α_ij v_j
    return output.to(input_dtype), weights.to(input_dtype)
