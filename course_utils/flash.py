"""Flash attention, as notebook 07 teaches it: exact attention without the n × n score matrix.

Naive attention (:func:`naive_attention`) writes the whole score matrix S = Q Kᵀ / √d (n × n per
head) to memory, reads it back for the softmax, writes the weights and reads them again for P V.
Flash attention (Dao et al., 2022) cuts Q into blocks of queries and K, V into blocks of keys,
and streams the key blocks past each query block with an *online softmax*. For each query row it
keeps

* the running maximum      m   = max_j s_j             (so that exp never overflows),
* the running normaliser   l   = Σ_j exp(s_j − m),
* the running output       acc = Σ_j exp(s_j − m) v_j,

and when a new tile raises the maximum from m to m' it rescales l and acc by exp(m − m'). After
the last tile, o = acc / l: exactly softmax(S) V, up to rounding. Only one tile of scores exists
at a time, so the extra memory is O(n · d), not O(n²).

This module is the algorithm written to be read beside the notebook, one equation per line:

* :func:`online_softmax_stats` — the running (m, l) of a score matrix, in one pass over blocks;
* :func:`tile_sizes` — the tile sizes every tiled attention of the course uses;
* :func:`tile_kind`, :func:`tile_schedule`, :func:`count_tiles` — which tiles a causal mask lets
  us skip (every key after every query), compute fully, or compute with a mask (the diagonal);
* :func:`flash_attention_forward` — the tiled forward pass, returning (out, lse), with an
  optional callback after every tile (the notebook counts tiles with it, the widget replays them);
* :func:`flash_attention` — differentiable: the backward pass recomputes each tile's
  probabilities from the saved log-sum-exp L_i = m_i + log l_i instead of storing them;
* :func:`weights_from_lse` (from ``flash_weights``) — the same recomputation for the rows of the
  weight matrix someone wants to see, which a fused kernel never returns.

``course_utils.flash_fast`` computes the same thing faster on a CPU (lazy rescaling, a bound that
skips the row maximum, diagonal strips, reused buffers); it is tested equal to this module, and
the benchmark and the notebook's timings use it.

Shapes are ``(..., n, d)``: leading batch and head dimensions, equal for queries, keys and values.
Causal masking is aligned top-left, like ``torch.nn.functional.scaled_dot_product_attention(
is_causal=True)``: query i may attend key j iff j <= i. float16 and bfloat16 inputs are computed
in float32 and the result is cast back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_utils.dot_product import check_qkv
from course_utils.flash_weights import weights_from_lse
from course_utils.helpers.validation import check_block_size

DEFAULT_BLOCK_Q = 512
DEFAULT_BLOCK_K = 512
GPU_KERNEL_BLOCK = 64  # the Triton kernel's default tile side (flash_triton.py)

TILE_FULL = "full"  # every key in the tile is visible to every query in it
TILE_PARTIAL = "partial"  # on the causal diagonal: some pairs are masked
TILE_SKIP = "skip"  # every key comes after every query: nothing to compute

_UPCAST = (torch.float16, torch.bfloat16)
_SUPPORTED = (torch.float32, torch.float64, *_UPCAST)


def naive_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False
) -> torch.Tensor:
    """Textbook attention softmax(Q Kᵀ / √d) V, with the full (..., n_q, n_k) matrices in memory.

    This is what flash attention replaces (and what the benchmark calls ``naive``).
    """
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)  # S = Q Kᵀ / √d
    if causal:  # s_ij = −∞ where key j comes after query i
        future = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device).triu_(1)
        scores = scores.masked_fill(future, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # P = softmax(S), (..., n_q, n_k) again
    return weights @ v  # O = P V


@dataclass(frozen=True)
class Tile:
    """One (query block, key block) pair of the score matrix and what a causal mask makes of it."""

    q_index: int
    k_index: int
    q_start: int
    q_stop: int
    k_start: int
    k_stop: int
    kind: str


@dataclass
class TileStep:
    """What :func:`flash_attention_forward` passes to ``on_tile`` after computing one tile.

    ``row_max`` and ``row_sum`` are the running m and l = Σ_j exp(s_j − m) of the tile's query
    rows, shape (..., rows), right after the tile was merged; ``step`` counts computed tiles.
    With the final log-sum-exp L, l · exp(m − L) is the share of the row's softmax mass seen so far.
    """

    step: int
    tile: Tile
    row_max: torch.Tensor
    row_sum: torch.Tensor


OnTile = Callable[[TileStep], None]  # what flash_attention_forward calls after each computed tile


def tile_kind(q_start: int, q_stop: int, k_start: int, k_stop: int, causal: bool) -> str:
    """'skip', 'full' or 'partial' for the tile of queries [q_start, q_stop) × keys [k_start, k_stop).

    With the causal rule (query i sees key j iff j <= i) a tile is skipped when its first key comes
    after its last query, and fully visible when its last key is at or before its first query.
    """
    if not causal:
        return TILE_FULL
    if k_start > q_stop - 1:  # first key after the last query: all pairs masked
        return TILE_SKIP
    if k_stop - 1 <= q_start:  # last key at or before the first query: no pair masked
        return TILE_FULL
    return TILE_PARTIAL


def tile_sizes(
    n_q: int,
    n_k: int,
    block_q: int | None = None,
    block_k: int | None = None,
    gpu_kernel: bool = False,
) -> tuple[int, int]:
    """The (block_q, block_k) a tiled attention over n_q queries and n_k keys uses; None = the default.

    The one place tile sizes are decided, for ``flash``, ``flash_fast``, ``flash_triton`` and the
    benchmark's record of them. On the CPU a block longer than its sequence is clamped to it
    (default 512). A GPU kernel (``gpu_kernel=True``, default 64) compiles one block shape: each
    side must be a power of two >= 16, and rows past the sequence are masked instead of clamped.
    """
    if not gpu_kernel:
        return (
            check_block_size("block_q", block_q, DEFAULT_BLOCK_Q, n_q),
            check_block_size("block_k", block_k, DEFAULT_BLOCK_K, n_k),
        )
    sizes = []
    for name, block in (("block_q", block_q), ("block_k", block_k)):
        block = check_block_size(name, block, GPU_KERNEL_BLOCK, length=None)
        if block < 16 or block & (block - 1):
            raise ValueError(f"{name} must be a power of two >= 16, got {block}")
        sizes.append(block)
    return sizes[0], sizes[1]


def tile_schedule(
    n_q: int,
    n_k: int,
    block_q: int | None = None,
    block_k: int | None = None,
    causal: bool = False,
) -> list[Tile]:
    """Every tile of an (n_q × n_k) score matrix, row of query blocks by row, with its kind.

    The last block of each axis is smaller when the length is not a multiple of the block size.
    """
    for name, length in (("n_q", n_q), ("n_k", n_k)):
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"{name} must be an int >= 0, got {length!r}")
    block_q, block_k = tile_sizes(n_q, n_k, block_q, block_k)
    tiles = []
    for q_index, q_start in enumerate(range(0, n_q, block_q)):
        q_stop = min(q_start + block_q, n_q)
        for k_index, k_start in enumerate(range(0, n_k, block_k)):
            k_stop = min(k_start + block_k, n_k)
            kind = tile_kind(q_start, q_stop, k_start, k_stop, causal)
            tiles.append(Tile(q_index, k_index, q_start, q_stop, k_start, k_stop, kind))
    return tiles


def count_tiles(
    n_q: int, n_k: int, block_q: int | None = None, block_k: int | None = None, causal: bool = False
) -> dict[str, int]:
    """How many tiles are 'full', 'partial' and 'skip', plus 'computed' (= full + partial) and 'total'."""
    counts = {TILE_FULL: 0, TILE_PARTIAL: 0, TILE_SKIP: 0}
    for tile in tile_schedule(n_q, n_k, block_q, block_k, causal):
        counts[tile.kind] += 1
    counts["computed"] = counts[TILE_FULL] + counts[TILE_PARTIAL]
    counts["total"] = sum(counts[kind] for kind in (TILE_FULL, TILE_PARTIAL, TILE_SKIP))
    return counts


def online_softmax_stats(
    scores: torch.Tensor, block_size: int = DEFAULT_BLOCK_K
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row maximum m and normaliser l = Σ_j exp(s_j − m) of ``scores`` (..., n), in ONE pass over blocks.

    softmax(scores) = exp(scores − m[..., None]) / l[..., None]. Rows of only −inf give m = −inf, l = 0.
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(
            f"scores must be a floating-point tensor, got {getattr(scores, 'dtype', type(scores))}"
        )
    if scores.dim() < 1:
        raise ValueError("scores must have at least one dimension (the keys), got a scalar")
    n = scores.shape[-1]
    block_size = check_block_size("block_size", block_size, DEFAULT_BLOCK_K, n)
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype, device=scores.device)
    row_sum = torch.zeros_like(row_max)  # m = −∞, l = 0
    for start in range(0, n, block_size):
        block = scores[..., start : start + block_size]
        new_max = torch.maximum(row_max, block.amax(dim=-1))  # m' = max(m, max_j s_j)
        # Shift by 0 where the row has seen only −inf so far: exp(−inf − 0) = 0, never NaN.
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        # l' = l · exp(m − m') + Σ_j exp(s_j − m')
        row_sum = row_sum * torch.exp(row_max - shift) + torch.exp(block - shift[..., None]).sum(-1)
        row_max = new_max  # m ← m'
    return row_max, row_sum


# ----------------------------------------------------------------------------------------------
# The tiled forward and the recomputing backward, on (..., n, d) tensors.


def future_mask(q_start: int, q_stop: int, k_start: int, k_stop: int, device) -> torch.Tensor:
    """(rows, cols) bool, True where key j comes after query i: the pairs a causal mask hides."""
    query_positions = torch.arange(q_start, q_stop, device=device)
    key_positions = torch.arange(k_start, k_stop, device=device)
    return key_positions[None, :] > query_positions[:, None]


def _tile_scores(queries, keys, tile: Tile, scale: float) -> torch.Tensor:
    """S = Q_i K_jᵀ / √d for one tile, with s_ij = −∞ for the future pairs of a diagonal tile."""
    scores = queries @ keys.transpose(-2, -1) * scale  # S = Q_i K_jᵀ / √d
    if tile.kind == TILE_PARTIAL:
        mask = future_mask(tile.q_start, tile.q_stop, tile.k_start, tile.k_stop, scores.device)
        scores = scores.masked_fill(mask, -math.inf)  # s_ij = −∞ where j > i
    return scores


def _forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    block_q: int,
    block_k: int,
    on_tile: Callable[[TileStep], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiled forward. Returns out (..., n_q, d_v) and the log-sum-exp lse (..., n_q)."""
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    out = q.new_zeros(*q.shape[:-1], v.shape[-1])  # no keys at all: a zero output
    lse = q.new_full(q.shape[:-1], -math.inf)  # and the log-sum-exp of an empty set
    if n_k == 0:
        return out, lse
    step = 0
    for q_index, q_start in enumerate(range(0, n_q, block_q)):
        q_stop = min(q_start + block_q, n_q)
        queries = q[..., q_start:q_stop, :]  # Q_i
        row_max = q.new_full((*queries.shape[:-1], 1), -math.inf)  # m = −∞
        row_sum = q.new_zeros(*queries.shape[:-1], 1)  # l = 0
        acc = q.new_zeros(*queries.shape[:-1], v.shape[-1])  # acc = 0
        for k_index, k_start in enumerate(range(0, n_k, block_k)):
            k_stop = min(k_start + block_k, n_k)
            kind = tile_kind(q_start, q_stop, k_start, k_stop, causal)
            if kind == TILE_SKIP:
                break  # causal: this key block and all later ones are in the future
            tile = Tile(q_index, k_index, q_start, q_stop, k_start, k_stop, kind)
            # S = Q_i K_jᵀ / √d  (the first key block holds key 0, visible to all: m' is finite)
            scores = _tile_scores(queries, k[..., k_start:k_stop, :], tile, scale)
            # m' = max(m, rowmax S)
            new_max = torch.maximum(row_max, scores.amax(dim=-1, keepdim=True))
            probabilities = torch.exp(scores - new_max)  # P̃ = exp(S − m')
            correction = torch.exp(row_max - new_max)  # exp(m − m')
            # l ← l · exp(m − m') + rowsum P̃
            row_sum = row_sum * correction + probabilities.sum(dim=-1, keepdim=True)
            # acc ← acc · exp(m − m') + P̃ V_j
            acc = acc * correction + probabilities @ v[..., k_start:k_stop, :]
            row_max = new_max  # m ← m'
            if on_tile is not None:
                on_tile(TileStep(step, tile, row_max.squeeze(-1), row_sum.squeeze(-1)))
            step += 1
        out[..., q_start:q_stop, :] = acc / row_sum  # O_i = acc / l
        lse[..., q_start:q_stop] = (row_max + torch.log(row_sum)).squeeze(-1)  # L_i = m + log l
    return out, lse


