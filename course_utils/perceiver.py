"""Perceiver cross-attention: m learned latents read n inputs, at a cost of n · m, not n².

Jaegle et al. (2021) keep a small array of m latent vectors L (m, D). Each latent is a query; the
n inputs X (B, n, D) — pixels, audio samples, points — are the keys and values::

    Q = L W_qᵀ          (m, d)      the same m queries for every example
    K = X W_kᵀ          (B, n, d)
    V = X W_vᵀ          (B, n, d)
    out, α = softmax(Q Kᵀ / √d) V   out (B, m, d), α (B, m, n): each latent's weights over the inputs

The weights are m × n, so time and memory grow linearly in n for a fixed m; self-attention over
the inputs builds an n × n matrix. Everything after this first read works on the m latents only.
:func:`attention_costs` measures both at growing n.
"""

from __future__ import annotations

import torch

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.helpers.timing import interleaved_seconds
from course_utils.helpers.validation import require_positive_int, require_shapes


def perceiver_cross_attention(
    latents: torch.Tensor,
    inputs: torch.Tensor,
    W_q: torch.Tensor,
    W_k: torch.Tensor,
    W_v: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """m latents (m, D) attend to n inputs (B, n, D). Returns (output (B, m, d), weights (B, m, n))."""
    require_shapes(
        ("latents", latents, "(m, D)"),
        ("inputs", inputs, "(B, n, D)"),
        ("W_q", W_q, "(d, D)"),
        ("W_k", W_k, "(d, D)"),
        ("W_v", W_v, "(d, D)"),
        meanings={"D": "feature width", "d": "projected width"},
    )
    queries = latents @ W_q.T  # Q = L W_qᵀ: (m, d), broadcast over the batch
    keys = inputs @ W_k.T  # K = X W_kᵀ: (B, n, d)
    values = inputs @ W_v.T  # V = X W_vᵀ: (B, n, d)
    return scaled_dot_product_attention(queries, keys, values)  # out: (B, m, d), α: (B, m, n)


def attention_costs(
    lengths: list[int], latents: int, width: int = 32, rounds: int = 7, seed: int = 0
) -> dict[str, torch.Tensor | list[int]]:
    """Time and weight memory of Perceiver cross-attention and of self-attention over n inputs.

    For each n in ``lengths``: one example of n inputs of ``width`` features, ``latents`` latents,
    float32, on the CPU. Returns

    * ``perceiver_seconds`` and ``self_attention_seconds``: (rounds, len(lengths)) CPU seconds of
      one call (this process's CPU time). Each round times every length once, back to back (the fast
      Perceiver 10 calls at a time), so a burst of load on the machine hits the lengths of one round
      alike: compare lengths within a round, then take the median over the rounds
      (:func:`course_utils.helpers.timing.power_law_exponent`);
    * ``perceiver_weights_bytes`` and ``self_attention_weights_bytes``: the size of the weights
      tensor each one builds, m · n and n · n numbers.
    """
    for name, value in (("latents", latents), ("width", width), ("rounds", rounds)):
        require_positive_int(name, value)
    for length in lengths:
        require_positive_int("each of lengths", length)
    generator = torch.Generator().manual_seed(seed)
    latent_array = torch.randn(latents, width, generator=generator)
    W_q, W_k, W_v = (torch.randn(width, width, generator=generator) / width**0.5 for _ in range(3))
    perceivers, self_attentions = [], []
    for length in lengths:
        inputs = torch.randn(1, length, width, generator=generator)
        perceivers.append(
            lambda x=inputs: perceiver_cross_attention(latent_array, x, W_q, W_k, W_v)
        )
        self_attentions.append(
            lambda x=inputs: scaled_dot_product_attention(x @ W_q.T, x @ W_k.T, x @ W_v.T)
        )
    # the weights tensors whose size we report
    perceiver_weights = [perceiver()[1] for perceiver in perceivers]
    self_weights = [self_attention()[1] for self_attention in self_attentions]
    seconds = interleaved_seconds(
        {"perceiver": perceivers, "self_attention": self_attentions},
        rounds=rounds,
        calls={"perceiver": 10, "self_attention": 1},
    )
    return {
        "perceiver_seconds": seconds["perceiver"],
        "self_attention_seconds": seconds["self_attention"],
        "perceiver_weights_bytes": [w.numel() * w.element_size() for w in perceiver_weights],
        "self_attention_weights_bytes": [w.numel() * w.element_size() for w in self_weights],
    }


__all__ = ["attention_costs", "perceiver_cross_attention"]
