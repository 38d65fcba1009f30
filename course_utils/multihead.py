"""Multi-head attention: H scaled dot-product attentions side by side on slices of the embedding.

    head_h = Attention(X_q W_q^h, X_k W_k^h, X_v W_v^h)              h = 1 … H
    MultiHead(X_q, X_k, X_v) = Concat(head_1, …, head_H) W_o

Each head works in d_h = embed_dim / H dimensions, so all H heads together take about the FLOPs of
one full-width head, but store H weight matrices of n × m entries where one head stores one.
In code the H projections are one (embed_dim × embed_dim) matrix whose output is cut into H slices
of d_h features:

    split_heads: (..., n, embed_dim) → view (..., n, H, d_h) → transpose → (..., H, n, d_h)
    merge_heads: (..., H, n, d_h) → transpose → (..., n, H, d_h) → reshape → (..., n, embed_dim)

The order matters: ``x.view(B, H, n, d_h)`` has the right shape but mixes positions into heads.

``MultiHeadAttention`` equals ``torch.nn.MultiheadAttention(batch_first=True)`` in eval mode once the
weights are copied with ``MultiHeadAttention.from_torch``. Two conventions differ from torch's
module: the mask is boolean with **True = may attend** (torch's ``attn_mask`` and
``key_padding_mask`` use True = ignore), and the returned weights are per head, (..., H, n, m)
(torch averages them over heads unless ``average_attn_weights=False``).
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.helpers.validation import (
    require_broadcastable,
    require_divides,
    require_mask,
    require_positive_int,
    require_shapes,
)

_EACH_HEAD = "each head needs embed_dim / num_heads features"


def _require_heads(embed_dim: int, num_heads: int) -> None:
    """Both positive ints, and the heads cut embed_dim into equal slices."""
    require_positive_int("embed_dim", embed_dim)
    require_positive_int("num_heads", num_heads)
    require_divides("num_heads", num_heads, "embed_dim", embed_dim, _EACH_HEAD)


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(..., n, embed_dim) → (..., num_heads, n, embed_dim // num_heads).

    Head h gets features h·d_h … (h+1)·d_h - 1 of every position.
    """
    require_positive_int("num_heads", num_heads)
    require_shapes(("x", x, "(..., n, embed_dim)"))
    *leading, length, embed_dim = x.shape
    require_divides("num_heads", num_heads, "embed_dim", embed_dim, _EACH_HEAD)
    head_dim = embed_dim // num_heads
    # (..., n, E) → (..., n, H, d_h): the last axis is cut into H consecutive slices ...
    sliced = x.reshape(*leading, length, num_heads, head_dim)
    # ... → (..., H, n, d_h): heads become a batch dimension for the attention matmuls.
    return sliced.transpose(-3, -2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(..., num_heads, n, d_h) → (..., n, num_heads · d_h), the inverse of :func:`split_heads`."""
    require_shapes(("x", x, "(..., num_heads, n, head_dim)"))
    *leading, num_heads, length, head_dim = x.shape
    # (..., H, n, d_h) → (..., n, H, d_h) → (..., n, H·d_h): concatenate the heads per position.
    return x.transpose(-3, -2).reshape(*leading, length, num_heads * head_dim)


def multi_head_attention_cost(
    batch: int,
    query_length: int,
    key_length: int,
    embed_dim: int,
    num_heads: int,
    bytes_per_element: int = 4,
) -> dict[str, int]:
    """Matmul FLOPs (one multiply-add = 2 FLOPs) and tensor sizes of one MultiHeadAttention forward.

    * projections: Q and the output on n positions, K and V on m positions: 2·B·E²·(2n + 2m)
    * scores Q Kᵀ per head: 2·B·H·n·m·d_h = 2·B·n·m·E; weighted sum α V: the same again
    * the (B, H, n, m) weight matrix is the only tensor that grows with n·m; Q, K, V and the output
      grow with n or m.

    Softmax, scaling and bias additions are O(B·H·n·m) and O(B·n·E) element-wise operations and are
    not counted, as ``torch.utils.flop_counter.FlopCounterMode`` does not count them either.
    """
    for name, value in (
        ("batch", batch),
        ("query_length", query_length),
        ("key_length", key_length),
        ("bytes_per_element", bytes_per_element),
    ):
        require_positive_int(name, value)
    _require_heads(embed_dim, num_heads)
    projection_flops = 2 * batch * embed_dim * embed_dim * (2 * query_length + 2 * key_length)
    score_flops = 2 * batch * query_length * key_length * embed_dim  # Σ_h 2·n·m·d_h
    weighted_sum_flops = 2 * batch * query_length * key_length * embed_dim
    projected_elements = batch * embed_dim * (2 * query_length + 2 * key_length)  # Q, K, V, output
    return {
        "projection_flops": projection_flops,
        "score_flops": score_flops,
        "weighted_sum_flops": weighted_sum_flops,
        "total_flops": projection_flops + score_flops + weighted_sum_flops,
        "weights_bytes": batch * num_heads * query_length * key_length * bytes_per_element,
        "qkv_output_bytes": projected_elements * bytes_per_element,
    }


class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate query, key, value and output projections.

    ``forward(query (..., n, E), key (..., m, E), value (..., m, E), mask=None)`` returns
    ``(output (..., n, E), weights (..., H, n, m))``. ``mask`` is boolean, True = may attend, and
    must broadcast to the weights' shape (..., H, n, m): a causal mask is (n, m); a key padding mask
    of real tokens (B, m) goes in as ``mask[:, None, None, :]``. A query whose keys are all masked
    gets zero weights, so its output is the output projection's bias.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True):
        super().__init__()
        _require_heads(embed_dim, num_heads)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.query_projection = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_q
        self.key_projection = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_k
        self.value_projection = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_v
        self.output_projection = nn.Linear(embed_dim, embed_dim, bias=bias)  # W_o

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, head_dim={self.head_dim}"

    def _check_inputs(self, query, key, value, mask) -> None:
        """query (..., n, E), key and value (..., m, E); mask bool, broadcastable to (..., H, n, m)."""
        require_shapes(
            ("query", query, "(..., n, embed_dim)"),
            ("key", key, "(*batch, m, embed_dim)"),
            ("value", value, "(*batch, m, embed_dim)"),
            sizes={"embed_dim": self.embed_dim},
            meanings={"batch": "batch dimensions", "m": "number of positions"},
        )
        batch = require_broadcastable(("query", query), ("key", key))
        weights_shape = (*batch, self.num_heads, query.shape[-2], key.shape[-2])
        require_mask(
            mask,
            weights_shape,
            "the attention weights",
            hint=" (batch..., heads, queries, keys); a (batch, keys) padding mask goes in as "
            "mask[:, None, None, :]",
        )

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_inputs(query, key, value, mask)
        # Q^h = X_q W_q^h for every head at once: project to E features, then cut into H heads.
        queries = split_heads(self.query_projection(query), self.num_heads)  # (..., H, n, d_h)
        keys = split_heads(self.key_projection(key), self.num_heads)  # (..., H, m, d_h)
        values = split_heads(self.value_projection(value), self.num_heads)  # (..., H, m, d_h)
        # head_h = softmax(Q^h K^hᵀ / √d_h) V^h
        heads, weights = scaled_dot_product_attention(queries, keys, values, mask)
        # MultiHead = Concat(head_1, …, head_H) W_o
        return self.output_projection(merge_heads(heads)), weights

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """A MultiHeadAttention computing what ``module`` computes (in eval mode), weights copied.

        ``module`` must project queries, keys and values from ``embed_dim`` features
        (kdim = vdim = embed_dim) without ``add_bias_kv`` or ``add_zero_attn``. Dropout is not
        copied: compare with ``module.eval()``. The copy is batch-first whatever ``module.batch_first``.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(
                f"module must be a torch.nn.MultiheadAttention, got {type(module).__name__}"
            )
        if not module._qkv_same_embed_dim:
            raise ValueError(
                f"module has kdim={module.kdim}, vdim={module.vdim} but embed_dim={module.embed_dim}: "
                "only kdim = vdim = embed_dim can be copied"
            )
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError(
                "module uses add_bias_kv or add_zero_attn, which MultiHeadAttention lacks"
            )
        has_bias = module.in_proj_bias is not None
        copy = cls(module.embed_dim, module.num_heads, bias=has_bias)
        copy.to(device=module.in_proj_weight.device, dtype=module.in_proj_weight.dtype)
        # torch stacks W_q, W_k, W_v row-wise into in_proj_weight (3E, E).
        query_weight, key_weight, value_weight = module.in_proj_weight.detach().chunk(3, dim=0)
        with torch.no_grad():
            copy.query_projection.weight.copy_(query_weight)
            copy.key_projection.weight.copy_(key_weight)
            copy.value_projection.weight.copy_(value_weight)
            copy.output_projection.weight.copy_(module.out_proj.weight)
            if has_bias:
                query_bias, key_bias, value_bias = module.in_proj_bias.detach().chunk(3, dim=0)
                copy.query_projection.bias.copy_(query_bias)
                copy.key_projection.bias.copy_(key_bias)
                copy.value_projection.bias.copy_(value_bias)
                copy.output_projection.bias.copy_(module.out_proj.bias)
        return copy
