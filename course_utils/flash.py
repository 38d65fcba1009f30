"""Flash attention in plain PyTorch: exact attention without ever storing the n × n score matrix.

Naive attention writes the whole score matrix S = Q Kᵀ / √d (n × n per head) to memory, reads it
back for the softmax, writes the weights, and reads them again for P V. Flash attention (Dao et
al., 2022) cuts Q, K and V into blocks ("tiles") that fit in fast memory and streams over the key
blocks with an *online softmax*: for each query row it keeps

* the running maximum      m   = max_j s_j             (for a stable exp),
* the running normaliser   l   = Σ_j exp(s_j − m),
* the running output       acc = Σ_j exp(s_j − m) v_j,

and when a new block raises the maximum from m to m' it rescales l and acc by exp(m − m'). After
the last block, out = acc / l — exactly softmax(S) V, up to rounding. Only O(n · d) numbers live
in memory at once, plus one block of scores.

For speed on a CPU the reference rescales *lazily* (as FlashAttention-4 does on GPUs): m only has
to keep exp(s − m) from overflowing, not to be the exact maximum, because out = acc / l is the
same for any m. So m moves only when the max grows by more than ``RESCALE_THRESHOLD`` nats, and a
tile's row maximum is not even computed when the Cauchy–Schwarz bound s_ij <= |q_i/√d| · |k_j|
already shows that no score can exceed m by that much. When every score of a row provably lies in
[−30, 30], m = 0 and the subtraction disappears too: a tile then costs two matrix
multiplications, one exp and one sum. (Both shortcuts shrink, down to the classic algorithm, when
huge values would let the sums overflow.)

This module provides

* :func:`flash_attention` — differentiable, exact, O(n) memory: the backward pass recomputes the
  scores block by block from the saved log-sum-exp  L_i = m_i + log l_i  instead of saving them;
* :func:`flash_attention_forward` — the forward pass alone, returning (out, lse), with an
  optional per-tile callback (the notebook counts tiles with it, the widget replays them);
* :func:`tile_kind`, :func:`tile_schedule`, :func:`count_tiles` — which tiles a causal mask lets
  us skip entirely (every key is after every query), compute fully, or compute with a mask (the
  forward cuts those diagonal tiles into strips of rows as wide as the keys they can see);
* :func:`online_softmax_stats` — the one-pass (running max, running sum) of a score matrix.

Shapes are ``(..., n, d)``: any leading batch and head dimensions, which must be equal for
queries, keys and values. All leading dimensions are processed together, so each tile is one
large batched matrix multiplication. Causal masking is aligned top-left, like
``torch.nn.functional.scaled_dot_product_attention(is_causal=True)``: query i may attend key j
iff j <= i. float16 and bfloat16 inputs are computed in float32 and cast back.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_utils.dot_product import check_qkv

DEFAULT_BLOCK_Q = 512
DEFAULT_BLOCK_K = 512
# Lazy rescaling: the reference max m of a row moves only when a score could exceed it by more
# than this (in nats), so exp(s − m) <= e^16 ≈ 9e6 — far from float32 overflow — and most tiles
# skip both the row-max pass and the rescaling. The result does not depend on m: o = acc / l.
RESCALE_THRESHOLD = 16.0
# Rows whose scores provably stay within [−30, 30] (first tile's max >= −30, Cauchy–Schwarz bound
# <= 30) use m = 0: exp(s) directly, no subtraction pass at all — the common case for attention.
ZERO_REFERENCE_LIMIT = 30.0
# Leading (batch × head) slices are processed together unless one tile of scores would exceed this.
MAX_TILE_BYTES = 64 * 2**20
# Causal diagonal tiles are computed in strips of this many query rows, each only as wide as the
# keys its rows may see (see _diagonal_strips).
DIAGONAL_STRIP_ROWS = 128

_UPCAST = (torch.float16, torch.bfloat16)
_SUPPORTED = (torch.float32, torch.float64, *_UPCAST)

TILE_FULL = "full"  # every key in the tile is visible to every query in it
TILE_PARTIAL = "partial"  # on the causal diagonal: some pairs masked
TILE_SKIP = "skip"  # every key is after every query: nothing to compute


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
    rows (leading dims flattened: shape (batch·heads, rows)) right after the tile was merged;
    ``step`` counts tiles. m is the *reference* maximum: the first tile's row max (or 0 where
    every score of the row provably lies in [−30, 30]), moved up only when the max grows by more
    than ``RESCALE_THRESHOLD`` (lazy rescaling), so
    l · exp(m − L) with the final log-sum-exp L is the share of the softmax mass seen so far.
    They may be views into buffers the forward keeps updating: clone them to keep them.
    """

    step: int
    tile: Tile
    row_max: torch.Tensor
    row_sum: torch.Tensor


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


