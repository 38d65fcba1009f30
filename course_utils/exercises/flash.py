"""Exercises of notebook 07 (flash attention tiling): online softmax, tiled forward, causal tiles, dS."""

from __future__ import annotations

import math

import torch

from course_utils.exercises.soft_weights import SOFTMAX_SHORTCUTS
from course_utils.feedback.judge import close, one_of
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, Mistake, mistake, randint
from course_utils.flash import (
    TILE_FULL,
    TILE_PARTIAL,
    TILE_SKIP,
    flash_attention,
    online_softmax_stats,
    score_gradient,
    tile_kind,
)

NOTEBOOK = "07_flash_attention_tiling"
ATTENTION_SHORTCUTS = (
    *SOFTMAX_SHORTCUTS,
    "torch.nn.functional.scaled_dot_product_attention",
    "course_utils.flash.naive_attention",
    "course_utils.flash.flash_attention",
    "course_utils.flash.flash_attention_forward",
    "course_utils.flash_fast.flash_attention",
    "course_utils.flash_fast.flash_attention_forward",
    "course_utils.dot_product.scaled_dot_product_attention",
)


def _blocks(scores: torch.Tensor, block_size: int) -> list[torch.Tensor]:
    return [
        scores[..., start : start + block_size] for start in range(0, scores.shape[-1], block_size)
    ]


# --------------------------------------------------------------------------------------------------
# 7.1 online softmax statistics


def _online_softmax_cases(generator: torch.Generator) -> list[Case]:
    def randn(*shape, dtype=torch.float64):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    rising = randn(4, 11) + torch.linspace(0, 8, 11, dtype=torch.float64)  # max moves every block
    early_peak = randn(3, 10) * 2
    early_peak[:, 1] += 20.0  # the row max sits in the first block, far above the last block's
    pattern = [[-1000.0, 998, 1000, 0, 999.5], [3, -999, 1000, 1000, -2]]  # exp(1000) overflows
    near_1000 = torch.tensor(pattern, dtype=torch.float64) + randn(2, 5)
    near_1000 = near_1000.gather(-1, randn(2, 5).argsort(dim=-1))  # shuffled within each row
    return [
        Case("(4, 11) scores rising along the row, block_size=3 (ragged last block)", (rising, 3)),
        Case("(3, 10) scores peaking in the first block, block_size=4", (early_peak, 4)),
        Case("(2, 3, 8) scores, block_size=8 (one block)", (randn(2, 3, 8) * 3, 8)),
        Case("(3, 6) scores, block_size=1 (one column at a time)", (randn(3, 6) * 2, 1)),
        Case("(5, 7) float32 scores, block_size=20 (wider than the row)", (randn(5, 7, dtype=torch.float32) * 2, 20)),
        Case("one row of 9 scores (shape (9,)), block_size=4", (randn(9) * 2, 4)),
        Case("scores near ±1000, block_size=2", (near_1000, 2)),
    ]  # fmt: skip


def _stats_with_mistake(scores, block_size, rescale=True, running_max=True):
    """The online statistics with one classic mistake switched on (what that mistaken code returns)."""
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
    row_sum = torch.zeros_like(row_max)
    for block in _blocks(scores, block_size):
        new_max = torch.maximum(row_max, block.amax(-1)) if running_max else block.amax(-1)
        correction = torch.exp(row_max - new_max) if rescale else 1.0
        row_sum = row_sum * correction + torch.exp(block - new_max[..., None]).sum(-1)
        row_max = new_max
    return row_max, row_sum


@mistake(
    "it matches each block's sum relative to that block's own max: rescale every sum to "
    "the running max, l = l·exp(m_old − m_new) + Σ exp(s − m_new)"
)
def _stats_own_block_max(scores, block_size):
    row_sum = sum(
        torch.exp(block - block.amax(-1, keepdim=True)).sum(-1)
        for block in _blocks(scores, block_size)
    )
    return scores.amax(-1), row_sum


@mistake(
    "it matches the last, shorter block is missing: loop with range(0, n, block_size) and "
    "slice [start : start + block_size]"
)
def _stats_without_last_short_block(scores, block_size):
    whole_blocks = scores.shape[-1] - scores.shape[-1] % block_size
    if not 0 < whole_blocks < scores.shape[-1]:
        return NOT_APPLICABLE  # no shorter last block to lose
    return online_softmax_stats(scores[..., :whole_blocks], block_size)


