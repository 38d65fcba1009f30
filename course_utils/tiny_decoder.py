"""A tiny causal decoder whose only variable is how it knows positions: the lab of notebook 09.

One model, three position schemes, everything else equal:

* ``"sinusoidal"`` — the table of notebook 04 added to the token embeddings (absolute positions);
* ``"rope"``       — no table; queries and keys rotated by :func:`~course_utils.rotary.apply_rope`;
* ``"alibi"``      — no table; −m_h · (i − j) added to head h's scores (:func:`~course_utils.alibi.alibi_bias`).

Each block is pre-LN (notebook 08): x ← x + Attention(LN(x)), x ← x + FFN(LN(x)). Its attention
has H query heads and G key/value heads (grouped-query attention, ``course_utils.grouped_query``);
:meth:`TinyDecoder.grouped` converts a trained model to fewer key/value heads by mean-pooling.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from course_utils.alibi import alibi_bias
from course_utils.grouped_query import mean_pool_heads
from course_utils.helpers.validation import require_divides, require_one_of, require_positive_int
from course_utils.masks import causal_mask
from course_utils.multihead import merge_heads, split_heads
from course_utils.positional import sinusoidal_positional_encoding
from course_utils.rotary import apply_rope
from course_utils.softmax import masked_softmax
from course_utils.transformer import position_wise_feed_forward

POSITION_SCHEMES = ("sinusoidal", "rope", "alibi")


class GroupedSelfAttention(nn.Module):
    """Causal self-attention with H query heads sharing G key/value heads, and RoPE or ALiBi."""

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int, positions: str):
        super().__init__()
        require_divides("num_heads", num_heads, "embed_dim", embed_dim)
        require_divides("num_kv_heads", num_kv_heads, "num_heads", num_heads)
        self.num_heads, self.num_kv_heads, self.positions = num_heads, num_kv_heads, positions
        self.head_dim = embed_dim // num_heads
        self.query = nn.Linear(embed_dim, embed_dim, bias=False)  # W_q: H heads
        self.key = nn.Linear(embed_dim, num_kv_heads * self.head_dim, bias=False)  # W_k: G heads
        self.value = nn.Linear(embed_dim, num_kv_heads * self.head_dim, bias=False)  # W_v: G heads
        self.output = nn.Linear(embed_dim, embed_dim, bias=False)  # W_o

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[-2]
        queries = split_heads(self.query(x), self.num_heads)  # (B, H, n, d_h)
        keys = split_heads(self.key(x), self.num_kv_heads)  # (B, G, n, d_h)
        values = split_heads(self.value(x), self.num_kv_heads)  # (B, G, n, d_h)
        if self.positions == "rope":  # q_m ← R(m) q_m, k_n ← R(n) k_n
            queries, keys = apply_rope(queries), apply_rope(keys)
        group_size = self.num_heads // self.num_kv_heads  # query head h uses key head h // (H/G)
        keys = keys.repeat_interleave(group_size, dim=1)
        values = values.repeat_interleave(group_size, dim=1)
        scores = queries @ keys.transpose(-2, -1) / math.sqrt(self.head_dim)  # q_i · k_j / √d_h
        if self.positions == "alibi":  # − m_h · (i − j)
            scores = scores + alibi_bias(self.num_heads, n, n).to(scores)
        weights = masked_softmax(scores, causal_mask(n, x.device))  # j <= i only
        return self.output(merge_heads(weights @ values))


class TinyDecoder(nn.Module):
    """Token embedding (+ sinusoidal table), ``layers`` pre-LN blocks, LN, a linear read-out."""

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        positions: str,
        embed_dim: int = 32,
        num_heads: int = 4,
        num_kv_heads: int | None = None,
        layers: int = 1,
    ):
        super().__init__()
        require_one_of("positions", positions, POSITION_SCHEMES)
        for name, value in (("vocab_size", vocab_size), ("num_classes", num_classes)):
            require_positive_int(name, value)
        require_positive_int("layers", layers)
        self.positions = positions
        self.settings = dict(
            vocab_size=vocab_size,
            num_classes=num_classes,
            positions=positions,
            embed_dim=embed_dim,
            num_heads=num_heads,
            num_kv_heads=num_kv_heads or num_heads,
            layers=layers,
        )
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.blocks = nn.ModuleList()
        for _ in range(layers):
            block = nn.ModuleDict(
                {
                    "attention_norm": nn.LayerNorm(embed_dim),
                    "attention": GroupedSelfAttention(
                        embed_dim, num_heads, num_kv_heads or num_heads, positions
                    ),
                    "feed_forward_norm": nn.LayerNorm(embed_dim),
                    "feed_forward": position_wise_feed_forward(embed_dim, 4 * embed_dim),
                }
            )
            self.blocks.append(block)
        self.final_norm = nn.LayerNorm(embed_dim)
        self.readout = nn.Linear(embed_dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, n) int → logits (B, n, num_classes); position i sees tokens 0 … i only."""
        x = self.embedding(tokens)  # (B, n, E)
        if self.positions == "sinusoidal":  # x_i ← x_i + PE[i]
            n, embed_dim = x.shape[-2:]
            x = x + sinusoidal_positional_encoding(n, embed_dim, device=x.device)
        for block in self.blocks:
            x = x + block["attention"](block["attention_norm"](x))  # x ← x + Attn(LN(x))
            x = x + block["feed_forward"](block["feed_forward_norm"](x))  # x ← x + FFN(LN(x))
        return self.readout(self.final_norm(x))

    def grouped(self, num_kv_heads: int) -> TinyDecoder:
        """A copy with ``num_kv_heads`` key/value heads, each the mean of its group (no retraining)."""
        settings = dict(self.settings, num_kv_heads=num_kv_heads)
        converted = TinyDecoder(**settings).to(self.readout.weight.device)
        state = copy.deepcopy(self.state_dict())
        for index, block in enumerate(self.blocks):
            attention = block["attention"]
            for name in ("key", "value"):  # W_k, W_v: (G·d_h, E) from (H·d_h, E)
                weight = getattr(attention, name).weight.detach()
                state[f"blocks.{index}.attention.{name}.weight"] = mean_pool_heads(
                    weight, attention.num_kv_heads, num_kv_heads
                )
        converted.load_state_dict(state)
        return converted


__all__ = ["POSITION_SCHEMES", "GroupedSelfAttention", "TinyDecoder"]
