"""A tiny CNN with channel and spatial attention, trained on :class:`ChannelObjectTask`.

    images (B, C, H, W)
      → squeeze-and-excitation on the input channels      channel weights e (B, C)
      → 3 × 3 convolution + ReLU                          features F (B, F, H, W)
      → CBAM channel attention on F, F' = c ⊙ F           CBAM's channel weights c (B, F)
      → CBAM spatial attention on F'                      spatial map a (B, 1, H, W)
      → average of F' over the positions, weighted by a → linear → logits (B, 2)

:class:`SelfAttentionClassifier` puts SAGAN's block, y = γ · o + x, after one convolution instead,
and ``train_classifier``'s ``before_each_step`` lets a notebook watch γ while it trains.

Nothing tells the model which channel or which place matters: it sees images and labels only.
The pooling divides by Σ a, so that a map spread over the noise dilutes the object's features: the
model gains by putting its weight where the answer is. ``divide_by_map=False`` takes the plain mean
of a · F instead, where the map is free to look elsewhere (notebook 11 quotes what that does over
seeds; ``course_utils.benchmark.seed_ranges`` recomputes it).
:func:`evaluate_classifier` then asks what it learned: the mean channel weight of each input channel,
and how often the spatial map's peak falls inside the informative square.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from course_utils.helpers.adam_loop import train_with_adam
from course_utils.helpers.validation import require_number_above, require_positive_int
from course_utils.synthetic_images import ChannelObjectTask, inside_boxes
from course_utils.vision_attention import (
    ChannelAttention,
    SelfAttentionBlock,
    SpatialAttention,
    SqueezeExcitation,
)


class ChannelSpatialClassifier(nn.Module):
    """forward(images) returns (logits (B, classes), channel weights (B, C), spatial map (B, 1, H, W))."""

    def __init__(
        self,
        channels: int,
        features: int = 8,
        reduction: int = 2,
        kernel_size: int = 7,
        classes: int = 2,
        divide_by_map: bool = True,
    ):
        super().__init__()
        require_positive_int("features", features)
        require_positive_int("classes", classes)
        self.divide_by_map = divide_by_map  # False: the plain mean of a · F, for comparison
        self.channel_attention = SqueezeExcitation(channels, reduction)
        self.conv = nn.Conv2d(channels, features, kernel_size=3, padding=1)
        self.cbam_channels = ChannelAttention(features, reduction)
        self.spatial_attention = SpatialAttention(kernel_size)
        self.head = nn.Linear(features, classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weighted, channel_weights = self.channel_attention(images)  # e_c · x_c
        features = torch.relu(self.conv(weighted))  # F = ReLU(conv3×3(SE(x)))
        # CBAM: channels first, F' = c ⊙ F with c = σ(MLP(mean_hw F) + MLP(max_hw F)), then places
        features = self.cbam_channels(features)[:, :, None, None] * features
        spatial_map = self.spatial_attention(features)  # a = σ(conv([mean_c F ; max_c F]))
        # attention-weighted average of the features over the positions: Σ_hw a_hw F_hw / Σ_hw a_hw
        pooled = (spatial_map * features).sum(dim=(2, 3))  # Σ_hw a_hw F_hw: (B, F)
        if self.divide_by_map:
            pooled = pooled / spatial_map.sum(dim=(2, 3))  # / Σ_hw a_hw
        else:
            pooled = pooled / (features.shape[2] * features.shape[3])  # the plain mean of a · F
        return self.head(pooled), channel_weights, spatial_map


class SelfAttentionClassifier(nn.Module):
    """3 × 3 convolution + ReLU → SAGAN block → mean over the positions → linear.

    forward(images) returns (logits (B, classes), attention weights (B, n, n)).
    """

    def __init__(self, channels: int, features: int = 8, key_dim: int = 4, classes: int = 2):
        super().__init__()
        require_positive_int("features", features)
        require_positive_int("classes", classes)
        self.conv = nn.Conv2d(channels, features, kernel_size=3, padding=1)
        self.attention = SelfAttentionBlock(features, key_dim)  # y = γ · o + x, γ = 0 at first
        self.head = nn.Linear(features, classes)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = torch.relu(self.conv(images))  # F = ReLU(conv3×3(x))
        mixed, weights = self.attention(features)  # γ · o + F
        return self.head(mixed.mean(dim=(2, 3))), weights


def train_classifier(
    model: nn.Module,
    task: ChannelObjectTask,
    steps: int,
    seed: int,
    batch_size: int = 64,
    learning_rate: float = 1e-2,
    before_each_step: Callable[[], None] | None = None,
) -> list[float]:
    """Adam on cross-entropy, ``steps`` fresh batches from ``seed``; returns the losses.

    ``model(images)[0]`` are the logits. ``before_each_step``, if given, is called before every
    step (to record a parameter as it trains)."""
    require_positive_int("steps", steps)
    require_positive_int("batch_size", batch_size)
    require_number_above("learning_rate", learning_rate)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    model.train()

    def next_batch_loss():
        if before_each_step is not None:
            before_each_step()
        images, labels, _ = task.batch(batch_size, generator)
        logits = model(images.to(device))[0]
        return nn.functional.cross_entropy(logits, labels.to(device))

    return train_with_adam(model, steps, next_batch_loss, learning_rate)


@torch.no_grad()
def held_out_accuracy(model: nn.Module, task: ChannelObjectTask, count: int, seed: int) -> float:
    """The fraction of ``count`` held-out images (from ``seed``) whose label ``model`` gets right."""
    require_positive_int("count", count)
    device = next(model.parameters()).device
    images, labels, _ = task.batch(count, torch.Generator().manual_seed(seed))
    model.eval()
    logits = model(images.to(device))[0].cpu()
    return (logits.argmax(dim=1) == labels).float().mean().item()


@torch.no_grad()
def evaluate_classifier(
    model: ChannelSpatialClassifier, task: ChannelObjectTask, count: int, seed: int
) -> dict[str, torch.Tensor | float]:
    """On ``count`` held-out images (from ``seed``): accuracy, mean channel weights (C,), and the
    fraction of images whose spatial map peaks inside the informative square (``peak_in_box``)."""
    require_positive_int("count", count)
    device = next(model.parameters()).device
    images, _, boxes = task.batch(count, torch.Generator().manual_seed(seed))
    model.eval()
    _, channel_weights, spatial_map = (t.cpu() for t in model(images.to(device)))
    peak = spatial_map.flatten(1).argmax(dim=1)  # index h·W + w of each map's largest weight
    rows, cols = peak // task.size, peak % task.size
    return {
        "accuracy": held_out_accuracy(model, task, count, seed),
        "channel_weights": channel_weights.mean(dim=0),
        "peak_in_box": inside_boxes(rows, cols, boxes).float().mean().item(),
    }


__all__ = [
    "ChannelSpatialClassifier",
    "SelfAttentionClassifier",
    "evaluate_classifier",
    "held_out_accuracy",
    "train_classifier",
]
