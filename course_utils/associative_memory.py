"""Attention as an associative memory: how many key→value pairs the sum rule, the delta rule and
softmax attention hold, and a small associative-recall task trained with each (notebook 10).

Capacity: write N pairs (k_i, v_i) of random unit vectors, then read every k_i back.

* sum rule      W = Σ_i v_i k_iᵀ                      read W k_i = v_i + Σ_{j≠i} v_j (k_j · k_i)
* delta rule    W_i = W_{i-1} + (v_i - W_{i-1} k_i) k_iᵀ   (β = 1) read W_N k_i
* softmax       keep every pair (a KV cache)            read Σ_j softmax_j(τ k_i · k_j) v_j

Storing N arbitrary values exactly (W k_i = v_i) needs N linearly independent keys, so N <= d_k;
the sum rule even needs them orthogonal. With random unit keys its cross-talk
Σ_{j≠i} v_j (k_j · k_i) has about (N - 1) / d_k times the energy of v_i.

Recall: a sequence k_1 v_1 k_2 v_2 … k_P v_P q of tokens, where q is one of the keys; the model
must output q's value. One layer: token embeddings, keys made from the PREVIOUS token (a token
shift, so the value token at position 2i+1 is stored under the key token before it), then one
sequence mixer (softmax attention, sum-rule linear attention or the delta rule), then a linear
read-out of the last position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.dot_product import scaled_dot_product_attention
from course_utils.helpers.adam_loop import train_with_adam
from course_utils.helpers.seeding import seeded
from course_utils.helpers.validation import require_one_of, require_positive_int, require_shapes
from course_utils.linear_attention import delta_rule_attention, delta_rule_write, linear_attention
from course_utils.masks import causal_mask
from course_utils.softmax import softmax

MIXERS = ("softmax", "sum rule", "delta rule")

# --------------------------------------------------------------------------------------------------
# Capacity


def random_associations(
    count: int, key_dim: int, value_dim: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` random unit keys (count, key_dim) and unit values (count, value_dim), float64."""
    require_positive_int("count", count)
    keys = F.normalize(
        torch.randn(count, key_dim, generator=generator, dtype=torch.float64), dim=-1
    )
    values = F.normalize(
        torch.randn(count, value_dim, generator=generator, dtype=torch.float64), dim=-1
    )
    return keys, values


def retrieve(
    rule: str, keys: torch.Tensor, values: torch.Tensor, sharpness: float = 32.0
) -> torch.Tensor:
    """Store every (keys[i], values[i]) with ``rule``, then read each key back: (N, d_v).

    ``sharpness`` τ is softmax's inverse temperature on the cosine k_i · k_j of unit keys.
    """
    require_one_of("rule", rule, MIXERS)
    require_shapes(("keys", keys, "(N, d_k)"), ("values", values, "(N, d_v)"))
    if rule == "softmax":
        return softmax(sharpness * keys @ keys.T, dim=-1) @ values  # Σ_j softmax_j(τ k_i·k_j) v_j
    if rule == "sum rule":
        fast_weights = values.T @ keys  # W = Σ_i v_i k_iᵀ
    else:
        fast_weights = keys.new_zeros(values.shape[-1], keys.shape[-1])  # W_0 = 0
        for key, value in zip(keys, values, strict=True):
            fast_weights = delta_rule_write(fast_weights, key, value, keys.new_ones(()))  # β = 1
    return keys @ fast_weights.T  # row i: W k_i


def retrieval_error(retrieved: torch.Tensor, values: torch.Tensor) -> float:
    """Mean over pairs of ‖retrieved_i - v_i‖² / ‖v_i‖²: 0 is perfect, 1 is as bad as answering 0."""
    return float(((retrieved - values).square().sum(-1) / values.square().sum(-1)).mean())