@mistake(
    "it matches exp(s) without subtracting the max: scores near 1000 overflow; "
    "exponentiate s − m with m the running max"
)
def _stats_exp_without_shift(scores, block_size):
    row_max = scores.amax(-1)
    row_sum = sum(torch.exp(block).sum(-1) for block in _blocks(scores, block_size))
    return row_max, row_sum


ONLINE_SOFTMAX = Exercise(
    grade_id="ex7_1_online_softmax",
    notebook=NOTEBOOK,
    signature="online_softmax_stats(scores, block_size)",
    docstring="""
        Row max and softmax normaliser (the formula above) of `scores` (..., n), in one pass over blocks
        of `block_size` key columns (the last may be shorter). Returns (row_max, row_sum), each (...).
        Forbidden (scores 0): online_softmax_stats of course_utils.flash, masked_softmax, torch.softmax,
        F.softmax, torch.Tensor.softmax, torch.special.softmax, torch.log_softmax, F.log_softmax,
        torch.Tensor.log_softmax, torch.logsumexp, torch.Tensor.logsumexp.
    """,
    hint=(
        "keep a running max and a running sum over the blocks; whenever the max grows, re-express "
        "the old sum relative to the new max before adding the block's own sum"
    ),
    code_hint=(
        "m = full(scores.shape[:-1], -inf); l = zeros_like(m); for start in range(0, n, block_size): "
        "block = scores[..., start : start + block_size]; new = maximum(m, block.amax(-1)); "
        "l = l * exp(m - new) + exp(block - new[..., None]).sum(-1); m = new"
    ),
    reference=online_softmax_stats,
    forbidden=(*SOFTMAX_SHORTCUTS, "torch.logsumexp", "torch.Tensor.logsumexp"),
    cases=_online_softmax_cases,
    judge=close("row_max", "row_sum", atol=1e-6, rtol=1e-6),
    mistakes=(
        Mistake(
            "it matches adding each block's sum without rescaling the old sum: multiply l by "
            "exp(m_old − m_new) whenever the max grows",
            lambda scores, block_size: _stats_with_mistake(scores, block_size, rescale=False),
        ),
        _stats_own_block_max,
        Mistake(
            "it matches m = the current block's max: keep a running max, "
            "m_new = max(m_old, block.amax(-1))",
            lambda scores, block_size: _stats_with_mistake(scores, block_size, running_max=False),
        ),
        Mistake(
            "it matches statistics of the last block only: keep a running max and sum across all "
            "blocks",
            lambda scores, block_size: online_softmax_stats(
                _blocks(scores, block_size)[-1], block_size
            ),
        ),
        _stats_without_last_short_block,
        _stats_exp_without_shift,
    ),
)

# --------------------------------------------------------------------------------------------------
# 7.2 tiled forward (no mask)


def _tiled_cases(generator: torch.Generator) -> list[Case]:
    def attention_inputs(
        name, leading, n_q, n_k, dim, value_dim, block_q, block_k, dtype=torch.float64, scale=2.0
    ):
        q = torch.randn(*leading, n_q, dim, generator=generator, dtype=dtype) * scale
        k = torch.randn(*leading, n_k, dim, generator=generator, dtype=dtype) * scale
        v = torch.randn(*leading, n_k, value_dim, generator=generator, dtype=dtype)
        return Case(name, (q, k, v, block_q, block_k))

    large = attention_inputs(
        "float32 scores above 150, blocks 2 × 3", (2,), 5, 8, 4, 3, 2, 3, torch.float32, 0.5
    )
    q, k, _, _, _ = large.args
    q[..., 0], k[..., 0] = 18.0, 18.0  # s_ij >= (324 − |rest|) / 2 > 150: exp(s) overflows float32
    return [
        attention_inputs("(B=2, 9 queries, d=8), 14 keys, blocks 4 × 5 (ragged)", (2,), 9, 14, 8, 3, 4, 5),
        attention_inputs("blocks larger than n: (1, 6 queries), 5 keys, blocks 32 × 32", (1,), 6, 5, 4, 4, 32, 32, scale=1.0),
        attention_inputs("block_q = block_k = 1: (3, 5 queries), 7 keys", (3,), 5, 7, 6, 2, 1, 1),
        attention_inputs("batch × heads (2, 3, 7 queries, d=4), 10 keys, blocks 3 × 4", (2, 3), 7, 10, 4, 5, 3, 4),
        large,
        attention_inputs("float32 (2, 16 queries, d=16), 24 keys, blocks 8 × 8", (2,), 16, 24, 16, 8, 8, 8, torch.float32, 1.0),
    ]  # fmt: skip


