"""Attention weights from the log-sum-exp: what a fused kernel does not return, recomputed exactly.

Flash attention (``course_utils.flash``, ``torch.nn.functional.scaled_dot_product_attention``)
returns the output and never the (n × n) weights. But the forward pass keeps one number per query
row, the log-sum-exp L_i = log Σ_j exp(s_ij), and that is all the softmax needs:

    p_ij = exp(s_ij) / Σ_k exp(s_ik) = exp(s_ij − L_i),    s_ij = q_i · k_j / √d.

So any row of the weight matrix can be recomputed from Q, K and L alone, one tile of keys at a time,
with no second pass over the row and no maximum to find: L already is the normaliser. The backward
pass does exactly this for every tile (``flash._backward``); :func:`weights_from_lse` does it for the
rows someone wants to look at. The memory is the output itself (rows × n_k) plus one tile of
scores, however long the sequence.

``course_utils.flash`` exports :func:`weights_from_lse`; it lives here because it needs nothing of
the tiled forward but its log-sum-exp.
"""

from __future__ import annotations

import math
import operator

import torch

from course_utils.helpers.validation import require_dtype, require_same_dtype, require_shapes

WEIGHTS_BLOCK = 512  # rows and keys per tile: a 512 × 512 float32 tile is 1 MiB


def _query_rows(rows, n_q: int, device) -> torch.Tensor:
    """``rows`` (None, a sequence of ints or a 1-D integer tensor) as a 1-D long tensor in [0, n_q)."""
    if rows is None:
        return torch.arange(n_q, device=device)
    if isinstance(rows, torch.Tensor):
        if rows.dim() != 1 or rows.dtype.is_floating_point or rows.dtype == torch.bool:
            raise TypeError(
                "rows must be a 1-D integer tensor of query indices, got a "
                f"{rows.dtype} tensor of shape {tuple(rows.shape)}"
            )
        indices = rows.to(device=device, dtype=torch.long)
    else:
        try:
            if isinstance(rows, (str, bytes)) or any(isinstance(row, bool) for row in rows):
                raise TypeError
            indices = torch.tensor([operator.index(row) for row in rows], dtype=torch.long)
        except TypeError:
            raise TypeError(
                f"rows must be None, a sequence of ints or a 1-D integer tensor, got {rows!r}"
            ) from None
        indices = indices.to(device)
    outside = indices[(indices < 0) | (indices >= n_q)]
    if len(outside):
        raise ValueError(
            f"rows must be query indices in [0, n_q={n_q}), got {outside[0].item()} "
            f"({len(outside)} of the {len(indices)} rows are out of range)"
        )
    return indices


def weights_from_lse(
    q: torch.Tensor,
    k: torch.Tensor,
    lse: torch.Tensor,
    causal: bool = False,
    rows=None,
) -> torch.Tensor:
    """The exact softmax weights of the chosen query rows, recomputed tile by tile from the lse.

    q (..., n_q, d), k (..., n_k, d) and lse (..., n_q), the log-sum-exp the forward pass saved
    (``flash.flash_attention_forward`` returns it). ``rows``: query indices (a sequence of ints or a
    1-D integer tensor, each in [0, n_q)), or None for every row. ``causal`` must be what the
    forward pass used: query i sees key j iff j <= i. Returns (..., len(rows), n_k) in q's dtype
    (float16 and bfloat16 are computed in float32); masked pairs are 0, every row sums to 1.
    Memory: the output plus one 512 × 512 tile of scores per leading (batch, head) slice.
    """
    require_shapes(
        ("q", q, "(*batch, n_q, d)"),
        ("k", k, "(*batch, n_k, d)"),
        ("lse", lse, "(*batch, n_q)"),
        meanings={"n_q": "number of queries", "d": "feature size", "batch": "leading dimensions"},
    )
    require_dtype("floating-point", q=q, k=k, lse=lse)
    require_same_dtype(q=q, k=k)
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    n_q, n_k = q.shape[-2], k.shape[-2]
    query_rows = _query_rows(rows, n_q, q.device)
    compute_dtype = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
    block = WEIGHTS_BLOCK
    scale = 1.0 / math.sqrt(q.shape[-1])
    weights = torch.zeros(*q.shape[:-2], len(query_rows), n_k, dtype=compute_dtype, device=q.device)
    for row_start in range(0, len(query_rows), block):
        chosen = query_rows[row_start : row_start + block]  # the query indices of this row block
        queries = q[..., chosen, :].to(compute_dtype)  # Q_rows
        row_lse = lse[..., chosen, None].to(compute_dtype)  # L_i, as a column
        # A row that saw no key at all has L = −∞ (and only −∞ scores): shift by 0, giving 0, never NaN.
        row_lse = torch.where(torch.isfinite(row_lse), row_lse, torch.zeros_like(row_lse))
        for k_start in range(0, n_k, block):
            keys = k[..., k_start : k_start + block, :].to(compute_dtype)  # K_j
            scores = queries @ keys.transpose(-2, -1) * scale  # S = Q_rows K_jᵀ / √d
            if causal:  # s_ij = −∞ where key j comes after query i
                key_positions = torch.arange(k_start, k_start + keys.shape[-2], device=q.device)
                scores = scores.masked_fill(key_positions[None, :] > chosen[:, None], -math.inf)
            # P = exp(S − L): the softmax, normalised by the saved log-sum-exp
            weights[
                ..., row_start : row_start + len(chosen), k_start : k_start + keys.shape[-2]
            ] = torch.exp(scores - row_lse)
    return weights.to(q.dtype)


__all__ = ["WEIGHTS_BLOCK", "weights_from_lse"]
