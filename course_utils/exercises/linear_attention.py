"""Exercises 10.1 and 10.2 of notebook 10 (linear attention): the parallel form, the fast-weight recurrence."""

from __future__ import annotations

import math

import torch

from course_utils.feedback.judge import close
from course_utils.feedback.spec import NOT_APPLICABLE, Case, Exercise, mistake
from course_utils.linear_attention import (
    elu_feature_map,
    fast_weight_attention,
    linear_attention,
)

NOTEBOOK = "10_linear_attention"
_MODULE = "course_utils.linear_attention"
# Both forms of the course's linear attention and their fast-weight building blocks: calling any of
# them computes 10.1 or 10.2 for the learner (each exercise's reference is one of them).
_LINEAR_ATTENTION_FORMS = (
    f"{_MODULE}.linear_attention",
    f"{_MODULE}.fast_weight_attention",
    f"{_MODULE}.fast_weight_memory",
    f"{_MODULE}.fast_weight_prefix_sums",
)


def kernel_attention(query_features, key_features, v, keep=None, normalise=True):
    """Σ_j w_ij v_j / Σ_j w_ij with w_ij = query_features_i · key_features_j, j where keep is True.

    Written in the quadratic form, so that each mistake below is one changed argument.
    """
    weights = query_features @ key_features.transpose(-2, -1)  # w_ij: (..., n, m)
    if keep is not None:
        weights = weights * keep
    numerator = weights @ v
    return numerator / weights.sum(-1, keepdim=True) if normalise else numerator


def lower_triangle(n: int, dtype: torch.dtype, offset: int = 0) -> torch.Tensor:
    """1 where key j may be seen by query i (j <= i + offset), else 0, as numbers to multiply."""
    return torch.ones(n, n, dtype=dtype).tril(offset)


def random_sequences(generator, lead, n, m, d_k, d_v, dtype):
    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)

    return randn(*lead, n, d_k), randn(*lead, m, d_k), randn(*lead, m, d_v)


def transposed_memory(q, k, v, keep=None):
    """The memory read the wrong way round, (Σ_j φ(k_j) v_jᵀ) φ(q_i) = Σ_j φ(k_j) (v_j · φ(q_i)),
    over the right normaliser: the roles of v and φ(k) swapped (d_k = d_v only)."""
    query_features, key_features = elu_feature_map(q), elu_feature_map(k)
    weights = query_features @ key_features.transpose(-2, -1)
    weights = weights if keep is None else weights * keep
    numerator = kernel_attention(query_features, v, key_features, keep, normalise=False)
    return numerator / weights.sum(-1, keepdim=True)


# --------------------------------------------------------------------------------------------------
# 10.1 linear attention, parallel form


def _linear_attention_cases(generator: torch.Generator) -> list[Case]:
    settings = [  # name, leading dims, n, m, d_k, d_v, dtype, causal
        ("(n=5, d_k=4), d_v=3, not causal", (), 5, 5, 4, 3, torch.float64, False),
        ("(n=5, d_k=4), d_v=3, causal", (), 5, 5, 4, 3, torch.float64, True),
        ("(B=2, n=6, d_k=3), d_v=3, causal", (2,), 6, 6, 3, 3, torch.float64, True),
        (
            "(B=2, n=3, d_k=4) queries, m=7 keys, d_v=2, not causal",
            (2,),
            3,
            7,
            4,
            2,
            torch.float64,
            False,
        ),
        ("(B=2, H=3, n=4, d_k=2), d_v=5, causal", (2, 3), 4, 4, 2, 5, torch.float64, True),
        ("(B=2, H=2, n=8, d_k=8), d_v=8, float32, causal", (2, 2), 8, 8, 8, 8, torch.float32, True),
        (
            "(B=1, H=2, n=6, d_k=4), d_v=4, float32, not causal",
            (1, 2),
            6,
            6,
            4,
            4,
            torch.float32,
            False,
        ),
    ]
    cases = []
    for name, lead, n, m, d_k, d_v, dtype, causal in settings:
        q, k, v = random_sequences(generator, lead, n, m, d_k, d_v, dtype)
        cases.append(Case(name, (q, k, v), {"causal": causal}))
    return cases


