"""Alignment models for encoder–decoder attention: Bahdanau's additive score and Luong's three scores.

A decoder state (the *query*) is compared with every encoder state (the *keys*) to give one score
per source position; a softmax over the source positions turns the scores into alignment weights
α_ij, and the context vector is the weighted sum of the encoder states (the *values*):

    additive (Bahdanau et al., 2015)   e_ij = vᵀ tanh(W s_{i-1} + U h_j)
    dot      (Luong et al., 2015)      e_tj = h_tᵀ h̄_j
    general  (Luong et al., 2015)      e_tj = h_tᵀ W_a h̄_j
    concat   (Luong et al., 2015)      e_tj = v_aᵀ tanh(W_a [h_t; h̄_j])

    α_ij = softmax_j(e_ij) over the real (unpadded) source positions,   c_i = Σ_j α_ij h_j

Luong's *local-p* attention predicts a source position p_t = (S − 1)·sigmoid(v_pᵀ tanh(W_p h_t))
for a sentence of S real tokens, keeps only the positions j with |j − p_t| ≤ D, and multiplies the
softmax weights by a Gaussian centred on p_t with σ = D / 2:

    α_tj = softmax_{|j − p_t| ≤ D}(e_tj) · exp(−(j − p_t)² / (2σ²))

(Luong used S where we use S − 1, so that p_t is always a valid position.)

Shapes. ``keys`` and ``values`` are (B, m, d_k) and (B, m, d_v). A ``query`` of shape (B, d_q) is one
decoder step and gives context (B, d_v) and weights (B, m); a query of shape (B, n, d_q) is n steps
at once and gives (B, n, d_v) and (B, n, m). ``mask`` is boolean, True = may attend, of shape (B, m)
(one row of real tokens per sentence, the usual padding mask) or broadcastable to the weights.
A row whose every key is masked gets zero weights and a zero context.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from course_utils.helpers.validation import (
    require_dtype,
    require_mask,
    require_one_of,
    require_positive_int,
    require_shapes,
)
from course_utils.softmax import masked_softmax

LUONG_SCORES = ("dot", "general", "concat")


# --------------------------------------------------------------------------------------------------
# Input validation shared by the modules
# --------------------------------------------------------------------------------------------------


def _check_attention_inputs(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    query_dim: int,
    key_dim: int,
) -> bool:
    """Validate shapes; return True when ``query`` holds several steps (B, n, d_q)."""
    sizes = require_shapes(
        ("keys", keys, "(batch, positions, key_dim)"),
        ("values", values, "(batch, positions, value_dim)"),
        ("query", query, "(batch, query_dim) or (batch, steps, query_dim)"),
        sizes={"query_dim": query_dim, "key_dim": key_dim},
    )
    require_dtype("floating-point", query=query, keys=keys, values=values)
    several_steps = query.dim() == 3
    padding_shape = (sizes["batch"], sizes["positions"])  # the usual (B, m) mask
    weights_shape = (*query.shape[:-1], sizes["positions"])  # (B, m) or (B, n, m)
    # A (B, m) padding mask always fits (forward gives it a query axis); other masks must broadcast.
    is_padding_mask = getattr(mask, "shape", None) == padding_shape
    require_mask(
        mask,
        padding_shape if is_padding_mask else weights_shape,
        "the weights",
        hint=f"; a padding mask is (batch, key positions) = {padding_shape}",
    )
    return several_steps


def _key_mask(mask: torch.Tensor | None, keys: torch.Tensor, several_steps: bool):
    """A (B, m) padding mask gets a query axis when several steps attend at once."""
    if mask is not None and several_steps and tuple(mask.shape) == tuple(keys.shape[:2]):
        return mask[:, None, :]
    return mask


def _as_steps(query: torch.Tensor) -> torch.Tensor:
    """(B, d) → (B, 1, d); (B, n, d) unchanged."""
    return query if query.dim() == 3 else query[:, None, :]


def _context(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    # c_i = Σ_j α_ij v_j  for weights (B, n, m) and values (B, m, d_v)
    return weights @ values


# --------------------------------------------------------------------------------------------------
# Score functions (functional form, the formulas of the notebooks' exercises)
# --------------------------------------------------------------------------------------------------


def additive_scores(
    query: torch.Tensor, keys: torch.Tensor, W: torch.Tensor, U: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """e_j = vᵀ tanh(W s + U h_j) for query s (B, d_q), keys h (B, m, d_k).

    W is (A, d_q), U is (A, d_k), v is (A,); returns scores (B, m).
    """
    hidden = torch.tanh((query @ W.T)[:, None, :] + keys @ U.T)  # tanh(W s + U h_j): (B, m, A)
    return hidden @ v  # vᵀ tanh(...): (B, m)


def dot_scores(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """e_j = h_tᵀ h̄_j for query (B, d), keys (B, m, d); returns (B, m)."""
    return (keys @ query[:, :, None]).squeeze(-1)


def general_scores(query: torch.Tensor, keys: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """e_j = h_tᵀ W h̄_j for query (B, d_q), keys (B, m, d_k), W (d_q, d_k); returns (B, m)."""
    return (keys @ (query @ W)[:, :, None]).squeeze(-1)  # (W ᵀ h_t) · h̄_j = h_tᵀ W h̄_j


def concat_scores(
    query: torch.Tensor, keys: torch.Tensor, W: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """e_j = vᵀ tanh(W [h_t; h̄_j]) for query (B, d_q), keys (B, m, d_k), W (A, d_q + d_k), v (A,)."""
    positions = keys.shape[1]
    pairs = torch.cat([query[:, None, :].expand(-1, positions, -1), keys], dim=-1)  # [h_t; h̄_j]
    return torch.tanh(pairs @ W.T) @ v


def gaussian_window_weights(
    scores: torch.Tensor,
    centers: torch.Tensor,
    window: int,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Luong's local-p weights for scores (..., m) and predicted centres p_t (...,).

    α_j = softmax_{|j − p_t| ≤ D, j < length}(e_j) · exp(−(j − p_t)² / (2σ²)),  σ = D / 2.
    ``lengths`` (B,) marks the real tokens of each sentence (all m positions when None).
    """
    require_positive_int("window", window, "the half-width D in positions")
    if centers.shape != scores.shape[:-1]:
        raise ValueError(
            f"centers must have shape {tuple(scores.shape[:-1])} (one per row of scores "
            f"{tuple(scores.shape)}), got {tuple(centers.shape)}"
        )
    positions = torch.arange(scores.shape[-1], device=scores.device, dtype=scores.dtype)
    distance = positions - centers[..., None]  # j − p_t
    allowed = distance.abs() <= window
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=scores.device)
        real = positions[None, :] < lengths[:, None]  # (B, m)
        real = real.view(real.shape[0], *([1] * (scores.dim() - 2)), real.shape[1])
        allowed = allowed & real
    sigma = window / 2
    gaussian = torch.exp(-(distance**2) / (2 * sigma**2))  # exp(−(j − p_t)² / (2σ²))
    return masked_softmax(scores, allowed, dim=-1) * gaussian


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class _ScoredAttention(nn.Module):
    """What every attention here does around its score: check, weigh the keys, average the values.

    A subclass sets ``query_dim`` and ``key_dim`` and defines ``scores(query, keys, prepared)``,
    the scores (B, n, m) of a query (B, n, d_q); Luong's local-p also redefines ``_weights``.
    """

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor | None = None,
        prepared: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        several_steps = _check_attention_inputs(
            query, keys, values, mask, self.query_dim, self.key_dim
        )
        steps = _as_steps(query)
        weights = self._weights(self.scores(steps, keys, prepared), steps, keys, mask)
        context = _context(weights, values)
        if not several_steps:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights

    def _weights(self, scores, query, keys, mask) -> torch.Tensor:
        """α_ij = softmax_j(e_ij) over the keys the mask allows: (B, n, m)."""
        return masked_softmax(scores, _key_mask(mask, keys, True), dim=-1)


