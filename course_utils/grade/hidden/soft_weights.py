"""Hidden tests for notebook 01 (soft weights): different seeds, shapes and edge cases than the
visible checks in ``course_utils.exercises.soft_weights``; expected values from the reference."""

from __future__ import annotations

import torch

from course_utils.grade.hidden import Case, close
from course_utils.pooling import nadaraya_watson, soft_lookup
from course_utils.softmax import softmax

NOTEBOOK = "01_soft_weights"


def _stable_softmax_cases(generator: torch.Generator) -> list[Case]:
    random_rows = torch.randn(4, 7, generator=generator)
    three_d = torch.randn(3, 5, 2, generator=generator, dtype=torch.float64)
    columns = torch.randn(6, 3, generator=generator)
    huge = torch.tensor([[1000.0, 0.0, -5.0], [-1000.0, -1001.0, -1002.0], [88.0, 89.0, 90.0]])
    wide_range = torch.randn(3, 4, generator=generator, dtype=torch.float64) * 400
    judge = close("weights", atol=1e-6, rtol=1e-5)
    return [
        Case("random (4, 7) scores, dim=-1", (random_rows, -1), softmax(random_rows, -1), judge),
        Case("(3, 5, 2) float64 scores, dim=1", (three_d, 1), softmax(three_d, 1), judge),
        Case("(6, 3) scores, dim=0", (columns, 0), softmax(columns, 0), judge),
        Case("large logits (±1000), dim=-1", (huge, -1), softmax(huge, -1), judge),
        Case(
            "float64 scores spread over ±1000, dim=1",
            (wide_range, 1),
            softmax(wide_range, 1),
            judge,
        ),
    ]


def _soft_lookup_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    settings = [
        ("6 keys of d=4, values d_v=3, T=1", 6, 4, 3, 1.0, torch.float32, 1.0),
        ("6 keys, T=0.5", 6, 4, 3, 0.5, torch.float32, 1.0),
        ("10 keys of d=8, values d_v=1, T=3", 10, 8, 1, 3.0, torch.float32, 1.0),
        ("keys scaled ×40 (scores in the hundreds), T=1", 5, 3, 2, 1.0, torch.float32, 40.0),
        ("a single float64 key, T=2", 1, 4, 2, 2.0, torch.float64, 1.0),
    ]
    for name, count, key_dim, value_dim, temperature, dtype, key_scale in settings:
        keys = torch.randn(count, key_dim, generator=generator, dtype=dtype) * key_scale
        values = torch.randn(count, value_dim, generator=generator, dtype=dtype)
        query = torch.randn(key_dim, generator=generator, dtype=dtype)
        expected = soft_lookup(query, keys, values, temperature)
        cases.append(
            Case(name, (query, keys, values, temperature), expected, close("output", "weights"))
        )
    return cases


def _kernel_regression_cases(generator: torch.Generator) -> list[Case]:
    cases = []
    settings = [
        ("4 queries, 7 training points, h=0.5 (float64)", 4, 7, 0.5, torch.float64, False),
        ("9 queries, 20 training points, h=1", 9, 20, 1.0, torch.float32, False),
        ("queries far outside the training range, h=0.1", 5, 12, 0.1, torch.float64, True),
        ("one query, one training point, h=2", 1, 1, 2.0, torch.float32, False),
        ("12 queries, 30 training points, h=2.5", 12, 30, 2.5, torch.float32, False),
    ]
    for name, query_count, train_count, bandwidth, dtype, far in settings:
        train_points = torch.rand(train_count, generator=generator, dtype=dtype) * 5
        train_values = torch.sin(train_points) + 0.1 * torch.randn(
            train_count, generator=generator, dtype=dtype
        )
        query_points = torch.linspace(0, 5, query_count, dtype=dtype)
        if far:
            # (x - x_i)² / (2h²) reaches ~10⁴: exp() underflows to 0 for every key unless the
            # row maximum is subtracted first, and 0 / 0 is NaN.
            query_points = query_points + 10
        expected = nadaraya_watson(query_points, train_points, train_values, bandwidth)
        cases.append(
            Case(
                name,
                (query_points, train_points, train_values, bandwidth),
                expected,
                close("predictions", "weights"),
            )
        )
    return cases


def build_cases() -> dict[str, list[Case]]:
    generator = torch.Generator().manual_seed(1001)
    return {
        "ex1_1_stable_softmax": _stable_softmax_cases(generator),
        "ex1_2_soft_lookup": _soft_lookup_cases(generator),
        "ex1_3_kernel_regression": _kernel_regression_cases(generator),
    }
