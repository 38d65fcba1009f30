"""Multi-head latent attention, MLA (DeepSeek-AI, 2024, "DeepSeek-V2", §2.1).

Grouped-query attention shrinks the cache by sharing key/value heads. MLA instead caches, per token,
one low-rank *latent* c_t of d_c features, from which every head's key and value are rebuilt:

    c_t   = W^DKV h_t                       (d_c)        the latent: cached
    k_t,h = W^UK_h c_t,   v_t,h = W^UV_h c_t  (d_h)        per head: not cached
    q_t,h = W^Q_h h_t                        (d_h)

RoPE cannot go on k_t,h: a rotation between W^UK_h and c_t would stop the absorption below. So
positions travel in separate, *decoupled* features, a RoPE query per head and one RoPE key shared
by the heads:

    q^R_t,h = RoPE(W^QR_h h_t),   k^R_t = RoPE(W^KR h_t)   (d_h^R)   k^R_t: cached
    s_h(t, j) = (q_t,h · k_j,h + q^R_t,h · k^R_j) / √(d_h + d_h^R)
    o_t,h = Σ_j softmax_j(s_h) v_j,h,        u_t = W^O [o_t,1; …; o_t,H]

**Absorption** (what is computed at inference). q · (W^UK_h c_j) = (W^UK_hᵀ q) · c_j, and
Σ_j a_j W^UV_h c_j = W^UV_h Σ_j a_j c_j: a head scores its *absorbed query* W^UK_hᵀ q_t,h (d_c
features) against the cached latents directly, and expands only the weighted sum of latents. No
key or value of d_h features per head is ever built; the cache is (d_c + d_h^R) numbers per token
and layer (``cache_size.latent_bytes_per_token``). :func:`absorbed_mla_step` computes one step that
way, :func:`expanded_mla_step` the plain way, tested equal.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course_utils.helpers.validation import require_positive_int, require_shapes
from course_utils.masks import causal_mask
from course_utils.multihead import merge_heads, split_heads
from course_utils.rotary import apply_rope
from course_utils.softmax import masked_softmax, softmax


def _check_step(query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up) -> float:
    """Checks the step's arguments; returns its score scale 1/√(d_h + d_h^R)."""
    require_shapes(
        ("query_content", query_content, "(B, H, d_h)"),
        ("query_rope", query_rope, "(B, H, d_r)"),
        ("latent_cache", latent_cache, "(B, n, d_c)"),
        ("rope_key_cache", rope_key_cache, "(B, n, d_r)"),
        ("key_up", key_up, "(H, d_h, d_c)"),
        ("value_up", value_up, "(H, d_v, d_c)"),
        meanings={"d_c": "latent features", "d_r": "RoPE features"},
    )
    return 1.0 / math.sqrt(query_content.shape[-1] + query_rope.shape[-1])  # 1/√(d_h + d_h^R)


def absorbed_mla_step(
    query_content: torch.Tensor,
    query_rope: torch.Tensor,
    latent_cache: torch.Tensor,
    rope_key_cache: torch.Tensor,
    key_up: torch.Tensor,
    value_up: torch.Tensor,
) -> torch.Tensor:
    """One query per head against the cached latents, the up-projections absorbed.

    query_content (B, H, d_h) and query_rope (B, H, d_r) the new token's queries (RoPE already
    applied); latent_cache (B, n, d_c) and rope_key_cache (B, n, d_r) what is cached; key_up and
    value_up (H, d_h, d_c) the per-head up-projections W^UK_h, W^UV_h. Returns (B, H, d_h).
    """
    scale = _check_step(query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up)
    absorbed_query = torch.einsum("bhk,hkc->bhc", query_content, key_up)  # W^UK_hᵀ q_h: (B, H, d_c)
    content_scores = absorbed_query @ latent_cache.transpose(-2, -1)  # (W^UK_hᵀ q_h) · c_j
    rope_scores = query_rope @ rope_key_cache.transpose(-2, -1)  # q^R_h · k^R_j
    weights = softmax((content_scores + rope_scores) * scale, dim=-1)  # (B, H, n)
    latent_mix = weights @ latent_cache  # Σ_j a_hj c_j: (B, H, d_c)
    return torch.einsum("bhc,hkc->bhk", latent_mix, value_up)  # W^UV_h Σ_j a_hj c_j


def expanded_mla_step(
    query_content: torch.Tensor,
    query_rope: torch.Tensor,
    latent_cache: torch.Tensor,
    rope_key_cache: torch.Tensor,
    key_up: torch.Tensor,
    value_up: torch.Tensor,
) -> torch.Tensor:
    """:func:`absorbed_mla_step` the plain way: every head's keys and values rebuilt from the
    latents, then attention. Same arguments and result (tested equal)."""
    scale = _check_step(query_content, query_rope, latent_cache, rope_key_cache, key_up, value_up)
    keys = torch.einsum("hkc,bnc->bhnk", key_up, latent_cache)  # k_j,h = W^UK_h c_j
    values = torch.einsum("hkc,bnc->bhnk", value_up, latent_cache)  # v_j,h = W^UV_h c_j
    rope_keys = rope_key_cache[:, None]  # k^R_j, shared by the heads: (B, 1, n, d_r)
    scores = (keys @ query_content[..., None]).squeeze(-1)  # q_h · k_j,h: (B, H, n)
    scores = scores + (rope_keys @ query_rope[..., None]).squeeze(-1)  # + q^R_h · k^R_j
    weights = softmax(scores * scale, dim=-1)
    return (weights[..., None] * values).sum(dim=-2)  # Σ_j a_hj v_j,h


