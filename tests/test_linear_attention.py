"""course_utils.linear_attention against independent formulas (explicit loops in float64).

Parallel form == recurrence, causal vs non-causal, the delta rule's properties, leading batch and
head dimensions, gradients, and errors that name the argument.
"""

from __future__ import annotations

import pytest
import torch

from course_utils import associative_memory
from course_utils.attention import (
    delta_rule_attention,
    fast_weight_attention,
    linear_attention,
)
from course_utils.linear_attention import (
    delta_rule_write,
    elu_feature_map,
    fast_weight_memory,
    fast_weight_prefix_sums,
)


def random_sequences(*lead, n=6, m=None, d_k=4, d_v=3, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    m = n if m is None else m
    q = torch.randn(*lead, n, d_k, generator=generator, dtype=dtype)
    k = torch.randn(*lead, m, d_k, generator=generator, dtype=dtype)
    v = torch.randn(*lead, m, d_v, generator=generator, dtype=dtype)
    return q, k, v


def phi(x):
    """elu(x) + 1 written out: x + 1 above zero, e^x at or below."""
    return torch.where(x > 0, x + 1, torch.exp(x))


def loop_linear_attention(q, k, v, causal):
    """out_i = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j), one query and one key at a time."""
    *lead, n, _ = q.shape
    m, d_v = v.shape[-2:]
    q, k, v = (t.reshape(-1, *t.shape[-2:]) for t in (q, k, v))
    out = torch.zeros(q.shape[0], n, d_v, dtype=torch.float64)
    for b in range(q.shape[0]):
        for i in range(n):
            numerator, denominator = torch.zeros(d_v, dtype=torch.float64), 0.0
            for j in range(i + 1 if causal else m):
                similarity = float((phi(q[b, i]) * phi(k[b, j])).sum())
                numerator += similarity * v[b, j]
                denominator += similarity
            out[b, i] = numerator / denominator
    return out.reshape(*lead, n, d_v)


def loop_delta_rule(q, k, v, beta):
    """W ← W + β (v - W k) kᵀ and out = W q, one sequence and one step at a time with torch.outer."""
    *lead, n, d_k = q.shape
    d_v = v.shape[-1]
    q, k, v = (t.reshape(-1, *t.shape[-2:]) for t in (q, k, v))
    beta = beta.reshape(-1, n)
    out = torch.zeros(q.shape[0], n, d_v, dtype=torch.float64)
    for b in range(q.shape[0]):
        fast_weights = torch.zeros(d_v, d_k, dtype=torch.float64)
        for t in range(n):
            error = v[b, t] - fast_weights @ k[b, t]
            fast_weights = fast_weights + beta[b, t] * torch.outer(error, k[b, t])
            out[b, t] = fast_weights @ q[b, t]
    return out.reshape(*lead, n, d_v)


def unit_keys(*shape, seed=1):
    keys = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return keys / keys.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------------------------------
# Feature map and linear attention, parallel form


def test_feature_map_is_elu_plus_one_and_positive():
    x = torch.linspace(-30, 5, 101, dtype=torch.float64)
    assert torch.allclose(elu_feature_map(x), phi(x))
    assert (elu_feature_map(x) > 0).all()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("lead", [(), (2,), (2, 3)], ids=["no batch", "batch", "batch+heads"])
def test_linear_attention_equals_the_double_loop(causal, lead):
    q, k, v = random_sequences(*lead, n=5, d_k=4, d_v=3)
    expected = loop_linear_attention(q, k, v, causal)
    assert torch.allclose(linear_attention(q, k, v, causal=causal), expected, atol=1e-12)


def test_non_causal_linear_attention_takes_more_keys_than_queries():
    q, k, v = random_sequences(2, n=3, m=7, d_k=5, d_v=2)
    out = linear_attention(q, k, v)
    assert out.shape == (2, 3, 2)
    assert torch.allclose(out, loop_linear_attention(q, k, v, causal=False), atol=1e-12)


def test_float32_matches_float64_and_keeps_its_dtype():
    q, k, v = random_sequences(2, 2, n=16, d_k=8, d_v=8)
    for causal in (False, True):
        out = linear_attention(q.float(), k.float(), v.float(), causal=causal)
        assert out.dtype == torch.float32
        assert torch.allclose(out.double(), linear_attention(q, k, v, causal=causal), atol=1e-5)


def test_causal_output_ignores_the_future_and_its_last_row_is_the_full_one():
    q, k, v = random_sequences(2, n=8)
    causal = linear_attention(q, k, v, causal=True)
    assert torch.allclose(causal[..., -1, :], linear_attention(q, k, v)[..., -1, :])
    changed_v, changed_k = v.clone(), k.clone()
    changed_v[..., 5:, :] += 10.0
    changed_k[..., 5:, :] -= 3.0
    perturbed = linear_attention(q, changed_k, changed_v, causal=True)
    assert torch.equal(perturbed[..., :5, :], causal[..., :5, :])
    assert not torch.allclose(perturbed[..., 5:, :], causal[..., 5:, :])


def test_outputs_are_convex_combinations_of_the_values():
    q, k, v = random_sequences(3, n=9, d_v=1)
    for causal in (False, True):
        out = linear_attention(q, k, v, causal=causal)
        assert (out >= v.min() - 1e-12).all() and (out <= v.max() + 1e-12).all()


def test_fast_weight_memory_and_prefix_sums_are_the_sums_they_name():
    _, k, v = random_sequences(2, n=6, d_k=4, d_v=3)
    features = elu_feature_map(k)
    fast_weights, normaliser = fast_weight_memory(features, v)
    expected = sum(torch.outer(v[1, j], features[1, j]) for j in range(6))
    assert fast_weights.shape == (2, 3, 4) and normaliser.shape == (2, 4)
    assert torch.allclose(fast_weights[1], expected) and torch.allclose(normaliser, features.sum(1))
    all_weights, all_normalisers = fast_weight_prefix_sums(features, v)
    assert all_weights.shape == (2, 6, 3, 4) and all_normalisers.shape == (2, 6, 4)
    assert torch.allclose(all_weights[:, -1], fast_weights)
    assert torch.allclose(
        all_weights[1, 2], sum(torch.outer(v[1, j], features[1, j]) for j in range(3))
    )


# --------------------------------------------------------------------------------------------------
# The recurrence: fast weights


@pytest.mark.parametrize("lead", [(), (3,), (2, 2)], ids=["no batch", "batch", "batch+heads"])
def test_fast_weight_recurrence_equals_the_causal_parallel_form(lead):
    q, k, v = random_sequences(*lead, n=7, d_k=5, d_v=2, seed=3)
    recurrent = fast_weight_attention(q, k, v)
    assert recurrent.shape == (*lead, 7, 2)
    assert torch.allclose(recurrent, loop_linear_attention(q, k, v, causal=True), atol=1e-12)
    assert torch.allclose(recurrent, linear_attention(q, k, v, causal=True), atol=1e-12)


def test_fast_weight_recurrence_in_float32_is_the_parallel_form_to_1e5():
    q, k, v = random_sequences(2, 4, n=64, d_k=16, d_v=16, dtype=torch.float32, seed=4)
    difference = fast_weight_attention(q, k, v) - linear_attention(q, k, v, causal=True)
    assert difference.abs().max() < 1e-5


def test_gradients_flow_through_both_forms_and_agree():
    q, k, v = random_sequences(2, n=5, d_k=3, d_v=2, seed=5)
    inputs = [tensor.clone().requires_grad_() for tensor in (q, k, v)]
    fast_weight_attention(*inputs).square().sum().backward()
    recurrent_grads = [tensor.grad for tensor in inputs]
    inputs = [tensor.clone().requires_grad_() for tensor in (q, k, v)]
    linear_attention(*inputs, causal=True).square().sum().backward()
    for recurrent, parallel in zip(recurrent_grads, (t.grad for t in inputs), strict=True):
        assert torch.allclose(recurrent, parallel, atol=1e-10)


# --------------------------------------------------------------------------------------------------
# The delta rule


@pytest.mark.parametrize("lead", [(), (2,), (2, 3)], ids=["no batch", "batch", "batch+heads"])
def test_delta_rule_equals_the_step_by_step_loop(lead):
    q, k, v = random_sequences(*lead, n=6, d_k=4, d_v=3, seed=6)
    k = unit_keys(*k.shape)
    beta = torch.rand(*lead, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    out = delta_rule_attention(q, k, v, beta)
    assert out.shape == (*lead, 6, 3)
    assert torch.allclose(out, loop_delta_rule(q, k, v, beta), atol=1e-12)


def test_delta_write_with_beta_one_and_a_unit_key_stores_the_value_exactly():
    fast_weights = torch.randn(
        2, 3, 4, generator=torch.Generator().manual_seed(8), dtype=torch.float64
    )
    key, value = unit_keys(2, 4), torch.randn(2, 3, dtype=torch.float64)
    written = delta_rule_write(fast_weights, key, value, torch.ones(2, dtype=torch.float64))
    assert torch.allclose(written @ key[..., None], value[..., None])
    unchanged = delta_rule_write(fast_weights, key, value, torch.zeros(2, dtype=torch.float64))
    assert torch.equal(unchanged, fast_weights)


def test_delta_rule_equals_the_sum_rule_on_orthonormal_keys_and_overwrites_a_repeated_key():
    generator = torch.Generator().manual_seed(9)
    keys = torch.linalg.qr(torch.randn(5, 5, generator=generator, dtype=torch.float64))[0]
    values = torch.randn(5, 3, dtype=torch.float64)
    beta = torch.ones(5, dtype=torch.float64)
    delta = delta_rule_attention(keys, keys, values, beta)
    assert torch.allclose(delta, values)  # each key reads back its own value
    sum_rule = torch.stack([(values[: t + 1].T @ keys[: t + 1]) @ keys[t] for t in range(5)])
    assert torch.allclose(delta, sum_rule)
    repeated = keys[[0, 0]]
    new_values = torch.tensor([[1.0, 0, 0], [0, 2.0, 0]], dtype=torch.float64)
    out = delta_rule_attention(repeated, repeated, new_values, torch.ones(2, dtype=torch.float64))
    assert torch.allclose(out[-1], new_values[-1])  # the second write replaced the first


# --------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda q, k, v: linear_attention(q, k[..., :2], v),
            ValueError,
            r"k has d_k=2 but q has d_k=4",
        ),
        (
            lambda q, k, v: linear_attention(q, k, v[:, :4], causal=False),
            ValueError,
            r"v has m=4 but k has m=6",
        ),
        (
            lambda q, k, v: linear_attention(q[:, :3], k, v, causal=True),
            ValueError,
            r"k has n=6 but q has n=3",
        ),
        (
            lambda q, k, v: fast_weight_attention(q, k[:, :5], v[:, :5]),
            ValueError,
            r"same number of positions",
        ),
        (
            lambda q, k, v: linear_attention(q.float(), k, v),
            TypeError,
            r"q, k and v must share a dtype",
        ),
        (
            lambda q, k, v: fast_weight_attention(q.long(), k.long(), v.long()),
            TypeError,
            r"q must be a floating-point tensor",
        ),
        (
            lambda q, k, v: delta_rule_attention(q, k, v, torch.ones(2, 5, dtype=torch.float64)),
            ValueError,
            r"beta has n=5 but q has n=6",
        ),
        (
            lambda q, k, v: delta_rule_attention(q, k, v, 0.5),
            TypeError,
            r"beta must be a torch.Tensor, got float",
        ),
        (
            lambda q, k, v: delta_rule_attention(q, k, v, torch.ones(2, 6, dtype=torch.float32)),
            TypeError,
            r"must share a dtype",
        ),
        (
            lambda q, k, v: delta_rule_write(
                torch.zeros(3, 4), torch.zeros(5), torch.zeros(3), torch.ones(())
            ),
            ValueError,
            r"key has d_k=5 but fast_weights have d_k=4",
        ),
    ],
)
def test_bad_input_names_the_argument(call, error, message):
    q, k, v = random_sequences(2, n=6)
    with pytest.raises(error, match=message):
        call(q, k, v)


