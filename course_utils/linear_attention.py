"""Linear attention is a fast weight programmer: the parallel form, the recurrence, the delta rule.

Softmax attention weighs value j by exp(q_i · k_j). Replace that kernel by a dot product of
features, φ(q_i) · φ(k_j) with φ(x) = elu(x) + 1 > 0 (Katharopoulos et al., 2020), and the sum
over keys can be regrouped:

    out_i = Σ_j (φ(q_i) · φ(k_j)) v_j / Σ_j φ(q_i) · φ(k_j)
          = (Σ_j v_j φ(k_j)ᵀ) φ(q_i) / (Σ_j φ(k_j)) · φ(q_i)          (associativity)
          =        W φ(q_i)        /        z · φ(q_i)

W (d_v × d_k) and z (d_k) are summed once, so the cost is O(n · d_k · d_v) instead of O(n² · d).
Causal attention sums only j <= i: W_i and z_i are prefix sums, i.e. a recurrence over time

    W_t = W_{t-1} + v_t φ(k_t)ᵀ        z_t = z_{t-1} + φ(k_t)        out_t = W_t φ(q_t) / z_t · φ(q_t)

which is Schmidhuber's (1992) fast weight programmer: a slow network (the projections making
q, k, v) writes the weights W of a fast network by outer products, and the fast network maps
φ(q_t) to the output (Schlag, Irie and Schmidhuber, 2021). The state is W and z, d_k · (d_v + 1)
numbers whatever the length, where softmax attention keeps every key and value (a KV cache).

The sum rule only adds: a key written twice stores the sum of its values. The delta rule
(Widrow and Hoff 1960; a write rule, DeltaNet, in Schlag et al. 2021; parallelised over the
sequence and scaled up by Yang et al. 2024) first reads what W stores under k_t and writes only
the correction, with a learning rate β_t in [0, 1]:

    v̄_t = W_{t-1} k_t        W_t = W_{t-1} + β_t (v_t - v̄_t) k_tᵀ        out_t = W_t q_t

Shapes: q, k (..., n, d_k), v (..., n, d_v) (non-causal linear attention allows m keys), any
leading batch and head dimensions; fast weights W (..., d_v, d_k).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.helpers.validation import require_dtype, require_same_dtype, require_shapes

__all__ = [
    "delta_rule_attention",
    "delta_rule_write",
    "elu_feature_map",
    "fast_weight_attention",
    "fast_weight_memory",
    "fast_weight_prefix_sums",
    "linear_attention",
]


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = elu(x) + 1: x + 1 for x > 0, e^x for x <= 0; always positive, so φ(q) · φ(k) > 0."""
    return F.elu(x) + 1


def _check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    queries_per_key: bool,
    beta: torch.Tensor | None = None,
) -> None:
    """q (..., n, d_k), k (*batch, m, d_k), v (*batch, m, d_v), one floating-point dtype.

    ``queries_per_key``: a causal or recurrent form pairs query t with key t, so q has the same
    batch dimensions and n = m; ``beta`` (*batch, n) is the delta rule's learning rate.
    """
    length = "n" if queries_per_key else "m"  # keys and values: m positions, or n = the queries'
    query_pattern = "(*batch, n, d_k)" if queries_per_key else "(..., n, d_k)"
    shapes = [
        ("q", q, query_pattern),
        ("k", k, f"(*batch, {length}, d_k)"),
        ("v", v, f"(*batch, {length}, d_v)"),
    ]
    tensors = {"q": q, "k": k, "v": v}
    if beta is not None:
        shapes.append(("beta", beta, "(*batch, n)"))
        tensors["beta"] = beta
    require_shapes(*shapes, meanings={length: "number of positions"})
    require_dtype("floating-point", **tensors)
    require_same_dtype(**tensors)


