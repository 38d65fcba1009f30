"""Training: teacher-forced cross-entropy with Adam, gradient clipping and a tqdm bar."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from course_utils.seq2seq.data import TranslationData, bucketed_batches
from course_utils.seq2seq.model import Seq2Seq


@dataclass
class TrainingLog:
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(1, len(self.losses))


def _linear_decay(optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Full learning rate for 80 % of the steps, then a linear decay to 10 %."""
    decay_start = int(0.8 * steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (
            1.0
            if step < decay_start
            else 1.0 - 0.9 * (step - decay_start) / max(1, steps - decay_start)
        ),
    )


def train(
    model: Seq2Seq,
    data: TranslationData,
    steps: int,
    batch_size: int = 64,
    lr: float = 3e-3,
    clip: float = 1.0,
    seed: int = 0,
    progress: bool = True,
    target_device: torch.device | str | None = None,
    lr_schedule: Callable[[int], float] | None = None,
    foreach: bool | None = None,
) -> TrainingLog:
    """Teacher-forced cross-entropy with Adam and gradient-norm clipping, ``steps`` batches.

    Batches are length-bucketed and visited in a seeded random order, epoch after epoch. The learning
    rate at step s (1, 2, …) is ``lr · lr_schedule(s)``; by default the last 20 % of the steps decay
    it linearly to 10 % (notebook 08 passes a warm-up schedule). ``foreach`` is Adam's: ``True``
    updates all parameters in a few batched calls, faster on a CPU for a model of many small tensors.
    """
    from tqdm.auto import tqdm

    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    target_device = (
        torch.device(target_device)
        if target_device is not None
        else next(model.parameters()).device
    )
    model.to(target_device)
    model.train()
    batches = [batch.to(target_device) for batch in bucketed_batches(data.train, data, batch_size)]
    order_rng = random.Random(seed)
    if lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(
            f"lr_schedule must be a function of the step, got {type(lr_schedule).__name__}"
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, foreach=foreach)
    schedule = (
        _linear_decay(optimizer, steps)
        if lr_schedule is None
        else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_schedule(step + 1))
    )
    loss_function = nn.CrossEntropyLoss(ignore_index=0)  # <pad> targets do not count
    log = TrainingLog()
    order: list[int] = []
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=f"training {model.name}", disable=not progress, mininterval=1.0)
    for step in bar:
        if not order:  # a new epoch: every batch once, in a fresh seeded order
            order = list(range(len(batches)))
            order_rng.shuffle(order)
        batch = batches[order.pop()]
        logits, _ = model(batch)  # teacher forcing: the decoder reads the reference y_{i-1}
        loss = loss_function(logits.reshape(-1, logits.shape[-1]), batch.target_output.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        log.losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    log.seconds = time.perf_counter() - start
    return log