def score_gradient(weights, values, out, grad_out):
    """dS for O = softmax(S) V, from P = ``weights``, V, O and the upstream gradient dO.

    weights (..., n_q, n_k), values (..., n_k, d_v), out and grad_out (..., n_q, d_v). The softmax
    Jacobian gives dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik), and Σ_k P_ik dP_ik = dO_i · O_i = D_i.
    """
    grad_weights = grad_out @ values.transpose(-2, -1)  # dP = dO Vᵀ
    delta = (grad_out * out).sum(dim=-1, keepdim=True)  # D_i = dO_i · O_i, one per query row
    return weights * (grad_weights - delta)  # dS = P ∘ (dP − D)


def _backward(q, k, v, out, lse, grad_out, causal: bool, block_q: int, block_k: int):
    """Gradients of the tiled attention, recomputing each tile's probabilities from the saved lse.

    With P = softmax(S), S = Q Kᵀ / √d, O = P V and upstream dO:
        dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP − D)  with  D_i = Σ_j P_ij dP_ij = dO_i · O_i,
        dQ = dS K / √d,   dK = dSᵀ Q / √d.
    Key blocks are the outer loop: dK_j and dV_j are finished one key block at a time.
    """
    n_q, n_k = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for k_index, k_start in enumerate(range(0, n_k, block_k)):
        k_stop = min(k_start + block_k, n_k)
        keys, values = k[..., k_start:k_stop, :], v[..., k_start:k_stop, :]  # K_j, V_j
        for q_index, q_start in enumerate(range(0, n_q, block_q)):
            q_stop = min(q_start + block_q, n_q)
            kind = tile_kind(q_start, q_stop, k_start, k_stop, causal)
            if kind == TILE_SKIP:
                continue  # a later query block may still see this key block
            tile = Tile(q_index, k_index, q_start, q_stop, k_start, k_stop, kind)
            queries, upstream = q[..., q_start:q_stop, :], grad_out[..., q_start:q_stop, :]
            scores = _tile_scores(queries, keys, tile, scale)  # S = Q_i K_jᵀ / √d
            probabilities = torch.exp(scores - lse[..., q_start:q_stop, None])  # P = exp(S − L)
            # dV_j += Pᵀ dO_i
            grad_v[..., k_start:k_stop, :] += probabilities.transpose(-2, -1) @ upstream
            # dS = P ∘ (dO_i V_jᵀ − D)
            grad_scores = score_gradient(
                probabilities, values, out[..., q_start:q_stop, :], upstream
            )
            # dQ_i += dS K_j / √d
            grad_q[..., q_start:q_stop, :] += grad_scores @ keys * scale
            # dK_j += dSᵀ Q_i / √d
            grad_k[..., k_start:k_stop, :] += grad_scores.transpose(-2, -1) @ queries * scale
    return grad_q, grad_k, grad_v


