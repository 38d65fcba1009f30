"""Hidden tests for notebook 06 (multi-head attention): split/merge against the reference, and the
whole layer (nn.Linear convention y = x @ W.T, per-head scale √d_h) with and without masks."""

from __future__ import annotations

import math

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.grade.hidden import Case, close
from course_utils.masks import causal_mask, padding_mask
from course_utils.multihead import merge_heads, split_heads

NOTEBOOK = "06_multi_head_attention"


def _split_heads_cases(generator: torch.Generator) -> list[Case]:
    settings = [((2, 3, 8), 2), ((1, 5, 12), 3), ((3, 4, 6), 6), ((2, 2, 10), 1)]
    cases = []
    for shape, heads in settings:
        x = torch.randn(*shape, generator=generator)
        cases.append(
            Case(f"x {shape}, {heads} heads", (x, heads), split_heads(x, heads), close("heads"))
        )
    return cases


def _merge_heads_cases(generator: torch.Generator) -> list[Case]:
    shapes = [(2, 2, 3, 4), (1, 3, 5, 2), (3, 1, 4, 6), (2, 4, 1, 3)]
    cases = []
    for shape in shapes:
        x = torch.randn(*shape, generator=generator)
        cases.append(Case(f"x {shape}", (x,), merge_heads(x), close("merged")))
    return cases


def _reference_layer(query, key, value, weights, num_heads, mask):
    query_weight, key_weight, value_weight, output_weight = weights
    heads, head_weights = scaled_dot_product_attention(
        split_heads(query @ query_weight.T, num_heads),
        split_heads(key @ key_weight.T, num_heads),
        split_heads(value @ value_weight.T, num_heads),
        mask,
    )
    return merge_heads(heads) @ output_weight.T, head_weights


def _multi_head_cases(generator: torch.Generator) -> list[Case]:
    settings = [
        ("B=2, n=3, m=5, E=8, 2 heads, no mask", 2, 3, 5, 8, 2, None),
        ("B=1, n=m=6, E=12, 4 heads, causal mask", 1, 6, 6, 12, 4, "causal"),
        ("B=3, n=4, m=7, E=6, 3 heads, key padding mask", 3, 4, 7, 6, 3, "padding"),
        ("B=2, n=m=5, E=10, 1 head, no mask", 2, 5, 5, 10, 1, None),
    ]
    cases = []
    for name, batch, n, m, embed_dim, heads, mask_kind in settings:
        query = torch.randn(batch, n, embed_dim, generator=generator, dtype=torch.float64)
        key = torch.randn(batch, m, embed_dim, generator=generator, dtype=torch.float64)
        value = torch.randn(batch, m, embed_dim, generator=generator, dtype=torch.float64)
        weights = [
            torch.randn(embed_dim, embed_dim, generator=generator, dtype=torch.float64)
            / math.sqrt(embed_dim)
            for _ in range(4)
        ]
        if mask_kind == "causal":
            mask = causal_mask(n)
        elif mask_kind == "padding":
            lengths = torch.randint(1, m + 1, (batch,), generator=generator)
            mask = padding_mask(lengths, m)[:, None, None, :]  # (B, 1, 1, m): over heads, queries
        else:
            mask = None
        expected = _reference_layer(query, key, value, weights, heads, mask)
        cases.append(
            Case(
                name,
                (query, key, value, *weights, heads, mask),
                expected,
                close("output", "weights", atol=1e-6),
            )
        )
    return cases


def build_cases() -> dict[str, list[Case]]:
    generator = torch.Generator().manual_seed(1006)
    return {
        "ex6_1_split_heads": _split_heads_cases(generator),
        "ex6_2_merge_heads": _merge_heads_cases(generator),
        "ex6_3_multi_head_attention": _multi_head_cases(generator),
    }
