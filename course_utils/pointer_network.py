"""Pointer networks: attention as the output itself, trained to sort numbers (notebook 12).

A seq2seq decoder picks each output from a fixed vocabulary. A pointer network (Vinyals, Fortunato
and Jaitly, 2015) picks an *input position* instead: at output step i the additive attention scores
of the decoder state d_i against the encoder states e_j are not used to mix a context vector, they
ARE the output distribution,

    u^i_j = vᵀ tanh(W d_i + U e_j)          p(C_i = j | C_1 … C_{i-1}, P) = softmax_j(u^i_j),

so the number of choices is the input length n, whatever n is: no vocabulary to fix in advance.
Here the softmax runs only over the positions still *available*: real (not padding) and not
pointed at before, so every input is emitted exactly once.

Task: sort n numbers drawn uniformly from [0, 1); the answer is the permutation of positions that
lists them in increasing order. The encoder embeds each number on its own (the input is a set);
the decoder is a GRU cell that reads the number it pointed at last; the pointer is the course's
``AdditiveAttention`` (notebook 02), whose attention weights are the output distribution.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_utils.alignment import AdditiveAttention, additive_scores
from course_utils.helpers.adam_loop import train_with_adam
from course_utils.helpers.seeding import seeded
from course_utils.helpers.validation import require_dtype, require_positive_int, require_shapes
from course_utils.masks import padding_mask
from course_utils.softmax import masked_softmax

__all__ = [
    "PointerNetwork",
    "exact_sort_rate",
    "pointer_distribution",
    "sorting_batch",
    "train_sorter",
]


def pointer_distribution(
    decoder_state: torch.Tensor,
    encoder_states: torch.Tensor,
    W: torch.Tensor,
    U: torch.Tensor,
    v: torch.Tensor,
    available: torch.Tensor,
) -> torch.Tensor:
    """p_j = softmax_j(vᵀ tanh(W d + U e_j)) over the available positions j, 0 elsewhere.

    decoder_state (B, d), encoder_states (B, n, d_e), W (A, d), U (A, d_e), v (A,), available
    (B, n) bool (True = a real position not pointed at yet). Returns (B, n), rows summing to 1.
    """
    require_shapes(
        ("decoder_state", decoder_state, "(B, d)"),
        ("encoder_states", encoder_states, "(B, n, d_e)"),
        ("available", available, "(B, n)"),
    )
    require_dtype("bool", available=available)
    scores = additive_scores(decoder_state, encoder_states, W, U, v)  # u_j: (B, n)
    return masked_softmax(scores, available, dim=-1)  # softmax over available positions j


def sorting_batch(
    batch: int, min_length: int, max_length: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Numbers to sort (B, n_max), their lengths (B,) and the sorting permutations (B, n_max).

    Each row holds ``length`` numbers uniform in [0, 1) and padding (0) after them; row b's answer
    lists the positions of its numbers in increasing order, then -100 (ignored) for the padding.
    """
    for name, value in (("batch", batch), ("min_length", min_length), ("max_length", max_length)):
        require_positive_int(name, value)
    if min_length > max_length:
        raise ValueError(f"min_length={min_length} must be <= max_length={max_length}")
    lengths = torch.randint(min_length, max_length + 1, (batch,), generator=generator)
    real = padding_mask(lengths, max_length)  # (B, n_max), True for real numbers
    numbers = torch.rand(batch, max_length, generator=generator) * real
    # padding sorts after every real number, then is marked "ignore"
    order = numbers.masked_fill(~real, 2.0).argsort(dim=-1)
    targets = order.masked_fill(~real, -100)
    return numbers, lengths, targets