@mistake(
    "it matches leaving out the normaliser: divide W φ(q_i) by z · φ(q_i) = Σ_j φ(q_i)·φ(k_j), "
    "so that the weights on the values sum to 1"
)
def _no_normaliser(q, k, v, causal=False):
    keep = lower_triangle(q.shape[-2], q.dtype) if causal else None
    return kernel_attention(elu_feature_map(q), elu_feature_map(k), v, keep, normalise=False)


@mistake(
    "it matches using q and k themselves: apply the feature map φ(x) = elu(x) + 1 to both first"
)
def _without_feature_map(q, k, v, causal=False):
    keep = lower_triangle(q.shape[-2], q.dtype) if causal else None
    return kernel_attention(q, k, v, keep)


@mistake("it matches φ(x) = elu(x): add 1, so that φ > 0 and every weight φ(q)·φ(k) is positive")
def _elu_without_plus_one(q, k, v, causal=False):
    keep = lower_triangle(q.shape[-2], q.dtype) if causal else None
    return kernel_attention(torch.nn.functional.elu(q), torch.nn.functional.elu(k), v, keep)


@mistake("it matches ignoring causal=True: query i may only use keys j <= i (prefix sums)")
def _causal_ignored(q, k, v, causal=False):
    return linear_attention(q, k, v, causal=False) if causal else NOT_APPLICABLE


@mistake(
    "it matches prefix sums that stop before position i (j < i): the sum for query i includes "
    "key i itself, so take the cumulative sum up to and including i"
)
def _prefix_one_short(q, k, v, causal=False):
    if not causal:
        return NOT_APPLICABLE
    keep = lower_triangle(q.shape[-2], q.dtype, offset=-1)
    return kernel_attention(elu_feature_map(q), elu_feature_map(k), v, keep)


@mistake(
    "it matches keeping keys j >= i: causal means query i sees keys 0 … i (the lower triangle)"
)
def _upper_triangle(q, k, v, causal=False):
    if not causal:
        return NOT_APPLICABLE
    keep = lower_triangle(q.shape[-2], q.dtype).transpose(-2, -1)
    return kernel_attention(elu_feature_map(q), elu_feature_map(k), v, keep)


@mistake("it matches softmax attention: the weights are φ(q_i)·φ(k_j), not exp(q_i·k_j / √d)")
def _softmax_attention(q, k, v, causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if causal:
        scores = scores.masked_fill(~lower_triangle(q.shape[-2], q.dtype).bool(), -math.inf)
    return scores.softmax(dim=-1) @ v


@mistake(
    "it matches reading the memory the other way round, φ(q_i)ᵀ W with W = Σ_j v_j φ(k_j)ᵀ: W maps "
    "φ(q) to a value, multiply W by φ(q_i) (or take the transpose of W first)"
)
def _memory_transposed(q, k, v, causal=False):
    if q.shape[-1] != v.shape[-1]:
        return NOT_APPLICABLE  # the mistaken code raises a shape error instead
    return transposed_memory(q, k, v, lower_triangle(q.shape[-2], q.dtype) if causal else None)


@mistake(
    "it matches normalising over the queries (each key's weights summing to 1): each query's "
    "weights over the keys sum to 1, divide by the sum over the keys, the last axis"
)
def _normalised_over_queries(q, k, v, causal=False):
    weights = elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)
    if causal:
        weights = weights * lower_triangle(q.shape[-2], q.dtype)
    return weights / weights.sum(-2, keepdim=True) @ v


