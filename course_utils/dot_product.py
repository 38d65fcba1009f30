"""Scaled dot-product attention in matrix form.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d) V

Shapes: queries (..., n, d), keys (..., m, d), values (..., m, d_v); leading batch and head
dimensions broadcast. Returns the output (..., n, d_v) and the weights (..., n, m).
Half-precision inputs are computed in float32 and the results cast back, like torch's CPU kernels.
"""

from __future__ import annotations

import math

import torch

from course_utils.softmax import masked_softmax

_HALF = (torch.float16, torch.bfloat16)


def check_qkv(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Raise a clear error when queries, keys and values cannot be attended together."""
    for name, tensor in (("queries", queries), ("keys", keys), ("values", values)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() < 2:
            raise ValueError(f"{name} must have shape (..., n, d), got {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise TypeError(f"{name} must be floating point, got dtype {tensor.dtype}")
    if queries.shape[-1] != keys.shape[-1]:
        raise ValueError(
            f"keys have d={keys.shape[-1]} but queries have d={queries.shape[-1]} "
            f"(queries {tuple(queries.shape)}, keys {tuple(keys.shape)})"
        )
    if keys.shape[-2] != values.shape[-2]:
        raise ValueError(
            f"keys and values must have the same number of positions, got keys "
            f"{tuple(keys.shape)} and values {tuple(values.shape)}"
        )
    if not queries.dtype == keys.dtype == values.dtype:
        raise TypeError(
            f"queries, keys and values must share a dtype, got {queries.dtype}, {keys.dtype}, "
            f"{values.dtype}"
        )


def scaled_dot_product_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d) V with a boolean mask (True = may attend). Returns (output, weights)."""
    check_qkv(queries, keys, values)
    input_dtype = queries.dtype
    if input_dtype in _HALF:
        # A raw fp16 dot product of 64 entries of 40 is 102400 > 65504 = max fp16: compute in fp32.
        queries, keys, values = queries.float(), keys.float(), values.float()
    d = queries.shape[-1]
    # s_ij = q_i · k_j / √d  — the scaling keeps var(s_ij) ≈ 1 when q, k have unit variance.
    scores = queries @ keys.transpose(-2, -1) / math.sqrt(d)
    weights = masked_softmax(scores, mask, dim=-1)
    # o_i = Σ_j α_ij v_j
    output = weights @ values
    return output.to(input_dtype), weights.to(input_dtype)