def _tiled_reference(q, k, v, block_q, block_k):
    """flash_attention without a mask, with the exercise's argument order."""
    return flash_attention(q, k, v, False, block_q, block_k)


def tiled_with_mistakes(q, k, v, block_q, block_k, scale=True, rescale_acc=True, shift=True):
    """The tiled forward with one deliberate mistake switched on (what that mistaken code returns)."""
    factor = 1.0 / math.sqrt(q.shape[-1]) if scale else 1.0
    out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=q.dtype)
    for q_start in range(0, q.shape[-2], block_q):
        queries = q[..., q_start : q_start + block_q, :]
        row_max = torch.full((*queries.shape[:-1], 1), -math.inf, dtype=q.dtype)
        row_sum = torch.zeros_like(row_max)
        acc = torch.zeros(*queries.shape[:-1], v.shape[-1], dtype=q.dtype)
        for k_start in range(0, k.shape[-2], block_k):
            scores = queries @ k[..., k_start : k_start + block_k, :].transpose(-2, -1) * factor
            new_max = torch.maximum(row_max, scores.amax(-1, keepdim=True))
            if not shift:
                new_max = torch.zeros_like(new_max)
            probabilities = torch.exp(scores - new_max)
            correction = torch.exp(row_max - new_max) if shift else 1.0
            row_sum = row_sum * correction + probabilities.sum(-1, keepdim=True)
            acc = acc * (correction if rescale_acc else 1.0)
            acc = acc + probabilities @ v[..., k_start : k_start + block_k, :]
            row_max = new_max
        out[..., q_start : q_start + block_q, :] = acc / row_sum
    return out


@mistake(
    "it matches unpacking q.shape into three names (B, n_q, d): q may have more leading "
    "dimensions, (..., n_q, d); use q.shape[-2] and q.shape[-1] and slice q[..., start:stop, :]"
)
def _tiled_unpacking_three_dims(q, k, v, block_q, block_k):
    batch, n_q, dim = q.shape  # raises for (B, H, n, d), as the learner's code would
    return NOT_APPLICABLE


@mistake(
    "it matches exp(s) without subtracting the running max: large scores give inf/NaN; "
    "exponentiate s − m, with m the running max"
)
def _tiled_without_max(q, k, v, block_q, block_k):
    out = tiled_with_mistakes(q, k, v, block_q, block_k, shift=False)
    return NOT_APPLICABLE if bool(torch.isfinite(out).all()) else out


@mistake(
    "it matches weights that sum to 1 over the query axis: normalise each query's row over the keys"
)
def _softmax_over_queries(q, k, v, block_q, block_k):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=-2) @ v


@mistake(
    "it matches using only the first n_queries keys: loop over all key blocks up to "
    "k.shape[-2], not q.shape[-2]"
)
def _first_n_q_keys_only(q, k, v, block_q, block_k):
    n_q = q.shape[-2]
    if k.shape[-2] <= n_q:
        return NOT_APPLICABLE
    return _tiled_reference(q, k[..., :n_q, :], v[..., :n_q, :], block_q, block_k)


TILED_ATTENTION = Exercise(
    grade_id="ex7_2_tiled_attention",
    notebook=NOTEBOOK,
    signature="tiled_attention(q, k, v, block_q, block_k)",
    docstring="""
        Scaled dot-product attention (the formulas above) computed tile by tile.

        q (..., n_q, d), k (..., n_k, d), v (..., n_k, d_v): any leading batch and head
        dimensions, e.g. (B, n, d) or (B, H, n, d). Returns the output (..., n_q, d_v).
        Forbidden (scores 0): flash_attention and flash_attention_forward (course_utils.flash and
        flash_fast), naive_attention, scaled_dot_product_attention, masked_softmax;
        F.scaled_dot_product_attention, torch.softmax, F.softmax, torch.Tensor.softmax,
        torch.special.softmax, torch.log_softmax, F.log_softmax, torch.Tensor.log_softmax.
    """,
    hint=(
        "for each block of queries keep a running max, sum and output accumulator over the key "
        "blocks; rescale both when the max grows, and divide by the sum only after the last block"
    ),
    code_hint=(
        "per query block: m = full((*queries.shape[:-1], 1), -inf), l = 0, acc = 0; per key block: "
        "s = queries @ keys.transpose(-2, -1) / √d; new = maximum(m, s.amax(-1, keepdim=True)); "
        "p = exp(s - new); c = exp(m - new); l = l * c + p.sum(-1, keepdim=True); "
        "acc = acc * c + p @ values; m = new; after the loop out[..., rows, :] = acc / l"
    ),
    reference=_tiled_reference,
    forbidden=ATTENTION_SHORTCUTS,
    cases=_tiled_cases,
    judge=close("output"),
    mistakes=(
        _tiled_unpacking_three_dims,
        Mistake(
            "it matches scores not divided by √d: s = q·k / √d",
            lambda q, k, v, bq, bk: tiled_with_mistakes(q, k, v, bq, bk, scale=False),
        ),
        Mistake(
            "it matches the accumulated output is not rescaled: multiply acc by exp(m_old − m_new) "
            "too, not only the sum l",
            lambda q, k, v, bq, bk: tiled_with_mistakes(q, k, v, bq, bk, rescale_acc=False),
        ),
        _tiled_without_max,
        _softmax_over_queries,
        _first_n_q_keys_only,
    ),
)

