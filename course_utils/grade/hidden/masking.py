"""Hidden tests for notebook 05 (masking): masks are compared exactly (bool, True = may attend);
attention with fully masked rows must give zeros, not NaN."""

from __future__ import annotations

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.grade.hidden import Case, close
from course_utils.masks import causal_mask, padding_mask

NOTEBOOK = "05_masking"


def _causal_mask_cases() -> list[Case]:
    return [Case(f"n={n}", (n,), causal_mask(n), close("mask")) for n in (1, 2, 3, 8, 17)]


def _padding_mask_cases() -> list[Case]:
    settings = [
        ("lengths [2, 4, 1], max_len=4", [2, 4, 1], 4),
        ("lengths [3], max_len=6 (padding after the longest)", [3], 6),
        ("a zero length among [0, 5, 2], max_len=5", [0, 5, 2], 5),
        ("8 sequences of length 1..8, max_len=8", list(range(1, 9)), 8),
    ]
    return [
        Case(
            name,
            (torch.tensor(lengths), max_len),
            padding_mask(torch.tensor(lengths), max_len),
            close("mask"),
        )
        for name, lengths, max_len in settings
    ]


def _masked_attention_cases(generator: torch.Generator) -> list[Case]:
    cases = []

    def add(name, queries, keys, values, mask):
        expected = scaled_dot_product_attention(queries, keys, values, mask)
        cases.append(
            Case(name, (queries, keys, values, mask), expected, close("output", "weights"))
        )

    n, d = 5, 4
    queries, keys, values = (torch.randn(n, d, generator=generator) for _ in range(3))
    add("causal mask, n=5", queries, keys, values, causal_mask(n))
    batch_q = torch.randn(3, 4, 6, generator=generator, dtype=torch.float64)
    batch_k = torch.randn(3, 7, 6, generator=generator, dtype=torch.float64)
    batch_v = torch.randn(3, 7, 2, generator=generator, dtype=torch.float64)
    key_mask = padding_mask(torch.tensor([7, 3, 5]), 7)[:, None, :]  # (3, 1, 7)
    add("padding mask (3, 1, 7) broadcast over queries", batch_q, batch_k, batch_v, key_mask)
    with_empty_row = causal_mask(4).clone()
    with_empty_row[2] = False  # query 2 may attend nothing: its row must be zeros
    q4, k4, v4 = (torch.randn(4, 3, generator=generator) for _ in range(3))
    add("a fully masked query row", q4, k4, v4, with_empty_row)
    add("every key masked", q4, k4, v4, torch.zeros(4, 4, dtype=torch.bool))
    big_q = torch.randn(2, 6, 8, generator=generator) * 20
    big_k = torch.randn(2, 6, 8, generator=generator) * 20
    big_v = torch.randn(2, 6, 3, generator=generator)
    add("large scores with a causal mask", big_q, big_k, big_v, causal_mask(6))
    return cases


def _combined_mask_cases() -> list[Case]:
    settings = [
        ("lengths [2, 4, 3], n=4", [2, 4, 3], 4),
        ("lengths [1], n=1", [1], 1),
        ("lengths [6, 0, 3], n=6", [6, 0, 3], 6),
        ("lengths [5, 5], n=5 (no padding)", [5, 5], 5),
    ]
    cases = []
    for name, lengths, n in settings:
        lengths = torch.tensor(lengths)
        expected = causal_mask(n)[None, :, :] & padding_mask(lengths, n)[:, None, :]
        cases.append(Case(name, (lengths, n), expected, close("mask")))
    return cases


def build_cases() -> dict[str, list[Case]]:
    generator = torch.Generator().manual_seed(1005)
    return {
        "ex5_1_causal_mask": _causal_mask_cases(),
        "ex5_2_padding_mask": _padding_mask_cases(),
        "ex5_3_masked_attention": _masked_attention_cases(generator),
        "ex5_4_combined_mask": _combined_mask_cases(),
    }