def nearest_value_hits(retrieved: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(N,) bool: pair i's retrieved vector is most similar (dot product) to its own value v_i."""
    require_shapes(("retrieved", retrieved, "(N, d_v)"), ("values", values, "(N, d_v)"))
    best = (retrieved @ values.T).argmax(dim=-1)  # the stored value nearest to each read-out
    return best == torch.arange(len(values), device=values.device)


def nearest_value_accuracy(retrieved: torch.Tensor, values: torch.Tensor) -> float:
    """Fraction of pairs whose retrieved vector is most similar (dot product) to its own value."""
    return float(nearest_value_hits(retrieved, values).double().mean())


# --------------------------------------------------------------------------------------------------
# Associative recall


def recall_batch(
    batch: int, pairs: int, num_keys: int, num_values: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token sequences k_1 v_1 … k_P v_P q (batch, 2P + 1) and the answers (batch,).

    Keys are tokens 0 … num_keys - 1, distinct within a sequence; values are tokens num_keys …
    num_keys + num_values - 1, drawn freely; the answer is the value index (0 … num_values - 1).
    """
    for name, value in (("batch", batch), ("pairs", pairs), ("num_values", num_values)):
        require_positive_int(name, value)
    if not pairs <= num_keys:
        raise ValueError(
            f"pairs={pairs} needs at least as many key tokens, got num_keys={num_keys}"
        )
    keys = torch.rand(batch, num_keys, generator=generator).argsort(dim=-1)[:, :pairs]
    values = torch.randint(0, num_values, (batch, pairs), generator=generator)
    asked = torch.randint(0, pairs, (batch,), generator=generator)
    rows = torch.arange(batch)
    sequence = torch.stack([keys, values + num_keys], dim=-1).reshape(batch, 2 * pairs)
    tokens = torch.cat([sequence, keys[rows, asked, None]], dim=-1)
    return tokens, values[rows, asked]


class RecallModel(nn.Module):
    """Embed → token-shifted keys, values and queries → one sequence mixer → read the last position."""

    def __init__(self, mixer: str, vocab: int, num_values: int, embed_dim: int, head_dim: int):
        super().__init__()
        require_one_of("mixer", mixer, MIXERS)
        self.mixer = mixer
        self.embedding = nn.Embedding(vocab, embed_dim)
        self.query = nn.Linear(embed_dim, head_dim, bias=False)
        self.key = nn.Linear(embed_dim, head_dim, bias=False)  # applied to the previous token
        self.value = nn.Linear(embed_dim, head_dim, bias=False)
        self.beta = nn.Linear(embed_dim, 1)  # the delta rule's learning rate, β = σ(w · x_t + b)
        self.readout = nn.Linear(head_dim, num_values)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embedding(tokens)  # (B, n, E)
        previous = F.pad(x, (0, 0, 1, 0))[:, :-1]  # x_{t-1}, zeros before the first token
        q, k, v = self.query(x), self.key(previous), self.value(x)
        if self.mixer == "softmax":
            mask = causal_mask(tokens.shape[1], device=tokens.device)
            mixed, _ = scaled_dot_product_attention(q, k, v, mask)
        elif self.mixer == "sum rule":
            mixed = linear_attention(q, k, v, causal=True)
        else:  # unit keys and queries keep the delta rule's W in check, β in (0, 1)
            beta = torch.sigmoid(self.beta(x))[..., 0]
            mixed = delta_rule_attention(F.normalize(q, dim=-1), F.normalize(k, dim=-1), v, beta)
        return self.readout(mixed[:, -1])  # logits over the values, (B, num_values)


def train_recall(
    mixer: str,
    seed: int,
    steps: int = 300,
    pairs: int = 8,
    num_keys: int = 16,
    num_values: int = 16,
    embed_dim: int = 32,
    head_dim: int = 8,
    batch: int = 64,
    learning_rate: float = 3e-3,
    device: torch.device | str = "cpu",
) -> tuple[RecallModel, list[float]]:
    """Train a RecallModel for a fixed number of Adam steps; returns it and the loss per step.

    Batches are drawn on the CPU from a generator seeded with ``seed`` and then moved, so a GPU
    run sees the same data.
    """
    with seeded(seed):  # initial weights from ``seed``; the caller's random state is left alone
        model = RecallModel(mixer, num_keys + num_values, num_values, embed_dim, head_dim)
    model = model.to(device)
    generator = torch.Generator().manual_seed(seed)

    def next_batch_loss() -> torch.Tensor:
        tokens, answers = recall_batch(batch, pairs, num_keys, num_values, generator)
        return F.cross_entropy(model(tokens.to(device)), answers.to(device))

    return model, train_with_adam(model, steps, next_batch_loss, learning_rate)


@torch.no_grad()
def recall_accuracy(
    model: RecallModel, pairs: int, num_keys: int, num_values: int, seed: int, batch: int = 1000
) -> float:
    """Fraction of ``batch`` fresh sequences (seeded) whose asked value the model gets right."""
    tokens, answers = recall_batch(
        batch, pairs, num_keys, num_values, torch.Generator().manual_seed(seed)
    )
    device = next(model.parameters()).device
    predicted = model(tokens.to(device)).argmax(dim=-1).cpu()
    return float((predicted == answers).double().mean())