class LatentCache:
    """What MLA caches per layer: the latents (B, n, d_c) and the RoPE keys (B, n, d_h^R)."""

    def __init__(self):
        self.latents: torch.Tensor | None = None
        self.rope_keys: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.latents is None else self.latents.shape[-2]

    def append(self, latents: torch.Tensor, rope_keys: torch.Tensor):
        if self.latents is None:
            self.latents, self.rope_keys = latents, rope_keys
        else:
            self.latents = torch.cat([self.latents, latents], dim=-2)  # [C; c_t]
            self.rope_keys = torch.cat([self.rope_keys, rope_keys], dim=-2)  # [K^R; k^R_t]
        return self.latents, self.rope_keys

    def nbytes(self) -> int:
        """Bytes of the tensors actually held."""
        held = [t for t in (self.latents, self.rope_keys) if t is not None]
        return sum(t.numel() * t.element_size() for t in held)


class MultiHeadLatentAttention(nn.Module):
    """Causal MLA: ``forward`` the expanded form over a whole sequence, ``step`` the absorbed form
    for one new token against a :class:`LatentCache` (row n of ``forward``, tested equal)."""

    def __init__(
        self, embed_dim: int, num_heads: int, head_dim: int, latent_dim: int, rope_dim: int
    ):
        super().__init__()
        for name, value in (
            ("embed_dim", embed_dim),
            ("num_heads", num_heads),
            ("head_dim", head_dim),
            ("latent_dim", latent_dim),
        ):
            require_positive_int(name, value)
        if (
            isinstance(rope_dim, bool)
            or not isinstance(rope_dim, int)
            or rope_dim < 2
            or rope_dim % 2
        ):
            raise ValueError(
                f"rope_dim must be an even int >= 2 (RoPE turns pairs), got {rope_dim!r}"
            )
        self.num_heads, self.head_dim, self.rope_dim = num_heads, head_dim, rope_dim
        self.down_kv = nn.Linear(embed_dim, latent_dim, bias=False)  # W^DKV
        self.up_key = nn.Linear(latent_dim, num_heads * head_dim, bias=False)  # W^UK
        self.up_value = nn.Linear(latent_dim, num_heads * head_dim, bias=False)  # W^UV
        self.query = nn.Linear(embed_dim, num_heads * head_dim, bias=False)  # W^Q
        self.query_rope = nn.Linear(embed_dim, num_heads * rope_dim, bias=False)  # W^QR
        self.key_rope = nn.Linear(embed_dim, rope_dim, bias=False)  # W^KR, shared by the heads
        self.output = nn.Linear(num_heads * head_dim, embed_dim, bias=False)  # W^O

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, n, E) → (B, n, E), every head's keys and values built (the expanded form)."""
        require_shapes(("x", x, "(batch, n, embed_dim)"))
        n, heads = x.shape[-2], self.num_heads
        latents = self.down_kv(x)  # c_t = W^DKV h_t
        keys = split_heads(self.up_key(latents), heads)  # k_t,h = W^UK_h c_t: (B, H, n, d_h)
        values = split_heads(self.up_value(latents), heads)  # v_t,h = W^UV_h c_t
        queries = split_heads(self.query(x), heads)  # q_t,h = W^Q_h h_t
        rope_queries = apply_rope(split_heads(self.query_rope(x), heads))  # q^R_t,h
        rope_keys = apply_rope(self.key_rope(x))[:, None]  # k^R_t: (B, 1, n, d_h^R)
        scores = queries @ keys.transpose(-2, -1) + rope_queries @ rope_keys.transpose(-2, -1)
        scores = scores / math.sqrt(self.head_dim + self.rope_dim)  # / √(d_h + d_h^R)
        weights = masked_softmax(scores, causal_mask(n, x.device))
        return self.output(merge_heads(weights @ values))  # u_t = W^O [o_t,1; …; o_t,H]

    def up_projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W^UK, W^UV) as (H, d_h, d_c): row block h of each nn.Linear weight is head h's."""
        latent_dim = self.down_kv.out_features
        key_up = self.up_key.weight.reshape(self.num_heads, self.head_dim, latent_dim)
        value_up = self.up_value.weight.reshape(self.num_heads, self.head_dim, latent_dim)
        return key_up, value_up

    def step(self, x_new: torch.Tensor, cache: LatentCache) -> torch.Tensor:
        """x_new (B, 1, E), the next token's input; caches its latent and RoPE key, returns (B, 1, E)
        by :func:`absorbed_mla_step`."""
        require_shapes(("x_new", x_new, "(batch, 1, embed_dim)"))
        position = torch.tensor([cache.length], device=x_new.device)  # the new token's position
        latents, rope_keys = cache.append(
            self.down_kv(x_new),
            apply_rope(self.key_rope(x_new), position),  # c_t, k^R_t
        )
        heads = self.num_heads
        query = split_heads(self.query(x_new), heads)[:, :, 0]  # q_t,h: (B, H, d_h)
        rope_query = apply_rope(split_heads(self.query_rope(x_new), heads), position)[:, :, 0]
        key_up, value_up = self.up_projections()
        heads_out = absorbed_mla_step(query, rope_query, latents, rope_keys, key_up, value_up)
        return self.output(heads_out.flatten(1))[:, None]  # W^O [o_1; …; o_H]


__all__ = [
    "LatentCache",
    "MultiHeadLatentAttention",
    "absorbed_mla_step",
    "expanded_mla_step",
]
