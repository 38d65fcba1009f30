"""Exercise 10.3 of notebook 10 (linear attention): the delta rule."""

from __future__ import annotations

import torch

from course_utils.exercises.linear_attention import NOTEBOOK, random_sequences
from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake
from course_utils.linear_attention import delta_rule_attention, elu_feature_map

_MODULE = "course_utils.linear_attention"


# --------------------------------------------------------------------------------------------------
# 10.3 the delta rule


def _delta_rule_cases(generator: torch.Generator) -> list[Case]:
    settings = [  # name, leading dims, n, d_k, d_v, dtype, beta kind
        ("(n=5, d_k=3) unit keys, d_v=3, β in (0, 1)", (), 5, 3, 3, torch.float64, "random"),
        ("(n=6, d_k=4) unit keys, d_v=2, β in (0, 1)", (), 6, 4, 2, torch.float64, "random"),
        ("(B=2, n=5, d_k=3) unit keys, d_v=4, β = 1", (2,), 5, 3, 4, torch.float64, "one"),
        (
            "(B=2, H=2, n=6, d_k=4) unit keys, d_v=4, β in (0, 1)",
            (2, 2),
            6,
            4,
            4,
            torch.float64,
            "random",
        ),
        (
            "(B=2, H=3, n=7, d_k=5) unit keys, d_v=5, float32",
            (2, 3),
            7,
            5,
            5,
            torch.float32,
            "random",
        ),
        (
            "(n=6, d_k=2) unit keys, d_v=3, more tokens than d_k, β = 1",
            (),
            6,
            2,
            3,
            torch.float64,
            "one",
        ),
    ]
    cases = []
    for name, lead, n, d_k, d_v, dtype, beta_kind in settings:
        q, k, v = random_sequences(generator, lead, n, n, d_k, d_v, torch.float64)
        q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
        if beta_kind == "one":
            beta = torch.ones(*lead, n, dtype=torch.float64)
        else:
            beta = 0.1 + 0.8 * torch.rand(*lead, n, generator=generator, dtype=torch.float64)
        cases.append(Case(name, tuple(t.to(dtype) for t in (q, k, v, beta))))
    return cases


def _delta_rule_loop(q, k, v, beta, write, read_before=False):
    """The delta rule's loop with ``write(W, k_t, v_t, β_t)`` swapped in; reads W_t q_t (or W_{t-1})."""
    fast_weights = q.new_zeros(*q.shape[:-2], v.shape[-1], q.shape[-1])
    outputs = []
    for t in range(q.shape[-2]):
        before = fast_weights
        fast_weights = write(fast_weights, k[..., t, :], v[..., t, :], beta[..., t, None, None])
        read = before if read_before else fast_weights
        outputs.append((read @ q[..., t, :, None])[..., 0])
    return torch.stack(outputs, dim=-2)


def _outer(column, row):
    return column[..., :, None] * row[..., None, :]


@mistake(
    "it matches the sum rule W_t = W_{t-1} + β_t v_t k_tᵀ: subtract what W already stores, "
    "write β_t (v_t - W_{t-1} k_t) k_tᵀ"
)
def _sum_rule(q, k, v, beta):
    return _delta_rule_loop(q, k, v, beta, lambda W, key, value, b: W + b * _outer(value, key))


def _add_then_subtract(W, key, value, b):
    added = W + b * _outer(value, key)
    return added - b * _outer((added @ key[..., None])[..., 0], key)


@mistake(
    "it matches subtracting W_t k_t after adding β_t v_t k_tᵀ: read v̄_t = W_{t-1} k_t before "
    "changing W, then add β_t (v_t - v̄_t) k_tᵀ"
)
def _reads_updated_weights(q, k, v, beta):
    return _delta_rule_loop(q, k, v, beta, _add_then_subtract)


def _delta_write(W, key, value, b):
    return W + b * _outer(value - (W @ key[..., None])[..., 0], key)


@mistake("it matches out_t = W_{t-1} q_t: write token t first, then read with W_t")
def _delta_read_before_write(q, k, v, beta):
    return _delta_rule_loop(q, k, v, beta, _delta_write, read_before=True)


@mistake("it matches β_t = 1 everywhere: scale the correction by beta[..., t]")
def _beta_ignored(q, k, v, beta):
    if bool((beta == 1).all()):
        return NOT_APPLICABLE
    return delta_rule_attention(q, k, v, torch.ones_like(beta))


@mistake(
    "it matches the outer product the other way round, k_t (v_t - v̄_t)ᵀ: W is (d_v × d_k), "
    "the correction is (v_t - v̄_t) k_tᵀ"
)
def _delta_transposed(q, k, v, beta):
    if q.shape[-1] != v.shape[-1]:
        return NOT_APPLICABLE
    return _delta_rule_loop(q, k, v, beta, _transposed_write)


def _transposed_write(W, key, value, b):
    return W + b * _outer(key, value - (W @ key[..., None])[..., 0])  # k (v - v̄)ᵀ


@mistake("it matches applying φ = elu + 1 to q and k: the delta rule here uses them as they are")
def _delta_with_feature_map(q, k, v, beta):
    return delta_rule_attention(elu_feature_map(q), elu_feature_map(k), v, beta)


@mistake("it matches v̄_t = W_{t-1} q_t: what W stores under the key being written is W_{t-1} k_t")
def _retrieved_with_query(q, k, v, beta):
    fast_weights = q.new_zeros(*q.shape[:-2], v.shape[-1], q.shape[-1])
    outputs = []
    for t in range(q.shape[-2]):
        query, key = q[..., t, :], k[..., t, :]
        retrieved = (fast_weights @ query[..., None])[..., 0]
        fast_weights = fast_weights + beta[..., t, None, None] * _outer(
            v[..., t, :] - retrieved, key
        )
        outputs.append((fast_weights @ query[..., None])[..., 0])
    return torch.stack(outputs, dim=-2)


DELTA_RULE_ATTENTION = Exercise(
    grade_id="ex10_3_delta_rule_attention",
    notebook=NOTEBOOK,
    signature="delta_rule_attention(q, k, v, beta)",
    docstring="""
        The delta rule over a sequence: a fast-weight matrix W (d_v × d_k), from W_0 = 0, no feature map.

        q, k (..., n, d_k), v (..., n, d_v), beta (..., n) the write strengths β_t in [0, 1].
        At each token t in order, read what W stores under k_t, write the correction towards v_t
        under k_t, scaled by β_t (the rule above), then read the output with q_t from the updated W.
        Returns (..., n, d_v): row t is token t's output.
        Forbidden (scores 0): delta_rule_write and delta_rule_attention of course_utils.linear_attention
        (reference.delta_rule_attention too).
    """,
    hint=(
        "at each token, first ask the memory what it currently stores under the key, then write "
        "only the difference to the new value, scaled by beta; read the output with the query "
        "after writing"
    ),
    code_hint=(
        "retrieved = (W @ k_t[..., None])[..., 0]; "
        "W = W + beta[..., t, None, None] * (v_t - retrieved)[..., :, None] * k_t[..., None, :]; "
        "out_t = (W @ q_t[..., None])[..., 0]"
    ),
    reference=delta_rule_attention,
    forbidden=(f"{_MODULE}.delta_rule_write",),
    cases=_delta_rule_cases,
    judge=close("output", atol=1e-5, rtol=1e-5),
    mistakes=(
        _sum_rule,
        _reads_updated_weights,
        _delta_read_before_write,
        _beta_ignored,
        _delta_transposed,
        _delta_with_feature_map,
        _retrieved_with_query,
    ),
)


EXERCISES = (DELTA_RULE_ATTENTION,)
