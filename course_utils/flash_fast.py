"""Flash attention tuned for the CPU: the algorithm of ``course_utils.flash``, computed faster.

``course_utils.flash`` is the algorithm as notebook 07 teaches it. This module computes the same
result (tested equal, fp32 to 1e-5) with five changes that matter on a CPU, where every PyTorch
call reads and writes a whole tile through memory:

* **Batched heads, reused buffers.** The (batch × head) slices are flattened and processed
  together, so each tile is one ``torch.bmm`` into a buffer reused across tiles (``_Workspace``);
  exponentials and rescalings are in place (``sub_``, ``exp_``, ``mul_``, ``baddbmm_``). When
  one tile for all slices would exceed ``MAX_TILE_BYTES`` the slices are taken in chunks.
* **Lazy rescaling** (as FlashAttention-4 does on GPUs): the reference maximum m only has to keep
  exp(s − m) from overflowing, not to be the exact maximum, because out = acc / l is the same for
  any m. So m moves only when a score could exceed it by more than ``RESCALE_THRESHOLD`` nats.
* **A bound instead of the row maximum.** By Cauchy–Schwarz s_ij <= |q_i/√d| · |k_j|: a tile's
  row maximum is computed only when that bound says a score could exceed m by the threshold.
* **A zero reference.** When every score of a row provably lies in [−30, 30], m = 0 and the
  subtraction disappears: a tile costs two matrix multiplications, one exp and one sum. (Both
  shortcuts shrink, down to the classic algorithm, when huge values would let the sums overflow.)
* **Diagonal strips.** A causal diagonal tile is computed in strips of ``DIAGONAL_STRIP_ROWS``
  query rows, each only as wide as the keys its rows may see: 10/16 of a 512 × 512 tile.

The benchmark (``course_utils.benchmark.bench``, method ``tiled``) and notebook 07's timings use this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from course_utils.flash import (
    TILE_PARTIAL,
    TILE_SKIP,
    Tile,
    TileStep,
    check_flash_inputs,
    future_mask,
    in_compute_dtype,
    tile_kind,
)

# Lazy rescaling: the reference max m of a row moves only when a score could exceed it by more
# than this (in nats), so exp(s − m) <= e^16 ≈ 9e6 — far from float32 overflow — and most tiles
# skip both the row-max pass and the rescaling. The result does not depend on m: o = acc / l.
RESCALE_THRESHOLD = 16.0
# Rows whose scores provably stay within [−30, 30] (Cauchy–Schwarz bound <= 30) use m = 0:
# exp(s) directly, no subtraction pass at all — the common case for attention.
ZERO_REFERENCE_LIMIT = 30.0
# Leading (batch × head) slices are processed together unless one tile of scores would exceed this.
MAX_TILE_BYTES = 64 * 2**20
# Causal diagonal tiles are computed in strips of this many query rows, each only as wide as the
# keys its rows may see (see _diagonal_strips).
DIAGONAL_STRIP_ROWS = 128


def _flatten(tensor: torch.Tensor) -> torch.Tensor:
    """(..., n, d) → (batch·heads, n, d) contiguous, in the compute dtype."""
    tensor = in_compute_dtype(tensor)
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
            mask = future_mask(q_start, q_stop, k_start, k_stop, self.like.device)
            self.masks[key] = mask
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


@dataclass
class _KeyBlocks:
    """What every query block of one chunk of heads reuses, computed once per chunk."""

    keys_t: torch.Tensor  # (h, d, n_k): Kᵀ as a view, which bmm reads strided
    norm_max: list[torch.Tensor]  # max_j |k_j| per key block, (h, 1, 1) each
    norm_all: torch.Tensor  # max_j |k_j| over all keys, (h, 1, 1)
    values: list[torch.Tensor]  # each value block, contiguous

    @classmethod
    def of(cls, keys: torch.Tensor, values: torch.Tensor, block_k: int) -> _KeyBlocks:
        n_heads, n_k = keys.shape[0], keys.shape[1]
        starts = range(0, n_k, block_k)
        # max_j |k_j| per key block: with |q_i / √d| it bounds every score (Cauchy–Schwarz)
        key_norms = torch.linalg.vector_norm(keys, dim=-1)
        return cls(
            keys_t=keys.transpose(1, 2),
            norm_max=[
                key_norms[:, start : start + block_k].amax(dim=-1).view(n_heads, 1, 1)
                for start in starts
            ],
            norm_all=key_norms.amax(dim=-1).view(n_heads, 1, 1),
            # Every query block multiplies by each value block, and a strided slice of v would be
            # copied inside every one of those matrix multiplications: copy it once instead.
            values=[values[:, start : start + block_k].contiguous() for start in starts],
        )


@dataclass
class _RowState:
    """The running (m, l, acc) of one block of query rows; ``row_max`` is None before the first tile."""

    row_max: torch.Tensor | None
    row_sum: torch.Tensor
    acc: torch.Tensor
    shifted: bool  # False when m = 0 for good (zero reference)


class _ForwardPass:
    """The tiled forward on flattened (BH, n, d) tensors, one query block at a time."""

    def __init__(self, q, k, v, causal, block_q, block_k, on_tile):
        self.causal, self.block_q, self.block_k = causal, block_q, block_k
        self.n_k = k.shape[1]
        self.workspace = _Workspace(q)
        self.limits = _ExponentLimits.for_inputs(v, self.n_k)
        self.on_tile = on_tile
        self.step = 0

    def query_block(self, queries: torch.Tensor, q_start: int, keys: _KeyBlocks):
        """out and lse of queries (h, rows, d), already multiplied by 1/√d, starting at q_start."""
        n_heads, rows, _ = queries.shape
        q_stop = q_start + rows
        query_norms = torch.linalg.vector_norm(queries, dim=-1, keepdim=True)
        state = _RowState(
            row_max=None,
            row_sum=queries.new_zeros(n_heads, rows, 1),
            acc=queries.new_zeros(n_heads, rows, keys.values[0].shape[-1]),
            shifted=True,
        )
        if self.limits.zero_reference and bool(
            (query_norms * keys.norm_all <= ZERO_REFERENCE_LIMIT).all()
        ):
            # |s_ij| <= |q_i/√d| · |k_j| <= 30 for every pair (Cauchy–Schwarz): exp(s) itself
            # neither overflows nor loses a row, so the reference max is m = 0 for good.
            state.row_max, state.shifted = queries.new_zeros(n_heads, rows, 1), False
        for k_index, k_start in enumerate(range(0, self.n_k, self.block_k)):
            k_stop = min(k_start + self.block_k, self.n_k)
            kind = tile_kind(q_start, q_stop, k_start, k_stop, self.causal)
            if kind == TILE_SKIP:
                break  # later key blocks start even further in the future
            tile = Tile(q_start // self.block_q, k_index, q_start, q_stop, k_start, k_stop, kind)
            if kind == TILE_PARTIAL and state.row_max is not None:  # (a first tile sets m whole)
                pieces = _diagonal_strips(tile)
            else:
                pieces = [(q_start, q_stop, k_stop)]
            for row_start, row_stop, key_stop in pieces:
                strip = slice(row_start - q_start, row_stop - q_start)
                bound = query_norms[:, strip] * keys.norm_max[k_index]
                self._strip(queries, keys, state, tile, (row_start, row_stop, key_stop), bound)
            if self.on_tile is not None:
                row_max, row_sum = state.row_max.squeeze(-1), state.row_sum.squeeze(-1)
                self.on_tile(TileStep(self.step, tile, row_max, row_sum))
            self.step += 1
        out = state.acc.div_(state.row_sum)  # o_i = acc_i / l_i
        lse = (state.row_max + state.row_sum.log()).squeeze(-1)  # L = m + log l
        return out, lse

    def _strip(self, queries, keys: _KeyBlocks, state: _RowState, tile: Tile, piece, bound):
        """Merge the keys [k_start, key_stop) into the rows [row_start, row_stop) of ``state``."""
        row_start, row_stop, key_stop = piece
        strip = slice(row_start - tile.q_start, row_stop - tile.q_start)
        scores = self.workspace.scores(
            "s", row_stop - row_start, queries.shape[0], key_stop - tile.k_start
        )
        # S = Q Kᵀ / √d
        torch.bmm(queries[:, strip], keys.keys_t[:, :, tile.k_start : key_stop], out=scores)
        if self.causal and key_stop - 1 > row_start:  # some key after the first query
            scores.masked_fill_(
                self.workspace.future_mask(row_start, row_stop, tile.k_start, key_stop), -math.inf
            )
        if state.row_max is None:
            # first tile: m = its row max, finite since key 0 is visible to every query
            state.row_max = scores.amax(dim=-1, keepdim=True)
            scores.sub_(state.row_max)  # S − m
        elif state.shifted:
            _shift_lazily(
                scores,
                state.row_max[:, strip],
                state.row_sum[:, strip],
                state.acc[:, strip],
                bound,
                self.limits.rescale_threshold,
            )
        probabilities = scores.exp_()  # P̃ = exp(S − m), every entry <= e^T
        # l ← l + Σ_j P̃_ij
        state.row_sum[:, strip].add_(probabilities.sum(dim=-1, keepdim=True))
        # acc ← acc + P̃ V
        values = keys.values[tile.k_index][:, : key_stop - tile.k_start]
        state.acc[:, strip].baddbmm_(probabilities, values)


def _forward(q, k, v, causal, block_q, block_k, scale, on_tile=None):
    """Tiled forward on flattened (BH, n, d) tensors. Returns out (BH, n_q, d_v) and lse (BH, n_q)."""
    batch_heads, n_q, _ = q.shape
    n_k, d_v = k.shape[1], v.shape[2]
    out = q.new_empty(batch_heads, n_q, d_v)
    lse = q.new_empty(batch_heads, n_q)
    if n_k == 0:  # nothing to attend to: zero output, log-sum-exp of an empty set
        out.zero_()
        lse.fill_(-math.inf)
        return out, lse
    forward_pass = _ForwardPass(q, k, v, causal, block_q, block_k, on_tile)
    chunk = _leading_chunk(batch_heads, block_q, block_k, q.element_size())
    for first in range(0, batch_heads, chunk):
        heads = slice(first, min(first + chunk, batch_heads))
        keys = _KeyBlocks.of(k[heads], v[heads], block_k)
        for q_start in range(0, n_q, block_q):
            q_stop = min(q_start + block_q, n_q)
            queries = q[heads, q_start:q_stop] * scale  # q_i / √d, so that s_ij = q_i·k_j / √d
            block_out, block_lse = forward_pass.query_block(queries, q_start, keys)
            out[heads, q_start:q_stop] = block_out
            lse[heads, q_start:q_stop] = block_lse
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


def _backward(q, k, v, out, lse, grad_out, causal, block_q, block_k, scale):
    """The recomputing backward of ``course_utils.flash``, batched over heads into reused buffers.

    dV = Pᵀ dO,  dP = dO Vᵀ,  dS = P ∘ (dP − D) with D_i = dO_i · O_i,  dQ = dS K / √d,
    dK = dSᵀ Q / √d. Key blocks are the outer loop, so dK_j and dV_j accumulate in a small buffer.
    """
    batch_heads, n_q, _ = q.shape
    n_k = k.shape[1]
    grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
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


class _FastFlashAttention(torch.autograd.Function):
    """Saves only q, k, v, the output and the per-row log-sum-exp, flattened to (BH, n, ·)."""

    @staticmethod
    def forward(ctx, q, k, v, causal, block_q, block_k):
        scale = 1.0 / math.sqrt(q.shape[-1])
        out, lse = _forward(q, k, v, causal, block_q, block_k, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.settings = (causal, block_q, block_k, scale)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        grads = _backward(*ctx.saved_tensors, grad_out, *ctx.settings)
        return (*grads, None, None, None)


def flash_attention(q, k, v, causal=False, block_q=None, block_k=None) -> torch.Tensor:
    """The same as ``course_utils.flash.flash_attention`` (same arguments, same result), faster on a CPU."""
    block_q, block_k = check_flash_inputs(q, k, v, causal, block_q, block_k)
    flat = (_flatten(q), _flatten(k), _flatten(v))
    out = _FastFlashAttention.apply(*flat, causal, block_q, block_k)
    return out.reshape(*q.shape[:-1], v.shape[-1]).to(q.dtype)


def flash_attention_forward(
    q, k, v, causal=False, block_q=None, block_k=None, on_tile: Callable | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward pass alone, returning (out, lse (..., n_q)); ``on_tile`` as in ``course_utils.flash``.

    Its :class:`TileStep` differs in two ways: ``row_max`` is the *reference* maximum (0, or moved
    only when the maximum grows by more than ``RESCALE_THRESHOLD``), and both statistics cover
    the (batch·heads) slices of the current chunk, flattened: shape (slices, rows).
    """
    block_q, block_k = check_flash_inputs(q, k, v, causal, block_q, block_k)
    scale = 1.0 / math.sqrt(q.shape[-1])
    with torch.no_grad():
        flat = (_flatten(q), _flatten(k), _flatten(v))
        out, lse = _forward(*flat, causal, block_q, block_k, scale, on_tile)
    return out.reshape(*q.shape[:-1], v.shape[-1]).to(q.dtype), lse.reshape(q.shape[:-1])


__all__ = [
    "DIAGONAL_STRIP_ROWS",
    "MAX_TILE_BYTES",
    "RESCALE_THRESHOLD",
    "ZERO_REFERENCE_LIMIT",
    "flash_attention",
    "flash_attention_forward",
]
