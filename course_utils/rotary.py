"""Rotary position embedding, RoPE (Su et al., 2021, "RoFormer").

Sinusoidal encodings (notebook 04) are *added* to the tokens, so a score q_i · k_j mixes content
with the absolute positions i and j. RoPE instead *rotates* each query and key by an angle
proportional to its position. Read the features of a vector as d/2 complex numbers, pair i being
z_i = x[2i] + i·x[2i+1] (adjacent features, as in the paper), and multiply by e^{i·pos·θ_i}:

    θ_i    = base^(-2i/d)                          the frequencies of the sinusoidal encoding
    RoPE(x, pos)_i = z_i · e^{i·pos·θ_i}           a rotation: it keeps |z_i|, so ‖x‖ too

A rotation by pos·θ of the query and by pos'·θ of the key leaves, in their dot product,

    Re Σ_i q_i conj(k_i) e^{i·(m − n)·θ_i}         (m, n the query and key positions)

which depends on the positions only through the offset m − n. Nothing is added to the tokens, so
the values carry content alone; and an offset seen in training means the same at any position.
"""

from __future__ import annotations

import torch

from course_utils.helpers.validation import require_dtype, require_number_above, require_shapes
from course_utils.positional import positional_frequencies


def rope_angles(positions: torch.Tensor, d: int, base: float = 10000.0) -> torch.Tensor:
    """(n, d/2) float64 angles pos · θ_i with θ_i = base^(-2i/d)."""
    frequencies = positional_frequencies(d, base).to(positions.device)  # θ_i = base^(-2i/d), (d/2,)
    return positions.to(torch.float64)[:, None] * frequencies[None, :]  # pos · θ_i


def apply_rope(
    x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0
) -> torch.Tensor:
    """Rotate each adjacent pair (x[2i], x[2i+1]) of x (..., n, d) by the angle pos · base^(-2i/d).

    ``positions`` (n,) gives each row's position, by default 0, 1, …, n − 1 (a cached decoder
    passes the later positions of its new tokens). ``d`` must be even. Returns x's shape and dtype;
    the angles are computed in float64, so large positions keep their precision.
    """
    require_dtype("floating-point", x=x)
    sizes = require_shapes(("x", x, "(..., n, d)"))
    n, d = sizes["n"], sizes["d"]
    if d % 2:
        raise ValueError(f"x must have an even feature size d (pairs are rotated), got d={d}")
    require_number_above("base", base, 1)
    if positions is None:
        positions = torch.arange(n, device=x.device)
    positions = torch.as_tensor(positions, device=x.device)
    require_shapes(("positions", positions, "(n,)"), sizes={"n": n})
    angles = rope_angles(positions, d, base)  # (n, d/2): pos · θ_i
    cos = torch.cos(angles).to(x.dtype)
    sin = torch.sin(angles).to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # Re z_i = x[2i], Im z_i = x[2i+1]
    rotated = torch.empty_like(x)
    rotated[..., 0::2] = even * cos - odd * sin  # Re(z_i e^{iφ}) = x[2i] cos φ − x[2i+1] sin φ
    rotated[..., 1::2] = even * sin + odd * cos  # Im(z_i e^{iφ}) = x[2i] sin φ + x[2i+1] cos φ
    return rotated


__all__ = ["apply_rope", "rope_angles"]