def _check_block(name: str, block: int | None, default: int, length: int) -> int:
    """A block size: None means the default; larger than the sequence it is clamped to it."""
    if block is None:
        block = default
    try:
        if isinstance(block, bool):
            raise TypeError
        block = operator.index(block)  # accepts numpy integers, rejects 2.5 and "64"
    except TypeError:
        raise TypeError(f"{name} must be a positive int or None, got {block!r}") from None
    if block < 1:
        raise ValueError(f"{name} must be >= 1, got {block}")
    return max(1, min(block, length))


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
    block_q = _check_block("block_q", block_q, DEFAULT_BLOCK_Q, n_q)
    block_k = _check_block("block_k", block_k, DEFAULT_BLOCK_K, n_k)
    tiles = []
    for q_index, q_start in enumerate(range(0, n_q, block_q)):
        q_stop = min(q_start + block_q, n_q)
        for k_index, k_start in enumerate(range(0, n_k, block_k)):
            k_stop = min(k_start + block_k, n_k)
            kind = tile_kind(q_start, q_stop, k_start, k_stop, causal)
            tiles.append(Tile(q_index, k_index, q_start, q_stop, k_start, k_stop, kind))
    return tiles


def count_tiles(
    n_q: int,
    n_k: int,
    block_q: int | None = None,
    block_k: int | None = None,
    causal: bool = False,
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
    block_size = _check_block("block_size", block_size, DEFAULT_BLOCK_K, n)
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype, device=scores.device)
    row_sum = torch.zeros_like(row_max)
    for start in range(0, n, block_size):
        block = scores[..., start : start + block_size]
        new_max = torch.maximum(row_max, block.amax(dim=-1))
        # Shift by 0 where the row has seen only −inf so far: exp(−inf − 0) = 0, never NaN.
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        # l' = l · exp(m − m') + Σ_j exp(s_j − m')
        row_sum = row_sum * torch.exp(row_max - shift) + torch.exp(block - shift[..., None]).sum(-1)
        row_max = new_max
    return row_max, row_sum


# ----------------------------------------------------------------------------------------------
# Input handling shared by the forward and the differentiable version.


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> None:
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


def _flatten(tensor: torch.Tensor) -> torch.Tensor:
    """(..., n, d) → (batch·heads, n, d) contiguous, in the compute dtype."""
    if tensor.dtype in _UPCAST:
        tensor = tensor.float()
    return tensor.reshape(math.prod(tensor.shape[:-2]), *tensor.shape[-2:]).contiguous()