class RecomputingAttention(torch.autograd.Function):
    """Saves only q, k, v, the output and the per-row log-sum-exp: O(n · d), never O(n²).

    ``RecomputingAttention.apply(forward_pass, backward_pass, q, k, v, causal, block_q, block_k)``:
    ``forward_pass(q, k, v, causal, block_q, block_k)`` returns (out, lse) and ``backward_pass(q, k,
    v, out, lse, grad_out, causal, block_q, block_k)`` recomputes P from the lse and returns dQ, dK,
    dV. This module's tiled passes use it, and so do the Triton kernels (``flash_triton``).
    """

    @staticmethod
    def forward(ctx, forward_pass, backward_pass, q, k, v, causal, block_q, block_k):
        out, lse = forward_pass(q, k, v, causal, block_q, block_k)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.backward_pass, ctx.settings = backward_pass, (causal, block_q, block_k)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grads = ctx.backward_pass(*ctx.saved_tensors, grad_out, *ctx.settings)
        return (None, None, *grads, None, None, None)  # no gradient for the passes and settings


# ----------------------------------------------------------------------------------------------
# Public entry points: check the input, compute in float32 or float64, cast back.


def check_flash_inputs(q, k, v, causal, block_q=None, block_k=None) -> tuple[int, int]:
    """Raise a clear error for inputs flash attention cannot take; return the block sizes to use."""
    for name, tensor in (("q", q), ("k", k), ("v", v)):
        if isinstance(tensor, torch.Tensor) and tensor.dtype not in _SUPPORTED:
            raise TypeError(
                f"{name} has dtype {tensor.dtype}; flash_attention supports "
                f"{', '.join(str(dtype) for dtype in _SUPPORTED)} (convert with .float())"
            )
    check_qkv(q, k, v)
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ValueError(
            "q, k and v must have the same leading (batch, head) dimensions, got q "
            f"{tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    return tile_sizes(q.shape[-2], k.shape[-2], block_q, block_k)


def in_compute_dtype(tensor: torch.Tensor) -> torch.Tensor:
    """float16 and bfloat16 are computed in float32 (their sums would lose too much precision)."""
    return tensor.float() if tensor.dtype in _UPCAST else tensor


def _checked_inputs(q, k, v, causal, block_q, block_k) -> tuple[list[torch.Tensor], int, int]:
    """Check the inputs; return q, k, v in their compute dtype and the block sizes to use."""
    block_q, block_k = check_flash_inputs(q, k, v, causal, block_q, block_k)
    return [in_compute_dtype(tensor) for tensor in (q, k, v)], block_q, block_k


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    block_q: int | None = None,
    block_k: int | None = None,
) -> torch.Tensor:
    """softmax(Q Kᵀ / √d [+ causal mask]) V, computed tile by tile; differentiable with O(n) memory.

    q (..., n_q, d), k (..., n_k, d), v (..., n_k, d_v) → (..., n_q, d_v). ``block_q`` and
    ``block_k`` (default 512) are the tile sizes; a block larger than the sequence is clamped to it
    and a last block that does not fill up is simply shorter. With ``causal=True`` query i attends
    keys j <= i and tiles entirely above the diagonal are never computed.
    """
    compute, block_q, block_k = _checked_inputs(q, k, v, causal, block_q, block_k)
    out = RecomputingAttention.apply(_forward, _backward, *compute, causal, block_q, block_k)
    return out.to(q.dtype)


def flash_attention_forward(
    q, k, v, causal=False, block_q=None, block_k=None, on_tile: OnTile | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward pass alone (no autograd), with the arguments of :func:`flash_attention`.

    Returns (out, lse) with lse of shape (..., n_q). ``on_tile(step)`` is called after each
    computed tile with a :class:`TileStep`; skipped tiles are never visited, so counting the calls
    counts the work done.
    """
    compute, block_q, block_k = _checked_inputs(q, k, v, causal, block_q, block_k)
    with torch.no_grad():
        out, lse = _forward(*compute, causal, block_q, block_k, on_tile)
    return out.to(q.dtype), lse


__all__ = [
    "DEFAULT_BLOCK_K",
    "DEFAULT_BLOCK_Q",
    "TILE_FULL",
    "TILE_PARTIAL",
    "TILE_SKIP",
    "Tile",
    "RecomputingAttention",
    "TileStep",
    "check_block_size",
    "check_flash_inputs",
    "count_tiles",
    "flash_attention",
    "flash_attention_forward",
    "future_mask",
    "in_compute_dtype",
    "naive_attention",
    "online_softmax_stats",
    "score_gradient",
    "tile_kind",
    "tile_schedule",
    "weights_from_lse",
]
