"""ALiBi, attention with linear biases (Press et al., 2022, "Train Short, Test Long").

No position is added to the tokens and nothing is rotated: each head h adds a penalty
proportional to the distance between query i and key j to its scores,

    s_ij = q_i · k_j / √d − m_h · (i − j)          m_h = 2^(-8h/H),  h = 1 … H

a geometric sequence of slopes from 2^(-8/H) (a steep, local head) down to 2^(-8) (a head that
sees far). The penalty grows without bound with the distance, so a key far in the past fades
whatever the length: this is why ALiBi models trained on short sequences keep working on long ones.

The bias of a key in the future (j > i) is positive; a causal model masks those keys anyway, so
:func:`alibi_bias` returns the formula as it stands and callers add the causal mask.
"""

from __future__ import annotations

import torch

from course_utils.helpers.validation import require_positive_int


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """(H,) float32 slopes m_h = 2^(-8h/H) for heads h = 1 … H (the first head is the steepest)."""
    require_positive_int("num_heads", num_heads)
    heads = torch.arange(1, num_heads + 1, dtype=torch.float64)  # h = 1 … H
    return torch.pow(2.0, -8.0 * heads / num_heads).float()  # m_h = 2^(-8h/H)


def alibi_bias(num_heads: int, n_q: int, n_k: int) -> torch.Tensor:
    """(H, n_q, n_k) float32 biases −m_h · (i − j) to add to the scores of query i and key j.

    Queries and keys are numbered from 0 on the same axis. The bias is 0 on the diagonal, negative
    for past keys and positive for future ones (which a causal mask removes).
    """
    require_positive_int("n_q", n_q)
    require_positive_int("n_k", n_k)
    slopes = alibi_slopes(num_heads)  # m_h, (H,)
    query_positions = torch.arange(n_q, dtype=torch.float32)[:, None]  # i
    key_positions = torch.arange(n_k, dtype=torch.float32)[None, :]  # j
    distance = query_positions - key_positions  # i − j, (n_q, n_k)
    return -slopes[:, None, None] * distance  # −m_h · (i − j)


__all__ = ["alibi_bias", "alibi_slopes"]
