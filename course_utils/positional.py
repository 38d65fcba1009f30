"""Sinusoidal positional encodings (Vaswani et al., 2017).

Self-attention treats its input as a *set*: permuting the tokens permutes the outputs and changes
nothing else. Adding a position-dependent vector to each token breaks that symmetry:

    PE[pos, 2i]     = sin(pos / base^(2i / d))
    PE[pos, 2i + 1] = cos(pos / base^(2i / d))

Each pair of dimensions (2i, 2i + 1) is a point on a circle turning at frequency
ω_i = base^(-2i / d), from one radian per position (i = 0) down to base^(-(d-2)/d) for the last
pair: one turn every 2π·base^((d-2)/d) positions (2π·5623 for d = 32), approaching 2π·base as d grows.
Shifting the position by k rotates every pair by the angle k·ω_i, so PE[pos + k] is a fixed linear
map of PE[pos]: a query/key projection can express "attend k positions back" (notebook 06 builds
heads that do exactly that).
"""

from __future__ import annotations

import math

import torch

from course_utils.helpers.validation import require_number_above, require_positive_int


def positional_frequencies(d: int, base: float = 10000.0) -> torch.Tensor:
    """The ⌈d/2⌉ angular frequencies ω_i = base^(-2i/d), float64, from 1 down towards 1/base."""
    require_positive_int("d", d)
    require_number_above("base", base, 1)
    pair_index = torch.arange(0, d, 2, dtype=torch.float64)  # 2i = 0, 2, 4, ...
    return torch.exp(-math.log(base) * pair_index / d)  # ω_i = base^(-2i/d)


def sinusoidal_positional_encoding(
    n: int,
    d: int,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(n, d) table whose row ``pos`` is the encoding of position ``pos`` (0-based).

    Even columns hold sines and odd columns cosines of ``pos · ω_i`` (interleaved, as in the paper,
    not the two halves concatenated). An odd ``d`` drops the last cosine column. Computed in float64
    and cast to ``dtype``.
    """
    require_positive_int("n", n)
    frequencies = positional_frequencies(d, base)  # (⌈d/2⌉,)
    positions = torch.arange(n, dtype=torch.float64)
    angles = positions[:, None] * frequencies[None, :]  # (n, ⌈d/2⌉): pos · ω_i
    encoding = torch.empty(n, 2 * frequencies.numel(), dtype=torch.float64)
    encoding[:, 0::2] = torch.sin(angles)  # PE[pos, 2i]
    encoding[:, 1::2] = torch.cos(angles)  # PE[pos, 2i+1]
    return encoding[:, :d].to(dtype=dtype, device=device)