def _leading_chunk(batch_heads: int, block_q: int, block_k: int, itemsize: int) -> int:
    """How many batch·head slices to process together so that one score tile stays <= MAX_TILE_BYTES."""
    return max(1, min(batch_heads, MAX_TILE_BYTES // (block_q * block_k * itemsize)))


@dataclass(frozen=True)
class _ExponentLimits:
    """How far exp(s − m) may exceed 1 before the sums l and acc could overflow.

    l <= n_k · e^T and |acc| <= n_k · e^T · max|v| must stay below the dtype's largest number
    (with a margin of e^8), so T <= log(max) − 8 − log n_k − log max|v|. With little headroom
    (huge values) T falls to 0: the classic algorithm that rescales at every new maximum.
    """

    rescale_threshold: float
    zero_reference: bool

    @classmethod
    def for_inputs(cls, values: torch.Tensor, n_k: int) -> _ExponentLimits:
        if values.numel():
            smallest, largest = values.aminmax()  # max |v| without allocating |v|
            largest_value = float(torch.maximum(-smallest, largest))  # NaN stays NaN
        else:
            largest_value = 0.0
        if not math.isfinite(largest_value):
            return cls(0.0, False)  # inf/NaN values: NaN out, whatever the scheme
        headroom = (
            math.log(torch.finfo(values.dtype).max)
            - 8.0
            - math.log(max(n_k, 1))
            - math.log(max(largest_value, 1.0))
        )
        return cls(
            rescale_threshold=max(0.0, min(RESCALE_THRESHOLD, headroom)),
            zero_reference=headroom >= ZERO_REFERENCE_LIMIT,
        )


class _Workspace:
    """Score buffers and causal masks reused across tiles (one per distinct tile shape / offset)."""

    def __init__(self, like: torch.Tensor):
        self.like = like
        self.buffers: dict[tuple, torch.Tensor] = {}
        self.masks: dict[tuple, torch.Tensor] = {}

    def scores(self, slot: str, rows: int, batch: int, cols: int) -> torch.Tensor:
        key = (slot, batch, rows, cols)
        buffer = self.buffers.get(key)
        if buffer is None:
            buffer = self.buffers[key] = self.like.new_empty(batch, rows, cols)
        return buffer

    def future_mask(self, q_start: int, q_stop: int, k_start: int, k_stop: int) -> torch.Tensor:
        """(rows, cols) bool, True where key j is after query i (must be masked out)."""
        key = (q_start - k_start, q_stop - q_start, k_stop - k_start)
        mask = self.masks.get(key)
        if mask is None:
            query_positions = torch.arange(q_start, q_stop, device=self.like.device)
            key_positions = torch.arange(k_start, k_stop, device=self.like.device)
            mask = self.masks[key] = key_positions[None, :] > query_positions[:, None]
        return mask


def _diagonal_strips(tile: Tile) -> list[tuple[int, int, int]]:
    """Split a causal 'partial' tile into (row_start, row_stop, key_stop) strips of query rows.

    Query i sees keys j <= i, so a strip of rows [r0, r1) needs only the keys [k_start, r1): on a
    square diagonal tile of 512 rows cut in strips of 128 that is 1+2+3+4 = 10 of 16 sub-blocks,
    and only each strip's last 128 × 128 corner needs the mask. Strips that see no key are dropped.
    """
    strips = []
    for row_start in range(tile.q_start, tile.q_stop, DIAGONAL_STRIP_ROWS):
        row_stop = min(row_start + DIAGONAL_STRIP_ROWS, tile.q_stop)
        # the strip's last query, row_stop − 1, sees the keys j < row_stop
        key_stop = min(tile.k_stop, row_stop)
        if key_stop > tile.k_start:
            strips.append((row_start, row_stop, key_stop))
    return strips


def _forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool,
    block_q: int,
    block_k: int,
    scale: float,
    on_tile: Callable[[TileStep], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiled forward on flattened (BH, n, d) tensors. Returns out (BH, n_q, d_v) and lse (BH, n_q)."""
    batch_heads, n_q, _ = q.shape
    n_k, d_v = k.shape[1], v.shape[2]
    out = q.new_empty(batch_heads, n_q, d_v)
    lse = q.new_empty(batch_heads, n_q)
    if n_k == 0:  # nothing to attend to: zero output, log-sum-exp of an empty set
        out.zero_()
        lse.fill_(-math.inf)
        return out, lse
    workspace = _Workspace(q)
    chunk = _leading_chunk(batch_heads, block_q, block_k, q.element_size())
    limits = _ExponentLimits.for_inputs(v, n_k)
    step = 0
    for first in range(0, batch_heads, chunk):
        heads = slice(first, min(first + chunk, batch_heads))
        n_heads = heads.stop - heads.start
        keys_t = k[heads].transpose(1, 2)  # (h, d, n_k): a view, bmm reads it strided
        # max_j |k_j| per key block: with |q_i / √d| it bounds every score (Cauchy–Schwarz)
        key_norms = torch.linalg.vector_norm(k[heads], dim=-1)
        key_norm_max = [
            key_norms[:, start : start + block_k].amax(dim=-1).view(n_heads, 1, 1)
            for start in range(0, n_k, block_k)
        ]
        key_norm_all = key_norms.amax(dim=-1).view(n_heads, 1, 1)
        # Each value block, contiguous: every query block multiplies by it, and a strided slice of
        # v would be copied inside every one of those matrix multiplications (n·d numbers, once).
        value_blocks = [
            v[heads, start : start + block_k].contiguous() for start in range(0, n_k, block_k)
        ]
        for q_start in range(0, n_q, block_q):
            q_stop = min(q_start + block_q, n_q)
            rows = q_stop - q_start
            queries = q[heads, q_start:q_stop] * scale  # q_i / √d, so that s_ij = q_i·k_j / √d
            query_norms = torch.linalg.vector_norm(queries, dim=-1, keepdim=True)
            row_sum = q.new_zeros(n_heads, rows, 1)
            acc = q.new_zeros(n_heads, rows, d_v)
            if limits.zero_reference and bool(
                (query_norms * key_norm_all <= ZERO_REFERENCE_LIMIT).all()
            ):
                # |s_ij| <= |q_i/√d| · |k_j| <= 30 for every pair (Cauchy–Schwarz): exp(s) itself
                # neither overflows nor loses a row, so the reference max is m = 0 for good.
                row_max = q.new_zeros(n_heads, rows, 1)
                shifted = False
            else:
                row_max = None  # set to the first tile's row max: the reference m of each row
                shifted = True
            for k_index, k_start in enumerate(range(0, n_k, block_k)):
                k_stop = min(k_start + block_k, n_k)
                kind = tile_kind(q_start, q_stop, k_start, k_stop, causal)
                if kind == TILE_SKIP:
                    break  # later key blocks start even further in the future
                tile = Tile(q_start // block_q, k_index, q_start, q_stop, k_start, k_stop, kind)
                if kind == TILE_PARTIAL and row_max is not None:  # (a first tile sets m whole)
                    pieces = _diagonal_strips(tile)
                else:
                    pieces = [(q_start, q_stop, k_stop)]
                for row_start, row_stop, key_stop in pieces:
                    strip = slice(row_start - q_start, row_stop - q_start)
                    scores = workspace.scores(
                        "s", row_stop - row_start, n_heads, key_stop - k_start
                    )
                    # S = Q Kᵀ / √d
                    torch.bmm(queries[:, strip], keys_t[:, :, k_start:key_stop], out=scores)
                    if causal and key_stop - 1 > row_start:  # some key after the first query
                        mask = workspace.future_mask(row_start, row_stop, k_start, key_stop)
                        scores.masked_fill_(mask, -math.inf)
                    if row_max is None:
                        # first tile: m = its row max, finite since key 0 is visible to every query
                        row_max = scores.amax(dim=-1, keepdim=True)
                        scores.sub_(row_max)  # S − m
                    elif shifted:
                        _shift_lazily(
                            scores,
                            row_max[:, strip],
                            row_sum[:, strip],
                            acc[:, strip],
                            query_norms[:, strip] * key_norm_max[k_index],
                            limits.rescale_threshold,
                        )
                    probabilities = scores.exp_()  # P̃ = exp(S − m), every entry <= e^T
                    # l ← l + Σ_j P̃_ij
                    row_sum[:, strip].add_(probabilities.sum(dim=-1, keepdim=True))
                    # acc ← acc + P̃ V
                    values = value_blocks[k_index][:, : key_stop - k_start]
                    acc[:, strip].baddbmm_(probabilities, values)
                if on_tile is not None:
                    on_tile(TileStep(step, tile, row_max.squeeze(-1), row_sum.squeeze(-1)))
                step += 1
            out[heads, q_start:q_stop] = acc.div_(row_sum)  # o_i = acc_i / l_i
            lse[heads, q_start:q_stop] = (row_max + row_sum.log()).squeeze(-1)  # L = m + log l
    return out, lse


def _shift_lazily(
    scores: torch.Tensor,
    row_max: torch.Tensor,
    row_sum: torch.Tensor,
    acc: torch.Tensor,
    score_bound: torch.Tensor,
    threshold: float,
) -> None:
    """S ← S − m in place, moving m (and rescaling l, acc) only if a score exceeds m by > T nats.

    ``score_bound`` is |q_i/√d| · max_j |k_j| over the tile's keys, an upper bound on every s_ij
    (Cauchy–Schwarz): the tile's row max is computed only when s_ij − m_i could exceed T.
    ``row_max``, ``row_sum`` and ``acc`` are views of the running state, updated in place.
    """
    scores.sub_(row_max)  # S − m
    if bool((score_bound - row_max > threshold).any()):
        growth = scores.amax(dim=-1, keepdim=True)  # max_j s_ij − m_i
        if bool((growth > threshold).any()):
            growth.clamp_min_(0.0)  # rows whose max did not grow keep m
            scores.sub_(growth)
            row_max.add_(growth)  # m' = m + growth
            correction = growth.neg_().exp_()  # exp(m − m')
            row_sum.mul_(correction)  # l ← l · exp(m − m')
            acc.mul_(correction)  # acc ← acc · exp(m − m')


def _backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    grad_out: torch.Tensor,
    causal: bool,
    block_q: int,
    block_k: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of the tiled attention, recomputing each tile's probabilities from the saved lse.

    With P = softmax(S), S = Q Kᵀ / √d, O = P V and upstream dO:
        dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ∘ (dP − D)  with  D_i = Σ_j P_ij dP_ij = dO_i · O_i,
        dQ = dS K / √d,   dK = dSᵀ Q / √d.
    Key blocks are the outer loop, so dK_j and dV_j accumulate in a small local buffer.
    """
    batch_heads, n_q, _ = q.shape
    n_k = k.shape[1]
    grad_q = torch.zeros_like(q)
    grad_k = torch.zeros_like(k)
    grad_v = torch.zeros_like(v)
    if n_k == 0 or n_q == 0:
        return grad_q, grad_k, grad_v
    grad_out = grad_out.contiguous()
    delta = (grad_out * out).sum(dim=-1, keepdim=True)  # D_i = dO_i · O_i   (BH, n_q, 1)
    lse = lse.unsqueeze(-1)
    workspace = _Workspace(q)
    chunk = _leading_chunk(batch_heads, block_q, block_k, q.element_size())
    for first in range(0, batch_heads, chunk):
        heads = slice(first, min(first + chunk, batch_heads))
        n_heads = heads.stop - heads.start
        queries_scaled = q[heads] * scale  # Q / √d, reused for S and for dK
        for k_start in range(0, n_k, block_k):
            k_stop = min(k_start + block_k, n_k)
            cols = k_stop - k_start
            keys = k[heads, k_start:k_stop]
            values = v[heads, k_start:k_stop]
            grad_keys = q.new_zeros(n_heads, cols, k.shape[2])
            grad_values = q.new_zeros(n_heads, cols, v.shape[2])
            for q_start in range(0, n_q, block_q):
                q_stop = min(q_start + block_q, n_q)
                kind = tile_kind(q_start, q_stop, k_start, k_stop, causal)
                if kind == TILE_SKIP:
                    continue  # later query blocks may still see this key block
                rows = q_stop - q_start
                queries = queries_scaled[:, q_start:q_stop]
                probabilities = workspace.scores("p", rows, n_heads, cols)
                torch.bmm(queries, keys.transpose(1, 2), out=probabilities)  # S = Q Kᵀ / √d
                if kind == TILE_PARTIAL:
                    mask = workspace.future_mask(q_start, q_stop, k_start, k_stop)
                    probabilities.masked_fill_(mask, -math.inf)
                probabilities.sub_(lse[heads, q_start:q_stop]).exp_()  # P = exp(S − L)
                upstream = grad_out[heads, q_start:q_stop]
                grad_values.baddbmm_(probabilities.transpose(1, 2), upstream)  # dV_j += Pᵀ dO_i
                grad_scores = workspace.scores("ds", rows, n_heads, cols)
                torch.bmm(upstream, values.transpose(1, 2), out=grad_scores)  # dP = dO_i V_jᵀ
                # dS = P ∘ (dP − D)
                grad_scores.sub_(delta[heads, q_start:q_stop]).mul_(probabilities)
                # dQ_i += dS K_j / √d
                grad_q[heads, q_start:q_stop] += torch.bmm(grad_scores, keys).mul_(scale)
                # dK_j += dSᵀ Q_i / √d
                grad_keys.baddbmm_(grad_scores.transpose(1, 2), queries)
            grad_k[heads, k_start:k_stop] = grad_keys
            grad_v[heads, k_start:k_stop] = grad_values
    return grad_q, grad_k, grad_v


class _FlashAttentionFunction(torch.autograd.Function):
    """Saves only q, k, v, the output and the per-row log-sum-exp: O(n · d), never O(n²)."""

    @staticmethod
    def forward(ctx, q, k, v, causal, block_q, block_k, scale):
        out, lse = _forward(q, k, v, causal, block_q, block_k, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.settings = (causal, block_q, block_k, scale)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        grad_q, grad_k, grad_v = _backward(q, k, v, out, lse, grad_out, *ctx.settings)
        return grad_q, grad_k, grad_v, None, None, None, None


def _prepare(q, k, v, causal, block_q, block_k):
    _check_inputs(q, k, v, causal)
    n_q, n_k = q.shape[-2], k.shape[-2]
    block_q = _check_block("block_q", block_q, DEFAULT_BLOCK_Q, n_q)
    block_k = _check_block("block_k", block_k, DEFAULT_BLOCK_K, n_k)
    scale = 1.0 / math.sqrt(q.shape[-1])
    output_shape = (*q.shape[:-1], v.shape[-1])
    return block_q, block_k, scale, output_shape


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
    block_q, block_k, scale, output_shape = _prepare(q, k, v, causal, block_q, block_k)
    out = _FlashAttentionFunction.apply(
        _flatten(q), _flatten(k), _flatten(v), causal, block_q, block_k, scale
    )
    return out.reshape(output_shape).to(q.dtype)


def flash_attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    block_q: int | None = None,
    block_k: int | None = None,
    on_tile: Callable[[TileStep], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward pass alone (no autograd): returns (out, lse) with lse of shape (..., n_q).

    ``on_tile(step)`` is called after each computed tile with a :class:`TileStep`; skipped tiles
    are never visited, so counting the calls counts the work done.
    """
    block_q, block_k, scale, output_shape = _prepare(q, k, v, causal, block_q, block_k)
    with torch.no_grad():
        out, lse = _forward(
            _flatten(q), _flatten(k), _flatten(v), causal, block_q, block_k, scale, on_tile
        )
    return out.reshape(output_shape).to(q.dtype), lse.reshape(q.shape[:-1])


__all__ = [
    "DEFAULT_BLOCK_K",
    "DEFAULT_BLOCK_Q",
    "TILE_FULL",
    "TILE_PARTIAL",
    "TILE_SKIP",
    "Tile",
    "TileStep",
    "count_tiles",
    "flash_attention",
    "flash_attention_forward",
    "online_softmax_stats",
    "tile_kind",
    "tile_schedule",
]
