"""Hidden tests for notebook 04 (self-attention): other shapes and seeds than the visible checks
in ``course_utils.exercises.self_attention``; expected values from the reference."""

from __future__ import annotations

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.grade.hidden import Case, close
from course_utils.positional import sinusoidal_positional_encoding

NOTEBOOK = "04_self_attention"


def _scaled_dot_product_cases(generator: torch.Generator) -> list[Case]:
    shapes = [
        ("5 queries, 7 keys, d=16, d_v=2 (float64)", (5,), 7, 16, 2, torch.float64, 1.0),
        ("batch (3, n=4, m=4, d=8, d_v=8)", (3, 4), 4, 8, 8, torch.float32, 1.0),
        ("batch × heads (2, 3, n=6, m=9, d=4, d_v=5)", (2, 3, 6), 9, 4, 5, torch.float32, 1.0),
        ("large scores (entries ×30), d=8", (4,), 6, 8, 3, torch.float32, 30.0),
        ("a single query and key, d=3", (1,), 1, 3, 2, torch.float64, 1.0),
    ]
    cases = []
    for name, query_shape, key_count, dim, value_dim, dtype, scale in shapes:
        *batch, query_count = query_shape
        queries = torch.randn(*batch, query_count, dim, generator=generator, dtype=dtype) * scale
        keys = torch.randn(*batch, key_count, dim, generator=generator, dtype=dtype) * scale
        values = torch.randn(*batch, key_count, value_dim, generator=generator, dtype=dtype)
        expected = scaled_dot_product_attention(queries, keys, values)
        cases.append(
            Case(name, (queries, keys, values), expected, close("output", "weights", atol=1e-5))
        )
    return cases


def _self_attention_cases(generator: torch.Generator) -> list[Case]:
    shapes = [
        ("x (6, 8), d_k=4, d_v=3 (float64)", (6,), 8, 4, 3, torch.float64),
        ("x (2, 7, 5), d_k=6, d_v=2", (2, 7), 5, 6, 2, torch.float32),
        ("x (3, 4, 10), d_k=10, d_v=10", (3, 4), 10, 10, 10, torch.float32),
        ("one position, x (1, 1, 4), d_k=2, d_v=3", (1, 1), 4, 2, 3, torch.float64),
    ]
    cases = []
    for name, leading, model_dim, key_dim, value_dim, dtype in shapes:
        x = torch.randn(*leading, model_dim, generator=generator, dtype=dtype)
        query_weight = torch.randn(model_dim, key_dim, generator=generator, dtype=dtype)
        key_weight = torch.randn(model_dim, key_dim, generator=generator, dtype=dtype)
        value_weight = torch.randn(model_dim, value_dim, generator=generator, dtype=dtype)
        expected = scaled_dot_product_attention(x @ query_weight, x @ key_weight, x @ value_weight)
        cases.append(
            Case(
                name,
                (x, query_weight, key_weight, value_weight),
                expected,
                close("output", "weights", atol=1e-4, rtol=1e-4),
            )
        )
    return cases


def _sinusoidal_encoding_cases() -> list[Case]:
    sizes = [(1, 2), (5, 4), (12, 16), (50, 8), (3, 64)]
    return [
        Case(
            f"n={n} positions, d={d}",
            (n, d),
            sinusoidal_positional_encoding(n, d, dtype=torch.float64),
            close("encoding", atol=1e-4, rtol=1e-4),  # float32 sin/cos of angles up to 50
        )
        for n, d in sizes
    ]


def build_cases() -> dict[str, list[Case]]:
    generator = torch.Generator().manual_seed(1004)
    return {
        "ex4_1_scaled_dot_product": _scaled_dot_product_cases(generator),
        "ex4_2_self_attention": _self_attention_cases(generator),
        "ex4_3_sinusoidal_encoding": _sinusoidal_encoding_cases(),
    }