# --------------------------------------------------------------------------------------------------
# course_utils.associative_memory: capacity and associative recall (notebook 10, sections 5-6)


def test_every_rule_retrieves_orthonormal_pairs_exactly_and_errors_are_scaled():
    generator = torch.Generator().manual_seed(11)
    keys = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))[0]
    values = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    values = values / values.norm(dim=-1, keepdim=True)  # unit values, as the notebook stores
    for rule in associative_memory.MIXERS:
        retrieved = associative_memory.retrieve(rule, keys, values)
        assert associative_memory.retrieval_error(retrieved, values) < 1e-9, rule
        assert associative_memory.nearest_value_accuracy(retrieved, values) == 1.0
    assert associative_memory.retrieval_error(torch.zeros_like(values), values) == pytest.approx(1)


def test_nearest_value_hits_are_per_pair_in_order():
    values = torch.eye(3, dtype=torch.float64)
    retrieved = torch.tensor(
        [[1.0, 0.2, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 0.5]], dtype=torch.float64
    )
    hits = associative_memory.nearest_value_hits(retrieved, values)
    assert hits.tolist() == [True, False, True]
    assert associative_memory.nearest_value_accuracy(retrieved, values) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="values have d_v=2 but retrieved has d_v=3"):
        associative_memory.nearest_value_hits(retrieved, values[:, :2])


