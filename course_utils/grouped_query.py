"""Multi-query and grouped-query attention (Shazeer, 2019; Ainslie et al., 2023).

A decoder that caches keys and values (notebook 08) keeps, per layer and position, one key and
one value of d_h features for each of its H heads. Grouped-query attention (GQA) lets the H query
heads share G < H key/value heads: the query heads are cut into G consecutive groups of H/G, and
every query head of group g attends with key/value head g,

    head_h = softmax(Q_h K_g(h)ᵀ / √d_h) V_g(h)        g(h) = ⌊h / (H/G)⌋

G = H is multi-head attention, G = 1 multi-query attention (MQA). The cache holds G heads
instead of H: it shrinks by exactly H/G, and so does the memory traffic of each decoding step.

A trained multi-head model can be converted by mean-pooling its key and value projection heads
within each group (:func:`mean_pool_heads`, Ainslie et al.); it loses some quality until it is
trained a little more ("uptraining").
"""

from __future__ import annotations

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.helpers.validation import (
    require_divides,
    require_mask,
    require_positive_int,
    require_shapes,
)


def grouped_query_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
) -> torch.Tensor:
    """H query heads sharing G key/value heads; equal to torch's SDPA with ``enable_gqa=True``.

    q (B, H, n_q, d), k (B, G, n_k, d), v (B, G, n_k, d_v), with G dividing H: query head h uses
    key/value head h // (H/G). ``mask`` is None or bool (True = may attend), broadcastable to
    (B, H, n_q, n_k); ``causal=True`` lets query i see keys j <= i (top-left aligned, as SDPA's
    ``is_causal``), combined with ``mask`` when both are given. Returns (B, H, n_q, d_v).
    """
    sizes = require_shapes(
        ("q", q, "(B, H, n_q, d)"),
        ("k", k, "(B, G, n_k, d)"),
        ("v", v, "(B, G, n_k, d_v)"),
        meanings={"G": "number of key/value heads", "n_k": "number of positions"},
    )
    query_heads, kv_heads = sizes["H"], sizes["G"]
    require_divides("G", kv_heads, "H", query_heads, "each group holds H/G query heads")
    n_q, n_k = sizes["n_q"], sizes["n_k"]
    require_mask(mask, (sizes["B"], query_heads, n_q, n_k))
    if not isinstance(causal, bool):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    if causal:  # M_ij = (j <= i), and the caller's mask too
        lower = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril()
        mask = lower if mask is None else mask & lower
    group_size = query_heads // kv_heads  # H/G query heads per key/value head
    # K_g(h): key/value head g serves query heads g·H/G … (g+1)·H/G − 1, so repeat each in place
    keys = k.repeat_interleave(group_size, dim=1)  # (B, H, n_k, d)
    values = v.repeat_interleave(group_size, dim=1)  # (B, H, n_k, d_v)
    output, _ = scaled_dot_product_attention(q, keys, values, mask)  # softmax(Q_h K_gᵀ/√d) V_g
    return output


def mean_pool_heads(weight: torch.Tensor, num_heads: int, num_groups: int) -> torch.Tensor:
    """A key or value projection of H heads turned into one of G heads by averaging each group.

    ``weight`` (H · d_h, E) in nn.Linear's convention (rows h·d_h … (h+1)·d_h − 1 make head h);
    returns (G · d_h, E) whose head g is the mean of heads g·H/G … (g+1)·H/G − 1 (Ainslie et al.).
    """
    require_positive_int("num_heads", num_heads)
    require_positive_int("num_groups", num_groups)
    require_divides("num_groups", num_groups, "num_heads", num_heads)
    sizes = require_shapes(("weight", weight, "(out_features, in_features)"))
    require_divides("num_heads", num_heads, "out_features", sizes["out_features"])
    head_dim = sizes["out_features"] // num_heads
    group_size = num_heads // num_groups
    heads = weight.reshape(num_groups, group_size, head_dim, sizes["in_features"])
    pooled = heads.mean(dim=1)  # W_g = mean of W_h over the heads h of group g
    return pooled.reshape(num_groups * head_dim, sizes["in_features"])


__all__ = ["grouped_query_attention", "mean_pool_heads"]