LINEAR_ATTENTION = Exercise(
    grade_id="ex10_1_linear_attention",
    notebook=NOTEBOOK,
    signature="linear_attention(q, k, v, causal=False)",
    docstring="""
        Kernelised attention in the parallel form, with the feature map φ(x) = elu(x) + 1.

        q (..., n, d_k), k (..., m, d_k), v (..., m, d_v), the same leading batch and head
        dimensions. Output i is the average of the values v_j weighted by φ(q_i)·φ(k_j) (the
        formula above), over every key, or over the keys j <= i when causal (then m = n).
        Returns (..., n, d_v).
        Forbidden (scores 0): linear_attention, fast_weight_attention, fast_weight_memory and
        fast_weight_prefix_sums of course_utils.linear_attention (reference.linear_attention too).
    """,
    hint=(
        "map q and k through φ; without causal, sum the outer products v_j φ(k_j)ᵀ and the φ(k_j) "
        "once and read them with every φ(q_i); with causal, query i may only use the sums up to key i"
    ),
    code_hint=(
        "phi = F.elu(x) + 1; not causal: W = v.transpose(-2, -1) @ phi_k, z = phi_k.sum(-2), "
        "out = (phi_q @ W.transpose(-2, -1)) / (phi_q @ z[..., None]); causal: "
        "weights = (phi_q @ phi_k.transpose(-2, -1)).tril(), out = weights @ v / weights.sum(-1, keepdim=True)"
    ),
    reference=linear_attention,
    forbidden=_LINEAR_ATTENTION_FORMS,
    cases=_linear_attention_cases,
    judge=close("output", atol=1e-5, rtol=1e-5),
    mistakes=(
        _no_normaliser,
        _without_feature_map,
        _elu_without_plus_one,
        _causal_ignored,
        _prefix_one_short,
        _upper_triangle,
        _softmax_attention,
        _memory_transposed,
        _normalised_over_queries,
    ),
)

# --------------------------------------------------------------------------------------------------
# 10.2 the fast-weight recurrence


def _fast_weight_cases(generator: torch.Generator) -> list[Case]:
    settings = [  # name, leading dims, n, d_k, d_v, dtype
        ("(n=5, d_k=3), d_v=3", (), 5, 3, 3, torch.float64),
        ("(n=6, d_k=4), d_v=2", (), 6, 4, 2, torch.float64),
        ("(B=2, n=4, d_k=3), d_v=5", (2,), 4, 3, 5, torch.float64),
        ("(B=2, H=3, n=5, d_k=4), d_v=4", (2, 3), 5, 4, 4, torch.float64),
        ("(B=3, H=2, n=7, d_k=6), d_v=6, float32", (3, 2), 7, 6, 6, torch.float32),
        ("(n=1, d_k=2), d_v=2, one token", (), 1, 2, 2, torch.float64),
    ]
    cases = []
    for name, lead, n, d_k, d_v, dtype in settings:
        cases.append(Case(name, random_sequences(generator, lead, n, n, d_k, d_v, dtype)))
    return cases


@mistake("it matches leaving out z: divide W_t φ(q_t) by z_t · φ(q_t), z_t = z_{t-1} + φ(k_t)")
def _recurrence_without_z(q, k, v):
    keep = lower_triangle(q.shape[-2], q.dtype)
    return kernel_attention(elu_feature_map(q), elu_feature_map(k), v, keep, normalise=False)


@mistake(
    "it matches reading before writing (W_{t-1} φ(q_t)): add v_t φ(k_t)ᵀ to W and φ(k_t) to z "
    "first, then read out_t"
)
def _read_before_write(q, k, v):
    keep = lower_triangle(q.shape[-2], q.dtype, offset=-1)
    return kernel_attention(elu_feature_map(q), elu_feature_map(k), v, keep)


@mistake("it matches W_t = v_t φ(k_t)ᵀ: add the outer product to W_{t-1}, do not replace it")
def _overwritten_weights(q, k, v):
    if q.shape[-2] == 1:
        return NOT_APPLICABLE
    query_features, key_features = elu_feature_map(q), elu_feature_map(k)
    # W_t φ(q_t) = v_t (φ(k_t) · φ(q_t)), over the running z_t · φ(q_t)
    own_weight = (query_features * key_features).sum(-1, keepdim=True)
    running = (query_features * key_features.cumsum(dim=-2)).sum(-1, keepdim=True)
    return v * own_weight / running