class AdditiveAttention(_ScoredAttention):
    """Bahdanau's additive attention, e_ij = vᵀ tanh(W s_{i-1} + U h_j).

    ``prepare(keys)`` computes U h_j once per sentence; a decoder passes it back as ``prepared`` at
    every step, so each step costs only W s_{i-1}.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        for name, value in (
            ("query_dim", query_dim),
            ("key_dim", key_dim),
            ("hidden_dim", hidden_dim),
        ):
            require_positive_int(name, value)
        self.query_dim, self.key_dim, self.hidden_dim = query_dim, key_dim, hidden_dim
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)  # W
        self.key_proj = nn.Linear(key_dim, hidden_dim, bias=True)  # U (and a bias)
        self.score_vector = nn.Linear(hidden_dim, 1, bias=False)  # v

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        """U h_j for every key: (B, m, hidden_dim)."""
        return self.key_proj(keys)

    def scores(
        self, query: torch.Tensor, keys: torch.Tensor, prepared: torch.Tensor | None = None
    ) -> torch.Tensor:
        """e_ij for query (B, n, d_q): (B, n, m)."""
        projected_keys = self.prepare(keys) if prepared is None else prepared
        # tanh(W s_i + U h_j): (B, n, 1, A) + (B, 1, m, A) → (B, n, m, A)
        hidden = torch.tanh(self.query_proj(query)[:, :, None, :] + projected_keys[:, None, :, :])
        return self.score_vector(hidden).squeeze(-1)  # vᵀ tanh(...)

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, hidden_dim={self.hidden_dim}"


class LuongAttention(_ScoredAttention):
    """Luong's global attention with a dot, general or concat score; local-p with ``window=D``.

    ``scaled=True`` divides dot and general scores by √d_k (the Transformer's fix, notebook 03).
    With ``window`` set, a learned position predictor picks the centre p_t of a Gaussian window of
    half-width D (σ = D / 2) and the weights vanish outside |j − p_t| ≤ D.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        score: str = "general",
        window: int | None = None,
        scaled: bool = False,
        hidden_dim: int | None = None,
    ):
        super().__init__()
        require_one_of("score", score, LUONG_SCORES)
        require_positive_int("query_dim", query_dim)
        require_positive_int("key_dim", key_dim)
        if score == "dot" and query_dim != key_dim:
            raise ValueError(
                f"the dot score needs query_dim == key_dim, got query_dim={query_dim} and "
                f"key_dim={key_dim}; use score='general' to compare vectors of different sizes"
            )
        if window is not None:
            require_positive_int("window", window, "the half-width D; None means global attention")
        self.query_dim, self.key_dim, self.score, self.window = query_dim, key_dim, score, window
        self.scaled = scaled
        self.hidden_dim = hidden_dim or key_dim
        if score == "general":
            self.bilinear = nn.Linear(key_dim, query_dim, bias=False)  # W_a: h̄_j ↦ W_a h̄_j
        elif score == "concat":
            self.query_proj = nn.Linear(query_dim, self.hidden_dim, bias=False)  # W_a's query half
            self.key_proj = nn.Linear(key_dim, self.hidden_dim, bias=True)  # W_a's key half
            self.score_vector = nn.Linear(self.hidden_dim, 1, bias=False)  # v_a
        if window is not None:
            self.position_hidden = nn.Linear(query_dim, query_dim)  # W_p
            self.position_out = nn.Linear(query_dim, 1)  # v_p

    def prepare(self, keys: torch.Tensor) -> torch.Tensor:
        """The per-sentence part of the score, computed once: h̄_j, W_a h̄_j or W_a^(key) h̄_j."""
        if self.score == "general":
            return self.bilinear(keys)
        if self.score == "concat":
            return self.key_proj(keys)
        return keys

    def scores(
        self, query: torch.Tensor, keys: torch.Tensor, prepared: torch.Tensor | None = None
    ) -> torch.Tensor:
        """e_tj for query (B, n, d_q): (B, n, m)."""
        prepared_keys = self.prepare(keys) if prepared is None else prepared
        if self.score == "concat":
            # v_aᵀ tanh(W_a [h_t; h̄_j]) = v_aᵀ tanh(W_q h_t + W_k h̄_j)
            hidden = torch.tanh(
                self.query_proj(query)[:, :, None, :] + prepared_keys[:, None, :, :]
            )
            return self.score_vector(hidden).squeeze(-1)
        # dot: h_tᵀ h̄_j;  general: h_tᵀ (W_a h̄_j)
        scores = query @ prepared_keys.transpose(1, 2)
        if self.scaled:
            scores = scores / math.sqrt(self.key_dim)
        return scores

    def predicted_positions(self, query: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """p_t = (S − 1) · sigmoid(v_pᵀ tanh(W_p h_t)) for query (B, n, d_q): (B, n)."""
        gate = torch.sigmoid(self.position_out(torch.tanh(self.position_hidden(query)))).squeeze(-1)
        return (lengths.to(gate.dtype) - 1).clamp_min(0)[:, None] * gate

    def _weights(self, scores, query, keys, mask) -> torch.Tensor:
        """Global: softmax over the allowed keys; local-p: times a Gaussian window around p_t."""
        if self.window is None:
            return super()._weights(scores, query, keys, mask)
        if mask is not None and tuple(mask.shape) != tuple(keys.shape[:2]):
            raise ValueError(
                f"local-p attention needs a (batch, key positions) padding mask "
                f"{tuple(keys.shape[:2])}, got {tuple(mask.shape)}"
            )
        lengths = (
            mask.sum(dim=-1)
            if mask is not None
            else torch.full((keys.shape[0],), keys.shape[1], device=keys.device)
        )
        centers = self.predicted_positions(query, lengths)
        return gaussian_window_weights(scores, centers, self.window, lengths)

    def extra_repr(self) -> str:
        window = f", window={self.window}" if self.window is not None else ""
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, score={self.score!r}{window}"
