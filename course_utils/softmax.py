"""Softmax that never overflows, and softmax restricted to the keys a query may attend to.

softmax(x)_i = exp(x_i - max_j x_j) / sum_k exp(x_k - max_j x_j)

Subtracting the row maximum changes nothing mathematically (it cancels between numerator and
denominator) but keeps every exponent <= 0, so exp() never overflows: softmax([1000, 0]) is [1, 0],
not [nan, 0].
"""

from __future__ import annotations

import torch

from course_utils.helpers.validation import require_dim, require_dtype, require_mask

# Half-precision inputs are computed in float32 and cast back: exp() of fp16 saturates at 65504.
_UPCAST = (torch.float16, torch.bfloat16)


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim``."""
    require_dtype("floating-point", x=x)
    require_dim("x", x, dim)
    return masked_softmax(x, None, dim=dim)


def masked_softmax(
    scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1
) -> torch.Tensor:
    """Softmax over ``dim`` where only entries with ``mask == True`` take part.

    ``mask`` is boolean (True = may attend) and broadcasts to ``scores``. Masked entries get weight
    exactly 0. A row whose every entry is masked gets all-zero weights (not NaN): there is nothing
    to attend to, so it contributes nothing.
    """
    require_dtype("floating-point", scores=scores)
    require_dim("scores", scores, dim)
    require_mask(mask, scores.shape)
    original_dtype = scores.dtype
    if original_dtype in _UPCAST:
        scores = scores.float()
    if mask is not None:
        # e_ij = -inf where j may not be attended: exp(-inf) = 0 removes it from the sum.
        scores = scores.masked_fill(~mask, float("-inf"))
    row_max = scores.amax(dim=dim, keepdim=True)  # max_j e_ij
    # A fully masked row has max -inf; shifting by 0 instead keeps exp(-inf - 0) = 0, not NaN.
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exp_scores = torch.exp(scores - row_max)  # exp(e_ij - max_j e_ij): every exponent <= 0
    normaliser = exp_scores.sum(dim=dim, keepdim=True)  # Σ_k exp(e_ik - max_j e_ij)
    # α_ij = exp(...) / Σ; 0 / tiny = 0 for fully masked rows, other rows have Σ >= 1 (exp(0) is in it).
    weights = exp_scores / normaliser.clamp_min(torch.finfo(exp_scores.dtype).tiny)
    return weights.to(original_dtype)