def fast_weight_prefix_sums(
    key_features: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every fast-weight state at once: W_t = Σ_{j<=t} v_j φ(k_j)ᵀ and z_t = Σ_{j<=t} φ(k_j).

    key_features φ(k) (..., n, d_k), values (..., n, d_v). Returns W (..., n, d_v, d_k) and
    z (..., n, d_k): O(n · d_k · d_v) memory, the price of computing all n states in parallel.
    """
    require_shapes(
        ("key_features", key_features, "(*batch, n, d_k)"),
        ("values", values, "(*batch, n, d_v)"),
    )
    require_dtype("floating-point", key_features=key_features, values=values)
    outer_products = (
        values[..., :, None] * key_features[..., None, :]
    )  # v_j φ(k_j)ᵀ: (.., n, d_v, d_k)
    fast_weights = outer_products.cumsum(dim=-3)  # W_t = Σ_{j<=t} v_j φ(k_j)ᵀ
    normalisers = key_features.cumsum(dim=-2)  # z_t = Σ_{j<=t} φ(k_j)
    return fast_weights, normalisers


def fast_weight_memory(
    key_features: torch.Tensor, values: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole state after a sequence: W = Σ_j v_j φ(k_j)ᵀ (..., d_v, d_k), z = Σ_j φ(k_j) (..., d_k).

    key_features φ(k) (..., m, d_k), values (..., m, d_v). Its size, d_k · (d_v + 1) numbers per
    sequence and head, does not depend on m: this is all linear attention remembers.
    """
    require_shapes(
        ("key_features", key_features, "(*batch, m, d_k)"),
        ("values", values, "(*batch, m, d_v)"),
    )
    require_dtype("floating-point", key_features=key_features, values=values)
    fast_weights = values.transpose(-2, -1) @ key_features  # W = Σ_j v_j φ(k_j)ᵀ
    normaliser = key_features.sum(dim=-2)  # z = Σ_j φ(k_j)
    return fast_weights, normaliser


def linear_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False
) -> torch.Tensor:
    """Kernelised attention, parallel form: out_i = Σ_j φ(q_i)·φ(k_j) v_j / Σ_j φ(q_i)·φ(k_j).

    q (..., n, d_k), k (..., m, d_k), v (..., m, d_v); φ = elu + 1. ``causal`` sums only j <= i
    (then m = n). Returns (..., n, d_v).
    """
    _check_inputs(q, k, v, queries_per_key=causal)  # q (.., n, d_k), k (.., m, d_k), v (.., m, d_v)
    query_features, key_features = elu_feature_map(q), elu_feature_map(k)  # φ(q_i), φ(k_j)
    if causal:
        fast_weights, normalisers = fast_weight_prefix_sums(key_features, v)  # W_i, z_i for all i
        numerator = (fast_weights @ query_features[..., None])[..., 0]  # W_i φ(q_i): (..., n, d_v)
        denominator = (normalisers * query_features).sum(-1, keepdim=True)  # z_i · φ(q_i)
        return numerator / denominator
    fast_weights, normaliser = fast_weight_memory(key_features, v)  # W, z over all m keys
    numerator = query_features @ fast_weights.transpose(-2, -1)  # rows W φ(q_i): (..., n, d_v)
    denominator = query_features @ normaliser[..., None]  # z · φ(q_i): (..., n, 1)
    return numerator / denominator


def fast_weight_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal linear attention as a recurrence over a (d_v × d_k) fast-weight matrix W.

    q, k (..., n, d_k), v (..., n, d_v); φ = elu + 1. For t = 1 … n:
    W_t = W_{t-1} + v_t φ(k_t)ᵀ, z_t = z_{t-1} + φ(k_t), out_t = W_t φ(q_t) / (z_t · φ(q_t)).
    Returns (..., n, d_v), equal to ``linear_attention(q, k, v, causal=True)``.
    """
    _check_inputs(q, k, v, queries_per_key=True)  # q, k (..., n, d_k), v (..., n, d_v)
    *batch, length, key_dim = k.shape
    fast_weights = q.new_zeros(*batch, v.shape[-1], key_dim)  # W_0 = 0: (..., d_v, d_k)
    normaliser = q.new_zeros(*batch, key_dim)  # z_0 = 0
    outputs = []
    for t in range(length):
        key_feature, query_feature = elu_feature_map(k[..., t, :]), elu_feature_map(q[..., t, :])
        fast_weights = (
            fast_weights + v[..., t, :, None] * key_feature[..., None, :]
        )  # + v_t φ(k_t)ᵀ
        normaliser = normaliser + key_feature  # z_t = z_{t-1} + φ(k_t)
        read = (fast_weights @ query_feature[..., None])[..., 0]  # W_t φ(q_t)
        outputs.append(read / (normaliser * query_feature).sum(-1, keepdim=True))  # / z_t · φ(q_t)
    return torch.stack(outputs, dim=-2)


def delta_rule_write(
    fast_weights: torch.Tensor, key: torch.Tensor, value: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """One delta-rule write: W_t = W_{t-1} + β_t (v_t - W_{t-1} k_t) k_tᵀ.

    fast_weights W_{t-1} (..., d_v, d_k), key (..., d_k), value (..., d_v), beta (...).
    Returns W_t. With β = 1 and a unit key, W_t k_t = v_t exactly: the old value is replaced.
    """
    require_shapes(
        ("fast_weights", fast_weights, "(*batch, d_v, d_k)"),
        ("key", key, "(*batch, d_k)"),
        ("value", value, "(*batch, d_v)"),
        ("beta", beta, "(*batch,)"),
    )
    require_dtype("floating-point", fast_weights=fast_weights, key=key, value=value, beta=beta)
    retrieved = (fast_weights @ key[..., None])[..., 0]  # v̄_t = W_{t-1} k_t
    correction = beta[..., None] * (value - retrieved)  # β_t (v_t - v̄_t)
    return fast_weights + correction[..., :, None] * key[..., None, :]  # + β_t (v_t - v̄_t) k_tᵀ


def delta_rule_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor
) -> torch.Tensor:
    """The delta rule over a sequence: W_t = W_{t-1} + β_t (v_t - W_{t-1} k_t) k_tᵀ, out_t = W_t q_t.

    q, k (..., n, d_k), v (..., n, d_v), beta (..., n); no feature map (DeltaNet normalises the
    keys to unit length instead, which keeps W's growth in check for β in [0, 1]). Returns
    (..., n, d_v).
    """
    _check_inputs(q, k, v, queries_per_key=True, beta=beta)  # and beta (..., n)
    *batch, length, key_dim = k.shape
    fast_weights = q.new_zeros(*batch, v.shape[-1], key_dim)  # W_0 = 0: (..., d_v, d_k)
    outputs = []
    for t in range(length):
        fast_weights = delta_rule_write(fast_weights, k[..., t, :], v[..., t, :], beta[..., t])
        outputs.append((fast_weights @ q[..., t, :, None])[..., 0])  # out_t = W_t q_t
    return torch.stack(outputs, dim=-2)
