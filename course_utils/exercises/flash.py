"""Visible checks for notebook 07 (flash attention tiling).

Each check compares the learner's function with the course reference and, where a classic
mistake gives a recognisable wrong answer, computes that wrong answer too and names the mistake.
"""

from __future__ import annotations

import math

import torch

from course_utils.checks import LearnerFunction, register
from course_utils.flash import TILE_FULL, TILE_PARTIAL, TILE_SKIP, online_softmax_stats, tile_kind

# ----------------------------------------------------------------------------------------------
# ex7_1: online softmax statistics


def _stats_without_rescale(scores: torch.Tensor, block_size: int) -> torch.Tensor:
    """The classic bug: l += Σ exp(s − m_new) without multiplying the old l by exp(m_old − m_new)."""
    row_max = torch.full(scores.shape[:-1], -math.inf, dtype=scores.dtype)
    row_sum = torch.zeros_like(row_max)
    for start in range(0, scores.shape[-1], block_size):
        block = scores[..., start : start + block_size]
        row_max = torch.maximum(row_max, block.amax(-1))
        row_sum = row_sum + torch.exp(block - row_max[..., None]).sum(-1)
    return row_sum


def _stats_block_max_only(scores: torch.Tensor, block_size: int) -> torch.Tensor:
    """The other bug: each block's sum is taken relative to that block's own max, never rescaled."""
    row_sum = torch.zeros(scores.shape[:-1], dtype=scores.dtype)
    for start in range(0, scores.shape[-1], block_size):
        block = scores[..., start : start + block_size]
        row_sum = row_sum + torch.exp(block - block.amax(-1, keepdim=True)).sum(-1)
    return row_sum


@register("ex7_1_online_softmax", calls="online_softmax_stats(scores, block_size)")
def _check_online_softmax(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(71)
    # Increasing scores make the maximum move in every block: forgetting to rescale shows up.
    scores = torch.randn(3, 10, generator=generator, dtype=torch.float64) + torch.linspace(
        0, 6, 10, dtype=torch.float64
    )
    block_size = 4  # 10 = 4 + 4 + 2: a ragged last block
    result = learner(scores, block_size)
    learner.expect(
        isinstance(result, tuple) and len(result) == 2,
        "return a pair (row_max, row_sum), e.g. `return row_max, row_sum`",
    )
    row_max, row_sum = result
    learner.expect_tensor(row_max, shape=(3,), what="row_max (one per row)")
    learner.expect_tensor(row_sum, shape=(3,), what="row_sum (one per row)")
    dropped_max, dropped_sum = online_softmax_stats(scores[:, :8], block_size)
    if torch.allclose(row_sum.detach().double(), dropped_sum, rtol=1e-6):
        learner.expect(
            False,
            "the last, shorter block (columns 8-9 of 10) is missing: loop with "
            "range(0, n, block_size) and slice [start : start + block_size]",
        )
    last_block_max = scores[:, 8:].amax(-1)
    if not torch.allclose(last_block_max, scores.amax(-1)) and torch.allclose(
        row_max.detach().double(), last_block_max
    ):
        learner.expect(
            False,
            "row_max is the last block's max: keep a running max, m = max(m, block.amax(-1))",
        )
    learner.expect_close(
        row_max, scores.amax(-1), "row_max differs from the row maximum over ALL blocks"
    )
    expected_max, expected_sum = online_softmax_stats(scores, block_size)
    for wrong, mistake in (
        (
            _stats_without_rescale(scores, block_size),
            "you add each block's sum without rescaling the old sum: multiply l by "
            "exp(m_old − m_new) whenever the max grows",
        ),
        (
            _stats_block_max_only(scores, block_size),
            "each block's sum is relative to that block's own max: rescale every sum to the "
            "running max, l = l·exp(m_old − m_new) + Σ exp(s − m_new)",
        ),
    ):
        if torch.allclose(row_sum.detach().double(), wrong, rtol=1e-6):
            learner.expect(False, mistake)
    learner.expect_close(
        row_sum,
        expected_sum,
        "row_sum should be Σ_j exp(s_j − m) with m the final row max (the two-pass normaliser)",
    )

    one_pass = (
        torch.exp(scores - row_max.detach().double()[:, None]) / row_sum.detach().double()[:, None]
    )
    learner.expect_close(
        one_pass,
        torch.softmax(scores, dim=-1),
        "exp(s − m) / l from your statistics does not equal the two-pass softmax",
    )

    for other_block in (1, 25):  # one column at a time, and a block wider than the row
        other_max, other_sum = learner(scores, other_block)
        learner.expect_close(
            other_sum,
            expected_sum,
            f"with block_size={other_block} the sum changes: the result must not depend on the "
            "block size (is the last, shorter block included? range(0, n, block_size))",
        )

    huge = torch.tensor([[1000.0, 0.0, 999.0, -5.0, 1001.0]], dtype=torch.float64)
    huge_max, huge_sum = learner(huge, 2)
    learner.expect(
        isinstance(huge_sum, torch.Tensor) and bool(torch.isfinite(huge_sum).all()),
        "scores of 1000 overflow: exponentiate s − m (the running max), never s itself",
    )
    learner.expect_close(
        huge_sum,
        online_softmax_stats(huge, 2)[1],
        "with scores near 1000 the sum is wrong: rescale with exp(m_old − m_new)",
    )


# ----------------------------------------------------------------------------------------------
# ex7_2: tiled forward (non-causal)


def tiled_with_mistakes(q, k, v, block_q, block_k, scale=True, rescale_acc=True):
    """Tiled attention with one deliberate mistake switched on, to recognise it in an answer.

    Shared by the visible checks here and the grader's hidden tests (course_utils.grade.hidden.flash).
    """
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
            probabilities = torch.exp(scores - new_max)
            correction = torch.exp(row_max - new_max)
            row_sum = row_sum * correction + probabilities.sum(-1, keepdim=True)
            acc = (acc * correction if rescale_acc else acc) + probabilities @ v[
                ..., k_start : k_start + block_k, :
            ]
            row_max = new_max
        out[..., q_start : q_start + block_q, :] = acc / row_sum
    return out


def _reference_attention(q, k, v, dim=-1):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, dim=dim) @ v


