"""The small training loop every model trained in notebooks 09 to 12 goes through: Adam, one fresh
batch per step, the losses."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm


def train_with_adam(
    model: nn.Module,
    steps: int,
    next_batch_loss: Callable[[], torch.Tensor],
    learning_rate: float,
    progress: bool = False,
) -> list[float]:
    """``steps`` Adam steps on ``next_batch_loss()`` (which draws the step's batch); the losses."""
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)
    losses = []
    for _ in tqdm(range(steps), disable=not progress, leave=False):
        loss = next_batch_loss()
        optimiser.zero_grad()
        loss.backward()  # ∂loss/∂θ
        optimiser.step()  # θ ← Adam(θ, ∂loss/∂θ)
        losses.append(loss.item())
    return losses


__all__ = ["train_with_adam"]
