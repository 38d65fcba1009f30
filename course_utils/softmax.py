"""Softmax that never overflows, and softmax restricted to the keys a query may attend to.

softmax(x)_i = exp(x_i - max_j x_j) / sum_k exp(x_k - max_j x_j)

Subtracting the row maximum changes nothing mathematically (it cancels between numerator and
denominator) but keeps every exponent <= 0, so exp() never overflows: softmax([1000, 0]) is [1, 0],
not [nan, 0].
"""

from __future__ import annotations

import torch

# Half-precision inputs are computed in float32 and cast back: exp() of fp16 saturates at 65504.
_UPCAST = (torch.float16, torch.bfloat16)


def _require_float_tensor(name: str, value) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}")


def _check_dim(name: str, value: torch.Tensor, dim: int) -> None:
    if value.dim() == 0:
        raise ValueError(f"{name} must have at least one dimension, got a scalar")
    if not -value.dim() <= dim < value.dim():
        raise ValueError(f"dim={dim} is out of range for {name} of shape {tuple(value.shape)}")


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Numerically stable softmax along ``dim``."""
    _require_float_tensor("x", x)
    _check_dim("x", x, dim)
    return masked_softmax(x, None, dim=dim)


def check_mask(mask: torch.Tensor, scores: torch.Tensor, scores_name: str = "scores") -> None:
    """A mask must be boolean (True = may attend) and broadcastable to the scores."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a bool torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise TypeError(
            f"mask must be a bool tensor with True = may attend, got dtype {mask.dtype}; "
            "an additive float mask (0 / -inf) is a different convention"
        )
    try:
        broadcast = torch.broadcast_shapes(mask.shape, scores.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != scores.shape:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to {scores_name} of shape "
            f"{tuple(scores.shape)}"
        )


def masked_softmax(
    scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1
) -> torch.Tensor:
    """Softmax over ``dim`` where only entries with ``mask == True`` take part.

    Masked entries get weight exactly 0. A row whose every entry is masked gets all-zero weights
    (not NaN): there is nothing to attend to, so it contributes nothing.
    """
    _require_float_tensor("scores", scores)
    _check_dim("scores", scores, dim)
    if mask is not None:
        check_mask(mask, scores)
    original_dtype = scores.dtype
    if original_dtype in _UPCAST:
        scores = scores.float()
    if mask is not None:
        # e_ij = -inf where j may not be attended: exp(-inf) = 0 removes it from the sum.
        scores = scores.masked_fill(~mask, float("-inf"))
    row_max = scores.amax(dim=dim, keepdim=True)
    # A fully masked row has max -inf; shifting by 0 instead keeps exp(-inf - 0) = 0, not NaN.
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
    exp_scores = torch.exp(scores - row_max)  # every exponent <= 0: no overflow
    normaliser = exp_scores.sum(dim=dim, keepdim=True)
    # 0 / tiny = 0 for fully masked rows; other rows have normaliser >= 1 (the max term is exp(0)).
    weights = exp_scores / normaliser.clamp_min(torch.finfo(exp_scores.dtype).tiny)
    return weights.to(original_dtype)