@mistake(
    "it matches the outer product the other way round, φ(k_t) v_tᵀ: W maps φ(q) to a value, "
    "so it is v_t φ(k_t)ᵀ (d_v × d_k)"
)
def _transposed_outer_product(q, k, v):
    if q.shape[-1] != v.shape[-1]:
        return NOT_APPLICABLE
    return transposed_memory(q, k, v, lower_triangle(q.shape[-2], q.dtype))


@mistake("it matches using q and k themselves: the recurrence writes φ(k_t) and reads φ(q_t)")
def _recurrence_without_feature_map(q, k, v):
    return kernel_attention(q, k, v, lower_triangle(q.shape[-2], q.dtype))


@mistake(
    "it matches reading every output from the final W_n: out_t uses W_t, which holds tokens "
    "1 … t only"
)
def _final_weights_for_every_token(q, k, v):
    return linear_attention(q, k, v, causal=False) if q.shape[-2] > 1 else NOT_APPLICABLE


_MIXED_STEPS = (
    "it matches reading W and z from different steps, one before token t's write and one after: "
    "add token t to both W and z, then read out_t"
)


def _read_across_steps(q, k, v, weights_offset, normaliser_offset):
    """W_{t+o} φ(q_t) / (z_{t+o'} · φ(q_t)), o and o' each 0 (after the write) or -1 (before)."""
    query_features, key_features = elu_feature_map(q), elu_feature_map(k)
    weights = query_features @ key_features.transpose(-2, -1)
    n = q.shape[-2]
    numerator = (weights * lower_triangle(n, q.dtype, weights_offset)) @ v
    normaliser = (weights * lower_triangle(n, q.dtype, normaliser_offset)).sum(-1, keepdim=True)
    return numerator / normaliser


@mistake(_MIXED_STEPS)
def _weights_read_before_write(q, k, v):
    return _read_across_steps(q, k, v, weights_offset=-1, normaliser_offset=0)


@mistake(_MIXED_STEPS)
def _normaliser_read_before_write(q, k, v):
    return _read_across_steps(q, k, v, weights_offset=0, normaliser_offset=-1)


FAST_WEIGHT_ATTENTION = Exercise(
    grade_id="ex10_2_fast_weight_attention",
    notebook=NOTEBOOK,
    signature="fast_weight_attention(q, k, v)",
    docstring="""
        Causal linear attention as a recurrence over a fast-weight matrix W (d_v × d_k), φ = elu + 1.

        q, k (..., n, d_k), v (..., n, d_v). W and the normaliser z start at 0. At each token t
        in order, write v_t under φ(k_t) into W and add φ(k_t) to z, then read W with φ(q_t),
        normalised by z as in the recurrence above. Returns (..., n, d_v): row t is token t's output.
        Forbidden (scores 0): linear_attention, fast_weight_attention, fast_weight_memory and
        fast_weight_prefix_sums of course_utils.linear_attention (reference.fast_weight_attention too).
    """,
    hint=(
        "walk through the tokens keeping W and z: each token first writes its value under its "
        "key's features, then its query's features read the memory, divided by the matching "
        "normaliser"
    ),
    code_hint=(
        "W = q.new_zeros(*q.shape[:-2], v.shape[-1], q.shape[-1]); z = q.new_zeros(*k.shape[:-2], "
        "k.shape[-1]); in the loop: W = W + v[..., t, :, None] * phi_k[..., None, :]; z = z + phi_k; "
        "out_t = (W @ phi_q[..., None])[..., 0] / (z * phi_q).sum(-1, keepdim=True); torch.stack(outs, dim=-2)"
    ),
    reference=fast_weight_attention,
    forbidden=_LINEAR_ATTENTION_FORMS,
    cases=_fast_weight_cases,
    judge=close("output", atol=1e-5, rtol=1e-5),
    mistakes=(
        _recurrence_without_z,
        _read_before_write,
        _overwritten_weights,
        _transposed_outer_product,
        _recurrence_without_feature_map,
        _final_weights_for_every_token,
        _weights_read_before_write,
        _normaliser_read_before_write,
    ),
)


EXERCISES = (LINEAR_ATTENTION, FAST_WEIGHT_ATTENTION)
