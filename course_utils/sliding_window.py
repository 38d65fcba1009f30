"""Sliding-window attention (Beltagy et al., 2020, "Longformer"; Mistral 7B, 2023).

Causal attention lets query i see every key j <= i: n(n + 1)/2 scores, quadratic in n. A sliding
window of w keys lets it see only the last w positions,

    M_ij = (i − w < j <= i)                         a band of width w below the diagonal

so each query has at most w scores and the whole layer costs n · w: linear in n at fixed w.
Stacking L such layers still lets information travel L · (w − 1) positions back.

The mask alone saves nothing: masked naive attention still computes all n² scores and then throws
most away. The saving comes from never computing them. :func:`banded_flash_attention` is the tiled
attention of notebook 07 (``course_utils.flash``) visiting only the tiles that touch the band:
for a query block, the key blocks from the one holding its oldest visible key up to the diagonal,
a number that depends on w and the block size but not on n.

Attention sinks (Xiao et al., 2024, "StreamingLLM"): a window that also keeps the first s positions,

    M_ij = (j <= i) and (i − w < j or j < s)          :func:`sink_window_mask`

because trained language models park much of their attention on the first tokens, whatever they
hold; evicting them from the cache changes every later softmax (notebook 13).
"""

from __future__ import annotations

import math

import torch

from course_utils.flash import (
    TILE_FULL,
    TILE_PARTIAL,
    TILE_SKIP,
    check_flash_inputs,
    in_compute_dtype,
)
from course_utils.helpers.validation import require_positive_int


