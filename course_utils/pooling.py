"""Attention as soft lookup: Nadaraya–Watson kernel regression and temperature-scaled retrieval.

A dictionary lookup returns the value of the one key equal to the query. Attention pooling returns
a weighted average of *all* values, weighted by how similar each key is to the query:

    f(q) = Σ_i α(q, k_i) v_i,    α(q, k_i) = softmax_i( score(q, k_i) )

Nadaraya (1964) and Watson (1964) used a Gaussian kernel, score(x, x_i) = -(x - x_i)² / (2h²).
"""

from __future__ import annotations

import torch

from course_utils.helpers.validation import require_number_above, require_shapes
from course_utils.softmax import softmax


def soft_lookup(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, temperature: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Retrieve a blend of ``values`` (m, d_v) for one ``query`` (d,) against ``keys`` (m, d).

    α = softmax(K q / T); output = Σ_i α_i v_i. Small T approaches the hard lookup of the best
    matching key; large T approaches the plain mean of the values. Returns (output, weights).
    """
    require_number_above("temperature", temperature)
    require_shapes(
        ("query", query, "(d,)"), ("keys", keys, "(m, d)"), ("values", values, "(m, d_v)")
    )
    weights = softmax(keys @ query / temperature, dim=0)  # α_i = softmax_i(k_i · q / T)
    return weights @ values, weights  # Σ_i α_i v_i


def gaussian_kernel_scores(
    query_points: torch.Tensor, key_points: torch.Tensor, bandwidth: float
) -> torch.Tensor:
    """(n, m) scores -(x_q - x_i)² / (2h²) between 1-D query points (n,) and key points (m,)."""
    require_number_above("bandwidth", bandwidth)
    require_shapes(("query_points", query_points, "(n,)"), ("key_points", key_points, "(m,)"))
    differences = query_points[:, None] - key_points[None, :]  # x_q - x_i: (n, m)
    return -(differences**2) / (2 * bandwidth**2)


def nadaraya_watson(
    query_points: torch.Tensor, key_points: torch.Tensor, values: torch.Tensor, bandwidth: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel regression: f(x) = Σ_i softmax_i(-(x - x_i)² / (2h²)) y_i.

    query_points (n,), key_points (m,), values (m,). Returns predictions (n,) and weights (n, m),
    each row of weights summing to 1 over the m training points.
    """
    require_shapes(("key_points", key_points, "(m,)"), ("values", values, "(m,)"))
    # α_qi = softmax_i(-(x_q - x_i)² / (2h²))
    weights = softmax(gaussian_kernel_scores(query_points, key_points, bandwidth), dim=1)
    return weights @ values, weights  # f(x_q) = Σ_i α_qi y_i