# --------------------------------------------------------------------------------------------------
# 7.3 causal tile kinds

TILE_KINDS = (TILE_FULL, TILE_PARTIAL, TILE_SKIP)
TILE_RULE = (
    "with query i seeing key j iff j <= i, a tile is 'skip' when its first key k_start comes after "
    "its last query q_stop − 1, 'full' when its last key k_stop − 1 is at or before its first "
    "query q_start, and 'partial' otherwise"
)
# Each row: (q_start, q_stop, k_start, k_stop), what the tile shows. Cases shift them by a random offset.
_TILES = [
    (0, 4, 0, 4, "diagonal, square"),
    (4, 8, 0, 4, "below the diagonal"),
    (0, 4, 4, 8, "above the diagonal"),
    (5, 10, 0, 6, "last key == first query"),
    (5, 10, 0, 7, "two keys hidden from the first query"),
    (5, 10, 10, 12, "first key right after the last query"),
    (5, 10, 9, 12, "one key visible to the last query only"),
    (7, 8, 7, 8, "a single pair on the diagonal"),
    (2, 3, 3, 4, "a single pair just above the diagonal"),
    (3, 4, 0, 8, "one query row across the diagonal"),
    (0, 8, 5, 6, "one key column across the diagonal"),
    (8, 12, 0, 8, "a wide tile below the diagonal"),
]


def _tile_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    for q_start, q_stop, k_start, k_stop, what in _TILES:
        offset = randint(generator, 0, 100)  # the same tile, moved along the diagonal
        tile = (q_start + offset, q_stop + offset, k_start + offset, k_stop + offset)
        cases.append(Case(f"tile: {what}", tile))
    return cases


def _causal_tile_kind(q_start, q_stop, k_start, k_stop):
    """tile_kind with the causal rule, with the exercise's arguments."""
    return tile_kind(q_start, q_stop, k_start, k_stop, causal=True)


CAUSAL_TILE_KIND = Exercise(
    grade_id="ex7_3_causal_tile_kind",
    notebook=NOTEBOOK,
    signature="causal_tile_kind(q_start, q_stop, k_start, k_stop)",
    docstring="""'skip', 'full' or 'partial' for queries [q_start, q_stop) × keys [k_start, k_stop) under j <= i.
        Forbidden (scores 0): tile_kind, tile_schedule and count_tiles of course_utils.flash.""",
    hint=(
        "a tile is skipped when every key comes after every query, full when every key is at or "
        "before every query, partial otherwise; the stops are exclusive"
    ),
    code_hint=(
        "if k_start > q_stop - 1: return 'skip'; if k_stop - 1 <= q_start: return 'full'; "
        "return 'partial'"
    ),
    reference=_causal_tile_kind,
    forbidden=(
        "course_utils.flash.tile_kind",
        "course_utils.flash.tile_schedule",
        "course_utils.flash.count_tiles",
    ),
    cases=_tile_cases,
    judge=one_of(TILE_KINDS, wrong=f"wrong tile kind: {TILE_RULE}"),
    mistakes=(
        Mistake(
            "it matches the mirrored rule (upper triangle kept): query i may attend key j iff "
            "j <= i, so tiles whose keys come AFTER the queries are skipped",
            lambda q0, q1, k0, k1: tile_kind(k0, k1, q0, q1, causal=True),
        ),
        Mistake(
            "it matches treating the stops as the last index: stops are exclusive, the last query "
            "is q_stop − 1 and the last key k_stop − 1",
            lambda q0, q1, k0, k1: tile_kind(q0, q1 + 1, k0, k1 + 1, causal=True),
        ),
    ),
)

