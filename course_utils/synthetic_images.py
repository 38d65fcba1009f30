"""A synthetic image task whose answer lives in one channel and one place, among distractors.

Every image has ``channels`` channels of ``size × size`` pixels: Gaussian noise (std ``noise``) plus,
in every channel, one ``object_size × object_size`` square at a random place of its own, bright
(+1) or dark (−1):

* the square of the **informative** channel (the same channel for every image) carries the label:
  1 when it is bright, 0 when it is dark;
* the squares of the other channels are distractors: as bright as the informative one, somewhere
  else, with random signs that say nothing about the label.

A classifier must therefore find the right channel (what a squeeze-and-excitation block weights)
and the right place in it (what CBAM's spatial map points at). Images are made on the fly from a
``torch.Generator``: nothing is downloaded, and one seed gives one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from course_utils.helpers.validation import require_number_above, require_positive_int


@dataclass(frozen=True)
class ChannelObjectTask:
    channels: int = 4  # C
    size: int = 16  # images are size × size
    object_size: int = 4  # each channel's square is object_size × object_size
    informative: int = 1  # the channel whose square's sign is the label
    noise: float = 0.5  # std of the Gaussian noise on every pixel

    def __post_init__(self) -> None:
        require_positive_int("channels", self.channels)
        require_positive_int("size", self.size)
        require_positive_int("object_size", self.object_size)
        require_number_above("noise", self.noise)
        if self.object_size > self.size:
            raise ValueError(
                f"object_size must be at most size={self.size}, got {self.object_size}"
            )
        if not 0 <= self.informative < self.channels:
            raise ValueError(
                f"informative must be a channel index in 0 … {self.channels - 1}, "
                f"got {self.informative}"
            )

    def batch(
        self, count: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (count, C, size, size), labels (count,) and the informative boxes (count, 4).

        A box is (top, left, bottom, right) with bottom and right excluded, as slices take them.
        Made on the CPU.
        """
        require_positive_int("count", count)
        shape = (count, self.channels)
        corner_range = self.size - self.object_size + 1
        tops = torch.randint(0, corner_range, shape, generator=generator)  # (count, C)
        lefts = torch.randint(0, corner_range, shape, generator=generator)
        signs = torch.randint(0, 2, shape, generator=generator) * 2 - 1  # ±1 per square
        pixels = torch.arange(self.size)
        in_rows = (pixels >= tops[..., None]) & (pixels < tops[..., None] + self.object_size)
        in_cols = (pixels >= lefts[..., None]) & (pixels < lefts[..., None] + self.object_size)
        squares = in_rows[..., :, None] & in_cols[..., None, :]  # (count, C, size, size)
        noise = self.noise * torch.randn(
            count, self.channels, self.size, self.size, generator=generator
        )
        images = noise + signs[..., None, None] * squares  # x = noise + (±1 on each square)
        labels = (signs[:, self.informative] > 0).long()  # the informative square's sign
        top, left = tops[:, self.informative], lefts[:, self.informative]
        boxes = torch.stack([top, left, top + self.object_size, left + self.object_size], dim=1)
        return images, labels, boxes


def inside_boxes(rows: torch.Tensor, cols: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(count,) bool: is pixel (rows[i], cols[i]) inside boxes[i] = (top, left, bottom, right)?"""
    top, left, bottom, right = boxes.unbind(dim=1)
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


__all__ = ["ChannelObjectTask", "inside_boxes"]
