"""Exercises of notebook 06 (multi-head attention): split heads, merge heads, the whole layer."""

from __future__ import annotations

import math

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, Mistake, mistake, randint
from course_utils.masks import padding_mask
from course_utils.multihead import merge_heads, split_heads

NOTEBOOK = "06_multi_head_attention"


def _view_heads_first(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """The classic mistake x.view(B, H, n, d_h): the right shape, but heads cut across positions."""
    batch, length, embed_dim = x.shape
    return x.reshape(batch, num_heads, length, embed_dim // num_heads)


def _counting(generator: torch.Generator, *shape: int) -> torch.Tensor:
    """float32 ``shape`` holding consecutive integers from a random start: each entry's value says
    where it came from (start + its flat index), so a misplaced entry is easy to trace."""
    start = randint(generator, 0, 1000)
    return torch.arange(start, start + math.prod(shape), dtype=torch.float32).reshape(shape)


# --------------------------------------------------------------------------------------------------
# 6.1 split heads


def _split_heads_cases(generator: torch.Generator) -> list[Case]:
    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    return [
        Case("x = consecutive integers, (2, 3, 8), 2 heads", (_counting(generator, 2, 3, 8), 2)),
        Case("x = consecutive integers, (2, 3, 8), 4 heads", (_counting(generator, 2, 3, 8), 4)),
        Case("x (2, 3, 8), 2 heads", (randn(2, 3, 8), 2)),
        Case("x (1, 5, 12), 3 heads", (randn(1, 5, 12), 3)),
        Case("x (3, 4, 6), 6 heads", (randn(3, 4, 6), 6)),
        Case("x (2, 2, 10), 1 head", (randn(2, 2, 10), 1)),
    ]


@mistake(
    "it matches (B, n, H, d_h): after cutting the features, swap the position and head "
    "axes to get (B, H, n, d_h)"
)
def _positions_still_first(x, num_heads):
    batch, length, embed_dim = x.shape
    return x.reshape(batch, length, num_heads, embed_dim // num_heads)


@mistake(
    "it matches head h taking every H-th feature: head h holds the consecutive features "
    "h·d_h … (h+1)·d_h - 1, so view the last axis as (H, d_h), not (d_h, H)"
)
def _strided_heads(x, num_heads):
    batch, length, embed_dim = x.shape
    return x.reshape(batch, length, embed_dim // num_heads, num_heads).permute(0, 3, 1, 2)


@mistake("it matches always 2 heads: use the num_heads argument")
def _always_two_heads(x, num_heads):
    return NOT_APPLICABLE if num_heads == 2 else split_heads(x, 2)


SPLIT_HEADS = Exercise(
    grade_id="ex6_1_split_heads",
    notebook=NOTEBOOK,
    signature="split_heads(x, num_heads)",
    docstring="""
        (B, n, E) -> (B, H, n, E // H), with H = num_heads and d_h = E // H.

        Head h holds features h·d_h … (h+1)·d_h - 1 of every position.
        Forbidden (scores 0): split_heads of course_utils.multihead.
    """,
    hint=(
        "cut each position's E features into H consecutive slices of d_h, then move the head "
        "axis in front of the positions"
    ),
    code_hint="x.view(B, n, num_heads, E // num_heads).transpose(1, 2) — not x.view(B, num_heads, n, ...)",
    reference=split_heads,
    cases=_split_heads_cases,
    judge=close("heads", atol=0.0, rtol=0.0),
    mistakes=(
        Mistake(
            "it matches x.view(B, H, n, d_h): the right shape, but it cuts the flat (n · E) memory "
            "into H blocks, mixing positions into heads; view (B, n, H, d_h), then transpose(1, 2)",
            _view_heads_first,
        ),
        _positions_still_first,
        _strided_heads,
        _always_two_heads,
    ),
)

# --------------------------------------------------------------------------------------------------
# 6.2 merge heads


def _merge_heads_cases(generator: torch.Generator) -> list[Case]:
    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    return [
        Case("x = consecutive integers, (2, 2, 3, 4)", (_counting(generator, 2, 2, 3, 4),)),
        Case("split_heads of a (3, 5, 12) tensor into 3 heads", (split_heads(randn(3, 5, 12), 3),)),
        Case("x (2, 2, 3, 4)", (randn(2, 2, 3, 4),)),
        Case("x (1, 3, 5, 2)", (randn(1, 3, 5, 2),)),
        Case("x (3, 1, 4, 6), one head", (randn(3, 1, 4, 6),)),
        Case("x (2, 4, 1, 3), one position", (randn(2, 4, 1, 3),)),
    ]


@mistake(
    "it matches reshaping (B, H, n, d_h) straight to (B, n, E): swap heads and positions "
    "first, x.transpose(1, 2).reshape(B, n, H · d_h)"
)
def _reshaped_without_transpose(x):
    batch, num_heads, length, head_dim = x.shape
    return x.reshape(batch, length, num_heads * head_dim)


@mistake(
    "it matches interleaving the heads feature by feature: concatenate whole head vectors, "
    "(B, n, H, d_h) -> (B, n, H · d_h), not (B, n, d_h, H)"
)
def _interleaved_heads(x):
    batch, num_heads, length, head_dim = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, length, num_heads * head_dim)


MERGE_HEADS = Exercise(
    grade_id="ex6_2_merge_heads",
    notebook=NOTEBOOK,
    signature="merge_heads(x)",
    docstring="""
        (B, H, n, d_h) -> (B, n, H * d_h), the inverse of split_heads.

        Position i is the concatenation [head_0[i], head_1[i], …] of the heads' vectors.
        Forbidden (scores 0): merge_heads of course_utils.multihead.
    """,
    hint=(
        "bring the positions back in front of the heads, then lay each position's H head vectors "
        "side by side"
    ),
    code_hint="x.transpose(1, 2) gives (B, n, H, d_h); then .reshape(B, n, H * d_h)",
    reference=merge_heads,
    cases=_merge_heads_cases,
    judge=close("merged", atol=0.0, rtol=0.0),
    mistakes=(_reshaped_without_transpose, _interleaved_heads),
)

# --------------------------------------------------------------------------------------------------
# 6.3 multi-head attention, functional


def multi_head_reference(
    query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None, split=split_heads
):
    """[head_1 ‖ … ‖ head_H] W_oᵀ with head_h = softmax(Q_h K_hᵀ / √d_h) V_h; nn.Linear's y = x Wᵀ."""
    queries = split(query @ W_q.T, num_heads)  # (B, H, n, d_h)
    keys = split(key @ W_k.T, num_heads)  # (B, H, m, d_h)
    values = split(value @ W_v.T, num_heads)  # (B, H, m, d_h)
    heads, weights = scaled_dot_product_attention(queries, keys, values, mask)
    return merge_heads(heads) @ W_o.T, weights


def _multi_head_cases(generator: torch.Generator) -> list[Case]:
    settings = [
        ("B=2, n=4, m=5, E=12, 3 heads, no mask", 2, 4, 5, 12, 3, None),
        ("B=2, n=4, m=5, E=12, 3 heads, causal (n, m) mask", 2, 4, 5, 12, 3, "causal"),
        ("B=2, n=3, m=5, E=8, 2 heads, no mask", 2, 3, 5, 8, 2, None),
        ("B=1, n=m=6, E=12, 4 heads, causal mask", 1, 6, 6, 12, 4, "causal"),
        ("B=3, n=4, m=7, E=6, 3 heads, key padding mask (B, 1, 1, m)", 3, 4, 7, 6, 3, "padding"),
        ("B=2, n=m=5, E=10, 1 head, no mask", 2, 5, 5, 10, 1, None),
    ]
    cases = []
    for name, batch, n, m, embed_dim, num_heads, mask_kind in settings:
        query = torch.randn(batch, n, embed_dim, generator=generator, dtype=torch.float64)
        key = torch.randn(batch, m, embed_dim, generator=generator, dtype=torch.float64)
        value = torch.randn(batch, m, embed_dim, generator=generator, dtype=torch.float64)
        weights = [
            torch.randn(embed_dim, embed_dim, generator=generator, dtype=torch.float64)
            / math.sqrt(embed_dim)
            for _ in range(4)
        ]
        if mask_kind == "causal":
            mask = torch.ones(n, m, dtype=torch.bool).tril()  # query i may attend keys 0 … i
        elif mask_kind == "padding":
            lengths = torch.randint(1, m, (batch,), generator=generator)  # at least one pad key
            mask = padding_mask(lengths, m)[:, None, None, :]
        else:
            mask = None
        cases.append(Case(name, (query, key, value, *weights, num_heads, mask)))
    return cases


@mistake("it matches projecting with x @ W: nn.Linear's convention (used here) is y = x @ W.T")
def _projected_with_w(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None):
    return multi_head_reference(query, key, value, W_q.T, W_k.T, W_v.T, W_o.T, num_heads, mask)


@mistake("it matches scaling by √embed_dim: each head's scores are scaled by √d_h, d_h = E / H")
def _scaled_by_embed_dim(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None):
    if num_heads == 1:
        return NOT_APPLICABLE
    # 1/√E instead of 1/√d_h: scale the queries by √(d_h / E) before the reference's 1/√d_h.
    shrunk_query = query * math.sqrt(1 / num_heads)
    return multi_head_reference(shrunk_query, key, value, W_q, W_k, W_v, W_o, num_heads, mask)


@mistake(
    "it matches heads split with view(B, H, n, d_h), which mixes positions into heads: "
    "view (B, n, H, d_h), then transpose(1, 2)"
)
def _heads_split_wrongly(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None):
    if num_heads == 1:
        return NOT_APPLICABLE
    return multi_head_reference(
        query, key, value, W_q, W_k, W_v, W_o, num_heads, mask, split=_view_heads_first
    )


@mistake("it matches leaving out the output projection: return merge_heads(heads) @ W_o.T")
def _no_output_projection(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None):
    identity = torch.eye(W_o.shape[0], dtype=W_o.dtype)
    return multi_head_reference(query, key, value, W_q, W_k, W_v, identity, num_heads, mask)


@mistake("it matches ignoring the mask: pass it to the attention of every head")
def _mask_ignored(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None):
    if mask is None:
        return NOT_APPLICABLE
    return multi_head_reference(query, key, value, W_q, W_k, W_v, W_o, num_heads)


@mistake(
    "it matches the inverted mask: True = may attend (torch.nn.MultiheadAttention's "
    "masks use the opposite)"
)
def _mask_inverted(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None):
    if mask is None:
        return NOT_APPLICABLE
    return multi_head_reference(query, key, value, W_q, W_k, W_v, W_o, num_heads, ~mask)


@mistake("it matches averaging the weights over heads: return the per-head weights (B, H, n, m)")
def _weights_averaged(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None):
    output, weights = multi_head_reference(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask)
    return output, weights.mean(dim=1)


MULTI_HEAD_ATTENTION = Exercise(
    grade_id="ex6_3_multi_head_attention",
    notebook=NOTEBOOK,
    signature="multi_head_attention(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask=None)",
    docstring="""
        Project, split into heads, attend per head (scale √d_h), merge, project out. Returns (output, weights).

        query (B, n, E); key and value (B, m, E); W_q, W_k, W_v, W_o (E, E) in nn.Linear's
        convention (x is multiplied by W transposed; no bias); mask None or bool, True = may attend,
        broadcastable to (B, H, n, m). output is (B, n, E) and weights (B, H, n, m), H = num_heads.
        Forbidden (scores 0): torch's F.multi_head_attention_forward.
    """,
    hint=(
        "project with each weight matrix, cut the projections into heads, attend within each "
        "head, then put the heads side by side again and project out"
    ),
    code_hint=(
        "Q = reference.split_heads(query @ W_q.T, num_heads), same for K, V; "
        "reference.scaled_dot_product_attention(Q, K, V, mask); reference.merge_heads(...) @ W_o.T"
    ),
    reference=multi_head_reference,
    forbidden=("torch.nn.functional.multi_head_attention_forward",),
    cases=_multi_head_cases,
    judge=close("output", "weights", atol=1e-6),
    mistakes=(
        _projected_with_w,
        _scaled_by_embed_dim,
        _heads_split_wrongly,
        _no_output_projection,
        _mask_ignored,
        _mask_inverted,
        _weights_averaged,
    ),
)

EXERCISES = (SPLIT_HEADS, MERGE_HEADS, MULTI_HEAD_ATTENTION)
