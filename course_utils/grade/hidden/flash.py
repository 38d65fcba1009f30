"""Hidden tests for notebook 07 (flash attention tiling): other seeds, shapes and block sizes than the
visible checks in ``course_utils.exercises.flash`` (ragged last blocks, one column at a time, blocks
wider than the sequence, head dimensions, scores near 1000, single keys); expected values from the
reference (``course_utils.flash`` and autograd).

Besides the expected value, a case keeps (in the parent) what each classic mistake would return for
its inputs; a wrong answer that matches one of them is told which mistake it is.

``causal_tile_kind`` answers with a str ('full', 'partial', 'skip'): the codec carries short strings
back from the child.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from course_utils.exercises.flash import tiled_with_mistakes
from course_utils.flash import TILE_FULL, TILE_PARTIAL, TILE_SKIP, online_softmax_stats, tile_kind
from course_utils.grade.hidden import Case, Judge, close, describe, naming_mistakes

NOTEBOOK = "07_flash_attention_tiling"


# --------------------------------------------------------------------------------------------------
# ex7_1: online softmax statistics


def _blocks(scores: torch.Tensor, block_size: int):
    return [
        scores[..., start : start + block_size] for start in range(0, scores.shape[-1], block_size)
    ]


def _stats_mistakes(scores: torch.Tensor, block_size: int) -> list[tuple[Any, str]]:
    """What the classic online-softmax mistakes return for these inputs."""
    true_max = scores.amax(-1)
    # l += Σ exp(s − m_new) without rescaling the old l by exp(m_old − m_new)
    running_max = torch.full_like(true_max, -math.inf)
    unrescaled = torch.zeros_like(true_max)
    # every block's sum relative to its own max
    own_max = torch.zeros_like(true_max)
    for block in _blocks(scores, block_size):
        running_max = torch.maximum(running_max, block.amax(-1))
        unrescaled = unrescaled + torch.exp(block - running_max[..., None]).sum(-1)
        own_max = own_max + torch.exp(block - block.amax(-1, keepdim=True)).sum(-1)
    full_blocks = scores.shape[-1] - scores.shape[-1] % block_size
    last_block = _blocks(scores, block_size)[-1]
    mistakes = [
        (
            (true_max, unrescaled),
            "each block's sum is added without rescaling the old sum: multiply l by "
            "exp(m_old − m_new) whenever the max grows",
        ),
        (
            (true_max, own_max),
            "each block's sum is relative to that block's own max: rescale every sum to the "
            "running max, l = l·exp(m_old − m_new) + Σ exp(s − m_new)",
        ),
        (
            online_softmax_stats(last_block, block_size),
            "only the last block counts: keep a running max and sum across all blocks",
        ),
    ]
    if 0 < full_blocks < scores.shape[-1]:
        mistakes.append(
            (
                online_softmax_stats(scores[..., :full_blocks], block_size),
                "the last, shorter block is missing: loop with range(0, n, block_size) and slice "
                "[start : start + block_size]",
            )
        )
    return mistakes


def _online_softmax_cases(generator: torch.Generator) -> list[Case]:
    rising = torch.randn(4, 11, generator=generator, dtype=torch.float64) + torch.linspace(
        0, 8, 11, dtype=torch.float64
    )  # the max moves in every block
    settings = [
        ("(4, 11) scores rising along the row, block_size=3 (ragged last block)", rising, 3),
        (
            "(2, 3, 8) scores, block_size=8 (one block)",
            torch.randn(2, 3, 8, generator=generator, dtype=torch.float64) * 3,
            8,
        ),
        (
            "(3, 6) scores, block_size=1 (one column at a time)",
            torch.randn(3, 6, generator=generator, dtype=torch.float64) * 2,
            1,
        ),
        (
            "(5, 7) float32 scores, block_size=20 (wider than the row)",
            torch.randn(5, 7, generator=generator) * 2,
            20,
        ),
        (
            "scores near ±1000, block_size=2",
            torch.tensor(
                [[-1000.0, 998.0, 1000.0, 0.0, 999.5], [3.0, -999.0, 1000.0, 1000.0, -2.0]],
                dtype=torch.float64,
            ),
            2,
        ),
    ]
    cases = []
    for name, scores, block_size in settings:
        expected = online_softmax_stats(scores, block_size)
        judge = naming_mistakes(
            close("row_max", "row_sum", atol=1e-6, rtol=1e-6), _stats_mistakes(scores, block_size)
        )
        cases.append(Case(name, (scores, block_size), expected, judge))
    return cases


# --------------------------------------------------------------------------------------------------
# ex7_2: tiled forward


def _attention(q, k, v, scale=True, dim=-1):
    scores = q @ k.transpose(-2, -1) / (math.sqrt(q.shape[-1]) if scale else 1.0)
    return torch.softmax(scores, dim=dim) @ v


def _tiled_without_acc_rescale(q, k, v, block_q, block_k):
    """Tiled attention that rescales the sum l but not the accumulated output."""
    return tiled_with_mistakes(q, k, v, block_q, block_k, rescale_acc=False)


def _tiled_cases(generator: torch.Generator) -> list[Case]:
    settings = [
        # name, leading, n_q, n_k, d, d_v, block_q, block_k, dtype, scale
        ("B=2, 9 queries, 14 keys, d=8, blocks 4 × 5 (ragged)", (2,), 9, 14, 8, 3, 4, 5, torch.float64, 2.0),
        ("blocks larger than n: 6 queries, 5 keys, blocks 32 × 32", (1,), 6, 5, 4, 4, 32, 32, torch.float64, 1.0),
        ("block_q = block_k = 1, 5 queries, 7 keys", (3,), 5, 7, 6, 2, 1, 1, torch.float64, 2.0),
        ("batch × heads (2, 3), 7 queries, 10 keys, blocks 3 × 4", (2, 3), 7, 10, 4, 5, 3, 4, torch.float64, 2.0),
        ("large scores (entries ×12, d=4), blocks 2 × 3", (2,), 5, 8, 4, 3, 2, 3, torch.float64, 12.0),
        ("float32, 16 queries, 24 keys, d=16, blocks 8 × 8", (2,), 16, 24, 16, 8, 8, 8, torch.float32, 1.0),
    ]  # fmt: skip
    cases = []
    for name, leading, n_q, n_k, dim, value_dim, block_q, block_k, dtype, scale in settings:
        q = torch.randn(*leading, n_q, dim, generator=generator, dtype=dtype) * scale
        k = torch.randn(*leading, n_k, dim, generator=generator, dtype=dtype) * scale
        v = torch.randn(*leading, n_k, value_dim, generator=generator, dtype=dtype)
        reference = (q.double(), k.double(), v.double())
        expected = _attention(*reference).to(dtype)
        mistakes = [
            (_attention(*reference, scale=False), "scores are not divided by √d: s = q·k / √d"),
            (
                _tiled_without_acc_rescale(*reference, block_q, block_k),
                "the accumulated output is not rescaled: multiply acc by exp(m_old − m_new) too, "
                "not only the sum l",
            ),
            (
                _attention(*reference, dim=-2),
                "weights sum to 1 over the queries: normalise each query's row over the keys",
            ),
        ]
        if n_k > n_q:
            mistakes.append(
                (
                    _attention(q.double(), k[..., :n_q, :].double(), v[..., :n_q, :].double()),
                    "only the first n_queries keys are used: loop over all key blocks up to "
                    "k.shape[-2]",
                )
            )
        atol = 1e-5 if dtype == torch.float32 else 1e-6
        judge = naming_mistakes(close("output", atol=atol, rtol=1e-5), mistakes)
        cases.append(Case(name, (q, k, v, block_q, block_k), expected, judge))
    return cases


# --------------------------------------------------------------------------------------------------
# ex7_3: causal tile kinds

KINDS = (TILE_FULL, TILE_PARTIAL, TILE_SKIP)
TILE_RULE = (
    "with query i seeing key j iff j <= i, a tile is 'skip' when its first key k_start comes after "
    "its last query q_stop − 1, 'full' when its last key k_stop − 1 is at or before its first "
    "query q_start, and 'partial' otherwise"
)


def _tile_judge(tile: tuple[int, int, int, int]) -> Judge:
    q_start, q_stop, k_start, k_stop = tile
    mirrored = tile_kind(k_start, k_stop, q_start, q_stop, True)  # keys and queries swapped
    inclusive_stops = tile_kind(q_start, q_stop + 1, k_start, k_stop + 1, True)  # stops as last

    def judge(actual: Any, expected: str) -> str | None:
        if not isinstance(actual, str):
            return f"should return one of 'full', 'partial', 'skip', got {describe(actual)}"
        if actual not in KINDS:
            return "returned a string other than 'full', 'partial', 'skip'"
        if actual == expected:
            return None
        if actual == mirrored:
            return (
                "wrong tile kind; it matches the mirrored rule (upper triangle kept): query i may "
                "attend key j iff j <= i, so tiles whose keys come AFTER the queries are skipped"
            )
        if actual == inclusive_stops:
            return (
                "wrong tile kind; stops are exclusive: the last query is q_stop − 1 and the last "
                f"key k_stop − 1 ({TILE_RULE})"
            )
        return f"wrong tile kind: {TILE_RULE}"

    return judge


def _tile_cases() -> list[Case]:
    tiles = [
        (0, 3, 0, 3),  # diagonal, square
        (3, 6, 0, 3),  # below the diagonal
        (0, 3, 3, 6),  # above the diagonal
        (5, 10, 0, 6),  # last key 5 == first query 5: still fully visible
        (5, 10, 0, 7),  # keys 6 and 7 hidden from query 5: crosses the diagonal
        (5, 10, 10, 12),  # first key right after the last query
        (5, 10, 9, 12),  # key 9 visible to query 9 only
        (7, 8, 7, 8),  # a single element on the diagonal
        (2, 3, 3, 4),  # a single element just above the diagonal
        (0, 8, 5, 6),  # one key column across the diagonal
    ]
    return [
        Case(
            f"queries [{q0}, {q1}) × keys [{k0}, {k1})",
            (q0, q1, k0, k1),
            tile_kind(q0, q1, k0, k1, True),
            _tile_judge((q0, q1, k0, k1)),
        )
        for q0, q1, k0, k1 in tiles
    ]


# --------------------------------------------------------------------------------------------------
# ex7_4: gradient of the scores


def _gradient_cases(generator: torch.Generator) -> list[Case]:
    settings = [
        ("(2, 5 queries, 7 keys), d_v=3 (float64)", (2, 5, 7), 3, torch.float64, 1e-8),
        ("batch × heads (3, 2, 4 queries, 6 keys), d_v=5", (3, 2, 4, 6), 5, torch.float64, 1e-8),
        ("a single key (2, 4 queries, 1 key)", (2, 4, 1), 3, torch.float64, 1e-8),
        ("a single query (1, 1 query, 12 keys), d_v=2", (1, 1, 12), 2, torch.float64, 1e-8),
        ("float32 (4, 16 queries, 16 keys), d_v=8", (4, 16, 16), 8, torch.float32, 1e-5),
    ]
    cases = []
    for name, score_shape, value_dim, dtype, atol in settings:
        *leading, n_q, n_k = score_shape
        scores = torch.randn(*score_shape, generator=generator, dtype=dtype) * 2
        values = torch.randn(*leading, n_k, value_dim, generator=generator, dtype=dtype)
        grad_out = torch.randn(*leading, n_q, value_dim, generator=generator, dtype=dtype)
        scores64 = scores.double().requires_grad_()
        weights64 = torch.softmax(scores64, dim=-1)
        out64 = weights64 @ values.double()
        (expected,) = torch.autograd.grad(out64, scores64, grad_out.double())
        weights64, out64 = weights64.detach(), out64.detach()
        grad_weights = grad_out.double() @ values.double().transpose(-2, -1)  # dP = dO Vᵀ
        mistakes = [
            (
                weights64 * grad_weights,
                "you forgot to subtract D_i = dO_i · O_i: dS = P ∘ (dP − D)",
            ),
            (grad_weights, "that is dP = dO Vᵀ: multiply by P and subtract D, dS = P ∘ (dP − D)"),
            (
                weights64 * (grad_weights - grad_weights.sum(-1, keepdim=True)),
                "D_i is Σ_j P_ij dP_ij = dO_i · O_i, not Σ_j dP_ij: weight the row sum by P",
            ),
        ]
        judge = naming_mistakes(close("grad_scores", atol=atol, rtol=1e-5), mistakes)
        arguments = (weights64.to(dtype), values, out64.to(dtype), grad_out)
        cases.append(Case(name, arguments, expected.to(dtype), judge))
    return cases


def build_cases() -> dict[str, list[Case]]:
    generator = torch.Generator().manual_seed(1007)
    return {
        "ex7_1_online_softmax": _online_softmax_cases(generator),
        "ex7_2_tiled_attention": _tiled_cases(generator),
        "ex7_3_causal_tile_kind": _tile_cases(),
        "ex7_4_score_gradient": _gradient_cases(generator),
    }