# --------------------------------------------------------------------------------------------------
# 7.4 the gradient of the scores


def _gradient_cases(generator: torch.Generator) -> list[Case]:
    def gradient_inputs(name, leading, n_q, n_k, value_dim, dtype=torch.float64):
        scores = torch.randn(*leading, n_q, n_k, generator=generator, dtype=dtype) * 2
        values = torch.randn(*leading, n_k, value_dim, generator=generator, dtype=dtype)
        grad_out = torch.randn(*leading, n_q, value_dim, generator=generator, dtype=dtype)
        weights = torch.softmax(scores, dim=-1)
        return Case(name, (weights, values, weights @ values, grad_out))

    return [
        gradient_inputs("(2, 5 queries, 7 keys), d_v=3", (2,), 5, 7, 3),
        gradient_inputs("batch × heads (3, 2, 4 queries, 6 keys), d_v=5", (3, 2), 4, 6, 5),
        gradient_inputs("a single key (2, 4 queries, 1 key), d_v=3", (2,), 4, 1, 3),
        gradient_inputs("a single query (1, 1 query, 12 keys), d_v=2", (1,), 1, 12, 2),
        gradient_inputs("square (2, 6 queries, 6 keys), d_v=4", (2,), 6, 6, 4),
        gradient_inputs("float32 (4, 16 queries, 16 keys), d_v=8", (4,), 16, 16, 8, torch.float32),
    ]


@mistake("it matches D_i = Σ_j dP_ij: D_i is Σ_j P_ij dP_ij = dO_i · O_i, weight the row sum by P")
def _delta_unweighted(weights, values, out, grad_out):
    grad_weights = grad_out @ values.transpose(-2, -1)
    return weights * (grad_weights - grad_weights.sum(-1, keepdim=True))


@mistake(
    "it matches D summed without keepdim=True: D has one number per query row and must keep "
    "its last axis, (grad_out * out).sum(dim=-1, keepdim=True), to broadcast over the keys"
)
def _delta_without_keepdim(weights, values, out, grad_out):
    grad_weights = grad_out @ values.transpose(-2, -1)
    delta = (grad_out * out).sum(dim=-1)  # (..., n_q): broadcasts against the KEY axis
    return weights * (grad_weights - delta)


SCORE_GRADIENT = Exercise(
    grade_id="ex7_4_score_gradient",
    notebook=NOTEBOOK,
    signature="score_gradient(weights, values, out, grad_out)",
    docstring="""
        dS, the gradient of the loss with respect to the scores S (the formulas above).

        weights P (..., n_q, n_k), values V (..., n_k, d_v), out O and grad_out dO (..., n_q, d_v).
        Returns dS, shaped like weights.
        Forbidden (scores 0): the course's score_gradient, torch.autograd.grad, torch.Tensor.backward.
    """,
    hint=(
        "first the gradient of the weights; then, per query row, subtract the weights-averaged "
        "value of that gradient (which equals dO_i · O_i) and multiply by the weights"
    ),
    code_hint=(
        "grad_weights = grad_out @ values.transpose(-2, -1); "
        "delta = (grad_out * out).sum(dim=-1, keepdim=True); return weights * (grad_weights - delta)"
    ),
    reference=score_gradient,
    forbidden=("torch.autograd.grad", "torch.Tensor.backward"),
    cases=_gradient_cases,
    judge=close("grad_scores"),
    mistakes=(
        Mistake(
            "it matches dS = P ∘ dP: you forgot to subtract D_i = dO_i · O_i, dS = P ∘ (dP − D)",
            lambda weights, values, out, grad_out: weights * (grad_out @ values.transpose(-2, -1)),
        ),
        Mistake(
            "it matches dP = dO Vᵀ: multiply by P and subtract D, dS = P ∘ (dP − D)",
            lambda weights, values, out, grad_out: grad_out @ values.transpose(-2, -1),
        ),
        _delta_unweighted,
        _delta_without_keepdim,
    ),
)

EXERCISES = (ONLINE_SOFTMAX, TILED_ATTENTION, CAUSAL_TILE_KIND, SCORE_GRADIENT)
