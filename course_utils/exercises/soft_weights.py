"""Exercises of notebook 01 (soft weights): stable softmax, soft lookup, kernel regression."""

from __future__ import annotations

import torch

from course_utils.feedback.judge import close
from course_utils.feedback.shared_mistakes import swapped_pair
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake, randint, randn
from course_utils.pooling import nadaraya_watson, soft_lookup
from course_utils.softmax import softmax

NOTEBOOK = "01_soft_weights"
SOFTMAX_SHORTCUTS = (
    "torch.softmax",
    "torch.nn.functional.softmax",
    "torch.Tensor.softmax",
    "torch.special.softmax",
    "torch.log_softmax",
    "torch.nn.functional.log_softmax",
    "torch.Tensor.log_softmax",
    "course_utils.softmax.masked_softmax",
)

# --------------------------------------------------------------------------------------------------
# 1.1 stable softmax


def _stable_softmax_cases(generator: torch.Generator) -> list[Case]:
    def randn(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    return [
        Case("random (3, 5) scores, dim=-1", (randn(3, 5), -1)),
        Case("random (6, 3) scores, dim=0", (randn(6, 3), 0)),
        Case("(3, 5, 2) float64 scores, dim=1", (randn(3, 5, 2, dtype=torch.float64), 1)),
        Case(
            "large logits (2, 3): one row led by a logit near +1000, one row near -1000, dim=-1",
            (_large_logits(generator), -1),
        ),
        Case("float64 (3, 4) scores spread over ±1000, dim=1", (_spread_scores(randn), 1)),
    ]


def _large_logits(generator: torch.Generator) -> torch.Tensor:
    """float32 (2, 3): row 0 holds one logit near +1000 far above the others (exp overflows),
    row 1 three logits near -1000 (exp underflows to 0)."""
    logits = randn(generator, 2, 3, scale=3.0)
    logits[0, randint(generator, 0, 3)] += 1000.0
    logits[1] -= 1000.0
    return logits.float()


def _spread_scores(randn) -> torch.Tensor:
    """Rows whose own max is near +1000 (exp overflows) and near -1000 (exp underflows)."""
    spread = randn(3, 4, dtype=torch.float64) * 3
    spread[0] += 1000.0
    spread[2] -= 1000.0
    return spread


@mistake(
    "it matches exp(x) / sum(exp(x)) without the shift: exp(1000) overflows to inf and "
    "inf/inf is NaN; subtract the max along `dim` (keepdim=True) before exp()"
)
def _exp_without_shift(scores, dim=-1):
    exponentials = torch.exp(scores)
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


@mistake(
    "it matches subtracting the max of the WHOLE tensor: a row far below that max "
    "underflows to 0/0; subtract each row's own max, scores.amax(dim, keepdim=True)"
)
def _global_max(scores, dim=-1):
    exponentials = torch.exp(scores - scores.max())
    return exponentials / exponentials.sum(dim=dim, keepdim=True)


@mistake("it matches a softmax over the last axis whatever `dim` says: use the `dim` argument")
def _fixed_last_axis(scores, dim=-1):
    if dim % scores.dim() == scores.dim() - 1:
        return NOT_APPLICABLE
    return softmax(scores, dim=-1)


@mistake("it matches a softmax over the first axis whatever `dim` says: use the `dim` argument")
def _fixed_first_axis(scores, dim=-1):
    return NOT_APPLICABLE if dim % scores.dim() == 0 else softmax(scores, dim=0)


@mistake(
    "it matches reducing without keepdim=True: the max and the sum then do not broadcast "
    "back along `dim`"
)
def _max_without_keepdim(scores, dim=-1):
    exponentials = torch.exp(scores - scores.amax(dim=dim))
    return exponentials / exponentials.sum(dim=dim)


@mistake("it matches dividing by the sum of the whole tensor: normalise along `dim` only")
def _normalised_over_everything(scores, dim=-1):
    exponentials = torch.exp(scores - scores.amax(dim=dim, keepdim=True))
    return exponentials / exponentials.sum()


@mistake("it matches exp(x - max) without dividing by the sum along `dim`")
def _not_normalised(scores, dim=-1):
    return torch.exp(scores - scores.amax(dim=dim, keepdim=True))


STABLE_SOFTMAX = Exercise(
    grade_id="ex1_1_stable_softmax",
    notebook=NOTEBOOK,
    signature="stable_softmax(scores, dim=-1)",
    docstring="""
        Softmax of `scores` (a tensor of any shape) along `dim`, stable for any finite input: the
        max-shifted form of the formula above.

        Returns a tensor of the same shape whose entries along `dim` are positive and sum to 1.
        Forbidden (scores 0): torch.softmax, F.softmax, torch.Tensor.softmax, torch.special.softmax,
        torch.log_softmax, F.log_softmax, torch.Tensor.log_softmax; the course's softmax and
        masked_softmax (course_utils.softmax).
    """,
    hint="subtract the largest score along dim before exponentiating; the shift cancels in the ratio",
    code_hint=(
        "shifted = scores - scores.amax(dim, keepdim=True); e = torch.exp(shifted); "
        "return e / e.sum(dim, keepdim=True)"
    ),
    reference=softmax,
    forbidden=SOFTMAX_SHORTCUTS,
    cases=_stable_softmax_cases,
    judge=close("weights", atol=1e-6, rtol=1e-5),
    mistakes=(
        _exp_without_shift,
        _global_max,
        _fixed_last_axis,
        _fixed_first_axis,
        _max_without_keepdim,
        _normalised_over_everything,
        _not_normalised,
    ),
)

# --------------------------------------------------------------------------------------------------
# 1.2 soft lookup with a temperature


def _soft_lookup_cases(generator: torch.Generator) -> list[Case]:
    def lookup(name, keys_count, key_dim, value_dim, temperature, dtype=torch.float32, scale=1.0):
        keys = torch.randn(keys_count, key_dim, generator=generator, dtype=dtype) * scale
        values = torch.randn(keys_count, value_dim, generator=generator, dtype=dtype)
        query = torch.randn(key_dim, generator=generator, dtype=dtype)
        return Case(name, (query, keys, values, temperature))

    return [
        lookup("6 keys of d=4, values d_v=3, T=1", 6, 4, 3, 1.0),
        lookup("6 keys of d=4, T=0.5", 6, 4, 3, 0.5),
        lookup("10 keys of d=8, values d_v=1, T=3", 10, 8, 1, 3.0),
        lookup("keys scaled ×40 (scores in the hundreds), T=1", 5, 3, 2, 1.0, scale=40.0),
        lookup("a single float64 key, T=2", 1, 4, 2, 2.0, dtype=torch.float64),
    ]


@mistake("it matches multiplying the scores by the temperature: divide by it, α = softmax(s / T)")
def _times_temperature(query, keys, values, temperature):
    return soft_lookup(query, keys, values, 1.0 / temperature)


@mistake("it matches ignoring the temperature: divide the scores by T")
def _ignores_temperature(query, keys, values, temperature):
    return NOT_APPLICABLE if temperature == 1.0 else soft_lookup(query, keys, values, 1.0)


SOFT_LOOKUP = Exercise(
    grade_id="ex1_2_soft_lookup",
    notebook=NOTEBOOK,
    signature="soft_lookup_answer(query, keys, values, temperature)",
    docstring="""
        Soft lookup (the formulas above): weights from a softmax over the keys of their dot products
        with the query divided by the temperature; the output is the values averaged with those weights.

        query (d,), keys (m, d), values (m, d_v), temperature T > 0.
        Returns (output, weights): output (d_v,) and weights (m,).
        Forbidden (scores 0): soft_lookup of course_utils.pooling (the setup cell imports it).
    """,
    hint="score every key against the query, soften the scores by the temperature, then average the values",
    code_hint=(
        "scores = keys @ query / temperature; weights = softmax(scores, dim=0); "
        "return weights @ values, weights"
    ),
    reference=soft_lookup,
    cases=_soft_lookup_cases,
    judge=close("output", "weights"),
    mistakes=(_times_temperature, _ignores_temperature, swapped_pair(soft_lookup)),
)

# --------------------------------------------------------------------------------------------------
# 1.3 kernel regression


def _kernel_regression_cases(generator: torch.Generator) -> list[Case]:
    def regression(name, query_count, train_count, bandwidth, dtype, offset=0.0):
        train_points = torch.rand(train_count, generator=generator, dtype=dtype) * 5
        noise = 0.1 * torch.randn(train_count, generator=generator, dtype=dtype)
        train_values = torch.sin(train_points) + noise
        query_points = torch.linspace(0, 5, query_count, dtype=dtype) + offset
        return Case(name, (query_points, train_points, train_values, bandwidth))

    return [
        regression("4 queries, 7 training points, h=0.5 (float64)", 4, 7, 0.5, torch.float64),
        regression("9 queries, 20 training points, h=1", 9, 20, 1.0, torch.float32),
        # (x - x_i)² / (2h²) reaches ~10⁴: exp() underflows to 0 for every training point unless
        # the row maximum is subtracted first, and 0 / 0 is NaN.
        regression(
            "queries far outside the training range, h=0.1 (float64)",
            5,
            12,
            0.1,
            torch.float64,
            offset=10.0,
        ),
        regression("one query, one training point, h=2", 1, 1, 2.0, torch.float32),
        regression("12 queries, 30 training points, h=2.5", 12, 30, 2.5, torch.float32),
    ]


def _kernel_weights(query_points, train_points, train_values, scores):
    weights = softmax(scores, dim=1)
    return weights @ train_values, weights


def _differences(query_points, train_points):
    return query_points[:, None] - train_points[None, :]


@mistake(
    "it matches a softmax over the query axis: each query's weights should sum to 1 over "
    "the training points (dim=1)"
)
def _softmax_over_queries(query_points, train_points, train_values, bandwidth):
    if len(query_points) == 1:
        return NOT_APPLICABLE
    scores = -(_differences(query_points, train_points) ** 2) / (2 * bandwidth**2)
    weights = softmax(scores, dim=0)
    return weights @ train_values, weights


@mistake("it matches dividing by 2h, not 2h²: square the bandwidth")
def _bandwidth_not_squared(query_points, train_points, train_values, bandwidth):
    scores = -(_differences(query_points, train_points) ** 2) / (2 * bandwidth)
    return _kernel_weights(query_points, train_points, train_values, scores)


@mistake(
    "it matches a positive squared distance: the score is MINUS (x - x_i)² / (2h²), so "
    "nearer points weigh more"
)
def _positive_distance(query_points, train_points, train_values, bandwidth):
    scores = _differences(query_points, train_points) ** 2 / (2 * bandwidth**2)
    return _kernel_weights(query_points, train_points, train_values, scores)


@mistake(
    "it matches exp() without the max shift: far from the data every kernel underflows to "
    "0 and 0/0 is NaN; use a stable softmax"
)
def _unstable_kernel(query_points, train_points, train_values, bandwidth):
    kernel = torch.exp(-(_differences(query_points, train_points) ** 2) / (2 * bandwidth**2))
    weights = kernel / kernel.sum(dim=1, keepdim=True)
    return weights @ train_values, weights


KERNEL_REGRESSION = Exercise(
    grade_id="ex1_3_kernel_regression",
    notebook=NOTEBOOK,
    signature="kernel_regression(query_points, train_points, train_values, bandwidth)",
    docstring="""
        Nadaraya–Watson regression with a Gaussian kernel of bandwidth h (the formula above): each
        prediction averages the training values, weighted by a softmax over the training points of
        minus the squared distance to the query over 2h².

        query_points (n,), train_points (m,), train_values (m,), bandwidth h > 0.
        Returns (predictions, weights): predictions (n,) and weights (n, m), each row summing to 1.
        Forbidden (scores 0): nadaraya_watson of course_utils.pooling (the setup cell imports it).
    """,
    hint=(
        "score every (query, training point) pair by its negative squared distance over 2h², "
        "then softmax over the training points"
    ),
    code_hint=(
        "differences = query_points[:, None] - train_points[None, :]  # (n, m); "
        "weights = softmax(-differences**2 / (2 * bandwidth**2), dim=1)"
    ),
    reference=nadaraya_watson,
    cases=_kernel_regression_cases,
    judge=close("predictions", "weights"),
    mistakes=(_softmax_over_queries, _bandwidth_not_squared, _positive_distance, _unstable_kernel),
)

EXERCISES = (STABLE_SOFTMAX, SOFT_LOOKUP, KERNEL_REGRESSION)