def test_sum_rule_cross_talk_grows_with_the_number_of_pairs_and_the_delta_rule_is_lower():
    generator = torch.Generator().manual_seed(12)
    keys, values = associative_memory.random_associations(64, 16, 16, generator)
    assert torch.allclose(keys.norm(dim=-1), torch.ones(64, dtype=torch.float64))
    sum_error = associative_memory.retrieval_error(
        associative_memory.retrieve("sum rule", keys, values), values
    )
    delta_error = associative_memory.retrieval_error(
        associative_memory.retrieve("delta rule", keys, values), values
    )
    assert 2.5 < sum_error < 5.5  # about (N - 1) / d_k = 63 / 16
    assert delta_error < 0.6 * sum_error


def test_recall_batches_ask_for_a_stored_value():
    tokens, answers = associative_memory.recall_batch(50, 4, 6, 5, torch.Generator().manual_seed(0))
    assert tokens.shape == (50, 9) and answers.shape == (50,)
    keys, values = tokens[:, 0:8:2], tokens[:, 1:8:2] - 6
    assert (keys < 6).all() and ((values >= 0) & (values < 5)).all()
    assert all(len(set(row.tolist())) == 4 for row in keys)  # distinct keys in a sequence
    position = (keys == tokens[:, -1:]).float().argmax(dim=-1)
    assert torch.equal(values[torch.arange(50), position], answers)


