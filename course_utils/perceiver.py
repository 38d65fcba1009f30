"""Perceiver cross-attention: m learned latents read n inputs, at a cost of n · m, not n².

Jaegle et al. (2021) keep a small array of m latent vectors L (m, D). Each latent is a query; the
n inputs X (B, n, D) — pixels, audio samples, points — are the keys and values::

    Q = L W_qᵀ          (m, d)      the same m queries for every example
    K = X W_kᵀ          (B, n, d)
    V = X W_vᵀ          (B, n, d)
    out, α = softmax(Q Kᵀ / √d) V   out (B, m, d), α (B, m, n): each latent's weights over the inputs

The weights are m × n, so time and memory grow linearly in n for a fixed m; self-attention over
the inputs builds an n × n matrix. :func:`attention_costs` measures both at growing n.

:class:`PerceiverEncoder` is the Perceiver as the paper stacks it: a **cross-attend** (the latents
read the inputs), then a **latent tower** (self-attention among the m latents, m × m weights, no
input in sight), and again: the latents read the input a second time with what they now know::

    z ← L                                                    (B, m, D)
    repeat ``reads`` times:
        z ← z + MHA(LN(z), LN(x), LN(x)),  z ← z + FFN(LN(z))   cross-attend: m × n weights
        z ← EncoderBlock(z), ``latent_layers`` times             latent self-attention: m × m

Every read after the first shares its weights, as in the paper (Jaegle et al. 2021, sec. 2). The
cost is ``reads`` · O(n · m · D) for the reads plus O(m² · D) per latent layer, which does not
depend on n: linear in n. :func:`encoder_seconds` measures it at growing n.
"""

from __future__ import annotations

import torch
from torch import nn

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.helpers.timing import interleaved_seconds
from course_utils.helpers.validation import require_positive_int, require_shapes
from course_utils.multihead import MultiHeadAttention
from course_utils.transformer import EncoderBlock, position_wise_feed_forward


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


class CrossAttend(nn.Module):
    """The latents read the inputs: z ← z + MHA(LN(z), LN(x), LN(x)), then z ← z + FFN(LN(z)).

    forward(latents (B, m, D), inputs (B, n, D)) returns (latents (B, m, D), weights (B, H, m, n)).
    """

    def __init__(self, width: int, heads: int, ffn_dim: int):
        super().__init__()
        self.latent_norm = nn.LayerNorm(width)
        self.input_norm = nn.LayerNorm(width)
        self.attention = MultiHeadAttention(width, heads)
        self.feed_forward_norm = nn.LayerNorm(width)
        self.feed_forward = position_wise_feed_forward(width, ffn_dim)

    def forward(self, latents: torch.Tensor, inputs: torch.Tensor):
        normed_inputs = self.input_norm(inputs)  # LN(x): (B, n, D)
        read, weights = self.attention(self.latent_norm(latents), normed_inputs, normed_inputs)
        latents = latents + read  # z ← z + MHA(LN(z), LN(x), LN(x)): m queries, n keys
        latents = latents + self.feed_forward(self.feed_forward_norm(latents))  # z ← z + FFN(LN(z))
        return latents, weights


class PerceiverEncoder(nn.Module):
    """m learned latents read n inputs ``reads`` times, with a latent tower after each read.

    forward(inputs (B, n, D)) returns (latents (B, m, D), the weights of every read, each
    (B, H, m, n)). The first read has its own weights; the later reads share one set.
    """

    def __init__(
        self,
        width: int,
        latent_count: int,
        reads: int = 2,
        latent_layers: int = 1,
        heads: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        for name, value in (("latent_count", latent_count), ("reads", reads)):
            require_positive_int(name, value)
        require_positive_int("latent_layers", latent_layers)
        generator = torch.Generator().manual_seed(seed)
        self.latents = nn.Parameter(torch.randn(latent_count, width, generator=generator))  # L
        self.reads = reads
        self.first_read = CrossAttend(width, heads, 2 * width)
        self.later_read = CrossAttend(width, heads, 2 * width)  # shared by reads 2, 3, …
        self.towers = nn.ModuleList(
            nn.ModuleList(EncoderBlock(width, heads, 2 * width) for _ in range(latent_layers))
            for _ in range(reads)
        )

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        require_shapes(("inputs", inputs, "(B, n, D)"), sizes={"D": self.latents.shape[1]})
        latents = self.latents.expand(inputs.shape[0], -1, -1)  # z ← L, the same for every example
        read_weights = []
        for read, tower in enumerate(self.towers):
            cross_attend = self.first_read if read == 0 else self.later_read
            latents, weights = cross_attend(latents, inputs)  # m × n weights
            read_weights.append(weights)
            for block in tower:
                latents, _ = block(latents)  # latent self-attention: m × m weights
        return latents, read_weights


def encoder_seconds(
    encoder: PerceiverEncoder, lengths: list[int], rounds: int = 5, seed: int = 0
) -> torch.Tensor:
    """(rounds, len(lengths)) CPU seconds of one ``encoder`` call on one example of n inputs.

    Timed like :func:`attention_costs`: every length once per round, back to back, so compare
    lengths within a round (:func:`course_utils.helpers.timing.power_law_exponent`), on one thread.
    """
    for length in lengths:
        require_positive_int("each of lengths", length)
    generator = torch.Generator().manual_seed(seed)
    width = encoder.latents.shape[1]
    inputs = [torch.randn(1, length, width, generator=generator) for length in lengths]

    @torch.no_grad()
    def encode(x: torch.Tensor) -> torch.Tensor:
        return encoder(x)[0]

    calls = [lambda x=x: encode(x) for x in inputs]
    return interleaved_seconds({"encoder": calls}, rounds=rounds)["encoder"]


__all__ = [
    "CrossAttend",
    "PerceiverEncoder",
    "attention_costs",
    "encoder_seconds",
    "perceiver_cross_attention",
]