def sliding_window_mask(
    n: int, window: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(n, n) bool: query i may attend key j iff i − window < j <= i (itself and window − 1 before).

    ``window >= n`` gives the causal mask; ``window = 1`` lets each position see only itself.
    """
    require_positive_int("n", n)
    require_positive_int("window", window, "how many keys each query sees, itself included")
    return band_mask(0, n, 0, n, window, device)


def sink_window_mask(
    n: int, window: int, sinks: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(n, n) bool: the sliding window plus the first ``sinks`` positions (StreamingLLM's cache).

    Query i may attend key j iff j <= i and (i − window < j or j < sinks): the window of
    :func:`sliding_window_mask`, and the attention sinks (Xiao et al., 2024), kept for every later
    query. ``sinks = 0`` gives the plain window.
    """
    require_positive_int("n", n)
    require_positive_int("window", window, "how many recent keys each query sees, itself included")
    if isinstance(sinks, bool) or not isinstance(sinks, int) or sinks < 0:
        raise ValueError(
            f"sinks must be an int >= 0 (how many first positions stay), got {sinks!r}"
        )
    query_positions = torch.arange(n, device=device)[:, None]  # i
    key_positions = torch.arange(n, device=device)[None, :]  # j
    is_sink = key_positions < sinks  # j < sinks: the first tokens, kept
    in_window = key_positions > query_positions - window  # i − window < j
    return (key_positions <= query_positions) & (in_window | is_sink)  # never the future


def band_mask(q_start: int, q_stop: int, k_start: int, k_stop: int, window: int, device=None):
    """(rows, cols) bool for queries [q_start, q_stop) × keys [k_start, k_stop): i − window < j <= i."""
    query_positions = torch.arange(q_start, q_stop, device=device)[:, None]  # i
    key_positions = torch.arange(k_start, k_stop, device=device)[None, :]  # j
    return (key_positions <= query_positions) & (key_positions > query_positions - window)


def band_tile_kind(q_start: int, q_stop: int, k_start: int, k_stop: int, window: int) -> str:
    """'skip', 'full' or 'partial' for queries [q_start, q_stop) × keys [k_start, k_stop) in the band.

    Query i sees key j iff i − window < j <= i. A tile is skipped when its first key is after its
    last query (the future) or its last key is too old even for its first query; it is full when
    every key is at or before the first query and recent enough for the last one.
    """
    if k_start > q_stop - 1 or k_stop - 1 <= q_start - window:
        return TILE_SKIP
    if k_stop - 1 <= q_start and k_start > q_stop - 1 - window:
        return TILE_FULL
    return TILE_PARTIAL


def band_key_blocks(q_start: int, q_stop: int, block: int, window: int) -> range:
    """Indices of the key blocks a query block [q_start, q_stop) needs, the diagonal one first.

    From the block of key q_stop − 1 (the newest any of these queries sees) back to the block of key
    q_start − window + 1 (the oldest): at most ⌈(window − 1) / block⌉ + 1 blocks, whatever n is.
    """
    newest = (q_stop - 1) // block
    oldest = max(0, q_start - window + 1) // block
    return range(newest, oldest - 1, -1)


def merge_tile(state, scores, values):
    """Fold a tile of scores S (rows, cols) and its values V into its rows' running (m, l, acc).

    The online softmax of notebook 07, one tile at a time. ``state`` is (None, None, None) before
    the first tile. Tiles come newest first, so m is finite after the diagonal tile (each query sees
    itself); a row the band hides entirely in a later tile has scores −∞ and gets e^(−∞ − m') = 0.
    """
    row_max, row_sum, acc = state
    tile_max = scores.amax(dim=-1, keepdim=True)  # rowmax S
    if row_max is None:  # the first tile: m' = rowmax S, l' = Σ e^(S − m'), acc' = e^(S − m') V
        weights = torch.exp(scores - tile_max)  # e^(S − m')
        return tile_max, weights.sum(dim=-1, keepdim=True), weights @ values
    new_max = torch.maximum(row_max, tile_max)  # m' = max(m, rowmax S)
    weights = torch.exp(scores - new_max)  # e^(S − m')
    rescale = torch.exp(row_max - new_max)  # e^(m − m')
    tile_sum = weights.sum(dim=-1, keepdim=True)  # Σ e^(S − m')
    row_sum = row_sum * rescale + tile_sum  # l' = l·e^(m − m') + Σ e^(S − m')
    acc = acc * rescale + weights @ values  # acc' = acc·e^(m − m') + e^(S − m') V
    return new_max, row_sum, acc


def banded_flash_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, block: int = 128
) -> torch.Tensor:
    """Causal attention over a sliding window of ``window`` keys, computing only the band's tiles.

    q, k (..., n, d) and v (..., n, d_v), the same n (self-attention). Equal to masked attention
    with :func:`sliding_window_mask`; each query block of ``block`` rows visits only
    :func:`band_key_blocks`, so the time grows like n · window, not n².
    """
    require_positive_int("window", window, "how many keys each query sees, itself included")
    require_positive_int("block", block)
    check_flash_inputs(q, k, v, causal=True)
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"q and k must have the same length n (self-attention), got q {tuple(q.shape)}, "
            f"k {tuple(k.shape)}"
        )
    n, input_dtype = q.shape[-2], q.dtype
    q, k, v = in_compute_dtype(q), in_compute_dtype(k), in_compute_dtype(v)  # fp16 -> fp32
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype, device=q.device)
    for q_start in range(0, n, block):
        q_stop = min(q_start + block, n)
        queries = q[..., q_start:q_stop, :] * scale  # Q_i / √d
        state = (None, None, None)  # (m, l, acc) before any key
        for k_index in band_key_blocks(q_start, q_stop, block, window):
            k_start, k_stop = k_index * block, min(k_index * block + block, n)
            scores = queries @ k[..., k_start:k_stop, :].transpose(-2, -1)  # S = Q_i K_jᵀ / √d
            if band_tile_kind(q_start, q_stop, k_start, k_stop, window) == TILE_PARTIAL:
                visible = band_mask(q_start, q_stop, k_start, k_stop, window, q.device)
                scores = scores.masked_fill(~visible, -math.inf)  # s_ij = −∞ outside the band
            state = merge_tile(state, scores, v[..., k_start:k_stop, :])
        row_max, row_sum, acc = state
        out[..., q_start:q_stop, :] = acc / row_sum  # O_i = acc / l
    return out.to(input_dtype)


__all__ = [
    "band_key_blocks",
    "band_mask",
    "band_tile_kind",
    "banded_flash_attention",
    "merge_tile",
    "sink_window_mask",
    "sliding_window_mask",
]