@pytest.mark.parametrize("mixer", associative_memory.MIXERS)
def test_recall_models_train_deterministically(mixer):
    settings = {"pairs": 3, "num_keys": 4, "num_values": 4, "embed_dim": 8, "head_dim": 4}
    model, losses = associative_memory.train_recall(mixer, seed=0, steps=3, batch=8, **settings)
    _, again = associative_memory.train_recall(mixer, seed=0, steps=3, batch=8, **settings)
    assert losses == again and len(losses) == 3
    tokens, _ = associative_memory.recall_batch(5, 3, 4, 4, torch.Generator().manual_seed(1))
    assert model(tokens).shape == (5, 4)
    accuracy = associative_memory.recall_accuracy(model, 3, 4, 4, seed=2, batch=20)
    assert 0.0 <= accuracy <= 1.0


def test_associative_memory_bad_input_names_the_argument():
    keys = torch.zeros(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"rule must be one of"):
        associative_memory.retrieve("hebbian", keys, keys)
    with pytest.raises(ValueError, match=r"values have N=2 but keys have N=3"):
        associative_memory.retrieve("sum rule", keys, keys[:2])
    with pytest.raises(ValueError, match=r"pairs=5 needs at least as many key tokens"):
        associative_memory.recall_batch(2, 5, 4, 4, torch.Generator())