class PointerNetwork(nn.Module):
    """Embed each number → GRU decoder over the numbers pointed so far → pointer attention.

    ``mask_pointed=False`` masks the padding only: the decoder must then itself avoid the
    positions it already pointed at (the notebook's ablation).
    """

    def __init__(self, hidden_dim: int = 64, attention_dim: int = 64, mask_pointed: bool = True):
        super().__init__()
        require_positive_int("hidden_dim", hidden_dim)
        self.mask_pointed = mask_pointed
        self.embed = nn.Sequential(  # e_j from the number x_j alone
            nn.Linear(1, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim)
        )
        self.first_input = nn.Parameter(torch.zeros(hidden_dim))  # the decoder's "go" input
        self.initial_state = nn.Linear(hidden_dim, hidden_dim)  # d_0 from the mean of the e_j
        self.decoder = nn.GRUCell(hidden_dim, hidden_dim)
        self.pointer = AdditiveAttention(hidden_dim, hidden_dim, attention_dim)  # W, U, v

    def forward(
        self, numbers: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Point n_max times. Returns the scores over positions (B, n_max, n_max) and the choices.

        With ``targets`` (teacher forcing) the decoder reads the right previous number; without,
        it reads the one it chose (greedy decoding). Unavailable positions score ``finfo.min``.
        """
        require_shapes(("numbers", numbers, "(B, n)"), ("lengths", lengths, "(B,)"))
        batch, steps = numbers.shape
        real = padding_mask(lengths, steps).to(numbers.device)  # (B, n)
        encoded = self.embed(numbers[..., None])  # e_j: (B, n, H)
        prepared = self.pointer.prepare(encoded)  # U e_j, once per sequence
        summary = (encoded * real[..., None]).sum(1) / real.sum(1, keepdim=True).clamp_min(1)
        state = torch.tanh(self.initial_state(summary))  # d_0
        step_input = self.first_input.expand(batch, -1)
        pointed = torch.zeros_like(real)
        rows = torch.arange(batch, device=numbers.device)
        all_scores, choices = [], []
        for step in range(steps):
            state = self.decoder(step_input, state)  # d_i
            available = real & ~pointed if self.mask_pointed else real  # may point at these
            scores = self.pointer.scores(state[:, None], encoded, prepared)[:, 0]  # u^i_j: (B, n)
            scores = scores.masked_fill(~available, torch.finfo(scores.dtype).min)
            choice = scores.argmax(dim=-1)
            if targets is not None:
                choice = torch.where(targets[:, step] >= 0, targets[:, step], choice)
            pointed = pointed | (F.one_hot(choice, steps).bool() & available)
            step_input = encoded[rows, choice]  # the decoder next reads the number it pointed at
            all_scores.append(scores)
            choices.append(choice)
        return torch.stack(all_scores, dim=1), torch.stack(choices, dim=1)


def train_sorter(
    seed: int,
    steps: int = 300,
    batch: int = 128,
    min_length: int = 5,
    max_length: int = 8,
    learning_rate: float = 3e-3,
    hidden_dim: int = 64,
    mask_pointed: bool = True,
    device: torch.device | str = "cpu",
) -> tuple[PointerNetwork, list[float]]:
    """Train a PointerNetwork with teacher forcing for a fixed number of Adam steps.

    Batches are drawn on the CPU from a generator seeded with ``seed``, then moved: a GPU run
    sees the same data. Returns the model and the loss (cross-entropy per pointer step) per step.
    """
    with seeded(seed):  # initial weights from ``seed``; the caller's random state is left alone
        model = PointerNetwork(hidden_dim, hidden_dim, mask_pointed)
    model = model.to(device)
    generator = torch.Generator().manual_seed(seed)

    def next_batch_loss() -> torch.Tensor:
        numbers, lengths, targets = sorting_batch(batch, min_length, max_length, generator)
        numbers, targets = numbers.to(device), targets.to(device)
        scores, _ = model(numbers, lengths, targets)
        # -log p(C_i = right position), over the real steps only (targets -100 are padding)
        return F.cross_entropy(scores.flatten(0, 1), targets.flatten(), ignore_index=-100)

    return model, train_with_adam(model, steps, next_batch_loss, learning_rate)


@torch.no_grad()
def exact_sort_rate(model: PointerNetwork, length: int, seed: int, count: int = 1000) -> float:
    """Fraction of ``count`` fresh sequences of ``length`` numbers the model sorts exactly (greedy)."""
    numbers, lengths, targets = sorting_batch(
        count, length, length, torch.Generator().manual_seed(seed)
    )
    device = next(model.parameters()).device
    _, choices = model(numbers.to(device), lengths)
    return float((choices.cpu() == targets).all(dim=-1).double().mean())