@register("ex7_2_tiled_attention", calls="tiled_attention(q, k, v, block_q, block_k)")
def _check_tiled_attention(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(72)
    # Spread-out scores so that the running max changes between key blocks.
    q = torch.randn(2, 10, 8, generator=generator, dtype=torch.float64) * 2
    k = torch.randn(2, 13, 8, generator=generator, dtype=torch.float64) * 2
    v = torch.randn(2, 13, 5, generator=generator, dtype=torch.float64)
    out = learner(q, k, v, 4, 5)  # 10 = 4+4+2 queries, 13 = 5+5+3 keys: ragged last blocks
    learner.expect_tensor(out, shape=(2, 10, 5), what="output (batch, n_queries, d_v)")
    expected = _reference_attention(q, k, v)
    candidates = (
        (
            tiled_with_mistakes(q, k, v, 4, 5, scale=False),
            "scores are not divided by √d: s = q·k / √d",
        ),
        (
            tiled_with_mistakes(q, k, v, 4, 5, rescale_acc=False),
            "the accumulated output is not rescaled: multiply acc by exp(m_old − m_new) too, "
            "not only the sum l",
        ),
        (
            _reference_attention(q, k, v, dim=-2),
            "weights sum to 1 over the queries: did you softmax over the query axis? "
            "Normalise each query's row over the keys",
        ),
        (
            _reference_attention(q, k[:, :10], v[:, :10]),
            "only the first 10 keys are used: loop over all key blocks up to n_keys "
            "(k.shape[-2]), not n_queries",
        ),
    )
    for wrong, mistake in candidates:
        if wrong.shape == out.shape and torch.allclose(out.detach().double(), wrong, atol=1e-6):
            learner.expect(False, mistake)
    learner.expect_close(
        out,
        expected,
        "output differs from softmax(Q Kᵀ / √d) V: check the running max/sum updates and that "
        "you divide acc by l once, after the last key block",
        atol=1e-6,
    )

    square = torch.randn(1, 6, 4, generator=generator, dtype=torch.float64)
    whole = learner(square, square, square, 16, 16)  # blocks larger than n: one tile
    learner.expect_tensor(whole, shape=(1, 6, 4), what="output with blocks larger than n")
    learner.expect_close(
        whole,
        _reference_attention(square, square, square),
        "with block sizes larger than n the result is wrong: slicing past the end is fine, "
        "but the last block must not be dropped",
        atol=1e-6,
    )
    single = learner(q, k, v, 1, 1)  # one query, one key at a time
    learner.expect_close(
        single, expected, "with block_q = block_k = 1 the result changes", atol=1e-6
    )
    big = torch.tensor([[[30.0, 0.0], [0.0, 30.0]]], dtype=torch.float64)
    stable = learner(big, big, big, 1, 1)
    learner.expect(
        isinstance(stable, torch.Tensor) and bool(torch.isfinite(stable).all()),
        "large scores give inf/NaN: exponentiate s − m, with m the running max",
    )


# ----------------------------------------------------------------------------------------------
# ex7_3: which tiles a causal mask lets us skip

_TILE_CASES = [
    # (q_start, q_stop, k_start, k_stop)
    (0, 4, 0, 4),  # diagonal tile: partial
    (4, 8, 0, 4),  # below the diagonal: full
    (0, 4, 4, 8),  # above: skip
    (4, 8, 4, 8),  # diagonal: partial
    (4, 8, 8, 12),  # above: skip
    (4, 8, 0, 5),  # last key 4 <= first query 4: full (the diagonal element is visible)
    (4, 8, 7, 9),  # key 7 visible to query 7 only: partial
    (4, 8, 8, 9),  # first key 8 after last query 7: skip
    (8, 12, 0, 8),  # full
    (0, 1, 0, 1),  # a single element on the diagonal: full
    (3, 4, 0, 8),  # one query row across the diagonal: partial
    (0, 8, 3, 4),  # one key column across the diagonal: partial
]


@register("ex7_3_causal_tile_kind", calls="causal_tile_kind(q_start, q_stop, k_start, k_stop)")
def _check_causal_tile_kind(learner: LearnerFunction) -> None:
    allowed = {TILE_FULL, TILE_PARTIAL, TILE_SKIP}
    answers = {}
    for case in _TILE_CASES:
        answer = learner(*case)
        learner.expect(
            answer in allowed,
            f"causal_tile_kind{case} returned {answer!r}: return one of 'full', 'partial', 'skip'",
        )
        answers[case] = answer
    transposed = all(
        answers[case] == tile_kind(case[2], case[3], case[0], case[1], True) for case in _TILE_CASES
    )
    if transposed:
        learner.expect(
            False,
            "your tiles are mirrored (upper triangle kept): query i may attend key j iff j <= i, "
            "so tiles whose keys come AFTER the queries are skipped",
        )
    for case in _TILE_CASES:
        expected = tile_kind(*case, True)
        q_start, q_stop, k_start, k_stop = case
        if answers[case] != expected:
            hint = ""
            if expected == TILE_FULL and answers[case] == TILE_PARTIAL:
                hint = (
                    " (stops are exclusive: the last key is k_stop − 1; a tile is full when "
                    "k_stop − 1 <= q_start)"
                )
            elif expected == TILE_SKIP:
                hint = " (a tile is skipped when its first key k_start is after its last query q_stop − 1)"
            elif expected == TILE_PARTIAL:
                hint = " (some keys are visible to some queries: the diagonal crosses this tile)"
            learner.expect(
                False,
                f"queries [{q_start}, {q_stop}) × keys [{k_start}, {k_stop}) should be "
                f"{expected!r}, got {answers[case]!r}{hint}",
            )
        learner.expectations_met += 1


# ----------------------------------------------------------------------------------------------
# ex7_4: gradient of the scores, the heart of the backward pass


@register("ex7_4_score_gradient", calls="score_gradient(weights, values, out, grad_out)")
def _check_score_gradient(learner: LearnerFunction) -> None:
    generator = torch.Generator().manual_seed(74)
    scores = torch.randn(2, 5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    values = torch.randn(2, 7, 3, generator=generator, dtype=torch.float64)
    grad_out = torch.randn(2, 5, 3, generator=generator, dtype=torch.float64)
    weights = torch.softmax(scores, dim=-1)
    out = weights @ values
    (expected,) = torch.autograd.grad(out, scores, grad_out)
    weights, out = weights.detach(), out.detach()

    grad_scores = learner(weights, values, out, grad_out)
    learner.expect_tensor(
        grad_scores, shape=(2, 5, 7), what="grad of the scores (like the weights)"
    )
    grad_weights = grad_out @ values.transpose(-2, -1)
    for wrong, mistake in (
        (
            weights * grad_weights,
            "you forgot to subtract D_i = dO_i · O_i: dS = P ∘ (dP − D), the softmax Jacobian "
            "has a −P Pᵀ part",
        ),
        (grad_weights, "that is dP = dO Vᵀ: multiply by P and subtract D, dS = P ∘ (dP − D)"),
        (
            weights * (grad_weights - grad_weights.sum(-1, keepdim=True)),
            "D_i is Σ_j P_ij dP_ij = dO_i · O_i, not Σ_j dP_ij: weight the row sum by P",
        ),
    ):
        if torch.allclose(grad_scores.detach().double(), wrong, atol=1e-8):
            learner.expect(False, mistake)
    learner.expect_close(
        grad_scores,
        expected,
        "dS differs from autograd's gradient: dS = P ∘ (dO Vᵀ − D) with D_i = dO_i · O_i",
        atol=1e-8,
    )
    column_sums = grad_scores.detach().double().sum(-1)
    learner.expect(
        bool(torch.allclose(column_sums, torch.zeros_like(column_sums), atol=1e-8)),
        "each row of dS should sum to 0 (softmax is unchanged by adding a constant to a row)",
    )
