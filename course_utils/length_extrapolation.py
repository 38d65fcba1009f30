"""Train short, test long: a synthetic task on which positions decide, and its accuracy by length.

The task, "latest signal": a sequence of tokens, most of them noise (tokens 0 … noise − 1) and some
signals (tokens noise … noise + signals − 1, each position a signal with probability ``p``). At
every position the answer is the most recent signal so far (itself if it is one), or "none" (class
``signals``) before the first. The content says which tokens matter; only positions say which of
them is the latest. A model is trained on sequences of ``train_length`` tokens and its accuracy is
measured on longer ones, where a position scheme either keeps working or meets angles, absolute
positions or distances it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from course_utils.helpers.adam_loop import train_with_adam
from course_utils.helpers.validation import require_number_above, require_positive_int
from course_utils.tiny_decoder import TinyDecoder


@dataclass(frozen=True)
class LatestSignalTask:
    noise: int = 8  # noise tokens 0 … noise − 1
    signals: int = 8  # signal tokens noise … noise + signals − 1; answer classes 0 … signals
    p: float = 0.2  # chance that a position holds a signal

    @property
    def vocab_size(self) -> int:
        return self.noise + self.signals

    @property
    def num_classes(self) -> int:
        return self.signals + 1  # which signal, or "none yet"

    def batch(self, size: int, length: int, generator: torch.Generator):
        """tokens (size, length) and answers (size, length), made on the CPU."""
        require_positive_int("size", size)
        require_positive_int("length", length)
        is_signal = torch.rand(size, length, generator=generator) < self.p
        noise = torch.randint(0, self.noise, (size, length), generator=generator)
        signal = torch.randint(0, self.signals, (size, length), generator=generator)
        tokens = torch.where(is_signal, self.noise + signal, noise)
        # answer_i = the signal at the latest j <= i with a signal: carry the index forward
        positions = torch.arange(length).expand(size, length)
        latest = torch.where(is_signal, positions, -1).cummax(dim=1).values  # latest j, or −1
        answers = torch.where(latest >= 0, signal.gather(1, latest.clamp_min(0)), self.signals)
        return tokens, answers


def train_decoder(
    model: TinyDecoder,
    task: LatestSignalTask,
    steps: int,
    train_length: int,
    seed: int,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    progress: bool = False,
) -> list[float]:
    """Adam on cross-entropy over every position, ``steps`` fixed batches; returns the losses."""
    require_positive_int("steps", steps)
    require_number_above("learning_rate", learning_rate)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    loss_function = nn.CrossEntropyLoss()

    def next_batch_loss():
        tokens, answers = task.batch(batch_size, train_length, generator)
        logits = model(tokens.to(device))
        return loss_function(logits.flatten(0, 1), answers.to(device).flatten())

    return train_with_adam(model, steps, next_batch_loss, learning_rate, progress)


@torch.no_grad()
def accuracy_by_length(
    model: TinyDecoder,
    task: LatestSignalTask,
    lengths,
    seed: int,
    sequences: int = 64,
) -> dict[int, float]:
    """Length → fraction of positions answered right, on fresh sequences of that length."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    accuracies = {}
    for length in lengths:
        tokens, answers = task.batch(sequences, length, generator)
        predicted = model(tokens.to(device)).argmax(dim=-1).cpu()
        accuracies[length] = (predicted == answers).float().mean().item()
    return accuracies


__all__ = ["LatestSignalTask", "accuracy_by_length", "train_decoder"]
