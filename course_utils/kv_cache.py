"""Incremental decoding: one step of causal self-attention against a key/value cache.

A decoder generates one token at a time. Without a cache, step t runs the decoder on the whole
prefix y_1 … y_t again, recomputing the keys and values of every earlier position: O(t) work per
layer that was already done. Causal attention never lets an earlier position see a later one, so
the keys and values of position i are the same at every step ≥ i: compute them once and keep them.

    step t, layer ℓ:   q_t = x_t W_q        k_t = x_t W_k        v_t = x_t W_v
                       K_ℓ ← [K_ℓ; k_t]     V_ℓ ← [V_ℓ; v_t]                   (append to the cache)
                       o_t = softmax(q_t K_ℓᵀ / √d_h) V_ℓ                      (per head)

No mask is needed at a step: the cache holds exactly the positions 1 … t the query may see.
The price is memory: every layer keeps a key and a value of d_h features per head per position,

    bytes = 2 · layers · heads · d_h · n · bytes per element      (per sequence; × batch)

:class:`KVCache` holds those tensors and :meth:`KVCache.nbytes` counts the bytes they actually
take, which :func:`kv_cache_bytes` predicts.
"""

from __future__ import annotations

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.helpers.validation import require_positive_int, require_shapes
from course_utils.multihead import MultiHeadAttention, merge_heads, split_heads


def kv_cache_bytes(
    layers: int, heads: int, head_dim: int, length: int, bytes_per_element: int = 4, batch: int = 1
) -> int:
    """2 · layers · heads · d_h · n · bytes per element, times the batch: the cache's size."""
    for name, value in (
        ("layers", layers),
        ("heads", heads),
        ("head_dim", head_dim),
        ("length", length),
        ("bytes_per_element", bytes_per_element),
        ("batch", batch),
    ):
        require_positive_int(name, value)
    return 2 * layers * heads * head_dim * length * bytes_per_element * batch  # keys and values


class KVCache:
    """Per-layer keys and values of every position decoded so far, each (B, H, n, d_h).

    ``append(layer, keys, values)`` adds the new position(s) of one layer and returns that layer's
    full keys and values. Every layer must be appended once per step; ``length`` is then the number
    of positions held.
    """

    def __init__(self, layers: int):
        require_positive_int("layers", layers)
        self.keys: list[torch.Tensor | None] = [None] * layers  # K_ℓ: (B, H, n, d_h)
        self.values: list[torch.Tensor | None] = [None] * layers  # V_ℓ: (B, H, n, d_h)

    @property
    def layers(self) -> int:
        return len(self.keys)

    @property
    def length(self) -> int:
        """n, the number of positions held (by layer 0; every layer holds as many after a step)."""
        return 0 if self.keys[0] is None else self.keys[0].shape[-2]

    def append(
        self, layer: int, keys: torch.Tensor, values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """K_ℓ ← [K_ℓ; k_t], V_ℓ ← [V_ℓ; v_t]; returns the layer's (K_ℓ, V_ℓ)."""
        if not isinstance(layer, int) or not 0 <= layer < self.layers:
            raise ValueError(f"layer must be an int in 0..{self.layers - 1}, got {layer!r}")
        require_shapes(
            ("keys", keys, "(batch, heads, new, head_dim)"),
            ("values", values, "(batch, heads, new, head_dim)"),
        )
        if self.keys[layer] is None:
            self.keys[layer], self.values[layer] = keys, values
        else:
            require_shapes(
                ("cached keys", self.keys[layer], "(batch, heads, n, head_dim)"),
                ("keys", keys, "(batch, heads, new, head_dim)"),
            )
            self.keys[layer] = torch.cat([self.keys[layer], keys], dim=-2)  # [K_ℓ; k_t]
            self.values[layer] = torch.cat([self.values[layer], values], dim=-2)  # [V_ℓ; v_t]
        return self.keys[layer], self.values[layer]

    def nbytes(self) -> int:
        """Bytes of the key and value tensors actually held, summed over layers."""
        held = [tensor for tensor in self.keys + self.values if tensor is not None]
        return sum(tensor.numel() * tensor.element_size() for tensor in held)


def cached_self_attention(
    attention: MultiHeadAttention, x_new: torch.Tensor, cache: KVCache, layer: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of causal self-attention for the newest position(s), against ``cache``'s layer.

    ``x_new`` (B, 1, E) is the layer's input at the new position; its key and value are appended to
    the cache. Returns the output (B, 1, E) and the weights (B, H, 1, n) over all n cached positions,
    equal to row n of full causal self-attention over the prefix.
    """
    require_shapes(
        ("x_new", x_new, "(batch, new, embed_dim)"), sizes={"embed_dim": attention.embed_dim}
    )
    heads = attention.num_heads
    query = split_heads(attention.query_projection(x_new), heads)  # q_t = x_t W_q: (B, H, 1, d_h)
    new_keys = split_heads(attention.key_projection(x_new), heads)  # k_t = x_t W_k
    new_values = split_heads(attention.value_projection(x_new), heads)  # v_t = x_t W_v
    keys, values = cache.append(layer, new_keys, new_values)  # K ← [K; k_t], V ← [V; v_t]
    # o_t = softmax(q_t Kᵀ / √d_h) V: every cached position is in the past, so no mask
    mask = None
    if x_new.shape[-2] > 1:  # several new positions at once (a prompt): causal among them
        n, new = keys.shape[-2], x_new.shape[-2]
        mask = torch.ones(new, n, dtype=torch.bool, device=x_new.device).tril(n - new)
    output, weights = scaled_dot_product_attention(query, keys, values, mask)
    return attention.output_projection(merge_heads(output)), weights  # Concat(heads) W_o
